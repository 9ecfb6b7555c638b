"""Sans-I/O AMI codec: bytes in, messages out (with leftover bytes); messages in, bytes out.

Framing facts (real Asterisk 20.20.1, see sim/traces): the server greets with one line
`Asterisk Call Manager/9.0.0\\r\\n` and no blank line after it; every message is `Key: Value\\r\\n`
lines closed by an empty line. Keys may repeat (`Variable`, `Output`), so duplicates are kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

TERMINATOR = b"\r\n\r\n"
BANNER_PREFIX = "Asterisk Call Manager/"


class Message(NamedTuple):
    """One AMI message. `fields` holds the first value of each key; `repeated` every later one."""

    fields: dict[str, str]
    repeated: tuple[tuple[str, str], ...] = ()

    @property
    def event(self) -> str | None:
        return self.fields.get("Event")

    @property
    def response(self) -> str | None:
        return self.fields.get("Response")

    @property
    def action(self) -> str | None:
        return self.fields.get("Action")

    @property
    def action_id(self) -> str | None:
        return self.fields.get("ActionID")

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.fields.get(key, default)

    def get_all(self, key: str) -> list[str]:
        """Every value of a repeated key, in wire order (e.g. all `Variable:` lines)."""
        values = [self.fields[key]] if key in self.fields else []
        values.extend(v for k, v in self.repeated if k == key)
        return values

    def pairs(self) -> list[tuple[str, str]]:
        """Fields in wire order; exact only when no key repeats (repeats follow at the end)."""
        return [*self.fields.items(), *self.repeated]


@dataclass(frozen=True, slots=True)
class Banner:
    """The greeting line: `Asterisk Call Manager/<version>`."""

    version: str


@dataclass(frozen=True, slots=True)
class FrameError:
    """A frame that could not be parsed: what was wrong and the raw text (for the log)."""

    reason: str
    raw: str


Frame = Message | Banner | FrameError


def _parse_block(block: str) -> Message | FrameError:
    lines = block.split("\r\n")
    fields: dict[str, str] = {}
    repeated: list[tuple[str, str]] = []
    for line in lines:
        key, sep, value = line.partition(": ")
        if not sep:
            # Asterisk writes "Key: " for empty values, but tolerate "Key:" too.
            key, sep, value = line.partition(":")
            if not sep or not key or " " in key:
                return FrameError(f"line without 'Key: Value': {line[:80]!r}", block)
        if key in fields:
            repeated.append((key, value))
        else:
            fields[key] = value
    return Message(fields, tuple(repeated))


def parse_frames(buffer: bytes) -> tuple[list[Frame], bytes]:
    """Split `buffer` into complete frames; return them and the incomplete tail to keep.

    A malformed frame becomes a FrameError in place, so the frames after it still parse.
    """
    end = buffer.rfind(TERMINATOR)
    if end < 0:
        # Only the banner is ever sent without a closing blank line.
        if buffer.startswith(BANNER_PREFIX.encode()) and b"\r\n" in buffer:
            first, _, rest = buffer.partition(b"\r\n")
            banner: list[Frame] = [Banner(first.decode("utf-8", "replace")[len(BANNER_PREFIX) :])]
            after, tail = parse_frames(rest)
            return banner + after, tail
        return [], buffer
    text = buffer[:end].decode("utf-8", "replace")
    leftover = buffer[end + len(TERMINATOR) :]
    frames: list[Frame] = []
    for block in text.split("\r\n\r\n"):
        if block.startswith(BANNER_PREFIX):
            greeting, _, block = block.partition("\r\n")
            frames.append(Banner(greeting[len(BANNER_PREFIX) :]))
            if not block:
                continue
        elif not block:
            # Stray blank lines between messages: nothing to report.
            continue
        frames.append(_parse_block(block.lstrip("\r\n")))
    return frames, leftover


def _check(text: str, what: str) -> str:
    if "\r" in text or "\n" in text:
        # A CR/LF inside a value would let data (a debtor name, a note) inject AMI headers.
        raise ValueError(f"AMI {what} contains a line break: {text[:40]!r}")
    return text


def encode(pairs: Iterable[tuple[str, str]] | Mapping[str, str]) -> bytes:
    """Encode one message (action, response or event) as bytes, closing blank line included."""
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    out = [f"{_check(k, 'key')}: {_check(str(v), 'value')}\r\n" for k, v in items]
    out.append("\r\n")
    return "".join(out).encode("utf-8")


def encode_action(action: str, action_id: str, fields: Iterable[tuple[str, str]] = ()) -> bytes:
    """`Action` first and `ActionID` second, then the fields (repeat a key to send it twice)."""
    return encode([("Action", action), ("ActionID", action_id), *fields])


class AmiParser:
    """Incremental parser: feed bytes as they arrive, get complete frames back."""

    __slots__ = ("_buffer", "max_buffer")

    def __init__(self, max_buffer: int = 4 * 1024 * 1024) -> None:
        self._buffer = b""
        # A peer that never sends a blank line must not grow our memory without bound.
        self.max_buffer = max_buffer

    def feed(self, data: bytes) -> list[Frame]:
        buffer = self._buffer + data if self._buffer else data
        frames, self._buffer = parse_frames(buffer)
        if len(self._buffer) > self.max_buffer:
            dropped = self._buffer
            self._buffer = b""
            frames.append(
                FrameError(
                    f"no message end after {len(dropped)} bytes; buffer discarded",
                    dropped[:200].decode("utf-8", "replace"),
                )
            )
        return frames

    @property
    def pending(self) -> bytes:
        """Bytes of an incomplete frame (reported as truncated when the connection closes)."""
        return self._buffer
