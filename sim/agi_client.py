"""The simulator's Asterisk side of FastAGI: what `AGI(agi://...)` does on a simulated channel.

`run_agi` connects to the dialer's FastAGI server, sends the agi_* header block exactly as
Asterisk 20.20.1 does, executes the commands it receives against a `SimAgiChannel`, and returns
AGISTATUS. Each command is reported twice through `on_command` (start, then end with its result)
so the AMI simulator can emit `AGIExecStart` / `AGIExecEnd`.

For the AMI-simulator author, the channel you hand in must provide (see `SimAgiChannel`):
names and dialplan position for the header block, channel variables, its AST state number, and
the media actions `play`, `exec`, `answer`, `hangup`; plus `hung_up` / `wait_hung_up()` so the
unsolicited `HANGUP` line can be written when the debtor hangs up mid-session. After that the
client answers channel commands with 511, as Asterisk does.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol
from urllib.parse import urlsplit

from agi.protocol import (
    DEFAULT_PORT,
    AgiReply,
    encode_environment,
    split_lines,
    tokenize,
)

logger = logging.getLogger(__name__)

AGI_VERSION = "20.20.1"
SAMPLES_PER_MS = 8  # endpos counts 8 kHz samples: a 500 ms beep ends at endpos=4000

AgiStatus = Literal["SUCCESS", "FAILURE", "HANGUP"]


class SimAgiChannel(Protocol):
    """A simulated channel as the FastAGI client needs it.

    Plain attributes satisfy the read-only properties. `state` is Asterisk's AST_STATE number
    (6 = Up) returned by CHANNEL STATUS. `get_variable` sees only ordinary channel variables;
    CHANNEL, UNIQUEID, CALLERID(num|name), CONTEXT, EXTEN, PRIORITY, LANGUAGE are resolved here.
    """

    @property
    def name(self) -> str: ...  # Local/15550001@debtor-sim-00000000;1

    @property
    def uniqueid(self) -> str: ...

    @property
    def type(self) -> str: ...  # channel technology: Local, PJSIP

    @property
    def language(self) -> str: ...

    @property
    def callerid_num(self) -> str | None: ...

    @property
    def callerid_name(self) -> str | None: ...

    @property
    def context(self) -> str: ...

    @property
    def exten(self) -> str: ...

    @property
    def priority(self) -> int: ...

    @property
    def accountcode(self) -> str: ...

    @property
    def state(self) -> int: ...

    @property
    def hung_up(self) -> bool: ...

    def get_variable(self, name: str) -> str | None: ...

    def set_variable(self, name: str, value: str) -> None: ...

    async def wait_hung_up(self) -> None:
        """Return once the channel has hung up (immediately if it already has)."""
        ...

    async def play(self, file: str) -> int | None:
        """Play a sound file; milliseconds played (short if hung up meanwhile), None if missing."""
        ...

    async def exec(self, app: str, args: str) -> int | None:
        """Run a dialplan application (Playback, Wait, ...); its result, None if no such app."""
        ...

    async def answer(self) -> None: ...

    async def hangup(self, cause: int) -> None:
        """Hang the channel up with a Q.850 cause (16 for AGI HANGUP)."""
        ...


@dataclass(frozen=True)
class AgiExec:
    """One command as AMI reports it; `result_code`/`result` are None for the start report."""

    command_id: int
    command: str
    result_code: int | None = None
    result: str | None = None

    @property
    def finished(self) -> bool:
        return self.result_code is not None


@dataclass(frozen=True)
class AgiOutcome:
    """What AGI() leaves behind: AGISTATUS, why it is not SUCCESS, and how many commands ran."""

    status: AgiStatus
    reason: str | None = None
    commands: int = 0


# --------------------------------------------------------------------------- command table


@dataclass(frozen=True)
class _Outcome:
    """A command's wire reply plus what AGIExecEnd says and whether AGISTATUS turns FAILURE."""

    reply: AgiReply
    result_code: int
    result: str
    failed: bool = False


def _ok(result: int, data: str | None = None, endpos: int | None = None) -> _Outcome:
    return _Outcome(AgiReply.build(200, result=result, data=data, endpos=endpos), 200, "Success")


_INVALID = _Outcome(
    AgiReply.build(510, message="Invalid or unknown command"),
    510,
    "Invalid or unknown command",
    failed=True,
)
_DEAD = _Outcome(
    AgiReply.build(511, message="Command Not Permitted on a dead channel or intercept routine"),
    511,
    "Command Not Permitted on a dead channel or intercept routine",
    failed=True,
)

# Usage texts Asterisk prints with a 520; GET VARIABLE's is the captured one.
_USAGE: dict[str, tuple[str, ...]] = {
    "GET VARIABLE": (
        "Returns <literal>0</literal> if <replaceable>variablename</replaceable> is not set. "
        "Returns <literal>1</literal> if <replaceable>variablename</replaceable> is set and "
        "returns the variable in parentheses.",
        "Example return code: 200 result=1 (testvariable)",
    ),
    "GET FULL VARIABLE": (
        "Evaluates the given expression against the channel specified by channelname, "
        "or the current channel if channelname is not provided.",
    ),
    "SET VARIABLE": ("Sets a variable to the current channel.",),
    "VERBOSE": ("Sends message to the console via verbose message system.",),
    "STREAM FILE": (
        "Send the given file, allowing playback to be interrupted by the given digits.",
    ),
    "EXEC": ("Executes application with given options.",),
}


