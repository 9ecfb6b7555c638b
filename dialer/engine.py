"""The campaign engine: hopper -> guard -> pacing -> Originate -> call events -> store and agents.

One engine runs one campaign on one node. It owns the calls in flight (CallTable), the agent
sessions (AgentPool), one AMI connection per Asterisk server and the FastAGI `connect` router.
Dialling pauses while no server is up or while a reconnected server is being re-read
(CoreShowChannels); an Originate is never sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath
from typing import Any, Protocol, TypeVar

from agi.connect import AnsweredCall, ConnectScript, RouteDecision
from agi.server import FastAgiServer
from dialer.agents import AgentPool, AgentState
from dialer.agents.pool import Connect
from dialer.agents.sessions import AgentSessions, AgentStatus
from dialer.agents.transfer import TransferError, transfer_actions
from dialer.ami.connection import AmiConnection, LinkState
from dialer.ami.protocol import Message
from dialer.calls.models import AttemptStatus, Outcome
from dialer.calls.state import (
    Answered,
    Call,
    CallState,
    Connected,
    Effect,
    Ended,
    end_call,
    failed_without_channels,
)
from dialer.calls.table import CallTable
from dialer.config import AmiServerConfig, Config
from dialer.desk import callbacks
from dialer.desk.callbacks import DueCallback
from dialer.errors import AmiActionError, AmiConnectionLost, AmiError, AmiTimeout
from dialer.logsafe import call_log, mask_phone
from dialer.serial_worker import SerialWorker
from dialer.store import attempts as repo
from dialer.store import campaigns
from dialer.store.db import Store
from dialer.store.models import CallbackStatus
from pacing.models import (
    AgentCallEnded,
    AnswerKind,
    CallOutcome,
    DialMode,
    Overrides,
    PacingSettings,
    PacingState,
)
from pacing.statistics import CampaignStatistics

log = logging.getLogger(__name__)

# How often (simulated seconds) the store is asked for callbacks that have come due.
CALLBACK_POLL_S = 5.0

# Replies to an Originate that say the server, not the debtor's number, is unavailable: no call
# was placed, so the phone goes back to the hopper and the server is left alone for a while.
SERVER_UNAVAILABLE = ("Asterisk is shutting down",)


class PreviewRefused(Exception):
    """A preview request the engine cannot serve; the message says why, for the agent."""


class CallWatcher(Protocol):
    """Who follows the agents' calls (the desktop): told as a call is answered, connected to an
    agent and ended; each must return at once (it runs on the event loop)."""

    def call_answered(self, attempt_id: int) -> None: ...

    def call_connected(self, agent_id: str, attempt_id: int) -> None: ...

    def call_ended(self, agent_id: str, attempt_id: int) -> None: ...


class PacerLike(Protocol):
    """What the engine needs of `pacing.service.CampaignPacer`."""

    def calls_to_place(self, state: PacingState) -> int: ...

    def observe(self, event: CallOutcome | AgentCallEnded) -> None: ...

    def apply(self, overrides: Overrides) -> None: ...

    def to_json(self) -> str: ...

    @property
    def settings(self) -> PacingSettings: ...

    @property
    def statistics(self) -> CampaignStatistics: ...


@dataclass(frozen=True)
class GateDecision:
    """The compliance gate's answer for one candidate."""

    allowed: bool
    reservation_id: str | None = None
    reason: str = ""
    next_allowed_at: datetime | None = None


class AttemptGate(Protocol):
    """Checks and reserves an attempt before the Originate (the compliance guard's seam)."""

    def reserve_many(
        self, candidates: list[repo.DialCandidate], now: datetime
    ) -> list[GateDecision]:
        """One decision per candidate, in order, each as if the earlier ones were granted."""
        ...

    def prepare(self, candidates: list[repo.DialCandidate], now: datetime) -> None:
        """Candidates loaded into the hopper: work that can be done before their dial."""
        ...

    def release(self, reservation_id: str, now: datetime) -> None: ...

    def record_outcome(
        self, reservation_id: str, outcome: Outcome, connected: bool, now: datetime
    ) -> None: ...


@dataclass
class LiveCall:
    """Engine-side companions of a Call: what the store and the guard need to hear about it."""

    call: Call
    candidate: repo.DialCandidate
    reservation_id: str | None
    # Events were lost while an agent may have been talking with the debtor (a restart, a
    # reconnect): the guard books a conversation unless one is ruled out.
    conversation_possible: bool = False
    # A callback an agent promised in person: they take it if they are free.
    only_agent: str | None = None


class LiveCalls:
    """The node's calls in flight by attempt id, with the counts each dial asks about kept as
    they change (per server, per debtor, phones): a tick of dials at thousands of calls in
    flight must not rescan them all for every call."""

    def __init__(self) -> None:
        self._by_attempt: dict[int, LiveCall] = {}
        self._per_server: Counter[str] = Counter()
        self._per_debtor: Counter[int] = Counter()
        self._phones: set[int] = set()

    def add(self, attempt_id: int, live: LiveCall) -> None:
        self.pop(attempt_id)
        self._by_attempt[attempt_id] = live
        self._per_server[live.call.server] += 1
        self._per_debtor[live.candidate.debtor_id] += 1
        self._phones.add(live.candidate.phone_id)

    def pop(self, attempt_id: int) -> LiveCall | None:
        live = self._by_attempt.pop(attempt_id, None)
        if live is not None:
            _decrement(self._per_server, live.call.server)
            _decrement(self._per_debtor, live.candidate.debtor_id)
            self._phones.discard(live.candidate.phone_id)
        return live

    def get(self, attempt_id: int) -> LiveCall | None:
        return self._by_attempt.get(attempt_id)

    def values(self) -> list[LiveCall]:
        """A copy: callers end calls while walking them."""
        return list(self._by_attempt.values())

    def on_server(self, server: str) -> int:
        return self._per_server[server]

    def has_debtor(self, debtor_id: int) -> bool:
        return self._per_debtor[debtor_id] > 0

    def phone_ids(self) -> set[int]:
        return set(self._phones)

    def __len__(self) -> int:
        return len(self._by_attempt)

    def __bool__(self) -> bool:
        return bool(self._by_attempt)


def _decrement(counter: Counter[Any], key: Any) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]


T = TypeVar("T")


