"""Sans-I/O FastAGI wire core: the agi_* environment, commands out, replies and HANGUP notices in.

Bytes go in with `AgiServerProtocol.receive_data`, typed events come out of `events_received`,
commands go in with `send_command` and their bytes come out of `data_to_send`. Nothing here
touches a socket, so the same core runs under asyncio, in tests on recorded bytes, and its codec
helpers (`split_lines`, `tokenize`, `encode_environment`, `AgiReply.build`) serve the simulator
playing the Asterisk side.
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import parse_qsl, urlsplit

from agi.errors import AgiProtocolError

logger = logging.getLogger(__name__)

DEFAULT_PORT = 4573
# A longer line than this means we lost the framing (or the peer is not Asterisk).
MAX_LINE_BYTES = 65536

USAGE_CLOSING = "End of proper usage."


# --------------------------------------------------------------------------- framing


def split_lines(buffer: bytes) -> tuple[list[str], bytes]:
    """Cut complete `\\n`-terminated lines off `buffer`; return them and the unterminated rest.

    AGI lines end in a bare LF; a stray CR before it is dropped so a hand-typed telnet session
    works too. Bytes that are not UTF-8 are replaced rather than killing the session.
    """
    *complete, rest = buffer.split(b"\n")
    lines = [raw.removesuffix(b"\r").decode("utf-8", errors="replace") for raw in complete]
    return lines, rest


# --------------------------------------------------------------------------- arguments


def quote(text: str) -> str:
    """Quote an argument the way Asterisk's AGI argument parser reads it back verbatim."""
    _reject_line_breaks(text)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _token(text: str) -> str:
    """A bare word when it is one, else a quoted argument (keeps commands as Asterisk logs them)."""
    _reject_line_breaks(text)
    if text and not any(c.isspace() or c in '"\\' for c in text):
        return text
    return quote(text)


def _reject_line_breaks(text: str) -> None:
    if "\n" in text or "\r" in text or "\0" in text:
        raise ValueError(
            f"AGI argument {text!r} contains a line break or NUL; it would split the command"
        )


def _name(kind: str, name: str) -> str:
    if not name or any(c.isspace() or c in '"\\' for c in name):
        raise ValueError(f"invalid {kind} {name!r}: must be non-empty, without spaces or quotes")
    return name


def tokenize(line: str) -> list[str]:
    """Split a command line as Asterisk does: blanks separate, `"` groups, `\\` escapes."""
    args: list[str] = []
    current: list[str] = []
    in_token = quoted = escaped = False
    for char in line:
        if escaped:
            current.append(char)
            escaped = False
            in_token = True
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
            in_token = True  # `""` is an empty argument, not no argument
        elif char.isspace() and not quoted:
            if in_token:
                args.append("".join(current))
                current = []
                in_token = False
        else:
            current.append(char)
            in_token = True
    if in_token:
        args.append("".join(current))
    return args


# --------------------------------------------------------------------------- commands


@dataclass(frozen=True)
class AgiCommand:
    """One AGI command line, without its line end."""

    line: str

    def __post_init__(self) -> None:
        if not self.line.strip():
            raise ValueError("empty AGI command")
        _reject_line_breaks(self.line)

    def __bytes__(self) -> bytes:
        return self.line.encode("utf-8") + b"\n"

    def __str__(self) -> str:
        return self.line


def answer() -> AgiCommand:
    return AgiCommand("ANSWER")


def noop() -> AgiCommand:
    return AgiCommand("NOOP")


def hangup(channel: str | None = None) -> AgiCommand:
    return AgiCommand("HANGUP" if channel is None else f"HANGUP {_token(channel)}")


def channel_status(channel: str | None = None) -> AgiCommand:
    return AgiCommand("CHANNEL STATUS" if channel is None else f"CHANNEL STATUS {_token(channel)}")


def verbose(message: str, level: int = 1) -> AgiCommand:
    if not 1 <= level <= 4:
        raise ValueError(f"VERBOSE level {level} out of range 1..4")
    return AgiCommand(f"VERBOSE {quote(message)} {level}")


def get_variable(name: str) -> AgiCommand:
    return AgiCommand(f"GET VARIABLE {_name('variable name', name)}")


def get_full_variable(expression: str, channel: str | None = None) -> AgiCommand:
    line = f"GET FULL VARIABLE {_token(expression)}"
    return AgiCommand(line if channel is None else f"{line} {_token(channel)}")


def set_variable(name: str, value: str) -> AgiCommand:
    return AgiCommand(f"SET VARIABLE {_name('variable name', name)} {quote(value)}")


def stream_file(filename: str, escape_digits: str = "", offset: int | None = None) -> AgiCommand:
    if any(c not in "0123456789*#" for c in escape_digits):
        raise ValueError(f"escape digits {escape_digits!r} may only hold 0-9, * and #")
    line = f"STREAM FILE {_name('sound file', filename)} {quote(escape_digits)}"
    return AgiCommand(line if offset is None else f"{line} {offset}")


