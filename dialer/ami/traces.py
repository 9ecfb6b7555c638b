"""Read the recorded Asterisk trace format (`<secs> S>C <line>`) back into timed AMI messages.

Used by the tests and by `dialer bench engine`, which replay real Asterisk 20.20.1 captures.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from dialer.ami.protocol import Message, parse_frames


def bundled_traces_dir() -> Path:
    """The captures shipped with the simulator they specify (`sim/traces`, in the package)."""
    return Path(str(files("sim") / "traces"))


@dataclass(frozen=True)
class TimedMessage:
    at: float
    direction: str  # "S>C" from Asterisk, "C>S" from the client
    message: Message


def read_trace(path: Path) -> list[TimedMessage]:
    """Rebuild each direction's byte stream from the log and parse it, keeping each message's time."""
    out: list[TimedMessage] = []
    current: dict[str, list[str]] = {"S>C": [], "C>S": []}
    started: dict[str, float] = {}
    for raw_line in path.read_text(encoding="utf-8").splitlines():
        head = raw_line[:14].split()
        if len(head) < 2 or head[1] not in current:
            continue
        at, direction = float(head[0]), head[1]
        text = raw_line[raw_line.index(direction) + 4 :]
        if text.startswith("Asterisk Call Manager/"):
            continue
        if text == "":
            if current[direction]:
                data = ("\r\n".join(current[direction]) + "\r\n\r\n").encode()
                for frame in parse_frames(data)[0]:
                    if isinstance(frame, Message):
                        out.append(TimedMessage(started[direction], direction, frame))
                current[direction] = []
            continue
        if not current[direction]:
            started[direction] = at
        current[direction].append(text)
    return out
