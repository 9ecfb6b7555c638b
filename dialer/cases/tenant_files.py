"""The files a tenant's managers edit at the pages (strategies, message templates): checked
with every problem naming its key and line, saved whole with the version before kept, and read
back by the runs that use them. A tenant without its own file works from the shipped one."""

from __future__ import annotations

import enum
import hashlib
import os
import re
import threading
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from dialer.cases.config_files import ConfigFileError
from dialer.cases.errors import CaseError
from dialer.cases.strategy import SHIPPED, Strategies, strategies_from_mapping
from dialer.cases.strategy_run import check_templates, strategy_templates
from dialer.messaging.errors import TemplateError
from dialer.messaging.templates import Template, parse_templates

__all__ = [
    "Checked",
    "Document",
    "DocumentConflict",
    "DocumentInvalid",
    "Kind",
    "Problem",
    "TenantFiles",
    "check",
    "locate",
]

# The templates the shipped strategies name; a tenant's own file replaces them by name.
SHIPPED_TEMPLATES = SHIPPED.with_name("templates.toml")
# Far beyond any real strategies or templates file; a bigger one is a paste gone wrong.
MAX_BYTES = 256 * 1024


class Kind(enum.StrEnum):
    STRATEGIES = "strategies"
    TEMPLATES = "templates"


SHIPPED_FILES = {Kind.STRATEGIES: SHIPPED, Kind.TEMPLATES: SHIPPED_TEMPLATES}


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a file: the key it is about ("strategies.gentle.steps[2].days", or
    "(file)" for its syntax), what is wrong, and the line (1-based) when it can be told."""

    key: str
    message: str
    line: int | None = None

    def to_json(self) -> dict[str, object]:
        return {"key": self.key, "message": self.message, "line": self.line}


@dataclass(frozen=True)
class Checked:
    """A file's text checked: `problems` stop it being saved; `warnings` do not (a step naming
    a template the tenant's templates file does not have)."""

    kind: Kind
    problems: tuple[Problem, ...]
    warnings: tuple[Problem, ...] = ()
    strategies: Strategies | None = None
    templates: Mapping[str, Template] | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class Document:
    kind: Kind
    text: str
    # "tenant": the tenant's own file; "shipped": none yet, the shipped one is in use.
    source: str
    # Changes with every save; a save names the version it was edited from.
    version: str
    saved_at: datetime | None = None
    path: Path | None = field(default=None, compare=False)


class DocumentConflict(CaseError):
    """The file was saved by someone else since it was opened; nothing was written."""


class DocumentInvalid(CaseError):
    """The text has problems; nothing was written."""

    def __init__(self, kind: Kind, problems: tuple[Problem, ...]) -> None:
        super().__init__(f"{kind.value}: " + "; ".join(f"{p.key}: {p.message}" for p in problems))
        self.kind = kind
        self.problems = problems