def _usage(command: str) -> _Outcome:
    reply = AgiReply.build(
        520, message="Invalid command syntax.  Proper usage follows:", usage=_USAGE[command]
    )
    return _Outcome(reply, 520, "Usage", failed=True)


# Commands that still work once the channel is gone (Asterisk's "dead" flag).
_DEAD_SAFE = frozenset({"GET VARIABLE", "GET FULL VARIABLE", "SET VARIABLE", "VERBOSE", "NOOP"})
_KNOWN = (
    "GET FULL VARIABLE",
    "GET VARIABLE",
    "SET VARIABLE",
    "CHANNEL STATUS",
    "STREAM FILE",
    "VERBOSE",
    "EXEC",
    "NOOP",
    "ANSWER",
    "HANGUP",
)
_VARIABLE_REF = re.compile(r"\$\{([^${}]*)\}")


def _match_command(args: Sequence[str]) -> tuple[str | None, list[str]]:
    """The known command the words start with (case-insensitive) and the arguments after it."""
    upper = [a.upper() for a in args]
    for name in _KNOWN:
        words = name.split()
        if upper[: len(words)] == words:
            return name, list(args[len(words) :])
    return None, list(args)


# --------------------------------------------------------------------------- one session


class _Session:
    def __init__(
        self,
        channel: SimAgiChannel,
        on_command: Callable[[AgiExec], None] | None,
        command_ids: Iterator[int],
    ) -> None:
        self.channel = channel
        self.on_command = on_command
        self.command_ids = command_ids
        self.failed = False
        self.count = 0
        self.hangup_sent = False

    def report(self, event: AgiExec) -> None:
        if self.on_command is None:
            return
        try:
            self.on_command(event)
        except Exception:
            logger.exception("x sim agi: on_command callback failed for %s", event.command)

    def lookup(self, name: str) -> str | None:
        channel = self.channel
        builtin = {
            "CHANNEL": channel.name,
            "UNIQUEID": channel.uniqueid,
            "CONTEXT": channel.context,
            "EXTEN": channel.exten,
            "PRIORITY": str(channel.priority),
            "LANGUAGE": channel.language,
            "CALLERID(num)": channel.callerid_num,
            "CALLERID(name)": channel.callerid_name,
        }
        if name in builtin:
            return builtin[name]
        return channel.get_variable(name)

    def substitute(self, expression: str) -> str:
        # Innermost ${...} first, so ${VAR_${N}} style nesting resolves too.
        previous = None
        while previous != expression:
            previous = expression
            expression = _VARIABLE_REF.sub(lambda m: self.lookup(m[1]) or "", expression)
        return expression

    async def execute(self, line: str) -> _Outcome:
        name, args = _match_command(tokenize(line))
        channel = self.channel
        if name is None:
            return _INVALID
        if channel.hung_up and name not in _DEAD_SAFE:
            return _DEAD
        if name == "GET VARIABLE":
            if len(args) != 1:
                return _usage(name)
            value = self.lookup(args[0])
            return _ok(0) if value is None else _ok(1, value)
        if name == "GET FULL VARIABLE":
            if len(args) not in (1, 2):
                return _usage(name)
            return _ok(1, self.substitute(args[0]))
        if name == "SET VARIABLE":
            if len(args) != 2:
                return _usage(name)
            channel.set_variable(args[0], args[1])
            return _ok(1)
        if name == "VERBOSE":
            if len(args) not in (1, 2):
                return _usage(name)
            logger.debug("sim agi %s VERBOSE %s", channel.uniqueid, args[0])
            return _ok(1)
        if name == "NOOP":
            return _ok(0)
        if name == "CHANNEL STATUS":
            return _ok(channel.state)
        if name == "ANSWER":
            await channel.answer()
            return _ok(0)
        if name == "HANGUP":
            await channel.hangup(16)
            return _ok(1)
        if name == "STREAM FILE":
            if len(args) not in (2, 3):
                return _usage(name)
            played_ms = await channel.play(args[0])
            if played_ms is None:
                return _Outcome(AgiReply.build(200, result=-1, endpos=0), -1, "Failure", True)
            endpos = played_ms * SAMPLES_PER_MS
            if channel.hung_up:
                return _Outcome(AgiReply.build(200, result=-1, endpos=endpos), -1, "Failure")
            return _ok(0, endpos=endpos)
        # EXEC: Asterisk hands exactly one argument on to the application and ignores the rest.
        if not args:
            return _usage("EXEC")
        result = await channel.exec(args[0], args[1] if len(args) > 1 else "")
        if result is None:
            return _Outcome(AgiReply.build(200, result=-2), 200, "Unknown Result", True)
        return _ok(result)

    async def run(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout_s: float
    ) -> str | None:
        """Serve commands until the server closes; return a failure reason or None."""
        buffer = b""
        lines: list[str] = []
        self.hangup_sent = False
        hung_up = asyncio.ensure_future(self.channel.wait_hung_up())
        try:
            while True:
                await self.notify_hangup(writer)
                if lines:
                    line = lines.pop(0)
                    if line.strip():
                        await self.serve(line, writer)
                    continue
                read = asyncio.ensure_future(reader.read(65536))
                try:
                    if not self.hangup_sent:
                        # Asterisk notices a hang-up while idle between commands and says so.
                        await asyncio.wait(
                            {read, hung_up}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
                        )
                        await self.notify_hangup(writer)
                    if not read.done():
                        await asyncio.wait({read}, timeout=timeout_s)
                    if not read.done():
                        return f"FastAGI server sent no command within {timeout_s} s"
                finally:
                    read.cancel()
                data = read.result()
                if not data:
                    return None  # the server closed the socket: the script is done
                new_lines, buffer = split_lines(buffer + data)
                lines.extend(new_lines)
        finally:
            hung_up.cancel()

    async def notify_hangup(self, writer: asyncio.StreamWriter) -> None:
        if self.channel.hung_up and not self.hangup_sent:
            self.hangup_sent = True
            writer.write(b"HANGUP\n")
            await writer.drain()

    async def serve(self, line: str, writer: asyncio.StreamWriter) -> None:
        command_id = next(self.command_ids)
        self.count += 1
        self.report(AgiExec(command_id, line))
        outcome = await self.execute(line)
        self.failed = self.failed or outcome.failed
        writer.write(bytes(outcome.reply))
        await writer.drain()
        self.report(AgiExec(command_id, line, outcome.result_code, outcome.result))