def exec_app(application: str, args: str | Sequence[str] = "") -> AgiCommand:
    """EXEC: Asterisk passes exactly one argument on to the application, so a list is `,`-joined."""
    joined = args if isinstance(args, str) else ",".join(args)
    line = f"EXEC {_name('application', application)}"
    return AgiCommand(f"{line} {_token(joined)}" if joined else line)


# --------------------------------------------------------------------------- environment


@dataclass(frozen=True)
class AgiEnvironment:
    """The agi_* header block Asterisk sends first; `raw` keeps every key as sent."""

    script: str
    params: Mapping[str, str] = field(hash=False)
    request: str
    channel: str
    uniqueid: str
    type: str
    language: str
    callerid: str
    calleridname: str
    context: str
    extension: str
    priority: str
    version: str
    network: bool
    accountcode: str
    raw: Mapping[str, str] = field(repr=False, hash=False)

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]]) -> AgiEnvironment:
        raw = MappingProxyType(dict(pairs))
        script, params = parse_network_script(
            raw.get("agi_network_script") or _script_from_request(raw.get("agi_request", ""))
        )
        return cls(
            script=script,
            params=params,
            request=raw.get("agi_request", ""),
            channel=raw.get("agi_channel", ""),
            uniqueid=raw.get("agi_uniqueid", ""),
            type=raw.get("agi_type", ""),
            language=raw.get("agi_language", ""),
            callerid=raw.get("agi_callerid", ""),
            calleridname=raw.get("agi_calleridname", ""),
            context=raw.get("agi_context", ""),
            extension=raw.get("agi_extension", ""),
            priority=raw.get("agi_priority", ""),
            version=raw.get("agi_version", ""),
            network=raw.get("agi_network", "") == "yes",
            accountcode=raw.get("agi_accountcode", ""),
            raw=raw,
        )


def parse_network_script(network_script: str) -> tuple[str, Mapping[str, str]]:
    """`connect?campaign=camp42&lead=L001` -> (`connect`, {campaign: camp42, lead: L001})."""
    path, _, query = network_script.partition("?")
    params = dict(parse_qsl(query, keep_blank_values=True))
    return path.strip("/"), MappingProxyType(params)


def _script_from_request(request: str) -> str:
    parts = urlsplit(request)
    return parts.path.lstrip("/") + (f"?{parts.query}" if parts.query else "")


def encode_environment(pairs: Iterable[tuple[str, str]]) -> bytes:
    """The header block as Asterisk writes it: `key: value\\n` lines, then an empty line."""
    out = []
    for key, value in pairs:
        _reject_line_breaks(key)
        _reject_line_breaks(value)
        out.append(f"{key}: {value}\n")
    out.append("\n")
    return "".join(out).encode("utf-8")


# --------------------------------------------------------------------------- replies and events

_REPLY = re.compile(r"^(\d{3})([ -])(.*)$")
_RESULT = re.compile(r"^result=(-?\d+)(.*)$")
_TAIL = re.compile(r"^(?: \((?P<data>.*)\))?(?P<pairs>(?: \w+=\S*)*)\s*$")


@dataclass(frozen=True)
class AgiReply:
    """Asterisk's answer to one command.

    `result` and `data` (the text in parentheses) come with code 200; `endpos` with STREAM FILE
    and friends; `usage` holds the usage lines of a multi-line 520. `lines` are the reply as sent.
    """

    code: int
    result: int | None = None
    data: str | None = None
    endpos: int | None = None
    message: str = ""
    usage: tuple[str, ...] = ()
    lines: tuple[str, ...] = field(default=(), repr=False)

    @property
    def ok(self) -> bool:
        return self.code == 200

    def __bytes__(self) -> bytes:
        return "".join(f"{line}\n" for line in self.lines).encode("utf-8")

    @classmethod
    def build(
        cls,
        code: int,
        *,
        result: int | None = None,
        data: str | None = None,
        endpos: int | None = None,
        message: str = "",
        usage: Sequence[str] = (),
    ) -> AgiReply:
        """A reply as Asterisk would write it (the simulator's side of the wire)."""
        if code == 200:
            if result is None:
                raise ValueError("a 200 reply needs a result")
            line = f"200 result={result}"
            if data is not None:
                _reject_line_breaks(data)
                line += f" ({data})"
            if endpos is not None:
                line += f" endpos={endpos}"
            lines: tuple[str, ...] = (line,)
            message = line.removeprefix("200 ")
        elif usage:
            lines = (f"{code}-{message}", *usage, f"{code} {USAGE_CLOSING}")
        else:
            lines = (f"{code} {message}",)
        return cls(code, result, data, endpos, message, tuple(usage), lines)


@dataclass(frozen=True)
class HangupNotice:
    """The unsolicited `HANGUP` line: the channel has hung up (it may precede the next reply)."""


@dataclass(frozen=True)
class MalformedLine:
    """A line that fits nowhere; it is reported and skipped, the session goes on."""

    line: str
    reason: str


AgiEvent = AgiEnvironment | AgiReply | HangupNotice | MalformedLine


