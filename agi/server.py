"""Asyncio FastAGI server: accepts Asterisk's connections and runs the named call-flow scripts."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from agi import protocol
from agi.errors import (
    AgiCommandError,
    AgiConnectionLost,
    AgiDeadChannel,
    AgiError,
    AgiInvalidCommand,
    AgiProtocolError,
    AgiReplyTimeout,
    AgiUsageError,
)
from agi.logsafe import mask_numbers
from agi.protocol import (
    AgiCommand,
    AgiEnvironment,
    AgiReply,
    AgiServerProtocol,
    HangupNotice,
    MalformedLine,
)

logger = logging.getLogger(__name__)

AgiScript = Callable[["AgiSession"], Awaitable[None]]
"""A call-flow script: gets the session, returns when Asterisk may continue the dialplan."""


class ChannelStatus(enum.IntEnum):
    """CHANNEL STATUS results (Asterisk's AST_STATE_* numbers)."""

    DOWN_AVAILABLE = 0
    DOWN_RESERVED = 1
    OFF_HOOK = 2
    DIGITS_DIALED = 3
    RINGING = 4
    REMOTE_RINGING = 5
    UP = 6
    BUSY = 7


@dataclass(frozen=True)
class StreamResult:
    """What STREAM FILE reports: `result` is the DTMF digit's code, 0 if none, -1 on failure."""

    result: int
    endpos: int

    @property
    def digit(self) -> str | None:
        return chr(self.result) if self.result > 0 else None

    @property
    def failed(self) -> bool:
        """The file was missing or the channel hung up while it played."""
        return self.result < 0


_REFUSALS: Mapping[int, type[AgiCommandError]] = {
    510: AgiInvalidCommand,
    511: AgiDeadChannel,
    520: AgiUsageError,
}


class AgiSession:
    """One FastAGI connection as a script sees it: typed commands, the environment, hang-up state.

    A reader task owned by the session keeps reading while the script does other work, so the
    unsolicited HANGUP line is seen the moment Asterisk sends it (`hung_up`, `wait_for_hangup`).
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        reply_timeout_s: float,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._core = AgiServerProtocol()
        self._reply_timeout_s = reply_timeout_s
        self._env: asyncio.Future[AgiEnvironment] = asyncio.get_running_loop().create_future()
        self._reply: asyncio.Future[AgiReply] | None = None
        self._hangup = asyncio.Event()
        self._broken: AgiError | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self.label = "?"

    # -- lifecycle (driven by the server)

    async def start(self, env_timeout_s: float) -> AgiEnvironment:
        self._reader_task = asyncio.create_task(self._read_loop(), name="agi-session-reader")
        try:
            async with asyncio.timeout(env_timeout_s):
                env = await self._env
        except TimeoutError:
            raise AgiReplyTimeout(f"no agi_* environment within {env_timeout_s} s") from None
        self.label = f"{env.script} {mask_numbers(env.channel)} {env.uniqueid}"
        return env

    async def aclose(self) -> None:
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task
        self._writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(1):
                await self._writer.wait_closed()

    async def _read_loop(self) -> None:
        try:
            while True:
                data = await self._reader.read(65536)
                if not data:
                    self._fail(AgiConnectionLost("Asterisk closed the FastAGI connection"))
                    return
                self._core.receive_data(data)
                for event in self._core.events_received():
                    self._dispatch(event)
        except AgiProtocolError as exc:
            logger.warning("x agi %s: %s; closing", self.label, exc)
            self._fail(exc)
        except OSError as exc:
            self._fail(AgiConnectionLost(f"FastAGI connection broke: {exc}"))

    def _dispatch(self, event: protocol.AgiEvent) -> None:
        if isinstance(event, AgiEnvironment):
            if not self._env.done():
                self._env.set_result(event)
        elif isinstance(event, HangupNotice):
            logger.info("< agi %s HANGUP: the channel hung up", self.label)
            self._hangup.set()
        elif isinstance(event, MalformedLine):
            logger.warning("x agi %s: skipped line %r: %s", self.label, event.line, event.reason)
        elif self._reply is not None and not self._reply.done():
            self._reply.set_result(event)

    def _fail(self, exc: AgiError) -> None:
        self._broken = exc
        for future in (self._env, self._reply):
            if future is not None and not future.done():
                future.set_exception(exc)

    # -- what scripts use

    @property
    def env(self) -> AgiEnvironment:
        return self._env.result()

    @property
    def hung_up(self) -> bool:
        """Asterisk sent the HANGUP notice: the debtor (or our own HANGUP) ended the call."""
        return self._hangup.is_set()

    async def wait_for_hangup(self) -> None:
        await self._hangup.wait()

    async def command(self, command: AgiCommand | str) -> AgiReply:
        """Send one command and return its 200 reply; 510/511/520 raise their typed errors."""
        if self._broken is not None:
            raise self._broken
        if isinstance(command, str):
            command = AgiCommand(command)
        self._core.send_command(command)
        self._reply = asyncio.get_running_loop().create_future()
        logger.debug("> agi %s %s", self.label, mask_numbers(command.line))
        try:
            self._writer.write(self._core.data_to_send())
            async with asyncio.timeout(self._reply_timeout_s):
                await self._writer.drain()
                reply = await self._reply
        except TimeoutError:
            # A late reply would be taken for the next command's: the session is unusable now.
            self._broken = AgiReplyTimeout(
                f"no reply to {command.line!r} within {self._reply_timeout_s} s"
            )
            raise self._broken from None
        except OSError as exc:
            self._broken = AgiConnectionLost(f"FastAGI connection broke: {exc}")
            raise self._broken from exc
        finally:
            self._reply = None
        logger.debug("< agi %s %s", self.label, " | ".join(reply.lines))
        if not reply.ok:
            raise _REFUSALS.get(reply.code, AgiCommandError)(command.line, reply)
        return reply

    async def get_variable(self, name: str) -> str | None:
        reply = await self.command(protocol.get_variable(name))
        return reply.data if reply.result == 1 else None

    async def get_full_variable(self, expression: str) -> str | None:
        reply = await self.command(protocol.get_full_variable(expression))
        return reply.data if reply.result == 1 else None

    async def set_variable(self, name: str, value: str) -> None:
        await self.command(protocol.set_variable(name, value))

    async def verbose(self, message: str, level: int = 1) -> None:
        await self.command(protocol.verbose(message, level))

    async def exec(self, application: str, args: str | Sequence[str] = "") -> int:
        """Run a dialplan application; returns its result (-2: no such application)."""
        reply = await self.command(protocol.exec_app(application, args))
        return reply.result if reply.result is not None else 0

    async def stream_file(self, filename: str, escape_digits: str = "") -> StreamResult:
        reply = await self.command(protocol.stream_file(filename, escape_digits))
        return StreamResult(
            result=reply.result if reply.result is not None else -1, endpos=reply.endpos or 0
        )

    async def answer(self) -> None:
        await self.command(protocol.answer())

    async def noop(self) -> None:
        await self.command(protocol.noop())

    async def hangup(self) -> None:
        await self.command(protocol.hangup())

    async def channel_status(self) -> ChannelStatus:
        reply = await self.command(protocol.channel_status())
        return ChannelStatus(reply.result if reply.result is not None else 0)


class FastAgiServer:
    """Listens for Asterisk, runs the script named in `agi://host:port/<name>?...` per connection.

    Each session is a task owned by the server; `close()` stops accepting, lets running
    sessions finish for `close_grace_s`, then cancels the rest.
    """

    def __init__(
        self,
        scripts: Mapping[str, AgiScript],
        *,
        host: str = "127.0.0.1",
        port: int = protocol.DEFAULT_PORT,
        reply_timeout_s: float = 10.0,
        env_timeout_s: float = 5.0,
        close_grace_s: float = 5.0,
    ) -> None:
        self._scripts = dict(scripts)
        self._host = host
        self._requested_port = port
        self._reply_timeout_s = reply_timeout_s
        self._env_timeout_s = env_timeout_s
        self._close_grace_s = close_grace_s
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.Task[None]] = set()

    def register(self, name: str, script: AgiScript) -> None:
        self._scripts[name] = script

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the FastAGI server is not listening")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def active_sessions(self) -> int:
        return len(self._sessions)

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, self._host, self._requested_port, reuse_address=True
        )
        logger.info(
            "= FastAGI listening on %s:%s scripts=%s", self._host, self.port, sorted(self._scripts)
        )

    async def __aenter__(self) -> FastAgiServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._sessions:
            _, late = await asyncio.wait(set(self._sessions), timeout=self._close_grace_s)
            for task in late:
                task.cancel()
            if late:
                logger.warning("x FastAGI close: cancelled %d session(s) still running", len(late))
                await asyncio.wait(late)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._run_session(reader, writer), name="agi-session")
        self._sessions.add(task)
        task.add_done_callback(self._sessions.discard)

    async def _run_session(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        session = AgiSession(reader, writer, reply_timeout_s=self._reply_timeout_s)
        peer = writer.get_extra_info("peername")
        try:
            try:
                env = await session.start(self._env_timeout_s)
            except AgiError as exc:
                logger.warning(
                    "x FastAGI connection from %s dropped before a script ran: %s", peer, exc
                )
                return
            script = self._scripts.get(env.script)
            if script is None:
                logger.error(
                    "x FastAGI unknown script %r requested by %s (known: %s); closing",
                    env.script,
                    session.label,
                    sorted(self._scripts),
                )
                return
            logger.debug("= FastAGI %s: script starts", session.label)
            try:
                await script(session)
            except AgiError as exc:
                logger.warning("x FastAGI %s: script stopped: %s", session.label, exc)
            except Exception:
                logger.exception("x FastAGI %s: script raised", session.label)
            else:
                logger.debug("= FastAGI %s: script done", session.label)
        finally:
            await session.aclose()