def _environment(url: str, network_script: str, channel: SimAgiChannel) -> bytes:
    return encode_environment(
        [
            ("agi_network", "yes"),
            ("agi_network_script", network_script),
            ("agi_request", url),
            ("agi_channel", channel.name),
            ("agi_language", channel.language),
            ("agi_type", channel.type),
            ("agi_uniqueid", channel.uniqueid),
            ("agi_version", AGI_VERSION),
            ("agi_callerid", channel.callerid_num or "unknown"),
            ("agi_calleridname", channel.callerid_name or "unknown"),
            ("agi_callingpres", "0"),
            ("agi_callingani2", "0"),
            ("agi_callington", "0"),
            ("agi_callingtns", "0"),
            ("agi_dnid", "unknown"),
            ("agi_rdnis", "unknown"),
            ("agi_context", channel.context),
            ("agi_extension", channel.exten),
            ("agi_priority", str(channel.priority)),
            ("agi_enhanced", "0.0"),
            ("agi_accountcode", channel.accountcode),
            ("agi_threadid", str(threading.get_ident())),
        ]
    )


async def run_agi(
    url: str,
    channel: SimAgiChannel,
    *,
    on_command: Callable[[AgiExec], None] | None = None,
    timeout_s: float = 10,
    command_ids: Iterator[int] | None = None,
) -> AgiOutcome:
    """Run `AGI(url)` on `channel` as Asterisk would; never raises for network trouble.

    A server that accepts and closes without a command (unknown script) gives SUCCESS with a
    `reason`, as Asterisk does; a refused or broken connection gives FAILURE. Exceptions from
    the channel's own methods propagate.

    `timeout_s` bounds the connect and each wait for the next command (real Asterisk waits
    forever; a simulator should not). `command_ids` defaults to 1, 2, 3, ... (Asterisk uses
    random numbers; deterministic ones make tests readable).
    """
    parts = urlsplit(url)
    if parts.scheme != "agi" or not parts.hostname:
        return AgiOutcome("FAILURE", f"not a FastAGI URL: {url!r} (expected agi://host[:port]/...)")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        return AgiOutcome("FAILURE", f"bad port in FastAGI URL {url!r}")
    network_script = parts.path.lstrip("/") + (f"?{parts.query}" if parts.query else "")
    session = _Session(channel, on_command, command_ids or itertools.count(1))
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(parts.hostname, port)
    except (OSError, TimeoutError) as exc:
        return AgiOutcome(
            "FAILURE", f"cannot connect to FastAGI server {parts.hostname}:{port}: {exc!r}"
        )
    try:
        writer.write(_environment(url, network_script, channel))
        await writer.drain()
        reason = await session.run(reader, writer, timeout_s)
    except (OSError, TimeoutError) as exc:
        reason = f"FastAGI connection to {parts.hostname}:{port} failed: {exc!r}"
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    if channel.hung_up:
        return AgiOutcome("HANGUP", reason, session.count)
    if reason is not None:
        return AgiOutcome("FAILURE", reason, session.count)
    if session.failed:
        return AgiOutcome("FAILURE", "a command failed during the session", session.count)
    if session.count == 0:
        # Asterisk too reports SUCCESS here: to it, a script that did nothing ended cleanly.
        return AgiOutcome("SUCCESS", "the FastAGI server closed without sending a command", 0)
    return AgiOutcome("SUCCESS", None, session.count)
