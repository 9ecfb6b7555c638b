"""Reading Asterisk's config files as Asterisk does (sections, templates, includes, comments)
and its dialplan (contexts, priorities, extension patterns); the findings it makes on the way."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ERROR, WARNING = "error", "warning"
# The channel template is tried with this number ({number}: E.164 without '+').
SAMPLE_NUMBER = "12125550123"
_MAX_INCLUDE_DEPTH = 10
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Problem:
    """One finding: where it is and what to do, in one line."""

    severity: str  # ERROR or WARNING
    file: str  # a file of the folder, or the dialer config
    line: int | None
    section: str | None
    message: str

    @property
    def where(self) -> str:
        """`file:line [section]`, as far as known."""
        where = self.file + (f":{self.line}" if self.line else "")
        return where + (f" [{self.section}]" if self.section else "")

    def __str__(self) -> str:
        return f"{self.severity}: {self.where}: {self.message}"


@dataclass(frozen=True)
class At:
    """A place in the config files, to hang problems on."""

    file: str
    line: int | None = None
    section: str | None = None

    def error(self, message: str) -> Problem:
        return Problem(ERROR, self.file, self.line, self.section, message)

    def warning(self, message: str) -> Problem:
        return Problem(WARNING, self.file, self.line, self.section, message)


# ---------------------------------------------------------------- the Asterisk config format


@dataclass(frozen=True)
class Entry:
    key: str  # lower case: Asterisk reads keys without regard to case
    value: str
    file: str
    line: int


@dataclass
class Section:
    name: str
    file: str
    line: int
    template: bool = False
    entries: list[Entry] = field(default_factory=list)  # inherited ones first

    @property
    def at(self) -> At:
        return At(self.file, self.line, self.name)

    def at_key(self, key: str) -> At:
        entry = self.entry(key)
        return At(entry.file, entry.line, self.name) if entry else self.at

    def get(self, key: str, default: str | None = None) -> str | None:
        entry = self.entry(key)
        return entry.value if entry else default

    def get_all(self, key: str) -> list[str]:
        return [e.value for e in self.entries if e.key == key]

    def entry(self, key: str) -> Entry | None:
        """The last `key`: the one Asterisk keeps for a single-valued setting."""
        found = [e for e in self.entries if e.key == key]
        return found[-1] if found else None

    @property
    def type(self) -> str:
        return (self.get("type") or "").lower()


@dataclass
class ConfFile:
    name: str
    sections: list[Section] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def objects(self, name: str | None = None) -> list[Section]:
        """Sections that are not templates, all or those called `name` (names may repeat)."""
        return [s for s in self.sections if not s.template and name in (None, s.name)]

    def first(self, name: str) -> Section | None:
        found = self.objects(name)
        return found[0] if found else None

    def typed(self, type_: str) -> list[Section]:
        return [s for s in self.objects() if s.type == type_]


def _strip_comment(line: str, depth: int) -> tuple[str, int]:
    """Drop `;` comments (not `\\;`) and `;-- ... --;` blocks, which nest (`;---` opens none);
    return the text left and how many blocks are still open."""
    out, i, start = "", 0, 0  # start: where the text after the last block marker begins
    while i < len(line):
        char = line[i]
        if char == "\\" and line.startswith(";", i + 1):
            out, i = out + (";" if not depth else ""), i + 2
        elif char != ";":
            out, i = out + (char if not depth else ""), i + 1
        elif line.startswith(";--", i) and not line.startswith(";---", i):
            depth, i = depth + 1, i + 3
            start = i
        elif depth and i >= start + 2 and line[i - 2 : i] == "--":
            depth, i = depth - 1, i + 1
            start = i
        elif depth:
            i += 1
        else:
            break
    return out, depth


def read_conf(folder: Path, name: str) -> ConfFile:
    """Parse `folder/name` and its #includes as Asterisk does, as far as the checks need."""
    conf = ConfFile(name)
    _parse_file(folder, folder / name, name, conf, None, 0, None)
    return conf