class AttemptUpdates:
    """Attempt row updates, coalesced on a worker: whatever was queued while the last commit
    ran goes in the next one, in order. A busy node then pays one durable commit per batch of
    call events, not one per event (4 ms each on a slow disk)."""

    def __init__(self, store: Store, worker: SerialWorker) -> None:
        self._store = store
        self._worker = worker
        self._lock = threading.Lock()  # the loop adds, the worker takes
        self._pending: list[tuple[int, repo.AttemptChange]] = []

    def add(self, attempt_id: int, change: repo.AttemptChange) -> None:
        with self._lock:
            self._pending.append((attempt_id, change))
            first = len(self._pending) == 1
        if first:  # otherwise a write already queued will take this one too
            self._worker.later(self._write)

    def _write(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
        missing = repo.update_attempts(self._store, batch)
        if missing:
            log.error("x attempts %s not found: their updates are lost", missing)


@dataclass
class EngineStats:
    originates_sent: int = 0
    originate_errors: int = 0
    denied_by_gate: int = 0
    reconciled_unknown: int = 0
    adopted: int = 0
    resyncs: int = 0
    hung_up_too_long: int = 0
    ami_events: int = 0
    ended: int = 0
    talk_seconds: float = 0.0  # agent talk time (simulated seconds under a time scale)
    outcomes: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Snapshot:
    """Live figures for the progress line and the supervisor."""

    ringing: int
    answered_waiting: int
    connected: int
    agents_ready: int
    agents_busy: int
    agents_wrap_up: int
    attempts: int
    ended: int
    servers_up: int


class CampaignEngine:
    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        tenant_id: int,
        campaign_id: int,
        pacer: PacerLike,
        gate: AttemptGate,
        clock: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
        campaign_name: str = "",
    ) -> None:
        self.config = config
        self.campaign_name = campaign_name or config.campaign.name
        self.store = store
        self.tenant_id = tenant_id
        self.campaign_id = campaign_id
        self.pacer = pacer
        self.gate = gate
        # The guard's ledgers and the attempt rows wait on commits: each on a thread of its
        # own. A tick's reservations and new rows are awaited (an Originate leaves only with
        # both); releases, outcomes and updates are queued. A process killed outright may lose
        # the last milliseconds of queued updates: the restart closes those attempts like any
        # other it finds unfinished.
        self._gate_worker = SerialWorker("attempt-gate")
        self._row_worker = SerialWorker("attempt-rows")
        self._updates = AttemptUpdates(store, self._row_worker)
        self.clock = clock
        self.wallclock = wallclock
        self.rng = rng or random.Random()
        self.table = CallTable()
        self.live = LiveCalls()
        self.agents = AgentPool(config.agents)
        self.scale = config.time_scale if config.time_scale > 0 else 1.0
        self.sessions = AgentSessions(
            self.agents,
            store,
            self._row_worker,
            self,
            tenant_id=tenant_id,
            campaign_id=campaign_id,
            campaign_name=self.campaign_name,
            node_id=config.node_id,
            clock=clock,
            wallclock=wallclock,
            wrap_up_limit_s=config.campaign.wrap_up_s,
            scale=self.scale,
        )
        self.sessions.subscribe(self._agent_changed)
        self.watcher: CallWatcher | None = None
        # When (clock) the latest Originates left, for the supervisor's dials per minute.
        self.dial_times: deque[float] = deque(maxlen=20_000)
        # Callbacks in the hopper by phone id, until dialled or refused.
        self._callbacks: dict[int, tuple[DueCallback, str | None]] = {}
        self._callbacks_read_at = float("-inf")
        # The earliest pending callback's time, if within the reschedule horizon: the run waits.
        self._next_callback_at: datetime | None = None
        # Preview dialling: the case each agent is looking at, and phones dialled for an agent.
        self._previews: dict[str, repo.DialCandidate] = {}
        self._preview_dials: dict[int, str] = {}
        # Agents in wrap-up: (attempt, when the call ended, talk seconds) until it ends.
        self._wrapping: dict[str, tuple[int, float, float]] = {}
        self.stats = EngineStats()
        self.connections: dict[str, AmiConnection] = {}
        self._resyncing: set[str] = set()
        self._needs_resync: set[str] = set()
        # Servers that refused an Originate as unavailable, until when (clock) to leave them be.
        self._refusing: dict[str, float] = {}
        # Calls the dialer asked Asterisk to hang up (too long, or a second stop signal).
        self._hanging_up: set[int] = set()
        # The call-setup cap's token bucket (dialing.max_originates_per_s).
        self._cps_tokens = 1.0
        self._cps_at = clock()
        self._hopper: deque[repo.DialCandidate] = deque()
        self._hopper_exhausted = False
        self._skipped_phones: set[int] = set()
        # Phones the guard said "not now, but at T" for a T soon enough to wait for in this run.
        self._deferred: dict[int, datetime] = {}
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self.agi: FastAgiServer | None = None
        self.started_at = 0.0
        self.finished_at = 0.0
        self._stop_at: float | None = None
        self._overrides_revision = 0
        self._snapshot_saved_at = 0.0

    # ----- time helpers: dialer timers shrink with the simulator's time scale -----

    def _wall(self, seconds: float) -> float:
        return seconds / self.scale

    def _abandon_window(self) -> float:
        """The abandon window in wall seconds (shrunk by a simulator's time scale). Our own
        connect latency (a few ms of AGI round trips) is not scaled, so very high scales
        overstate abandonment: the demo's x100 keeps it small."""
        return self.config.campaign.abandon_after_s / self.scale

    def _now_dt(self) -> datetime:
        return self.wallclock()

    # ----- lifecycle -----

    async def run(
        self, stop: asyncio.Event, progress: Callable[[Snapshot], None] | None = None
    ) -> None:
        """Dial until the list is exhausted and every call has ended, or until `stop` is set
        (then no new dials; calls in progress finish)."""
        self.started_at = self.clock()
        self.agi = FastAgiServer(
            {"connect": ConnectScript(self)},
            host=self.config.agi.bind_host,
            port=self.config.agi.port,
        )
        await self.agi.start()
        try:
            for server in self.config.ami.servers:
                conn = AmiConnection(
                    server,
                    self.config.ami,
                    on_event=self._on_event,
                    on_state=self._on_link_state,
                    rng=self.rng,
                    id_prefix=f"{self.config.node_id}",
                )
                self.connections[server.name] = conn
                self._spawn(self._run_connection(conn), f"ami-{server.name}")
            await self._wait_any_server_up()
            await self._recover_previous_run()
            self.agents.log_in_all(self.clock())
            self.sessions.call_config_phones()
            last_progress = 0.0
            tick = min(0.25, max(0.02, 1.0 / self.scale))
            while True:
                if stop.is_set() and not self._stopping:
                    log.info(
                        "= campaign %s: stop requested; letting %d call(s) finish",
                        self.campaign_id,
                        len(self.live),
                    )
                    self._stopping = True
                await self._resync_pending()
                self._watchdog()
                self._follow_supervisor()
                if not self._stopping and self._dialling_allowed():
                    await self._place_calls()
                if self._done():
                    break
                now = self.clock()
                if progress is not None and now - last_progress >= 1.0:
                    last_progress = now
                    progress(self.snapshot())
                if self._stopping:
                    # `stop.wait()` would return at once without yielding: sleep instead.
                    await asyncio.sleep(tick)
                else:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(tick):
                            await stop.wait()
                if self._stopping and self.clock() - self._stop_started() > self._drain_limit():
                    self._abandon_tracking("drain time exceeded")
                    break
            if progress is not None:
                progress(self.snapshot())
        finally:
            self.finished_at = self.clock()
            for agent in list(self.agents):
                if agent.state.value != "logged_out" or agent.phone_up:
                    with contextlib.suppress(ValueError):
                        self.sessions.log_out(agent.id)
            self.agents.log_out_all(self.finished_at)
            self._save_pacing()
            for conn in self.connections.values():
                await conn.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.agi.close()
            await self._row_worker.drain()
            await self._gate_worker.drain()

    @property
    def stopping(self) -> bool:
        """Stop asked: no new dials; the run ends once the calls in progress have."""
        return self._stopping

    def _stop_started(self) -> float:
        if self._stop_at is None:
            self._stop_at = self.clock()
        return self._stop_at

    def _drain_limit(self) -> float:
        # Longest plausible call: ring timeout + the longest conversation allowed, in wall
        # seconds (the watchdog hangs up longer ones).
        longest = self.config.dialing.max_call_s or 3600.0
        return self._wall(self.config.dialing.ring_timeout_s + longest + 60)

    def _done(self) -> bool:
        if self.live:
            return False
        return self._stopping or (
            self._hopper_exhausted
            and not self._hopper
            and not self._deferred
            and self._next_callback_at is None
            and not self._previews
        )

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("x task %s failed", task.get_name(), exc_info=task.exception())

    async def _run_connection(self, conn: AmiConnection) -> None:
        with contextlib.suppress(AmiError):
            await conn.run()

    async def _wait_any_server_up(self) -> None:
        deadline = self.clock() + self.config.ami.connect_timeout_s * 3
        while not any(c.is_up for c in self.connections.values()):
            if self.clock() > deadline:
                raise AmiConnectionLost(
                    "no Asterisk server reachable: "
                    + ", ".join(f"{s.name} {s.host}:{s.port}" for s in self.config.ami.servers)
                )
            await asyncio.sleep(0.05)

    # ----- AMI link state -----

    def _on_link_state(self, server: str, state: LinkState) -> None:
        self._refusing.pop(server, None)
        if state is LinkState.UP:
            # Events were lost while the link was down: re-read Asterisk before dialling again.
            if self.stats.originates_sent or self.live:
                self._needs_resync.add(server)
                self._resyncing.add(server)
        elif state is LinkState.DOWN:
            self._resyncing.add(server)

    def _usable(self, name: str, conn: AmiConnection) -> bool:
        """Up, not being re-read, and not refusing calls (an Asterisk shutting down)."""
        if not conn.is_up or name in self._resyncing:
            return False
        until = self._refusing.get(name)
        if until is not None:
            if self.clock() < until:
                return False
            del self._refusing[name]
        return True

    def _dialling_allowed(self) -> bool:
        return any(self._usable(name, c) for name, c in self.connections.items())

    async def _resync_pending(self) -> None:
        for server in list(self._needs_resync):
            conn = self.connections[server]
            if not conn.is_up:
                continue
            self._needs_resync.discard(server)
            try:
                await self._resync(conn)
            except AmiError as exc:
                log.warning("x resync %s failed (%s); will retry", server, exc)
                self._needs_resync.add(server)
                continue
            self._resyncing.discard(server)
        for server, conn in self.connections.items():
            if conn.is_up and server not in self._needs_resync:
                self._resyncing.discard(server)

    async def _live_channels(self, conn: AmiConnection) -> dict[str, list[Message]]:
        """Channels alive on one server, grouped by Linkedid."""
        reply = await conn.send("CoreShowChannels", expects_list=True)
        by_linkedid: dict[str, list[Message]] = {}
        for item in reply.items:
            by_linkedid.setdefault(item.get("Linkedid") or "", []).append(item)
        return by_linkedid

    async def _resync(self, conn: AmiConnection) -> None:
        """Rebuild every call of this server from CoreShowChannels after a reconnect."""
        self.stats.resyncs += 1
        channels = await self._live_channels(conn)
        now = self.clock()
        for live in self.live.values():
            call = live.call
            if call.server != conn.server.name:
                continue
            items = channels.get(call.linkedid)
            if items:
                self._adopt_channels(call, items, now)
            else:
                # It ended while we were not listening; keep what we know for sure.
                outcome = Outcome.ANSWERED if call.answered_at is not None else Outcome.UNKNOWN
                if call.amd_status == "MACHINE":
                    outcome = Outcome.MACHINE
                # An agent was chosen: they may have talked while we were deaf.
                live.conversation_possible = call.agent_id is not None
                self._apply_effects(live, [end_call(call, now, outcome)])
        log.info(
            "= resync %s: %d call(s) alive after reconnect",
            conn.server.name,
            self.live.on_server(conn.server.name),
        )

    def _adopt_channels(self, call: Call, items: list[Message], now: float) -> None:
        call.live_channels = {i.get("Channel") or "" for i in items}
        call.seen_channel = True
        # Its OriginateResponse may have been lost: let the channels decide the end.
        call.adopted = True
        for item in items:
            if item.get("Uniqueid") == call.linkedid:
                call.channel = item.get("Channel")
                if item.get("ChannelStateDesc") == "Up" and call.answered_at is None:
                    call.answered_at = now
                    call.state = CallState.ANSWERED
                if item.get("BridgeId") and call.connected_at is None:
                    call.connected_at = now
                    call.state = CallState.CONNECTED

    def _watchdog(self) -> None:
        """A call with no channel long after its ring timeout never left Asterisk: close it.
        A call answered longer ago than the maximum call length is hung up."""
        now = self.clock()
        limit = self._wall(self.config.dialing.ring_timeout_s + 60)
        longest = self._wall(self.config.dialing.max_call_s)
        for live in self.live.values():
            call = live.call
            failed = failed_without_channels(call, now)
            if failed is not None:
                self._apply_effects(live, [failed])
            elif (
                call.state is CallState.ORIGINATING
                and not call.seen_channel
                and now - call.dialed_at > limit
            ):
                self._apply_effects(live, [end_call(call, now, Outcome.UNKNOWN)])
            elif (
                longest > 0
                and call.answered_at is not None
                and now - call.answered_at > longest
                and call.attempt_id not in self._hanging_up
            ):
                call_log(log, self.campaign_id, call.attempt_id).warning(
                    "x call longer than %.0f s: hanging up", self.config.dialing.max_call_s
                )
                self.stats.hung_up_too_long += 1
                self._hang_up(live)

    def hang_up_all(self) -> int:
        """Hang up every call in flight (a second stop signal); how many were asked to end."""
        lives = [
            live for live in self.live.values() if live.call.attempt_id not in self._hanging_up
        ]
        for live in lives:
            self._hang_up(live)
        return len(lives)

    def _hang_up(self, live: LiveCall) -> None:
        """Ask Asterisk to hang up the debtor's channel; the call then ends by its events."""
        call = live.call
        conn = self.connections.get(call.server)
        if conn is None or not conn.is_up or not call.channel:
            return
        self._hanging_up.add(call.attempt_id)
        with contextlib.suppress(AmiConnectionLost):
            _, reply = conn.submit("Hangup", [("Channel", call.channel), ("Cause", "16")])
            self._spawn(self._await_quietly(reply), f"hangup-{call.attempt_id}")

    @staticmethod
    async def _await_quietly(reply: Coroutine[Any, Any, object]) -> None:
        with contextlib.suppress(AmiError):
            await reply

    def _abandon_tracking(self, why: str) -> None:
        now = self.clock()
        for live in self.live.values():
            log.warning("x attempt %s: %s; outcome unknown", live.call.attempt_id, why)
            self._apply_effects(live, [end_call(live.call, now, Outcome.UNKNOWN)])

    # ----- supervisor and pacing memory -----

    def _follow_supervisor(self) -> None:
        """Apply overrides written by `dialer campaign set` (or the console) on this tick."""
        overrides = campaigns.pacing_overrides(self.store, self.campaign_id)
        if overrides.revision != self._overrides_revision:
            self._overrides_revision = overrides.revision
            self.pacer.apply(
                Overrides(
                    target_abandon_rate=overrides.target_abandon_rate,
                    max_dial_ratio=overrides.max_dial_ratio,
                    dial_mode=DialMode(overrides.dial_mode) if overrides.dial_mode else None,
                    paused=overrides.paused,
                )
            )
            log.info(
                "= campaign %s: supervisor overrides rev %d applied: %s",
                self.campaign_id,
                overrides.revision,
                overrides,
            )
        now = self.clock()
        if now - self._snapshot_saved_at > 30.0:
            self._save_pacing()

    def _save_pacing(self) -> None:
        """Queue the pacer's statistics for the database (a failure is logged: losing a
        snapshot costs a cold start later, never a call)."""
        self._snapshot_saved_at = self.clock()
        self._row_worker.later(
            campaigns.save_pacing_snapshot,
            self.store,
            self.campaign_id,
            self.tenant_id,
            self.pacer.to_json(),
        )

    # ----- crash recovery -----

    async def _recover_previous_run(self) -> None:
        """Attempts left in progress by a killed process: adopt the live ones, close the rest.

        Every one ends with its compliance reservation resolved: an adopted call's when it
        ends, a vanished call's now, conservatively (a conversation if one cannot be ruled
        out). An agent still talking on an adopted call is on that call, not ready."""
        stale = repo.attempts_in_progress(self.store, node_id=self.config.node_id)
        channels: dict[str, list[Message]] = {}
        for name, conn in self.connections.items():
            if conn.is_up:
                with contextlib.suppress(AmiError):
                    on_server = await self._live_channels(conn)
                    channels.update(on_server)
                    # Agents' shifts of this node first: an adopted call needs its agent.
                    self.sessions.adopt_phones(
                        [m for items in on_server.values() for m in items], name
                    )
        if not stale:
            return
        now = self.clock()
        now_dt = self._now_dt()
        for row in stale:
            items = channels.get(row.uniqueid or "") if row.uniqueid else None
            if items and row.campaign_id == self.campaign_id:
                await self._adopt_row(row, items, now)
                continue
            self._close_vanished(row, now_dt)
        log.info(
            "= recovery: %d attempt(s) from a previous run; %d still live and adopted",
            len(stale),
            self.stats.adopted,
        )

    async def _adopt_row(self, row: repo.AttemptRow, items: list[Message], now: float) -> None:
        """Take over a call of a previous run that Asterisk still has."""
        call = Call(row.id, row.uniqueid or "", row.server, now, self._abandon_window())
        call.agent_id = row.agent_id
        call.recording_file = row.recording_path
        call.amd_status = row.amd_status
        call.reason = row.reason
        candidate = repo.DialCandidate(row.debtor_id, row.debt_id, row.phone_id, "", "", None, "")
        live = LiveCall(call, candidate, row.reservation_id)
        self._adopt_channels(call, items, now)
        if call.answered_at is not None and call.reason is None:
            call.reason = 4  # the OriginateResponse of an answered call (AST_CONTROL_ANSWER)
        for item in items:
            agent = self.agents.on_channel(item.get("Channel") or "")
            if agent is not None and call.agent_id is None:
                call.agent_id = agent.id
        await self._recover_channel_facts(call)
        if call.agent_id is not None:
            if self.agents.adopt_call(call.agent_id, row.id, now):
                log.info("= recovery: agent %s is still on attempt %s", call.agent_id, row.id)
            if call.connected_at is None:
                live.conversation_possible = True
        self.live.add(row.id, live)
        self.table.add(call)
        self.stats.adopted += 1
        self._updates.add(
            row.id,
            repo.AttemptChange(
                agent_id=call.agent_id,
                amd_status=call.amd_status,
                reason=call.reason,
                recording_path=self._recording_path(call) if call.agent_id else None,
                channel=call.channel,
                linkedid=call.linkedid,
            ),
        )

    async def _recover_channel_facts(self, call: Call) -> None:
        """What the row lacks (the previous run died before storing it), read from the live
        debtor channel's variables: the AMD verdict, the agent chosen, the recording file."""
        conn = self.connections.get(call.server)
        if conn is None or not conn.is_up or not call.channel:
            return
        wanted = {"AMDSTATUS": call.amd_status, "TARGET_AGENT": call.agent_id}
        if call.recording_file is None:
            wanted["RECORDING_FILE"] = None
        for variable, known in wanted.items():
            if known is not None:
                continue
            try:
                reply = await conn.send(
                    "Getvar", [("Channel", call.channel), ("Variable", variable)], check=False
                )
            except AmiError:
                return
            value = reply.response.get("Value") or None if reply.ok else None
            if value is None:
                continue
            if variable == "AMDSTATUS":
                call.amd_status = value
            elif variable == "TARGET_AGENT" and self.agents.get(value) is not None:
                call.agent_id = value
            elif variable == "RECORDING_FILE":
                call.recording_file = value

    def _close_vanished(self, row: repo.AttemptRow, now_dt: datetime) -> None:
        """A call of a previous run that Asterisk no longer has: end its row with what is known
        and book its reservation the strict way."""
        outcome = Outcome.ANSWERED if row.answered_at is not None else Outcome.UNKNOWN
        if row.amd_status == "MACHINE":
            outcome = Outcome.MACHINE
        repo.update_attempt(
            self.store,
            row.id,
            repo.AttemptChange(
                status=AttemptStatus.ENDED, outcome=outcome, hungup_at=row.hungup_at or now_dt
            ),
        )
        self.stats.reconciled_unknown += outcome is Outcome.UNKNOWN
        if row.reservation_id is not None:
            # Answered (or possibly answered) with an agent chosen: a conversation may have
            # happened, and booking one is the side of the law to err on.
            possible = row.connected_at is not None or row.agent_id is not None
            self._gate_worker.later(
                self.gate.record_outcome, row.reservation_id, outcome, possible, now_dt
            )

    # ----- dialling -----

    def pacing_state(self) -> PacingState:
        now = self.clock()
        ringing: list[float] = []
        waiting: list[float] = []
        for live in self.live.values():
            call = live.call
            if call.state in (CallState.ORIGINATING, CallState.RINGING):
                ringing.append((now - call.dialed_at) * self.scale)
            elif call.state is CallState.ANSWERED:
                start = call.answered_at if call.answered_at is not None else now
                waiting.append((now - start) * self.scale)
        return PacingState(
            now=now * self.scale,
            agents_ready=self.agents.count(AgentState.READY),
            on_call_s=tuple(s * self.scale for s in self.agents.elapsed(AgentState.ON_CALL, now))
            + tuple(s * self.scale for s in self.agents.elapsed(AgentState.RESERVED, now)),
            wrap_up_s=tuple(s * self.scale for s in self.agents.elapsed(AgentState.WRAP_UP, now)),
            agents_paused=self.agents.count(AgentState.PAUSED),
            ringing_s=tuple(ringing),
            waiting_s=tuple(waiting),
        )

    def _originate_budget(self) -> int:
        """Originates the call-setup cap allows now (a token bucket refilled by the clock)."""
        rate = self.config.dialing.max_originates_per_s * self.scale
        if rate <= 0:
            return 1 << 30
        now = self.clock()
        # Two ticks' worth: a tick spends whole calls, and the fraction left over must carry
        # to the next one rather than be cut off by the cap (that loses a fifth at 10/s).
        burst = max(1.0, rate * 0.5)
        self._cps_tokens = min(burst, self._cps_tokens + (now - self._cps_at) * rate)
        self._cps_at = now
        return int(self._cps_tokens)

    async def _load_due_callbacks(self) -> None:
        """Callbacks whose time has come go to the front of the hopper (the guard still decides
        on each); a personal one waits until its agent is ready."""
        now = self.clock()
        if now - self._callbacks_read_at < self._wall(CALLBACK_POLL_S):
            return
        self._callbacks_read_at = now
        now_dt = self._now_dt()
        upcoming = await self._row_worker.run(
            callbacks.next_callback_at, self.store, self.tenant_id, self.campaign_id
        )
        horizon = timedelta(seconds=self.config.campaign.reschedule_horizon_s)
        self._next_callback_at = upcoming if upcoming and upcoming - now_dt <= horizon else None
        if upcoming is None or upcoming > now_dt:
            return
        due = await self._row_worker.run(
            callbacks.due_callbacks,
            self.store,
            self.tenant_id,
            self.campaign_id,
            self._now_dt(),
            20,
        )
        for callback in reversed(due):
            phone = callback.phone_id
            if (
                phone in self._callbacks
                or phone in self._skipped_phones
                or phone in self._deferred
                or self.live.has_debtor(callback.debtor_id)
            ):
                continue
            only = callback.agent_id
            if only is not None:
                agent = self.agents.get(only)
                if agent is None or agent.state is AgentState.LOGGED_OUT:
                    only = None  # they are gone for the day: whoever is free calls back
                elif agent.state is not AgentState.READY:
                    continue  # busy: the callback waits for them
            self._callbacks[phone] = (callback, only)
            self._hopper.appendleft(callback.candidate())

    # ----- preview dialling: the agent sees the case, then presses dial -----

    def preview_next(self, agent_id: str) -> repo.DialCandidate | None:
        """The next number for a ready agent of a preview campaign, held for them until they
        dial it (or ask for the next). None when the list has nothing for now."""
        agent = self.agents.get(agent_id)
        if agent is None or agent.state is not AgentState.READY:
            raise PreviewRefused("say you are ready first")
        if self.pacer.settings.dial_mode is not DialMode.PREVIEW:
            raise PreviewRefused("this campaign dials by itself (it is not in preview mode)")
        held = self._previews.pop(agent_id, None)
        if held is not None:
            # Skipped by the agent: back to the end of the hopper for someone else.
            self._hopper.append(held)
        taken = {c.phone_id for c in self._previews.values()}
        candidate = self._next_candidate(taken)
        if candidate is not None:
            self._previews[agent_id] = candidate
        return candidate

    async def preview_dial(self, agent_id: str) -> int:
        """Dial the case the agent previewed, for them; the attempt's id. PreviewRefused when
        nothing is held or the compliance guard says no (with its reason)."""
        candidate = self._previews.pop(agent_id, None)
        if candidate is None:
            raise PreviewRefused("no case to dial: ask for the next one")
        if self._pick_server() is None:
            self._hopper.appendleft(candidate)
            raise PreviewRefused("no Asterisk server is reachable")
        now_dt = self._now_dt()
        (decision,) = await self._gate_worker.run(self.gate.reserve_many, [candidate], now_dt)
        if not decision.allowed:
            self._denied(candidate, decision, now_dt)
            raise PreviewRefused(f"the compliance guard refuses this call: {decision.reason}")
        self._preview_dials[candidate.phone_id] = agent_id
        await self._dial([(candidate, decision)], now_dt)
        for live in self.live.values():
            if live.candidate.phone_id == candidate.phone_id:
                return live.call.attempt_id
        raise PreviewRefused("the call could not be placed")

    async def _place_calls(self) -> None:
        if self.pacer.settings.dial_mode is DialMode.PREVIEW:
            return  # each call waits for its agent's press of dial
        wanted = min(
            self.pacer.calls_to_place(self.pacing_state()),
            self.config.campaign.max_channels - len(self.live),
            self._originate_budget(),
        )
        if wanted > 0:
            await self._load_due_callbacks()
        picked: list[repo.DialCandidate] = []
        debtors: set[int] = set()
        while len(picked) < wanted:
            candidate = self._next_candidate({c.phone_id for c in picked})
            if candidate is None or candidate.debtor_id in debtors:
                # One call per person at a time: a later tick offers them again.
                if candidate is not None:
                    self._hopper.appendleft(candidate)
                break
            debtors.add(candidate.debtor_id)
            picked.append(candidate)
        if not picked:
            return
        if self._pick_server() is None:
            self._hopper.extendleft(reversed(picked))
            return
        now_dt = self._now_dt()
        # The whole tick in one round trip to the guard (one transaction on SQL, a pipeline on
        # Redis), each decided as if the earlier ones were granted first.
        decisions = await self._gate_worker.run(self.gate.reserve_many, picked, now_dt)
        granted = []
        for candidate, decision in zip(picked, decisions, strict=True):
            if decision.allowed:
                granted.append((candidate, decision))
            else:
                self._denied(candidate, decision, now_dt)
        if granted:
            await self._dial(granted, now_dt)

    def _denied(
        self, candidate: repo.DialCandidate, decision: GateDecision, now_dt: datetime
    ) -> None:
        self.stats.denied_by_gate += 1
        # A refused callback stays pending: the agent's promise is not dropped silently.
        self._callbacks.pop(candidate.phone_id, None)
        at = decision.next_allowed_at
        if (
            at is not None
            and (at - now_dt).total_seconds() <= self.config.campaign.reschedule_horizon_s
        ):
            # Ask again when the guard says it will allow, not in a loop before then.
            self._deferred[candidate.phone_id] = at
        else:
            self._skipped_phones.add(candidate.phone_id)
        log.info(
            "= phone %s denied by compliance until %s: %s",
            mask_phone(candidate.e164),
            at.isoformat() if at is not None else "further notice",
            decision.reason,
        )

    def _next_candidate(self, picked: set[int]) -> repo.DialCandidate | None:
        """The next phone to dial; `picked`: phones chosen this tick and not yet live."""
        if self._deferred:
            now = self._now_dt()
            due = [phone for phone, at in self._deferred.items() if at <= now]
            for phone in due:
                del self._deferred[phone]
            if due:
                self._hopper_exhausted = False
        if not self._hopper and not self._hopper_exhausted:
            busy = self.live.phone_ids() | self._skipped_phones | set(self._deferred) | picked
            batch = repo.next_candidates(
                self.store,
                self.campaign_id,
                limit=200,
                exclude_phone_ids=busy,
                max_attempts_per_phone=self.config.campaign.max_attempts_per_phone,
            )
            if not batch:
                self._hopper_exhausted = True
            else:
                # Queued ahead of this tick's reservations on the gate's thread.
                self._gate_worker.later(self.gate.prepare, batch, self._now_dt())
            self._hopper.extend(batch)
        while self._hopper:
            candidate = self._hopper.popleft()
            if candidate.phone_id in self._skipped_phones:
                continue
            if self.live.has_debtor(candidate.debtor_id):
                # One call per person at a time; the next batch will offer this debtor again.
                continue
            return candidate
        return None

    def _pick_server(self, planned: Counter[str] | None = None) -> AmiServerConfig | None:
        """The server up with the least load per weight; `planned`: calls chosen for each
        server this tick and not yet live."""
        best: tuple[float, AmiServerConfig] | None = None
        for name, conn in self.connections.items():
            server = conn.server
            if not self._usable(name, conn) or server.weight <= 0:
                continue
            load = self.live.on_server(name) + (planned[name] if planned else 0)
            score = load / server.weight
            if best is None or score < best[0]:
                best = (score, server)
        return best[1] if best else None

    async def _dial(
        self, granted: list[tuple[repo.DialCandidate, GateDecision]], now_dt: datetime
    ) -> None:
        """Write the tick's attempt rows in one commit, then send their Originates."""
        planned: Counter[str] = Counter()
        going: list[tuple[repo.DialCandidate, GateDecision, AmiServerConfig, str]] = []
        for candidate, decision in granted:
            server = self._pick_server(planned)
            if server is None:
                if decision.reservation_id is not None:
                    self._gate_worker.later(self.gate.release, decision.reservation_id, now_dt)
                self._hopper.appendleft(candidate)
                continue
            planned[server.name] += 1
            going.append(
                (candidate, decision, server, f"dlr-{self.config.node_id}-{secrets.token_hex(5)}")
            )
        if not going:
            return
        attempt_ids = await self._row_worker.run(
            repo.create_attempts,
            self.store,
            [
                repo.NewAttempt(
                    tenant_id=self.tenant_id,
                    campaign_id=self.campaign_id,
                    debtor_id=candidate.debtor_id,
                    debt_id=candidate.debt_id,
                    phone_id=candidate.phone_id,
                    node_id=self.config.node_id,
                    server=server.name,
                    uniqueid=uid,
                    dialed_at=now_dt,
                    reservation_id=decision.reservation_id,
                )
                for candidate, decision, server, uid in going
            ],
        )
        for (candidate, decision, server, uid), attempt_id in zip(going, attempt_ids, strict=True):
            call = Call(attempt_id, uid, server.name, self.clock(), self._abandon_window())
            live = LiveCall(call, candidate, decision.reservation_id)
            previewed_by = self._preview_dials.pop(candidate.phone_id, None)
            if previewed_by is not None:
                live.only_agent = previewed_by
            placed = self._callbacks.pop(candidate.phone_id, None)
            if placed is not None:
                callback, live.only_agent = placed
                self._row_worker.later(
                    callbacks.mark_callback,
                    self.store,
                    callback.id,
                    CallbackStatus.DIALLED,
                    attempt_id,
                )
            self.live.add(attempt_id, live)
            self.table.add(call)
            self.stats.originates_sent += 1
            self.dial_times.append(self.clock())
            self._cps_tokens -= 1
            self._spawn(self._originate(live, server), f"originate-{attempt_id}")

    def _originate_fields(self, live: LiveCall) -> list[tuple[str, str]]:
        dialing = self.config.dialing
        number = live.candidate.e164.lstrip("+")
        call = live.call
        fields = [
            ("Channel", dialing.channel_template.format(number=number, e164=live.candidate.e164)),
            ("Context", dialing.context),
            ("Exten", dialing.exten),
            ("Priority", str(dialing.priority)),
            ("Timeout", str(int(dialing.ring_timeout_s * 1000))),
            ("CallerID", dialing.caller_id),
            ("Async", "true"),
            ("ChannelId", call.linkedid),
            ("OtherChannelId", f"{call.linkedid}-2"),
            ("Variable", f"ATTEMPT_ID={call.attempt_id}"),
            ("Variable", f"CAMPAIGN_ID={self.campaign_id}"),
            ("Variable", f"LEAD_ID={live.candidate.debtor_external_id}"),
            ("Variable", f"USE_AMD={1 if dialing.use_amd else 0}"),
            ("Variable", f"RECORD={1 if dialing.record else 0}"),
            ("Variable", f"DIALER_AGI=agi://{self.config.agi.advertise_host}:{self._agi_port()}"),
        ]
        fields.extend(("Variable", f"{k}={v}") for k, v in dialing.variables.items())
        return fields

    def _agi_port(self) -> int:
        return self.agi.port if self.agi is not None else self.config.agi.port

    async def _originate(self, live: LiveCall, server: AmiServerConfig) -> None:
        conn = self.connections[server.name]
        clog = call_log(log, self.campaign_id, live.call.attempt_id)
        try:
            action_id, reply = conn.submit("Originate", self._originate_fields(live))
        except AmiConnectionLost:
            # Nothing was written: the call certainly did not happen.
            clog.warning("x Originate not sent: %s went down", server.name)
            self._never_placed(live)
            return
        self.table.bind_action(live.call, action_id)
        clog.info(
            "> Originate %s via %s as %s",
            mask_phone(live.candidate.e164),
            server.name,
            live.call.linkedid,
        )
        try:
            await reply
        except AmiActionError as exc:
            # Refused before leaving Asterisk: no call happened.
            clog.warning("x Originate refused by %s: %s", server.name, exc.message)
            if exc.message in SERVER_UNAVAILABLE:
                # Not an outcome of the debtor's number: leave the server be until its link
                # drops and comes back (or a few seconds pass), and dial the phone again later.
                self._refusing[server.name] = self.clock() + 5.0
                self._never_placed(live)
            else:
                self._not_dialled(live)
        except (AmiConnectionLost, AmiTimeout) as exc:
            # It may or may not be queued in Asterisk. Never re-send: the resync decides.
            clog.warning(
                "x Originate reply lost (%s); the call will be reconciled", type(exc).__name__
            )

    def _never_placed(self, live: LiveCall) -> None:
        """The Originate never reached the network through no fault of the number: give the
        reservation back, drop the row (it was no try) and put the phone back in the hopper."""
        self.stats.originate_errors += 1
        call = live.call
        if live.reservation_id is not None:
            self._gate_worker.later(self.gate.release, live.reservation_id, self._now_dt())
            live.reservation_id = None
        self.table.remove(call)
        self.live.pop(call.attempt_id)
        call.state = CallState.ENDED
        self.stats.originates_sent -= 1
        self._row_worker.later(repo.discard_attempt, self.store, call.attempt_id)
        if live.candidate.e164:
            self._hopper.appendleft(live.candidate)
        self._hopper_exhausted = False

    def _not_dialled(self, live: LiveCall) -> None:
        """The Originate never left for Asterisk: give the reservation back, close the row."""
        self.stats.originate_errors += 1
        if live.reservation_id is not None:
            self._gate_worker.later(self.gate.release, live.reservation_id, self._now_dt())
            live.reservation_id = None
        if live.call.state is not CallState.ENDED:
            self._apply_effects(live, [end_call(live.call, self.clock(), Outcome.FAILED)])

    # ----- events -----

    def _on_event(self, server: str, msg: Message) -> None:
        self.stats.ami_events += 1
        if self.sessions.on_ami(msg):
            return
        result = self.table.dispatch(msg, self.clock())
        if result is None:
            return
        call, effects = result
        if effects:
            live = self.live.get(call.attempt_id)
            if live is not None:
                self._apply_effects(live, effects)

    def _apply_effects(self, live: LiveCall, effects: list[Effect]) -> None:
        call = live.call
        for effect in effects:
            at = self._now_dt()
            if isinstance(effect, Answered):
                if self.watcher is not None:
                    self.watcher.call_answered(call.attempt_id)
                # Events are routed by Linkedid: seeing this one confirms every leg carries ours.
                self._updates.add(
                    call.attempt_id,
                    repo.AttemptChange(
                        status=AttemptStatus.ANSWERED,
                        answered_at=at,
                        channel=call.channel,
                        linkedid=call.linkedid,
                        amd_status=call.amd_status,
                    ),
                )
            elif isinstance(effect, Connected):
                if call.agent_id:
                    self.agents.start_call(call.agent_id, effect.at)
                    if self.watcher is not None:
                        self.watcher.call_connected(call.agent_id, call.attempt_id)
                # What a restart needs to finish the books is stored as soon as it is known.
                self._updates.add(
                    call.attempt_id,
                    repo.AttemptChange(
                        status=AttemptStatus.CONNECTED,
                        connected_at=at,
                        agent_id=call.agent_id,
                        reason=call.reason,
                        amd_status=call.amd_status,
                        recording_path=self._recording_path(call),
                    ),
                )
            elif isinstance(effect, Ended):
                self._finish(live, effect, at)

    def _finish(self, live: LiveCall, effect: Ended, at: datetime) -> None:
        call = live.call
        self.table.remove(call)
        self.live.pop(call.attempt_id)
        self._hanging_up.discard(call.attempt_id)
        # The debtor is free again: their other phones may qualify now (one call per person).
        self._hopper_exhausted = False
        self.stats.ended += 1
        self.stats.outcomes[effect.outcome.value] = (
            self.stats.outcomes.get(effect.outcome.value, 0) + 1
        )
        self._updates.add(
            call.attempt_id,
            repo.AttemptChange(
                status=AttemptStatus.ENDED,
                outcome=effect.outcome,
                abandoned=effect.abandoned,
                reason=call.reason,
                hungup_at=at,
                hangup_cause=effect.hangup_cause,
                amd_status=call.amd_status,
                agent_id=call.agent_id,
                linkedid=call.linkedid if call.seen_channel else None,
                recording_path=self._recording_path(call) if call.connected_at else None,
            ),
        )
        if live.reservation_id is not None:
            self._gate_worker.later(
                self.gate.record_outcome,
                live.reservation_id,
                effect.outcome,
                call.connected_at is not None or live.conversation_possible,
                at,
            )
        if call.agent_id:
            self._agent_call_over(call.agent_id, call, effect.at)
        self.pacer.observe(self._pacing_outcome(call, effect))
        call_log(log, self.campaign_id, call.attempt_id).info(
            "= ended %s%s cause=%s (causes of its channels: %s)",
            effect.outcome.value,
            " (abandoned)" if effect.abandoned else "",
            effect.hangup_cause,
            sorted(call.causes.values()),  # not the channel names: they carry the number
        )

    def _recording_path(self, call: Call) -> str | None:
        return call.recording_file if self.config.dialing.record else None

    def _agent_call_over(self, agent_id: str, call: Call, at: float) -> None:
        """The agent's part of `call` ended (hang-up or transfer): wrap-up, with its limit."""
        agent = self.agents.get(agent_id)
        # Only this call's end: a transferred call ends after its agent took the next one.
        if agent is None or agent.attempt_id != call.attempt_id:
            return
        if not self.agents.end_call(agent_id, at):
            return
        talk = (at - call.connected_at) * self.scale if call.connected_at else 0.0
        self.stats.talk_seconds += talk
        self._wrapping[agent_id] = (call.attempt_id, at, talk)
        # The campaign's wrap-up limit; the agent's disposition may end it sooner.
        loop = asyncio.get_running_loop()
        loop.call_later(
            self._wall(self.config.campaign.wrap_up_s),
            self.end_wrap_up,
            agent_id,
            call.attempt_id,
        )
        if self.watcher is not None:
            self.watcher.call_ended(agent_id, call.attempt_id)

    def _pacing_outcome(self, call: Call, effect: Ended) -> CallOutcome:
        if effect.outcome is Outcome.ANSWERED:
            answer = AnswerKind.LIVE
        elif effect.outcome is Outcome.MACHINE:
            answer = AnswerKind.MACHINE
        else:
            answer = AnswerKind.NONE
        end_ring = call.answered_at if call.answered_at is not None else effect.at
        wait = 0.0
        if call.answered_at is not None:
            wait = (
                (call.connected_at or effect.at) - (call.greeting_done_at or call.answered_at)
            ) * self.scale
        return CallOutcome(
            dialed_at=call.dialed_at * self.scale,
            answer=answer,
            ring_s=(end_ring - call.dialed_at) * self.scale,
            connected=call.connected_at is not None,
            wait_s=max(0.0, wait),
        )

    def end_wrap_up(self, agent_id: str, attempt_id: int) -> bool:
        """The wrap-up of this call ends (its disposition is saved, or the limit ran out): the
        pacer learns how long it took. False if the agent is not wrapping up this call."""
        wrapping = self._wrapping.get(agent_id)
        if wrapping is None or wrapping[0] != attempt_id:
            return False
        now = self.clock()
        if not self.agents.finish_wrap_up(agent_id, now):
            return False
        del self._wrapping[agent_id]
        _, ended_at, talk = wrapping
        self.pacer.observe(
            AgentCallEnded(
                ended_at=ended_at * self.scale,
                talk_s=talk,
                wrap_up_s=(now - ended_at) * self.scale,
            )
        )
        self._wake_waiter()
        return True

    def _agent_changed(self, status: AgentStatus) -> None:
        # An agent who turns ready may be what an answered debtor is waiting for.
        if status.state == AgentState.READY.value:
            self._wake_waiter()
        elif status.agent_id in self._previews:
            # Paused or gone while looking at a case: someone else may dial it.
            self._hopper.appendleft(self._previews.pop(status.agent_id))

    # ----- what the agents' sessions borrow (dialer.agents.sessions.Telephony) -----

    def originate_phone(
        self, fields: list[tuple[str, str]], server: str | None = None
    ) -> tuple[str, str] | None:
        """Send an Originate for a person's phone (an agent's login, a supervisor listening
        in) on `server` or the first usable one: (server, action id), or None."""
        for name, conn in self.connections.items():
            if (server is not None and name != server) or not self._usable(name, conn):
                continue
            try:
                action_id, reply = conn.submit("Originate", fields)
            except AmiConnectionLost:
                continue
            self._spawn(self._phone_reply(reply, action_id), f"agent-phone-{action_id}")
            return name, action_id
        return None

    async def _phone_reply(self, reply: Coroutine[Any, Any, object], action_id: str) -> None:
        try:
            await reply
        except AmiError as exc:
            # Refused or lost: no OriginateResponse will tell; the agent redials.
            log.warning("x agent phone Originate %s failed: %s", action_id, exc)

    def hang_up_channel(self, server: str, channel: str) -> None:
        conn = self.connections.get(server)
        if conn is None or not conn.is_up:
            return
        with contextlib.suppress(AmiConnectionLost):
            _, reply = conn.submit("Hangup", [("Channel", channel), ("Cause", "16")])
            self._spawn(self._await_quietly(reply), f"hangup-{channel}")

    async def transfer_agent_call(self, agent_id: str, transfer_to: str) -> int:
        """Put the agent's debtor through to `transfer_to` (a supervisor's phone): the debtor
        leaves the agent's conference for [dialer-transfer], the agent goes to wrap-up and the
        call goes on (and is recorded) until the debtor or the supervisor hangs up. The attempt
        id; TransferError when the agent has no call or Asterisk refuses."""
        agent = self.agents.get(agent_id)
        live = self.live.get(agent.attempt_id) if agent and agent.attempt_id else None
        if agent is None or live is None or agent.state is not AgentState.ON_CALL:
            raise TransferError("call", "you have no call in progress to transfer")
        call = live.call
        conn = self.connections.get(call.server)
        if conn is None or not conn.is_up or not call.channel:
            raise TransferError("call", "the call's Asterisk server is not reachable")
        for action, fields in transfer_actions(call.channel, transfer_to):
            try:
                await conn.send(action, fields)
            except AmiError as exc:
                raise TransferError("call", f"Asterisk refused the transfer: {exc}") from None
        call_log(log, self.campaign_id, call.attempt_id).info("= transferred by agent %s", agent_id)
        # The agent's part of the call is over: wrap-up, as after a hang-up.
        self._agent_call_over(agent_id, call, self.clock())
        return call.attempt_id

    def hang_up_agent_call(self, agent_id: str) -> bool:
        """The agent ends the conversation from the desktop. False if they have none."""
        agent = self.agents.get(agent_id)
        if agent is None or agent.attempt_id is None:
            return False
        live = self.live.get(agent.attempt_id)
        if live is None or live.call.agent_id != agent_id:
            return False
        self._hang_up(live)
        return True

    def _wake_waiter(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    # ----- the FastAGI router (agi.connect.CallRouter) -----

    async def route_answered_call(self, answered: AnsweredCall) -> RouteDecision:
        try:
            attempt_id = int(answered.attempt_id)
        except ValueError:
            return RouteDecision("hangup")
        live = self.live.get(attempt_id)
        deadline = self.clock() + self._abandon_window()
        while True:
            agent = None
            if live is not None and live.only_agent is not None:
                agent = self.agents.reserve_longest_idle(
                    attempt_id, self.clock(), only=live.only_agent
                )
            if agent is None:
                # A personal callback whose agent is busy after all: anyone beats abandoning.
                agent = self.agents.reserve_longest_idle(attempt_id, self.clock())
            if agent is not None:
                break
            remaining = deadline - self.clock()
            if remaining <= 0:
                return RouteDecision("abandon")
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout(remaining):
                    await waiter
            except TimeoutError:
                return RouteDecision("abandon")
            finally:
                if not waiter.done():
                    waiter.cancel()
        recording_file = self._recording_file(attempt_id, answered.uniqueid)
        if live is not None:
            live.call.agent_id = agent.id
            live.call.recording_file = recording_file
            # Stored before the agent is dialled: a restart then knows whose call it is.
            self._updates.add(
                attempt_id,
                repo.AttemptChange(
                    agent_id=agent.id, recording_path=self._recording_path(live.call)
                ),
            )
        if agent.connect is Connect.NAILED:
            return RouteDecision(
                "bridge",
                target_agent=agent.id,
                target_bridge=agent.conference,
                recording_file=recording_file,
            )
        return RouteDecision(
            "dial",
            target_channel=agent.channel,
            target_agent=agent.id,
            recording_file=recording_file,
        )

    async def call_lost(self, answered: AnsweredCall, decision: RouteDecision) -> None:
        if decision.target_agent:
            self.agents.cancel_reservation(decision.target_agent, self.clock())
            agent = self.agents.get(decision.target_agent)
            if agent is not None and agent.state is AgentState.READY:
                self._wake_waiter()

    def _recording_file(self, attempt_id: int, uniqueid: str) -> str:
        day = self._now_dt().strftime("%Y/%m/%d")
        name = PurePosixPath(
            f"campaign-{self.campaign_id}", day, f"attempt-{attempt_id}-{uniqueid}.wav"
        )
        if not self.config.dialing.recording_dir:
            return str(name)  # relative: MixMonitor puts it under Asterisk's monitor folder
        return str(PurePosixPath(self.config.dialing.recording_dir) / name)

    # ----- reporting -----

    def snapshot(self) -> Snapshot:
        ringing = waiting = connected = 0
        for live in self.live.values():
            state = live.call.state
            if state in (CallState.ORIGINATING, CallState.RINGING):
                ringing += 1
            elif state is CallState.ANSWERED:
                waiting += 1
            elif state is CallState.CONNECTED:
                connected += 1
        return Snapshot(
            ringing=ringing,
            answered_waiting=waiting,
            connected=connected,
            agents_ready=self.agents.count(AgentState.READY),
            agents_busy=self.agents.count(AgentState.ON_CALL)
            + self.agents.count(AgentState.RESERVED),
            agents_wrap_up=self.agents.count(AgentState.WRAP_UP),
            attempts=self.stats.originates_sent,
            ended=self.stats.ended,
            servers_up=sum(1 for c in self.connections.values() if c.is_up),
        )