def version_of(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


# ----- checking ---------------------------------------------------------------------------------

_AT_LINE = re.compile(r"\(at line (\d+), column \d+\)")
_KEY_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _parse(text: str, kind: Kind) -> tuple[dict[str, object] | None, Problem | None]:
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        where = text.count("\n", 0, exc.start) + 1
        return None, Problem("(file)", "the text is not valid Unicode (a lone surrogate)", where)
    if size > MAX_BYTES:
        return None, Problem("(file)", f"longer than {MAX_BYTES // 1024} KiB")
    try:
        return tomllib.loads(text), None
    except tomllib.TOMLDecodeError as exc:
        found = _AT_LINE.search(str(exc))
        line = int(found.group(1)) if found else None
        return None, Problem("(file)", f"not valid TOML: {exc}", line)


def _split(problem: str) -> tuple[str, str]:
    key, sep, message = problem.partition(": ")
    return (key, message) if sep else ("(top level)", problem)


def _strategy_problems(exc: ConfigFileError, text: str) -> list[Problem]:
    out: list[Problem] = []
    for raw in exc.problems:
        key, message = _split(raw)
        # The cross-reference checks come as one "(top level)" error of "key: what; key: what".
        parts = message.split("; ") if key == "(top level)" else [message]
        for part in parts:
            inner_key, inner = _split(part) if key == "(top level)" else (key, part)
            if key == "(top level)" and inner_key == "(top level)":
                inner_key = key
            out.append(Problem(inner_key, inner, locate(text, inner_key)))
    return out


def check(kind: Kind, text: str, *, templates: Mapping[str, Template] | None = None) -> Checked:
    """Check a strategies or templates file's text. For strategies, `templates` (those the
    run will use) turns a step naming a template they lack, or one of another channel, into a
    warning."""
    data, syntax = _parse(text, kind)
    if syntax is not None or data is None:
        return Checked(kind, (syntax or Problem("(file)", "empty"),))
    if kind is Kind.TEMPLATES:
        try:
            parsed = parse_templates(data, "templates")
        except TemplateError as exc:
            return Checked(kind, (Problem(exc.key, exc.problem, locate(text, exc.key)),))
        return Checked(kind, (), templates=parsed)
    try:
        strategies = strategies_from_mapping(data, "strategies")
    except ConfigFileError as exc:
        return Checked(kind, tuple(_strategy_problems(exc, text)))
    warnings = []
    if templates is not None:
        for raw in check_templates(strategies, templates):
            key, message = _split(raw)
            warnings.append(Problem(key, message, locate(text, key)))
    return Checked(kind, (), tuple(warnings), strategies=strategies)


# ----- where a key is written -------------------------------------------------------------------


def _key_parts(key: str) -> list[str | int]:
    return [name if name else int(index) for name, index in _KEY_PART.findall(key)]


def _names(dotted: str) -> list[str]:
    """`a."zh-CN".b` -> ['a', 'zh-CN', 'b']."""
    return [p.strip().strip("\"'") for p in re.findall(r'"[^"]*"|\'[^\']*\'|[^.]+', dotted)]


def _common(path: list[str | int], target: list[str | int]) -> int:
    n = 0
    for a, b in zip(path, target, strict=False):
        if a != b:
            break
        n += 1
    return n if n == len(path) else 0


def locate(text: str, key: str) -> int | None:
    """The line (1-based) where `key` (as problems name it) is written, or the line of the
    nearest enclosing key; None when nothing of it is found. Reads TOML as managers write it:
    tables, arrays of tables, dotted keys, and inline arrays with one element per line."""
    target = _key_parts(key)
    if not target:
        return None
    best, best_len = None, 0
    table: list[str | int] = []
    arrays: dict[tuple[str | int, ...], int] = {}
    in_string: str | None = None
    array_key: list[str | int] | None = None
    element = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if in_string is not None:
            if in_string in line:
                in_string = None
            continue
        if not line or line.startswith("#"):
            continue
        path: list[str | int] | None = None
        if line.startswith("[[") and array_key is None:
            header = tuple(_names(line.strip("[] ").split("#")[0].strip()))
            arrays[header] = arrays.get(header, -1) + 1
            table = [*header, arrays[header]]
            path = table
        elif line.startswith("[") and array_key is None:
            table = list(_names(line.strip("[] ").split("#")[0].strip()))
            path = table
        elif array_key is not None:
            if line.startswith("]"):
                array_key = None
                continue
            if line.startswith("{") or line.startswith('"') or line[0].isdigit():
                path = [*array_key, element]
                element += 1
                after = _key_parts(key)[len(path) : len(path) + 1]
                if (
                    after
                    and isinstance(after[0], str)
                    and re.search(rf"(^|[{{,\s]){re.escape(after[0])}\s*=", line)
                ):
                    path = [*path, after[0]]
        else:
            name, eq, value = line.partition("=")
            if not eq:
                continue
            path = [*table, *_names(name.strip())]
            value = value.strip()
            for quote_mark in ('"""', "'''"):
                if value.startswith(quote_mark) and value.count(quote_mark) == 1:
                    in_string = quote_mark
            if value.startswith("[") and not value.rstrip(",").endswith("]"):
                array_key, element = path, 0
            elif value.startswith("{"):
                inner = target[len(path) : len(path) + 1]
                if (
                    inner
                    and isinstance(inner[0], str)
                    and re.search(rf"(^|[{{,\s]){re.escape(inner[0])}\s*=", value)
                ):
                    path = [*path, inner[0]]
        if path is None:
            continue
        n = _common(path, target)
        if n > best_len:
            best, best_len = number, n
    return best


# ----- the files on disk ------------------------------------------------------------------------


def _folder(tenant: str) -> str:
    name = quote(tenant, safe="")
    return name if name not in ("", ".", "..") else f"_{name.replace('.', '%2E')}"


class TenantFiles:
    """Each tenant's files under `root` (`<root>/<tenant>/strategies.toml`, `templates.toml`,
    earlier versions in `<root>/<tenant>/history/`)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()

    def path(self, tenant: str, kind: Kind) -> Path:
        return self.root / _folder(tenant) / f"{kind.value}.toml"

    def read(self, tenant: str, kind: Kind) -> Document:
        own = self.path(tenant, kind)
        try:
            text = own.read_text(encoding="utf-8")
        except FileNotFoundError:
            text = SHIPPED_FILES[kind].read_text(encoding="utf-8")
            return Document(kind, text, "shipped", version_of(text), None, SHIPPED_FILES[kind])
        saved = datetime.fromtimestamp(own.stat().st_mtime, UTC)
        return Document(kind, text, "tenant", version_of(text), saved, own)

    def templates(self, tenant: str) -> Mapping[str, Template]:
        """The templates the tenant's strategies send: the shipped ones, each replaced by the
        tenant's own of the same name."""
        merged = strategy_templates()
        own = self.read(tenant, Kind.TEMPLATES)
        if own.source == "tenant":
            checked = check(Kind.TEMPLATES, own.text)
            if checked.templates is None:
                raise DocumentInvalid(Kind.TEMPLATES, checked.problems)
            merged.update(checked.templates)
        return merged

    def strategies(self, tenant: str) -> Strategies:
        """The tenant's strategies as the strategy run uses them."""
        checked = check(Kind.STRATEGIES, self.read(tenant, Kind.STRATEGIES).text)
        if checked.strategies is None:
            raise DocumentInvalid(Kind.STRATEGIES, checked.problems)
        return checked.strategies

    def check(self, tenant: str, kind: Kind, text: str) -> Checked:
        templates = None
        if kind is Kind.STRATEGIES:
            try:
                templates = self.templates(tenant)
            except DocumentInvalid:
                templates = None  # the templates editor tells what is wrong with them
        return check(kind, text, templates=templates)

    def save(
        self, tenant: str, kind: Kind, text: str, *, base_version: str, now: datetime
    ) -> tuple[Document, Checked]:
        """Write `text` as the tenant's file if it checks and nobody saved since
        `base_version`; the file it replaces goes to history/. DocumentInvalid,
        DocumentConflict: nothing written."""
        checked = self.check(tenant, kind, text)
        if not checked.ok:
            raise DocumentInvalid(kind, checked.problems)
        with self._lock:
            before = self.read(tenant, kind)
            if before.version != base_version:
                raise DocumentConflict(
                    f"{kind.value}: saved by someone else since you opened it "
                    f"(version {before.version}, yours {base_version}); reload and edit again"
                )
            target = self.path(tenant, kind)
            target.parent.mkdir(parents=True, exist_ok=True)
            if before.source == "tenant":
                history = target.parent / "history"
                history.mkdir(exist_ok=True)
                stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
                kept = history / f"{kind.value}-{stamp}-{before.version}.toml"
                kept.write_text(before.text, encoding="utf-8")
            temporary = target.with_suffix(".toml.saving")
            temporary.write_text(text, encoding="utf-8")
            os.replace(temporary, target)
        return self.read(tenant, kind), checked