def parse_reply_line(line: str) -> AgiReply:
    """Parse a single-line reply (`200 result=1 (camp42)`, `510 ...`); ValueError if it is none."""
    match = _REPLY.match(line)
    if match is None or match[2] != " ":
        raise ValueError("not an AGI reply line")
    code, text = int(match[1]), match[3]
    if code != 200:
        return AgiReply(code=code, message=text, lines=(line,))
    result = _RESULT.match(text)
    if result is None:
        raise ValueError("200 reply without result=")
    tail = _TAIL.match(result[2])
    if tail is None:
        # Still the reply to our command: keep the result, leave the odd text in `message`.
        return AgiReply(code=200, result=int(result[1]), message=text, lines=(line,))
    pairs = dict(pair.split("=", 1) for pair in tail["pairs"].split())
    endpos = pairs.get("endpos")
    try:
        endpos_value = int(endpos) if endpos is not None else None
    except ValueError:
        raise ValueError(f"endpos={endpos!r} is not a number") from None
    return AgiReply(
        code=200,
        result=int(result[1]),
        data=tail["data"],
        endpos=endpos_value,
        message=text,
        lines=(line,),
    )


class AgiState(enum.Enum):
    ENVIRONMENT = "environment"  # reading the agi_* header block
    READY = "ready"  # no command outstanding
    AWAITING_REPLY = "awaiting-reply"
    READING_USAGE = "reading-usage"  # inside a multi-line 520


class AgiServerProtocol:
    """The FastAGI server's side of one session, without I/O.

    AGI is strictly one command, one reply; the only unsolicited line is `HANGUP`.
    """

    def __init__(self) -> None:
        self._state = AgiState.ENVIRONMENT
        self._buffer = b""
        self._env_pairs: list[tuple[str, str]] = []
        self._usage_head = ""
        self._usage_lines: list[str] = []
        self._events: list[AgiEvent] = []
        self._outgoing: list[bytes] = []
        self._pending: AgiCommand | None = None

    @property
    def state(self) -> AgiState:
        return self._state

    @property
    def pending_command(self) -> AgiCommand | None:
        return self._pending

    def _set_state(self, new: AgiState) -> None:
        if new is not self._state:
            logger.debug("= agi %s -> %s", self._state.value, new.value)
            self._state = new

    # -- input

    def receive_data(self, data: bytes) -> None:
        lines, self._buffer = split_lines(self._buffer + data)
        for line in lines:
            self._receive_line(line)
        if len(self._buffer) > MAX_LINE_BYTES:
            raise AgiProtocolError(
                f"AGI line longer than {MAX_LINE_BYTES} bytes without a line end; framing lost"
            )

    def events_received(self) -> list[AgiEvent]:
        events, self._events = self._events, []
        return events

    def _receive_line(self, line: str) -> None:
        if self._state is AgiState.ENVIRONMENT:
            self._receive_environment_line(line)
        elif self._state is AgiState.READING_USAGE:
            if line.startswith("520 "):
                self._complete(
                    AgiReply(
                        code=520,
                        message=self._usage_head,
                        usage=tuple(self._usage_lines),
                        lines=(f"520-{self._usage_head}", *self._usage_lines, line),
                    )
                )
            else:
                self._usage_lines.append(line)
        elif line == "HANGUP":
            self._events.append(HangupNotice())
        elif self._state is AgiState.READY:
            self._events.append(MalformedLine(line, "no command is awaiting a reply"))
        elif line.startswith("520-"):
            self._usage_head, self._usage_lines = line[4:], []
            self._set_state(AgiState.READING_USAGE)
        elif line.startswith("100 "):
            # "100 result=0 Trying..." is progress, the real reply follows.
            logger.debug("< agi progress %r", line)
        else:
            try:
                reply = parse_reply_line(line)
            except ValueError as exc:
                self._events.append(MalformedLine(line, str(exc)))
            else:
                self._complete(reply)

    def _receive_environment_line(self, line: str) -> None:
        if line == "":
            self._events.append(AgiEnvironment.from_pairs(self._env_pairs))
            self._set_state(AgiState.READY)
            return
        key, sep, value = line.partition(":")
        if not sep or not key.startswith("agi_"):
            self._events.append(MalformedLine(line, "expected an 'agi_<name>: <value>' header"))
            return
        self._env_pairs.append((key, value.removeprefix(" ")))

    def _complete(self, reply: AgiReply) -> None:
        self._pending = None
        self._events.append(reply)
        self._set_state(AgiState.READY)

    # -- output

    def send_command(self, command: AgiCommand | str) -> None:
        if isinstance(command, str):
            command = AgiCommand(command)
        if self._state is AgiState.ENVIRONMENT:
            raise AgiProtocolError("cannot send a command before the agi_* environment is complete")
        if self._state is not AgiState.READY:
            raise AgiProtocolError(
                f"cannot send {command.line!r}: {self._pending} is still awaiting its reply"
            )
        self._pending = command
        self._outgoing.append(bytes(command))
        self._set_state(AgiState.AWAITING_REPLY)

    def data_to_send(self) -> bytes:
        data = b"".join(self._outgoing)
        self._outgoing.clear()
        return data