def _parse_file(
    folder: Path,
    path: Path,
    shown: str,
    conf: ConfFile,
    current: Section | None,
    depth: int,
    site: At | None,
) -> Section | None:
    """Add the sections of one file to `conf`; return the section still open at its end."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if site is None:
            conf.problems.append(At(shown).error(f"not found in {folder}"))
        else:
            conf.problems.append(site.error(f"#include {shown}: no such file"))
        return current
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        conf.problems.append(At(shown).error(f"cannot be read: {reason}"))
        return current
    depth = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line, depth = _strip_comment(raw, depth)
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            current = _directive(folder, At(shown, number), line, conf, current, depth)
        elif line.startswith("["):
            current = _section(At(shown, number), line, conf) or current
        elif current is None:
            conf.problems.append(
                At(shown, number).error("a setting before any [section]: move it into one")
            )
        else:
            key, sep, value = line.partition("=")
            if sep:
                entry = Entry(key.strip().lower(), value.removeprefix(">").strip(), shown, number)
                current.entries.append(entry)
            else:  # never echo the line: it may hold a secret
                conf.problems.append(
                    At(shown, number, current.name).error("not `key = value`: Asterisk skips it")
                )
    return current


def _directive(
    folder: Path, at: At, line: str, conf: ConfFile, current: Section | None, depth: int
) -> Section | None:
    word, _, target = line[1:].partition(" ")
    target = target.strip().strip('"<>').strip()
    if word not in ("include", "tryinclude") or not target:
        return current  # #exec is not run
    if depth >= _MAX_INCLUDE_DEPTH:
        conf.problems.append(at.error("#include nested too deep (a loop?)"))
        return current
    pattern = any(ch in target for ch in "*?[")
    path = folder / target
    if Path(target).is_absolute() and not (path.parent if pattern else path).exists():
        path = folder / path.name  # /etc/asterisk/x.conf, checked from a copy elsewhere
    if pattern:
        for match in sorted(path.parent.glob(path.name)):
            current = _parse_file(folder, match, match.name, conf, current, depth + 1, at)
        return current
    if word == "tryinclude" and not path.exists():
        return current
    return _parse_file(folder, path, target, conf, current, depth + 1, at)


_HEADER = re.compile(r"\[([^\]]+)\]\s*(?:\(([^)]*)\))?")


def _section(at: At, line: str, conf: ConfFile) -> Section | None:
    """`[name]`, `[name](!)` (a template), `[name](tmpl,...)` (inherits), `[name](+)` (adds)."""
    match = _HEADER.fullmatch(line)
    if match is None:
        conf.problems.append(at.error("not a [section] header"))
        return None
    name = match[1].strip()
    options = [o.strip() for o in (match[2] or "").split(",") if o.strip()]
    if "+" in options:
        earlier = [s for s in conf.sections if s.name == name]
        if earlier:
            return earlier[-1]
        conf.problems.append(At(at.file, at.line, name).error("(+) adds to no section above"))
    section = Section(name, at.file, at.line or 0, template="!" in options)
    for base in options:
        if base in ("!", "+"):
            continue
        found = [s for s in conf.sections if s.name == base]
        if found:
            section.entries.extend(found[-1].entries)
        else:
            conf.problems.append(
                section.at.error(f"template {base!r} is not defined above: Asterisk refuses it")
            )
    conf.sections.append(section)
    return section


# ---------------------------------------------------------------- the dialplan


@dataclass(frozen=True)
class Step:
    exten: str
    priority: int
    app: str  # as written; Asterisk compares application names without regard to case
    args: str
    file: str
    line: int


@dataclass
class Context:
    name: str
    file: str
    line: int
    steps: list[Step] = field(default_factory=list)
    includes: list[str] = field(default_factory=list)

    @property
    def at(self) -> At:
        return At(self.file, self.line, self.name)


def build_dialplan(conf: ConfFile) -> tuple[dict[str, Context], list[Problem]]:
    """Contexts of extensions.conf: `exten =>`, `same =>` (n, s, labels) and `include =>`."""
    contexts: dict[str, Context] = {}
    problems: list[Problem] = []
    for section in conf.objects():
        if section.name in ("general", "globals"):
            continue
        ctx = contexts.setdefault(section.name, Context(section.name, section.file, section.line))
        exten, priority = "", 0
        for e in section.entries:
            if e.key == "include":
                ctx.includes.append(e.value.partition(",")[0].strip())
                continue
            if e.key not in ("exten", "same"):
                continue
            rest = e.value
            if e.key == "exten":
                exten, _, rest = rest.partition(",")
                exten = exten.partition("/")[0].strip()  # `/callerid` matching is not followed
            elif not exten:
                problems.append(
                    At(e.file, e.line, ctx.name).error("`same =>` before any `exten =>`")
                )
                continue
            prio, _, app = rest.partition(",")
            prio = prio.partition("(")[0].strip().lower()
            if prio == "hint":
                continue
            priority = int(prio) if prio.isdigit() else priority if prio == "s" else priority + 1
            name, _, args = app.strip().partition("(")
            args = args[: args.rfind(")")] if ")" in args else args
            ctx.steps.append(Step(exten, priority, name.strip(), args, e.file, e.line))
    return contexts, problems


def _tokens(pattern: str) -> Iterator[str]:
    """One pattern position at a time; a `-` outside [sets] is decoration and skipped."""
    i = 0
    while i < len(pattern):
        if pattern[i] == "-":
            i += 1
        elif pattern[i] == "[":
            end = pattern.find("]", i)
            if end < 0:
                yield "[?"  # an unclosed set never matches ("Wrong usage of []")
                return
            yield pattern[i : end + 1]
            i = end + 1
        else:
            yield pattern[i]
            i += 1


_SETS = {"x": "0123456789", "z": "123456789", "n": "23456789"}


def _chars(token: str) -> str:
    """The characters one pattern position accepts: X Z N, a [set] with ranges, or a literal."""
    if not token.startswith("["):
        return _SETS.get(token.lower(), token)
    body, chars, i = token[1:-1], "", 0
    while i < len(body):
        if i + 2 < len(body) and body[i + 1] == "-":
            chars += "".join(chr(c) for c in range(ord(body[i]), ord(body[i + 2]) + 1))
            i += 3
        else:
            chars += body[i]
            i += 1
    return chars


def extension_matches(pattern: str, exten: str) -> bool:
    """Asterisk's rules: `_` starts a pattern; X Z N and [1-5a-z] sets match one character,
    `.` one or more of anything, `!` zero or more; other characters match themselves; `-` is
    decoration in both."""
    exten = exten.replace("-", "")
    if not pattern.startswith("_"):
        return pattern.replace("-", "") == exten
    i = 0
    for token in _tokens(pattern[1:]):
        if token == "!":
            return True
        if i == len(exten):
            return False  # the pattern wants more; `.` too wants at least one character
        if token == ".":
            return True
        if token == "[]":
            continue  # Asterisk ignores an empty set
        if token == "[?" or exten[i] not in _chars(token):
            return False
        i += 1
    return i == len(exten)


def _specificity(pattern: str) -> tuple[int, list[tuple[int, str]]]:
    """Which matching extension Asterisk runs: a literal first, then per position the pattern
    whose set is smaller, `.` and `!` last."""
    if not pattern.startswith("_"):
        return (0, [])
    key = []
    for token in _tokens(pattern[1:]):
        chars = _chars(token)
        key.append(
            (1000 + (token == "!"), "") if token in ".!" else (len(chars), min(chars, default=""))
        )
    return (1, key)


def find_extension(
    contexts: dict[str, Context], context: str, exten: str, seen: frozenset[str] = frozenset()
) -> tuple[Context, str] | None:
    """The context and extension Asterisk runs for `exten` in `context` (includes followed)."""
    ctx = contexts.get(context)
    if ctx is None or context in seen:
        return None
    names = {s.exten for s in ctx.steps if extension_matches(s.exten, exten)}
    if names:
        return ctx, min(names, key=_specificity)
    for included in ctx.includes:
        found = find_extension(contexts, included, exten, seen | {context})
        if found is not None:
            return found
    return None


def flow_steps(contexts: dict[str, Context], context: str) -> list[Step]:
    """Every step of `context` and of the contexts it includes."""
    steps: list[Step] = []
    todo, seen = [context], set()
    while todo:
        name = todo.pop()
        if name not in seen and name in contexts:
            seen.add(name)
            steps.extend(contexts[name].steps)
            todo.extend(contexts[name].includes)
    return steps
