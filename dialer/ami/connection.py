"""Asyncio AMI connection: login, keepalive, reconnect with jittered backoff, reply futures.

A thin shell around `AmiClientCore`. Nothing is re-sent after a reconnect: every action pending at
the drop fails with AmiConnectionLost, and the owner rebuilds its view from Asterisk
(CoreShowChannels) before it dials again.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from typing import Any

from dialer.ami.client import (
    ActionIds,
    AmiClientCore,
    BadFrame,
    BannerReceived,
    EventReceived,
    Reply,
    ReplyReady,
)
from dialer.ami.protocol import Message
from dialer.config import AmiConfig, AmiServerConfig
from dialer.errors import (
    AmiActionError,
    AmiAuthenticationError,
    AmiConnectionLost,
    AmiTimeout,
)
from dialer.logsafe import mask_phones_in

log = logging.getLogger(__name__)


class LinkState(enum.Enum):
    DOWN = "down"
    CONNECTING = "connecting"
    UP = "up"  # logged in, events flowing
    CLOSED = "closed"  # stopped on purpose or by a fatal error


EventHandler = Callable[[str, Message], None]
StateHandler = Callable[[str, LinkState], None]


Sleep = Callable[[float], Awaitable[None]]

# Below this, a retry loop against a refusing server would be a tight loop whatever the config.
_MIN_DELAY_S = 0.01


def backoff_delays(minimum: float, maximum: float, rng: random.Random) -> Iterator[float]:
    """Capped exponential backoff with full jitter, for reconnecting to a server.

    The n-th delay (from 0) is drawn uniformly between half the first ceiling and
    min(maximum, minimum * 2**n): the first retry comes within `minimum`, none waits longer than
    `maximum`, none comes sooner than minimum/2 (no tight loop), and nodes with different random
    sources spread their tries over the whole range instead of reconnecting together.
    """
    first = max(_MIN_DELAY_S, min(minimum, maximum))
    cap = max(first, maximum)
    floor = first / 2
    ceiling = first
    while True:
        yield rng.uniform(floor, ceiling)
        ceiling = min(cap, ceiling * 2)


class AmiConnection:
    """One logged-in AMI session to one Asterisk server, kept alive until `close()`."""

    def __init__(
        self,
        server: AmiServerConfig,
        settings: AmiConfig,
        *,
        on_event: EventHandler,
        on_state: StateHandler,
        rng: random.Random | None = None,
        id_prefix: str = "dlr",
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.server = server
        self._settings = settings
        self._on_event = on_event
        self._on_state = on_state
        self._rng = rng or random.Random()
        # How long a session lasted, and how the reconnect loop waits (tests inject virtual ones).
        self._clock = clock
        self._sleep = sleep
        self._up_since: float | None = None
        self._id_prefix = id_prefix
        self._core = AmiClientCore(ActionIds(f"{id_prefix}-{server.name}-0"))
        self._futures: dict[str, asyncio.Future[Reply]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._state = LinkState.DOWN
        self._session = 0
        self._closing = False
        self._up = asyncio.Event()
        self.bad_frames = 0
        self.reconnects = 0
        self.asterisk_version = ""

    @property
    def state(self) -> LinkState:
        return self._state

    @property
    def is_up(self) -> bool:
        return self._state is LinkState.UP

    async def wait_up(self, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._up.wait()
        return self.is_up

    def _set_state(self, new: LinkState) -> None:
        if new is self._state:
            return
        log.info("= ami %s %s -> %s", self.server.name, self._state.value, new.value)
        self._state = new
        if new is LinkState.UP:
            self._up_since = self._clock()
            self._up.set()
        else:
            self._up.clear()
        try:
            self._on_state(self.server.name, new)
        except Exception:
            log.exception("x ami %s: state handler failed", self.server.name)

    async def run(self) -> None:
        """Connect, log in, read; on a drop, back off with jitter and do it again. Until close().

        Connection errors, timeouts and drops are retried, after at most `reconnect_max_s`, so a
        restarted Asterisk is back in use within that long of listening again. A refused login
        (wrong secret) is fatal: it raises AmiAuthenticationError and is never retried. A session
        that stayed up at least `reconnect_max_s` starts the backoff afresh, so the first retry
        after a drop comes within `reconnect_min_s`; a server that drops us right after each login
        keeps the longer delays.
        """
        delays = self._new_backoff()
        while not self._closing:
            self._set_state(LinkState.CONNECTING)
            self._up_since = None
            try:
                await self._session_once()
            except AmiAuthenticationError:
                log.error(
                    "x ami %s: authentication failed for user %r; not retrying",
                    self.server.name,
                    self.server.username,
                )
                self._set_state(LinkState.CLOSED)
                raise
            except (OSError, AmiConnectionLost, AmiTimeout, asyncio.IncompleteReadError) as exc:
                log.warning("x ami %s: connection lost (%s)", self.server.name, type(exc).__name__)
            finally:
                self._drop_session()
            if self._closing:
                break
            if (
                self._up_since is not None
                and self._clock() - self._up_since >= self._settings.reconnect_max_s
            ):
                delays = self._new_backoff()
            self._set_state(LinkState.DOWN)
            self.reconnects += 1
            delay = next(delays)
            log.info("ami %s: reconnecting in %.2fs", self.server.name, delay)
            await self._sleep(delay)
        self._set_state(LinkState.CLOSED)

    def _new_backoff(self) -> Iterator[float]:
        return backoff_delays(
            self._settings.reconnect_min_s, self._settings.reconnect_max_s, self._rng
        )

    async def _session_once(self) -> None:
        async with asyncio.timeout(self._settings.connect_timeout_s):
            reader, writer = await asyncio.open_connection(self.server.host, self.server.port)
        self._session += 1
        self._core = AmiClientCore(
            ActionIds(f"{self._id_prefix}-{self.server.name}-{self._session}")
        )
        self._writer = writer
        reader_task = asyncio.create_task(
            self._read_loop(reader), name=f"ami-read-{self.server.name}"
        )
        try:
            reply = await self.send(
                "Login",
                [
                    ("Username", self.server.username),
                    ("Secret", self.server.secret.reveal()),
                    ("Events", "on"),
                ],
                check=False,
                require_up=False,
                # A live Asterisk answers a Login in milliseconds; one that is shutting down
                # still accepts the TCP connection and never answers. Give up as fast as on a
                # refused connection, and try again.
                timeout=self._settings.connect_timeout_s,
            )
            if not reply.ok:
                raise AmiAuthenticationError(
                    f"{self.server.name}: {reply.message or 'login refused'}"
                )
            self._set_state(LinkState.UP)
            ping_task = asyncio.create_task(self._keepalive(), name=f"ami-ping-{self.server.name}")
            try:
                await reader_task
            finally:
                ping_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ping_task
        finally:
            if not reader_task.done():
                reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader_task

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                raise AmiConnectionLost(f"{self.server.name}: server closed the connection")
            for item in self._core.receive_data(data):
                if isinstance(item, EventReceived):
                    try:
                        self._on_event(self.server.name, item.message)
                    except Exception:
                        # A failing handler must never kill the reader loop.
                        log.exception(
                            "x ami %s: event handler failed on %s",
                            self.server.name,
                            item.message.event,
                        )
                elif isinstance(item, ReplyReady):
                    future = self._futures.pop(item.reply.action_id, None)
                    if future is not None and not future.done():
                        future.set_result(item.reply)
                elif isinstance(item, BadFrame):
                    self.bad_frames += 1
                    log.warning(
                        "x ami %s: skipped malformed frame: %s | %s",
                        self.server.name,
                        item.reason,
                        mask_phones_in(item.raw[:200]),
                    )
                elif isinstance(item, BannerReceived):
                    self.asterisk_version = item.version
                    log.info(
                        "< ami %s: banner Asterisk Call Manager/%s", self.server.name, item.version
                    )

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(self._settings.ping_interval_s)
            try:
                await self.send("Ping")
            except AmiTimeout:
                log.warning("x ami %s: ping timed out; dropping the connection", self.server.name)
                if self._writer is not None:
                    self._writer.close()
                return
            except AmiConnectionLost:
                return

    def _drop_session(self) -> None:
        lost = self._core.connection_lost()
        for action_id, action in lost:
            future = self._futures.pop(action_id, None)
            if future is not None and not future.done():
                future.set_exception(
                    AmiConnectionLost(
                        f"{self.server.name}: connection lost before the reply to {action}"
                    )
                )
        for future in self._futures.values():
            if not future.done():
                future.set_exception(AmiConnectionLost(f"{self.server.name}: connection lost"))
        self._futures.clear()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def submit(
        self,
        action: str,
        fields: Iterable[tuple[str, str]] = (),
        *,
        expects_list: bool = False,
        check: bool = True,
        require_up: bool = True,
        timeout: float | None = None,
    ) -> tuple[str, Coroutine[Any, Any, Reply]]:
        """Write one action now; return its ActionID and an awaitable for the reply.

        The ActionID is known before any reply can arrive, so the caller can route events
        carrying it (OriginateResponse) from the first byte. Raises AmiConnectionLost at once if
        the link is down; the awaitable raises AmiConnectionLost if the link drops before the
        reply (the action is never re-sent), AmiTimeout, or AmiActionError (`check=True` and
        Asterisk answered `Response: Error`).
        """
        if self._writer is None or (require_up and not self.is_up):
            raise AmiConnectionLost(f"{self.server.name}: not connected")
        action_id, data = self._core.build_action(action, fields, expects_list=expects_list)
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._futures[action_id] = future
        self._writer.write(data)
        return action_id, self._await_reply(action, action_id, future, check, timeout)

    async def _await_reply(
        self,
        action: str,
        action_id: str,
        future: asyncio.Future[Reply],
        check: bool,
        timeout: float | None,
    ) -> Reply:
        try:
            async with asyncio.timeout(timeout or self._settings.action_timeout_s):
                reply = await future
        except TimeoutError as exc:
            self._futures.pop(action_id, None)
            self._core.forget(action_id)
            raise AmiTimeout(f"{self.server.name}: no reply to {action} ({action_id})") from exc
        if check and not reply.ok:
            raise AmiActionError(action, reply.message)
        return reply

    async def send(
        self,
        action: str,
        fields: Iterable[tuple[str, str]] = (),
        *,
        expects_list: bool = False,
        check: bool = True,
        require_up: bool = True,
        timeout: float | None = None,
    ) -> Reply:
        """Send one action and await its reply (see `submit` for the errors)."""
        _, reply = self.submit(
            action,
            fields,
            expects_list=expects_list,
            check=check,
            require_up=require_up,
            timeout=timeout,
        )
        return await reply

    async def close(self) -> None:
        """Log off politely if connected, then stop the reconnect loop."""
        self._closing = True
        if self.is_up:
            with contextlib.suppress(Exception):
                await self.send("Logoff", check=False, timeout=2)
        if self._writer is not None:
            self._writer.close()
