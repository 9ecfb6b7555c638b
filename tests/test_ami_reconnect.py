"""AMI reconnect: jittered backoff capped low, a restarted Asterisk back in use within the cap.

The reconnect loop runs against the simulator over real loopback sockets; only its waits are
virtual (an injected clock and sleep), so "Asterisk down for 26 s" takes milliseconds and every
delay the loop asks for is recorded.
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Awaitable, Callable

import pytest

from dialer.ami.connection import AmiConnection, LinkState, backoff_delays
from dialer.ami.protocol import Message
from dialer.config import AmiConfig, AmiServerConfig, Secret
from dialer.errors import AmiAuthenticationError
from sim.asterisk import AmiConfig as SimAmiConfig
from sim.asterisk import AsteriskSim

DEFAULTS = AmiConfig()
CAP = DEFAULTS.reconnect_max_s
FIRST = DEFAULTS.reconnect_min_s


class VirtualTime:
    """The reconnect loop's clock and sleep: a sleep records its delay, moves the clock on, then
    runs `on_sleep` (which may bring a server back or stop the connection)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.asked: list[float] = []
        self.on_sleep: Callable[[], Awaitable[None]] | None = None

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.asked.append(delay)
        self.now += delay
        if self.on_sleep is not None:
            await self.on_sleep()
        await asyncio.sleep(0)


class Link:
    """An AmiConnection on virtual time, with its state changes as (state, virtual time)."""

    def __init__(
        self,
        port: int,
        *,
        seed: int,
        settings: AmiConfig = DEFAULTS,
        secret: str = "dialer",
        on_up: Callable[[], object] | None = None,
    ) -> None:
        self.time = VirtualTime()
        self.states: asyncio.Queue[tuple[LinkState, float]] = asyncio.Queue()
        self._on_up = on_up
        self.conn = AmiConnection(
            AmiServerConfig(name="pbx", port=port, secret=Secret(secret)),
            settings,
            on_event=self._event,
            on_state=self._state,
            rng=random.Random(seed),
            clock=self.time.clock,
            sleep=self.time.sleep,
        )
        self.task: asyncio.Task[None] | None = None

    def _event(self, server: str, msg: Message) -> None:
        pass

    def _state(self, server: str, state: LinkState) -> None:
        self.states.put_nowait((state, self.time.now))
        if state is LinkState.UP and self._on_up is not None:
            self._on_up()

    def start(self) -> None:
        self.task = asyncio.create_task(self.conn.run())

    async def next(self, wanted: LinkState) -> float:
        """The virtual time of the next change to `wanted`."""
        async with asyncio.timeout(10):
            while True:
                state, at = await self.states.get()
                if state is wanted:
                    return at

    async def stop(self) -> None:
        await self.conn.close()
        assert self.task is not None
        async with asyncio.timeout(10):
            await self.task


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_delays_stay_between_half_the_first_delay_and_the_cap() -> None:
    for seed in range(20):
        delays = backoff_delays(FIRST, CAP, random.Random(seed))
        drawn = [next(delays) for _ in range(200)]
        assert drawn[0] <= FIRST
        assert all(FIRST / 2 <= d <= CAP for d in drawn), (seed, min(drawn), max(drawn))
        # Full jitter: once capped, the delays spread over the whole range.
        capped = drawn[10:]
        assert min(capped) < CAP / 4 and max(capped) > CAP * 3 / 4
        assert len(set(drawn)) == len(drawn)


def test_nodes_with_their_own_random_source_do_not_retry_together() -> None:
    first = backoff_delays(FIRST, CAP, random.Random(1))
    second = backoff_delays(FIRST, CAP, random.Random(2))
    pairs = [(next(first), next(second)) for _ in range(20)]
    assert all(abs(a - b) > 1e-6 for a, b in pairs)


def test_a_minimum_above_the_maximum_never_waits_longer_than_the_maximum() -> None:
    delays = backoff_delays(5.0, 1.0, random.Random(3))
    assert all(0 < next(delays) <= 1.0 for _ in range(100))


def test_a_zero_minimum_is_not_a_tight_loop() -> None:
    delays = backoff_delays(0.0, 0.0, random.Random(3))
    assert all(next(delays) > 0 for _ in range(100))


async def test_retries_against_a_dead_server_are_jittered_and_capped() -> None:
    link = Link(_free_port(), seed=7)

    async def stop_after_40() -> None:
        if len(link.time.asked) >= 40:
            await link.conn.close()

    link.time.on_sleep = stop_after_40
    link.start()
    assert link.task is not None
    async with asyncio.timeout(10):
        await link.task
    asked = link.time.asked
    assert len(asked) == 40
    assert asked[0] <= FIRST
    assert all(FIRST / 2 <= d <= CAP for d in asked), asked
    assert len(set(asked)) == len(asked)
    assert max(asked) > CAP / 2  # it does back off
    assert link.conn.state is LinkState.CLOSED


@pytest.mark.parametrize("seed", range(5))
async def test_a_restarted_asterisk_is_back_in_use_within_the_cap(seed: int) -> None:
    """The field case: Asterisk restarted and listening again after 26 s of downtime."""
    sim = AsteriskSim(SimAmiConfig(port=0))
    await sim.start()
    port = sim.port
    back = AsteriskSim(SimAmiConfig(port=port))
    link = Link(port, seed=seed)
    link.start()
    try:
        await link.next(LinkState.UP)
        link.time.now += 3600.0  # an hour of calls on a steady link
        down_at = link.time.now
        listening_at = down_at + 26.0

        started = False

        async def come_back() -> None:
            nonlocal started
            if not started and link.time.now >= listening_at:
                started = True
                await back.start()

        link.time.on_sleep = come_back
        await sim.close()
        await link.next(LinkState.DOWN)
        up_at = await link.next(LinkState.UP)
        asked = link.time.asked
        assert asked[0] <= FIRST, "the first retry after a drop is quick"
        assert all(d <= CAP for d in asked), asked
        assert 0 <= up_at - listening_at <= CAP, (up_at - listening_at, asked)
        assert link.conn.reconnects == len(asked)
    finally:
        await link.stop()
        await back.close()
        await sim.close()


async def test_a_server_that_drops_every_login_at_once_keeps_the_longer_delays() -> None:
    """Only a session that lasted starts the backoff afresh: a flapping server is not hammered."""
    sim = AsteriskSim(SimAmiConfig(port=0))
    await sim.start()
    link = Link(sim.port, seed=4, on_up=sim.drop_connections)

    async def stop_after_8() -> None:
        if len(link.time.asked) >= 8:
            await link.conn.close()

    link.time.on_sleep = stop_after_8
    link.start()
    try:
        assert link.task is not None
        async with asyncio.timeout(10):
            await link.task
    finally:
        await sim.close()
    asked = link.time.asked
    assert len(asked) == 8
    ceilings = [min(CAP, FIRST * 2**n) for n in range(8)]
    assert all(d <= c for d, c in zip(asked, ceilings, strict=True)), asked
    assert max(asked[3:]) > FIRST, asked


async def test_a_wrong_secret_is_fatal_and_never_retried() -> None:
    sim = AsteriskSim(SimAmiConfig(port=0, auth_failure_delay=0.01))
    await sim.start()
    link = Link(sim.port, seed=1, secret="wrong")
    link.start()
    try:
        assert link.task is not None
        with pytest.raises(AmiAuthenticationError):
            async with asyncio.timeout(10):
                await link.task
    finally:
        await sim.close()
    assert link.time.asked == []
    assert link.conn.state is LinkState.CLOSED
    assert link.conn.reconnects == 0
