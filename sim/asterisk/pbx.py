"""The simulated PBX: Originate, Local channel pairs, the `dialer-connect` dialplan, hangups.

The nailed-up agent contexts (`dialer-agent`, `dialer-spy`, ROUTE=bridge, `dialer-transfer`)
are in `sim.asterisk.nailed`.

Each call is one coroutine that owns its channels and emits the AMI events of Asterisk 20.20.1
in the order the captures show. Requests from outside (AMI Hangup, Redirect, the debtor putting
the phone down) reach the coroutine as an interrupt, so only the owner ever changes a call.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from dialer.asterisk_names import AGENT_CONTEXT as AGENT_LOGIN_CONTEXT
from dialer.asterisk_names import SPY_CONTEXT, TRANSFER_CONTEXT
from sim.agi_client import AgiExec, run_agi
from sim.asterisk.channels import (
    SOFTHANGUP_APPUNLOAD,
    SOFTHANGUP_EXPLICIT,
    UNKNOWN,
    Bridge,
    Channel,
    Event,
    State,
    channel_event,
    event,
    hangup_event,
    newexten_event,
    varset_event,
)
from sim.asterisk.nailed import NailedUp
from sim.audio.recorder import CallMix, CallRecorder
from sim.behaviour import AgentModel, DebtorFate, DebtorModel, Outcome, SuffixDebtors

log = logging.getLogger(__name__)

CONNECT_CONTEXT = "dialer-connect"
AGENT_CONTEXT = "agents"
SAFE_HARBOUR = "dialer/safe-harbour"


def mask_number(text: str) -> str:
    """Keep the last 4 digits of every run of 5+ digits: logs must not carry phone numbers."""
    return re.sub(r"\d{5,}", lambda m: "*" * (len(m.group()) - 4) + m.group()[-4:], text)


class EventSink(Protocol):
    def __call__(self, event: Event) -> None: ...


class SimClock:
    """Simulated time running `time_scale` times faster than the wall clock."""

    def __init__(self, time_scale: float = 1.0) -> None:
        if time_scale <= 0:
            raise ValueError(f"time_scale must be > 0, got {time_scale}")
        self.time_scale = time_scale
        self._start = time.monotonic()

    def now(self) -> float:
        return (time.monotonic() - self._start) * self.time_scale

    def real(self, sim_seconds: float) -> float:
        return max(0.0, sim_seconds) / self.time_scale

    async def sleep(self, sim_seconds: float) -> None:
        await asyncio.sleep(self.real(sim_seconds))


@dataclass(frozen=True, slots=True)
class OriginateRequest:
    """An Originate action, already validated by the AMI layer."""

    channel: str
    context: str = CONNECT_CONTEXT
    exten: str = "s"
    priority: int = 1
    timeout_ms: int = 30000
    caller_id: str = ""
    variables: tuple[tuple[str, str], ...] = ()
    channel_id: str | None = None
    other_channel_id: str | None = None
    action_id: str | None = None
    is_async: bool = True


@dataclass(frozen=True, slots=True)
class OriginateResult:
    success: bool
    reason: int
    channel: str
    uniqueid: str


class AgiRunner(Protocol):
    """Runs one FastAGI session for a channel and returns AGISTATUS."""

    def __call__(
        self,
        url: str,
        channel: AgiChannelView,
        on_command: Callable[[AgiExec], None],
        command_ids: Iterator[int],
    ) -> Coroutine[Any, Any, str]: ...


async def fastagi_runner(
    url: str,
    channel: AgiChannelView,
    on_command: Callable[[AgiExec], None],
    command_ids: Iterator[int],
) -> str:
    """The real thing: `sim.agi_client.run_agi` over TCP to the dialer's FastAGI server."""
    outcome = await run_agi(url, channel, on_command=on_command, command_ids=command_ids)
    if outcome.reason:
        log.info("x FastAGI %s on %s: %s", url, channel.uniqueid, outcome.reason)
    return outcome.status


@dataclass(frozen=True, slots=True)
class PbxConfig:
    """How the simulated Asterisk behaves; durations are simulated seconds."""

    time_scale: float = 1.0
    verbose_events: bool = False
    debtor_contexts: tuple[str, ...] = ("debtor-sim",)
    safe_harbour_secs: float = 6.0
    agent_dial_timeout_secs: float = 20.0
    # How long the simulator waits for a FastAGI script after the debtor left (real seconds).
    agi_grace_secs: float = 2.0
    sound_secs: float = 2.0  # length of any sound file a FastAGI script plays
    seed: int = 0
    # Asterisk's <astspooldir>/monitor: where MixMonitor puts a recording named relatively.
    monitor_dir: str = "/var/spool/asterisk/monitor"
    # Where the simulator writes a real WAV (and its truth sidecar) for every call MixMonitor
    # records, Asterisk's paths re-rooted under it (sim.audio.recorder); empty: no files.
    recordings_dir: str = ""
    call_audio: CallMix = field(default_factory=CallMix)  # what those recordings hold
    # manager.conf `channelvars` (`ChanVariable: NAME=value` in every channel snapshot).
    # asterisk-conf ships AGENT_ID; empty by default, as in the older captures of sim/traces.
    channelvars: tuple[str, ...] = ()


@dataclass(slots=True)
class Interrupt:
    """Something from outside the call's coroutine: a hangup or a redirect of one channel."""

    channel: Channel
    cause: int = 16
    kind: str = "hangup"  # hangup | far_end | agi_hangup | redirect | kicked (end_marked)
    target: tuple[str, str, int] = ("", "", 1)


@dataclass(slots=True, eq=False)
class Call:
    """One originated call: the debtor leg (a Local pair or one trunk channel) and its agent leg."""

    request: OriginateRequest
    number: str
    fate: DebtorFate | None  # None: the far end is an agent (`Local/<id>@agents`)
    one: Channel
    two: Channel | None
    agent_one: Channel | None = None
    agent_two: Channel | None = None
    bridge: Bridge | None = None
    interrupt: Interrupt | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    hung_up: asyncio.Event = field(default_factory=asyncio.Event)
    leaves_at: float = math.inf
    caller: tuple[str, str] = (UNKNOWN, UNKNOWN)
    outcome: str = "in_progress"
    result: asyncio.Future[OriginateResult] | None = None
    task: asyncio.Task[None] | None = None

    def channels(self) -> list[Channel]:
        legs = (self.one, self.two, self.agent_one, self.agent_two)
        return [c for c in legs if c is not None and c.alive]


class AgiChannelView:
    """The channel as `sim.agi_client.run_agi` sees it (its `SimAgiChannel` protocol)."""

    def __init__(self, pbx: Pbx, call: Call) -> None:
        self._pbx = pbx
        self._call = call
        self.type = call.one.tech
        self.language = "en"
        self.accountcode = ""

    @property
    def _one(self) -> Channel:
        return self._call.one

    @property
    def name(self) -> str:
        return self._one.name

    @property
    def uniqueid(self) -> str:
        return self._one.uniqueid

    @property
    def callerid_num(self) -> str | None:
        return None if self._one.caller_num == UNKNOWN else self._one.caller_num

    @property
    def callerid_name(self) -> str | None:
        return None if self._one.caller_name == UNKNOWN else self._one.caller_name

    @property
    def context(self) -> str:
        return self._one.context

    @property
    def exten(self) -> str:
        return self._one.exten

    @property
    def priority(self) -> int:
        return self._one.priority

    @property
    def state(self) -> int:
        return int(self._one.state.value)

    @property
    def hung_up(self) -> bool:
        return self._call.hung_up.is_set()

    def get_variable(self, name: str) -> str | None:
        return self._one.variables.get(name)

    def set_variable(self, name: str, value: str) -> None:
        self._pbx.set_variable(self._one, name, value)

    async def wait_hung_up(self) -> None:
        await self._call.hung_up.wait()

    async def _listen(self, sim_seconds: float) -> float:
        """Let media play for `sim_seconds`; the simulated seconds that passed before a hangup."""
        clock = self._pbx.clock
        started = clock.now()
        try:
            async with asyncio.timeout(clock.real(sim_seconds)):
                await self._call.hung_up.wait()
        except TimeoutError:
            return sim_seconds
        return min(sim_seconds, clock.now() - started)

    async def play(self, file: str) -> int | None:
        seconds = await self._listen(self._pbx.config.sound_secs)
        return int(seconds * 1000)

    async def exec(self, app: str, args: str) -> int | None:
        app = app.lower()
        if app == "playback":
            await self._listen(self._pbx.config.sound_secs)
            return 0
        if app == "wait":
            try:
                seconds = float(args or 0)
            except ValueError:
                seconds = 0.0
            await self._listen(seconds)
            return 0
        if app in ("noop", "set", "answer", "verbose", "log"):
            return 0
        return None

    async def answer(self) -> None:
        return None

    async def hangup(self, cause: int) -> None:
        """AGI HANGUP: SoftHangupRequest with the EXPLICIT flag at once; the rest after AGI()."""
        one = self._one
        if not one.alive or self.hung_up:
            return
        self._pbx.emit(
            channel_event("SoftHangupRequest", one, [("Cause", str(SOFTHANGUP_EXPLICIT))])
        )
        # Asterisk reports cause 0 for a channel the AGI script hung up (agi_hangup capture).
        self._pbx.interrupt(self._call, Interrupt(one, 0, "agi_hangup"))


def _parse_caller_id(text: str) -> tuple[str, str]:
    match = re.fullmatch(r'\s*"?([^"<]*?)"?\s*<([^>]*)>\s*', text)
    if match:
        return match.group(2) or UNKNOWN, match.group(1) or UNKNOWN
    return (text.strip() or UNKNOWN), UNKNOWN


class Pbx:
    """All channels of one simulated Asterisk run, and the coroutines that drive them."""

    def __init__(
        self,
        sink: EventSink,
        *,
        config: PbxConfig | None = None,
        debtors: DebtorModel | None = None,
        agents: AgentModel | None = None,
        agi_runner: AgiRunner | None = None,
    ) -> None:
        self.config = config or PbxConfig()
        self.clock = SimClock(self.config.time_scale)
        self._sink = sink
        self.debtors: DebtorModel = debtors or SuffixDebtors()
        self.agents = agents or AgentModel()
        self.agi_runner: AgiRunner = agi_runner or fastagi_runner
        self._rng = random.Random(self.config.seed)
        # The debtor remembers how often we called, even across an Asterisk restart.
        self._attempts: Counter[str] = Counter()
        self.calls: set[Call] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self.stats: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.channels: dict[str, Channel] = {}
        self._owner: dict[str, Call] = {}
        self.bridges: dict[str, Bridge] = {}
        self.nailed = NailedUp(self)
        self.recorder: CallRecorder | None = None
        if self.config.recordings_dir:
            self.recorder = CallRecorder(
                self.config.recordings_dir,
                monitor_dir=self.config.monitor_dir,
                seed=self.config.seed,
                mix=self.config.call_audio,
            )
        self.reset()

    # -- lifecycle ------------------------------------------------------------------------

    def reset(self) -> None:
        """An Asterisk restart: every channel gone without a trace, counters back to zero."""
        for call in list(self.calls):
            if call.task is not None:
                call.task.cancel()
            if call.result is not None and not call.result.done():
                # A synchronous Originate waiting on this call gets "Originate failed".
                failed = OriginateResult(False, 0, call.request.channel, UNKNOWN)
                call.result.set_result(failed)
        self.calls.clear()
        self.channels.clear()
        self._owner.clear()
        self.bridges.clear()
        self.nailed.reset()
        if self.recorder is not None:
            self.recorder.reset(self.clock.now())  # recordings end where they are
        self._local_counter = 0
        self._trunk_counter = 0
        self._uniqueid_seq = 0
        self._epoch = int(time.time())
        self.started = time.time()
        self._idle.set()

    async def wait_idle(self) -> None:
        """Return once no call is in flight (and its recording, if any, is on disk)."""
        await self._idle.wait()
        if self.recorder is not None:
            await self.recorder.drain()

    def emit(self, ev: Event) -> None:
        self._sink(ev)

    def cosmetic(self, factory: Callable[[], Iterable[Event]]) -> None:
        """Events no dialer needs (caller-id updates, device states): only in verbose mode."""
        if self.config.verbose_events:
            for ev in factory():
                self._sink(ev)

    # -- channels -------------------------------------------------------------------------

    def _next_channel_number(self) -> int:
        """Local, CBAnn (and every other unreal channel) share one name counter."""
        self._local_counter += 1
        return self._local_counter - 1

    def _uniqueid(self) -> str:
        seq = self._uniqueid_seq
        self._uniqueid_seq += 1
        return f"{self._epoch}.{seq}"

    def _new_channel(
        self,
        call: Call,
        name: str,
        uniqueid: str | None,
        linkedid: str | None,
        context: str,
        exten: str,
        state: State = State.DOWN,
        tech: str = "Local",
    ) -> Channel:
        auto = self._uniqueid()  # Asterisk counts every channel, named by ChannelId or not
        uid = uniqueid or auto
        ch = Channel(name, uid, linkedid or uid, context, exten, state, self.clock.now(), tech=tech)
        ch.manager_vars = self.config.channelvars
        self.channels[name] = ch
        self._owner[name] = call
        return ch

    def _gone(self, ch: Channel, cause: int) -> None:
        if not ch.alive:
            return
        ch.alive = False
        if ch.mixmonitor and self.recorder is not None:
            self.recorder.stop(ch.uniqueid, self.clock.now())
        self.emit(hangup_event(ch, cause))
        self.cosmetic(lambda: [self._device_state(ch, "NOT_INUSE")])
        self.channels.pop(ch.name, None)
        self._owner.pop(ch.name, None)

    def _device_state(self, ch: Channel, state: str) -> Event:
        device = ch.name.rsplit("-", 1)[0]
        return event("DeviceStateChange", "call,all", [("Device", device), ("State", state)])

    def set_variable(self, ch: Channel, name: str, value: str) -> None:
        ch.variables[name] = value
        self.emit(varset_event(ch, name, value))

    def find(self, name: str) -> Channel | None:
        """A channel by its name or, as Asterisk also accepts, its Uniqueid."""
        found = self.channels.get(name)
        if found is None:
            found = next((c for c in self.channels.values() if c.uniqueid == name), None)
        return found

    def owner(self, ch: Channel) -> Call | None:
        return self._owner.get(ch.name)

    # -- requests from AMI --------------------------------------------------------------------

    def request_hangup(self, name: str, cause: int = 16) -> bool:
        ch = self.find(name)
        call = self._owner.get(ch.name) if ch is not None else None
        if ch is None or call is None:
            return False
        self.interrupt(call, Interrupt(ch, cause))
        return True

    def request_redirect(self, name: str, context: str, exten: str, priority: int) -> bool:
        ch = self.find(name)
        call = self._owner.get(ch.name) if ch is not None else None
        if ch is None or call is None:
            return False
        self.interrupt(call, Interrupt(ch, 16, "redirect", (context, exten, priority)))
        return True

    def interrupt(self, call: Call, interrupt: Interrupt) -> None:
        """Hand a hangup or redirect to the call's coroutine (the first one wins)."""
        if call.interrupt is None:
            call.interrupt = interrupt
            if interrupt.kind != "redirect":
                call.hung_up.set()
        call.wake.set()

    def _kick(self, call: Call, ch: Channel) -> None:
        """ConfBridge put the channel out (end_marked: its agent left)."""
        self.interrupt(call, Interrupt(ch, 16, "kicked"))

    def mixmonitor(self, ch: Channel, start: bool) -> None:
        ch.mixmonitor = start
        self.emit(channel_event("MixMonitorStart" if start else "MixMonitorStop", ch))

    # -- Originate ------------------------------------------------------------------------

    def originate(self, req: OriginateRequest) -> asyncio.Future[OriginateResult]:
        """Start a call; the future resolves with the outcome (what a sync Originate waits for)."""
        loop = asyncio.get_running_loop()
        result: asyncio.Future[OriginateResult] = loop.create_future()
        self.stats["originates"] += 1
        call = self._build_call(req, result)
        self.calls.add(call)
        self._idle.clear()
        call.task = asyncio.create_task(self._run(call), name=f"call {call.one.uniqueid}")
        return result

    def _build_call(self, req: OriginateRequest, result: asyncio.Future[OriginateResult]) -> Call:
        tech, _, rest = req.channel.partition("/")
        target, _, _options = rest.partition("/")
        number, _, where = target.partition("@")
        fate: DebtorFate | None = None  # an agent at the far end: no debtor model
        phone = req.context in (AGENT_LOGIN_CONTEXT, SPY_CONTEXT)  # an agent's or supervisor's
        if not phone and not (tech == "Local" and where == AGENT_CONTEXT):
            self._attempts[number] += 1
            fate = self.debtors.fate(number, self._attempts[number])
            self.stats[f"fate_{fate.outcome.value}"] += 1
        placeholder = Channel("", "", "", "", "", State.DOWN, 0.0)
        call = Call(req, number, fate, placeholder, None, result=result)
        call.caller = _parse_caller_id(req.caller_id)
        if tech == "Local":
            base = f"Local/{target}-{self._next_channel_number():08x}"
            one = self._new_channel(
                call, f"{base};1", req.channel_id, None, context=where, exten=number
            )
            other = req.other_channel_id or (f"{req.channel_id};2" if req.channel_id else None)
            two = self._new_channel(
                call,
                f"{base};2",
                other,
                one.linkedid,
                context=where,
                exten=number,
                state=State.RING,
            )
            call.one, call.two = one, two
        else:
            self._trunk_counter += 1
            trunk = where or number
            name = f"{tech}/{trunk}-{self._trunk_counter - 1:08x}"
            one = self._new_channel(
                call, name, req.channel_id, None, context=req.context, exten=req.exten, tech=tech
            )
            call.one = one
        # The Originate's variables land on the channels one VarSet at a time (_announce_local,
        # _originate_flow): until then a ChanVariable shows them empty, as in the captures.
        return call

    async def _run(self, call: Call) -> None:
        try:
            await self._originate_flow(call)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("x call %s failed inside the simulator", call.one.uniqueid)
            for ch in call.channels():
                self._gone(ch, 0)
            self._finish(call, False, 0)
            call.outcome = "failed"
        finally:
            if call in self.calls:
                self.outcomes[call.outcome] += 1
            self.calls.discard(call)
            if not self.calls:
                self._idle.set()

    def _finish(self, call: Call, success: bool, reason: int) -> None:
        """Report the Originate outcome once: OriginateResponse (async) or the sync reply."""
        if call.result is None or call.result.done():
            return
        req = call.request
        channel = call.one.name if success else req.channel
        uniqueid = call.one.uniqueid if success or req.channel_id else UNKNOWN
        call.result.set_result(OriginateResult(success, reason, channel, uniqueid))
        self.stats[f"reason_{reason}"] += 1
        if req.is_async:
            pairs: list[tuple[str, str]] = []
            if req.action_id is not None:
                pairs.append(("ActionID", req.action_id))
            num, name = call.caller
            pairs += [
                ("Response", "Success" if success else "Failure"),
                ("Channel", channel),
                ("Context", req.context),
                ("Exten", req.exten),
                ("Reason", str(reason)),
                ("Uniqueid", uniqueid),
                ("CallerIDNum", num),
                ("CallerIDName", name),
            ]
            if success:
                # manager.c appends the channel's manager variables, named after the channel.
                one = call.one
                pairs += [
                    (f"ChanVariable({one.name})", f"{var}={one.variables.get(var, '')}")
                    for var in one.manager_vars
                ]
            self.emit(event("OriginateResponse", "call,all", pairs))

    def _record(self, call: Call, outcome: str) -> None:
        """Name how the call ended (counted once, when its coroutine returns)."""
        if call.outcome == "in_progress":
            call.outcome = outcome

    # -- waiting ----------------------------------------------------------------------------

    async def _pause(self, call: Call, sim_seconds: float) -> bool:
        """Let `sim_seconds` pass; True if interrupted first (hangup, redirect, debtor left)."""
        if call.interrupt is not None:
            return True
        if sim_seconds <= 0:
            return False  # the network answers at once: no scheduling round-trip
        now = self.clock.now()
        if call.leaves_at <= now + sim_seconds:
            wait = call.leaves_at - now
            far_end = True
        else:
            wait = sim_seconds
            far_end = False
        call.wake.clear()
        try:
            async with asyncio.timeout(self.clock.real(wait)):
                await call.wake.wait()
        except TimeoutError:
            if far_end:
                self.interrupt(call, Interrupt(call.two or call.one, 16, "far_end"))
        return call.interrupt is not None

    # -- the outgoing leg -----------------------------------------------------------------------

    def _set_caller(self, call: Call, ch: Channel) -> None:
        num, name = call.caller
        ch.caller_num, ch.caller_name = num, name
        ch.connected_num, ch.connected_name = num, name

    def _announce_local(self, call: Call, app: str = "AppDial2") -> None:
        """Newchannel ×2, AppDial Newexten, VarSets (reverse on ;1, copied in order to ;2)."""
        one, two = call.one, call.two
        assert two is not None
        self.emit(channel_event("Newchannel", one))
        self.emit(channel_event("Newchannel", two))
        self.emit(newexten_event(one, app, "(Outgoing Line)"))
        user_vars = list(call.request.variables)
        for name, value in reversed(user_vars):
            self.set_variable(one, name, value)
        one.variables.update(user_vars)  # a name given twice: the last value holds
        self._set_caller(call, one)
        self.cosmetic(
            lambda: [channel_event("NewCallerid", one), channel_event("NewConnectedLine", one)]
        )
        for name, value in user_vars:
            self.set_variable(two, name, value)
        self._set_caller(call, two)
        self.cosmetic(
            lambda: [channel_event("NewCallerid", two), channel_event("NewConnectedLine", two)]
        )

    def _local_bridge(self, one: Channel, two: Channel) -> None:
        self.emit(
            event(
                "LocalBridge",
                "call,all",
                one.fields("LocalOne"),
                two.fields("LocalTwo"),
                [("Context", two.context), ("Exten", two.exten), ("LocalOptimization", "Yes")],
            )
        )

    def _dial_event(
        self, name: str, dest: Channel, extra: list[tuple[str, str]], src: Channel | None = None
    ) -> Event:
        groups = [] if src is None else [src.fields()]
        return event(name, "call,all", *groups, dest.fields("Dest"), extra)

    def _new_state(self, ch: Channel, state: State) -> None:
        ch.state = state
        self.emit(channel_event("Newstate", ch))

    async def _originate_flow(self, call: Call) -> None:
        req, one, two = call.request, call.one, call.two
        dial_string = req.channel.partition("/")[2]
        if two is None:
            self.emit(channel_event("Newchannel", one))
            for name, value in reversed(req.variables):
                self.set_variable(one, name, value)
            one.variables.update(req.variables)  # a name given twice: the last value holds
            self._set_caller(call, one)
        else:
            self._announce_local(call)
            if one.context not in self.config.debtor_contexts and one.context != AGENT_CONTEXT:
                # No such context: the ;2 half cannot start; Reason 0, both halves cause 0.
                self._finish(call, False, 0)
                self._record(call, "failed")
                self._gone(two, 0)
                self._gone(one, 0)
                return
            self._local_bridge(one, two)
        self.emit(self._dial_event("DialBegin", one, [("DialString", dial_string)]))
        fate = call.fate
        if fate is None:
            await self._answer_agent_far_end(call)
            return
        if fate.outcome in (
            Outcome.BUSY,
            Outcome.CONGESTION,
            Outcome.UNALLOCATED,
            Outcome.OUT_OF_ORDER,
        ):
            if await self._pause(call, fate.ring_secs):
                await self._cancel_ringing(call)
                return
            self._network_reject(call, fate.outcome)
            return
        self._new_state(one, State.RINGING)
        self.emit(self._dial_event("DialState", one, [("DialStatus", "RINGING")]))
        timeout = req.timeout_ms / 1000.0
        ring = min(fate.ring_secs, timeout)
        if await self._pause(call, ring):
            await self._cancel_ringing(call)
            return
        if fate.ring_secs >= timeout or fate.outcome is Outcome.NO_ANSWER:
            self._ring_timeout(call)
            return
        if fate.outcome is Outcome.REJECTED:
            self._far_end_reject(call, 19)
            return
        await self._answered(call)

    def _network_reject(self, call: Call, outcome: Outcome) -> None:
        one, two = call.one, call.two
        if outcome is Outcome.UNALLOCATED:
            self._far_end_reject(call, 1)
            return
        if outcome is Outcome.OUT_OF_ORDER:
            self._far_end_reject(call, 27)
            return
        busy = outcome is Outcome.BUSY
        reason, cause, status = (5, 17, "BUSY") if busy else (8, 34, "CONGESTION")
        label = "busy" if busy else "congestion"
        if two is None:
            # A trunk channel (PJSIP) refused with 486 / 503: real Asterisk 20 answers the
            # Originate with Reason 0, not 5 / 8 as for a Local pair; the cause tells (17 / 34).
            # ...and says HangupRequest before DialEnd (sim/traces/ami_originate_pjsip_busy.log).
            self.emit(channel_event("HangupRequest", one, [("Cause", str(cause))]))
            self.emit(self._dial_event("DialEnd", one, [("DialStatus", status)]))
            self._finish(call, False, 0)
            self._record(call, label)
            self._gone(one, cause)
            return
        self._new_state(two, State.BUSY)
        self.emit(self._dial_event("DialEnd", one, [("DialStatus", status)]))
        self.emit(channel_event("HangupRequest", two, [("Cause", "0")]))
        self._finish(call, False, reason)
        self._record(call, label)
        self._gone(one, 0)  # fact 22: the ;1 half says cause 0, the ;2 half the real one
        self.emit(channel_event("SoftHangupRequest", two, [("Cause", str(SOFTHANGUP_APPUNLOAD))]))
        self._gone(two, cause)

    def _far_end_reject(self, call: Call, cause: int) -> None:
        """Unallocated number (cause 1), destination out of order (27) or far end giving up
        ringing (19): Reason 0."""
        one, two = call.one, call.two
        label = {1: "unallocated", 27: "out_of_order"}.get(cause, "rejected")
        if two is not None:
            self.emit(
                channel_event("SoftHangupRequest", two, [("Cause", str(SOFTHANGUP_APPUNLOAD))])
            )
        self.emit(channel_event("HangupRequest", one, [("Cause", str(cause))]))
        self._finish(call, False, 0)
        self._record(call, label)
        if two is not None:
            self._gone(two, cause)
        self.emit(self._dial_event("DialEnd", one, [("DialStatus", "NOANSWER")]))
        self._gone(one, cause)

    def _ring_timeout(self, call: Call) -> None:
        """Originate Timeout expired while ringing: Reason 3, cause 19, and no DialEnd (fact 18)."""
        one, two = call.one, call.two
        if two is not None:
            # A trunk channel gets no HangupRequest first (real Asterisk 20, PJSIP).
            self.emit(channel_event("HangupRequest", two, [("Cause", "19")]))
        self._finish(call, False, 3)
        self._record(call, "no_answer")
        if two is not None:
            self.emit(
                channel_event("SoftHangupRequest", two, [("Cause", str(SOFTHANGUP_APPUNLOAD))])
            )
            self._gone(two, 19)
        self._gone(one, 19)

    async def _cancel_ringing(self, call: Call) -> None:
        """The dialer hangs up a call that has not been answered: Reason 0, DialEnd NOANSWER."""
        interrupt = call.interrupt
        assert interrupt is not None
        one, two = call.one, call.two
        cause = interrupt.cause
        target = interrupt.channel
        self.emit(
            channel_event("SoftHangupRequest", target, [("Cause", str(SOFTHANGUP_APPUNLOAD))])
        )
        self.emit(self._dial_event("DialEnd", one, [("DialStatus", "NOANSWER")]))
        self._finish(call, False, 0)
        self._record(call, "cancelled")
        if two is not None:
            other = two if target is one else one
            self.emit(channel_event("HangupRequest", other, [("Cause", str(cause))]))
            self._gone(two, cause)
        self._gone(one, cause)

    async def _answer_agent_far_end(self, call: Call) -> None:
        """An agent's phone (`Local/<agent>@agents`, or any phone originated into dialer-agent
        or dialer-spy) answers, then ;1 runs the Originate's context."""
        one, two = call.one, call.two
        req = call.request
        if two is not None:
            # The lab's [agents] context: Set(AGENT_ID=${EXTEN}) before Answer().
            self.set_variable(two, "AGENT_ID", call.number)
        if await self._pause(call, self.agents.answer_secs):
            await self._cancel_ringing(call)
            return
        flow = {AGENT_LOGIN_CONTEXT: self.nailed.agent_login, SPY_CONTEXT: self.nailed.spy}
        nailed = flow.get(req.context)
        if nailed is None:
            self._finish(call, True, 4)
        if two is not None:
            two.goto(two.context, call.number, 3)
            self._new_state(two, State.UP)
        self._new_state(one, State.UP)
        self.emit(self._dial_event("DialEnd", one, [("DialStatus", "ANSWER")]))
        one.goto(req.context, req.exten, req.priority)
        if nailed is not None:
            # The dialplan runs first: OriginateResponse follows its first step (fact 12).
            await nailed(call)
            return
        await self._park(call)
        self._record(call, "agent_leg")

    async def _answered(self, call: Call) -> None:
        one, two = call.one, call.two
        fate = call.fate
        assert fate is not None
        answered_at = self.clock.now()
        if fate.outcome is Outcome.MACHINE or fate.outcome is Outcome.SHORT_CALL:
            call.leaves_at = answered_at + fate.talk_secs
        else:
            call.leaves_at = answered_at + fate.patience_secs
        self._new_state(one, State.UP)
        self.emit(self._dial_event("DialEnd", one, [("DialStatus", "ANSWER")]))
        if two is not None:
            self._new_state(two, State.UP)
        req = call.request
        one.goto(req.context, req.exten, req.priority)
        if req.context == CONNECT_CONTEXT:
            await self._dialer_connect(call)
        else:
            self._finish(call, True, 4)
            await self._park(call)
            self._record(call, "parked")

    async def _park(self, call: Call) -> None:
        """A channel sent somewhere other than dialer-connect: it waits there until hung up."""
        one = call.one
        self.emit(newexten_event(one, "Wait", "300"))
        while True:
            await self._pause(call, 3600.0)
            interrupt = call.interrupt
            if interrupt is None:
                continue
            if interrupt.kind == "redirect":
                call.interrupt = None
                ctx, ext, prio = interrupt.target
                interrupt.channel.goto(ctx, ext, prio)
                self.emit(newexten_event(interrupt.channel, "Wait", "300"))
                continue
            await self._hangup(call)
            return

    # -- dialer-connect ------------------------------------------------------------------

    def _app(self, ch: Channel, priority: int, app: str, data: str) -> None:
        ch.priority = priority
        self.emit(newexten_event(ch, app, data))

    async def _dialer_connect(self, call: Call) -> None:
        """The product's `dialer-connect,s` (the call-flow contract), run on the ;1 half."""
        one = call.one
        fate = call.fate
        assert fate is not None
        var = one.variables
        self._app(one, 1, "NoOp", f"DIALER-CONNECT {one.name} attempt={var.get('ATTEMPT_ID', '')}")
        self._finish(call, True, 4)  # fact 12: after the dialplan started
        use_amd = var.get("USE_AMD") == "1"
        self._app(one, 2, "GotoIf", f"{int(use_amd)}?amd:agi")
        if use_amd:
            self._app(one, 3, "AMD", "")
            if await self._pause(call, fate.amd_secs):
                await self._hangup(call, "hangup_during_amd")
                return
            self.set_variable(one, "AMDSTATUS", fate.amd_status)
            self.set_variable(one, "AMDCAUSE", fate.amd_cause)
            self._app(one, 4, "NoOp", f"AMD result {fate.amd_status} cause {fate.amd_cause}")
            machine = fate.amd_status == "MACHINE"
            self._app(one, 5, "GotoIf", f"{int(machine)}?machine:agi")
            if machine:
                self._app(one, 30, "Hangup", "")
                await self._hangup_from(call, one, 16, "machine")
                return
        url = var.get("DIALER_AGI", "")
        agi_args = (
            f"connect?attempt={var.get('ATTEMPT_ID', '')}&campaign={var.get('CAMPAIGN_ID', '')}"
        )
        self._app(one, 6, "AGI", f"{url}/{agi_args}")
        status = await self._run_agi(call, f"{url}/{agi_args}" if url else "")
        self.set_variable(one, "AGISTATUS", status)
        if call.interrupt is not None:
            await self._hangup(call, "hangup_during_agi")
            return
        route = var.get("ROUTE", "")
        self._app(one, 7, "NoOp", f"AGI done AGISTATUS={status} ROUTE={route}")
        if route == "dial" and var.get("TARGET_CHANNEL"):
            if var.get("RECORD") == "1":
                self._start_recording(call, 12)
            await self._dial_agent(call, var["TARGET_CHANNEL"])
            return
        if route == "bridge":
            await self.nailed.bridge_debtor(call)
            return
        if route == "abandon":
            await self._abandon(call)
            return
        self._app(one, 30, "Hangup", "")
        await self._hangup_from(call, one, 16, "agi_hangup" if route == "hangup" else "agi_failed")

    def _start_recording(self, call: Call, priority: int) -> None:
        """MixMonitor on the debtor's channel, as asterisk-conf's dialplan runs it: option b, and
        each party in its own file, r() the debtor and t() the agent (`<stem>-in/out.wav`)."""
        one = call.one
        recording = one.variables.get("RECORDING_FILE", "")
        stem = recording.removesuffix(".wav")
        self._app(one, priority, "MixMonitor", f"{recording},br({stem}-in.wav)t({stem}-out.wav)")
        if recording and not recording.startswith("/"):
            # As app_mixmonitor does: relative names live in the monitor folder.
            recording = f"{self.config.monitor_dir}/{recording}"
        self.set_variable(one, "MIXMONITOR_FILENAME", recording)
        self.mixmonitor(one, True)
        if self.recorder is not None:
            # Option b saves audio only while bridged: on ROUTE=bridge ConfBridge follows at
            # once, on ROUTE=dial from the agent's answer (`_dial_agent`).
            self.recorder.start(
                one.uniqueid,
                recording,
                number=call.number,
                attempt=self._attempts[call.number],
                fate=call.fate,
                at=self.clock.now(),
                bridged=one.variables.get("ROUTE") == "bridge",
            )

    async def _abandon(self, call: Call, priority: int = 26, outcome: str = "abandoned") -> None:
        """No agent (or, from dialer-transfer, no supervisor): the safe-harbour message at
        `priority`, then Hangup() at the next one."""
        one = call.one
        self._app(one, priority, "Playback", SAFE_HARBOUR)
        if await self._pause(call, self.config.safe_harbour_secs):
            interrupt = call.interrupt
            if (
                interrupt is not None
                and interrupt.kind in ("far_end", "hangup")
                and interrupt.channel is call.two
            ):
                # The debtor hangs up during the message (ami_nailed_no_agent.log): Playback
                # ends, then ;1 is hung up.
                self._record(call, outcome)
                self._far_end_first(call, interrupt.cause)
                self.set_variable(one, "PLAYBACKSTATUS", "SUCCESS")
                self._then_one(call, interrupt.cause)
                return
            await self._hangup(call, outcome)
            return
        self.set_variable(one, "PLAYBACKSTATUS", "SUCCESS")
        self._app(one, priority + 1, "Hangup", "")
        await self._hangup_from(call, one, 16, outcome)

    async def _run_agi(self, call: Call, url: str) -> str:
        """AGI(): run the FastAGI session, mirror each command on AMI, return AGISTATUS."""
        if not url:
            return "FAILURE"
        view = AgiChannelView(self, call)
        first_id = self._rng.randrange(100_000_000, 900_000_000)

        def on_command(exec_: AgiExec) -> None:
            ids = [("CommandId", str(exec_.command_id)), ("Command", exec_.command)]
            if not exec_.finished:
                self.emit(channel_event("AGIExecStart", call.one, ids, privilege="agi,all"))
                return
            end = [("ResultCode", str(exec_.result_code)), ("Result", exec_.result or "")]
            self.emit(channel_event("AGIExecEnd", call.one, ids, end, privilege="agi,all"))

        task = asyncio.create_task(
            self.agi_runner(url, view, on_command, itertools.count(first_id))
        )
        task.add_done_callback(lambda _: call.wake.set())
        try:
            while not task.done():
                if await self._pause(call, 3600.0):
                    # Hung up: the script gets HANGUP and a moment to finish. Redirected: the
                    # AGI ends at once (an async goto leaves the application).
                    grace = self.config.agi_grace_secs if call.hung_up.is_set() else 0.0
                    done, _ = await asyncio.wait({task}, timeout=grace)
                    if not done:
                        task.cancel()
                    break
        except asyncio.CancelledError:
            task.cancel()
            raise
        if call.hung_up.is_set():
            return "HANGUP"
        if task.cancelled():
            return "FAILURE"
        exc = task.exception()
        if exc is not None:
            log.warning("x FastAGI %s for %s failed: %r", url, call.one.uniqueid, exc)
            return "FAILURE"
        return task.result()

    def _new_agent_leg(self, call: Call, target: str) -> tuple[Channel, Channel | None, str]:
        tech, _, rest = target.partition("/")
        if tech == "Local":
            agent, _, ctx = rest.partition("@")
            base = f"Local/{rest}-{self._next_channel_number():08x}"
            a1 = self._new_channel(
                call, f"{base};1", None, call.one.linkedid, context=ctx, exten=agent
            )
            a2 = self._new_channel(
                call,
                f"{base};2",
                None,
                call.one.linkedid,
                context=ctx,
                exten=agent,
                state=State.RING,
            )
            return a1, a2, rest
        self._trunk_counter += 1
        name = f"{tech}/{rest.partition('@')[0]}-{self._trunk_counter - 1:08x}"
        a1 = self._new_channel(
            call, name, None, call.one.linkedid, context="agents", exten=rest, tech=tech
        )
        return a1, None, rest

    async def _dial_agent(self, call: Call, target: str) -> None:
        one = call.one
        self._app(one, 13, "Dial", f"{target},{int(self.config.agent_dial_timeout_secs)}")
        a1, a2, dial_string = self._new_agent_leg(call, target)
        call.agent_one, call.agent_two = a1, a2
        self.emit(channel_event("Newchannel", a1))
        if a2 is not None:
            self.emit(channel_event("Newchannel", a2))
            a1.goto(a1.context, "s")
            self.emit(newexten_event(a1, "AppDial", "(Outgoing Line)"))
            for ch in (a1, a2):
                ch.connected_num, ch.connected_name = one.caller_num, one.caller_name
                ch.caller_num, ch.caller_name = one.caller_num, one.caller_name
            self._local_bridge(a1, a2)
        self.emit(self._dial_event("DialBegin", a1, [("DialString", dial_string)], src=one))
        if a2 is not None:
            # The lab's [agents] context: Set(AGENT_ID=${EXTEN}) before Answer().
            self.set_variable(a2, "AGENT_ID", a2.exten)
        answer = min(self.agents.answer_secs, self.config.agent_dial_timeout_secs)
        if await self._pause(call, answer):
            await self._hangup(call, "hangup_during_agent_dial")
            return
        if a2 is not None:
            a2.goto(a2.context, "agent", 2)
            self._new_state(a2, State.UP)
        self._new_state(a1, State.UP)
        one.variables["DIALSTATUS"] = "ANSWER"
        self.emit(varset_event(one, "DIALSTATUS", "ANSWER"))
        self.emit(self._dial_event("DialEnd", a1, [("DialStatus", "ANSWER")], src=one))
        bridge = Bridge(str(uuid.UUID(int=self._rng.getrandbits(128), version=4)))
        self.bridges[bridge.uniqueid] = bridge
        call.bridge = bridge
        self.emit(event("BridgeCreate", "call,all", bridge.fields()))
        a1.goto(a1.context, "")
        for ch in (a1, one):
            bridge.channels.append(ch)
            ch.bridge_id = bridge.uniqueid
            self.emit(event("BridgeEnter", "call,all", bridge.fields(), ch.fields()))
        if self.recorder is not None and one.mixmonitor:
            self.recorder.bridged(one.uniqueid, self.clock.now())
        fate = call.fate
        assert fate is not None
        if fate.outcome is Outcome.HUMAN:
            call.leaves_at = self.clock.now() + fate.talk_secs
        self.stats["connected"] += 1
        while True:
            await self._pause(call, 3600.0)
            interrupt = call.interrupt
            if interrupt is None:
                continue
            if interrupt.kind == "redirect":
                await self._redirect(call, interrupt)
                return
            await self._hangup(call, "completed")
            return

    async def _redirect(self, call: Call, interrupt: Interrupt) -> None:
        """AMI Redirect: the channel leaves its bridge or Dial(), the other party is hung up
        (fact 27), and the redirected ;1 half waits in its new context until hung up."""
        moved = interrupt.channel
        ctx, ext, prio = interrupt.target
        moved.goto(ctx, ext, prio)
        agent_legs = [c for c in (call.agent_one, call.agent_two) if c is not None and c.alive]
        if call.bridge is not None:
            self._leave_bridge(call, first=moved)
        elif agent_legs:
            self.emit(
                self._dial_event("DialEnd", agent_legs[0], [("DialStatus", "CANCEL")], call.one)
            )
        others = agent_legs
        if moved in agent_legs:
            others = [c for c in (call.one, call.two) if c is not None and c.alive]
        soft = [("Cause", str(SOFTHANGUP_APPUNLOAD))]
        for ch in others:
            self.emit(channel_event("SoftHangupRequest", ch, soft))
            self._gone(ch, 16)
        self._record(call, "redirected")
        if moved is call.one:
            call.agent_one = call.agent_two = None
            call.interrupt = None
            await self._park(call)
        else:
            for ch in call.channels():
                self._gone(ch, 16)

    def _leave_bridge(self, call: Call, first: Channel) -> None:
        bridge = call.bridge
        if bridge is None:
            return
        order = [first] + [c for c in bridge.channels if c is not first]
        for ch in order:
            if ch in bridge.channels:
                bridge.channels.remove(ch)
                ch.bridge_id = ""
                self.emit(event("BridgeLeave", "call,all", bridge.fields(), ch.fields()))
        self.emit(event("BridgeDestroy", "call,all", bridge.fields()))
        self.bridges.pop(bridge.uniqueid, None)
        call.bridge = None

    # -- hangups -----------------------------------------------------------------------------

    def _far_end_first(self, call: Call, cause: int) -> None:
        """The ;2 half hung up (the far end left): it goes, ;1 is asked to follow."""
        two = call.two
        assert two is not None
        self.emit(channel_event("SoftHangupRequest", two, [("Cause", str(SOFTHANGUP_APPUNLOAD))]))
        self.emit(channel_event("HangupRequest", call.one, [("Cause", str(cause))]))
        self._gone(two, cause)

    def _then_one(self, call: Call, cause: int) -> None:
        """After `_far_end_first` and ;1's application returned: ;1 runs `h` and goes."""
        one = call.one
        self.emit(channel_event("SoftHangupRequest", one, [("Cause", str(SOFTHANGUP_APPUNLOAD))]))
        self._run_h(one, cause)
        self._gone(one, cause)

    def _run_h(self, one: Channel, cause: int) -> None:
        """The `h` extension of the contexts that have one: a log line with the cause."""
        var = one.variables
        if one.context == CONNECT_CONTEXT:
            text = (
                f"DIALER-CONNECT hangup {one.name} cause={cause} "
                f"DIALSTATUS={var.get('DIALSTATUS', '')} "
                f"CONFBRIDGE_RESULT={var.get('CONFBRIDGE_RESULT', '')}"
            )
        elif one.context == TRANSFER_CONTEXT:
            text = (
                f"DIALER-TRANSFER hangup {one.name} cause={cause} "
                f"DIALSTATUS={var.get('DIALSTATUS', '')}"
            )
        elif one.context == AGENT_LOGIN_CONTEXT:
            text = (
                f"DIALER-AGENT hangup {one.name} agent={var.get('AGENT_ID', '')} cause={cause} "
                f"CONFBRIDGE_RESULT={var.get('CONFBRIDGE_RESULT', '')}"
            )
        else:
            return
        one.goto(one.context, "h", 1)
        self.emit(newexten_event(one, "NoOp", text))
        one.priority = 2

    async def _hangup(self, call: Call, outcome: str = "") -> None:
        """Tear the call down in reaction to its interrupt (who hung up decides the order)."""
        interrupt = call.interrupt
        if interrupt is None:
            interrupt = Interrupt(call.one, 16)
        if interrupt.kind == "redirect":
            await self._redirect(call, interrupt)
            return
        await self._hangup_from(call, interrupt.channel, interrupt.cause, outcome)

    async def _hangup_from(self, call: Call, who: Channel, cause: int, outcome: str) -> None:
        one, two, a1, a2 = call.one, call.two, call.agent_one, call.agent_two
        if outcome:
            self._record(call, outcome)
        soft = [("Cause", str(SOFTHANGUP_APPUNLOAD))]
        agent_side = who is a1 or who is a2
        if agent_side:
            assert a1 is not None
            self.emit(channel_event("SoftHangupRequest", who, soft))
            if call.bridge is None:
                # The agent hung up while still being rung: Dial() reports no answer.
                self.emit(self._dial_event("DialEnd", a1, [("DialStatus", "NOANSWER")], one))
            if a2 is not None:
                self.emit(
                    channel_event("HangupRequest", a2 if who is a1 else a1, [("Cause", str(cause))])
                )
            self._leave_bridge(call, first=a1)
            self._gone(a1, cause)
            if a2 is not None:
                self.emit(channel_event("SoftHangupRequest", a2, soft))
                self._gone(a2, cause)
            # Dial() returns; the dialplan's next step is Hangup().
            self._app(one, 14, "Hangup", "")
            who, cause = one, 16
        debtor_side = who is two
        if debtor_side and two is not None:
            self.emit(channel_event("SoftHangupRequest", two, soft))
            self.emit(channel_event("HangupRequest", one, [("Cause", str(cause))]))
            self._gone(two, cause)
        elif two is not None:
            self.emit(channel_event("SoftHangupRequest", one, soft))
            self.emit(channel_event("HangupRequest", two, [("Cause", str(cause))]))
        else:
            self.emit(channel_event("SoftHangupRequest", one, soft))
        if call.bridge is not None:
            self._leave_bridge(call, first=one)
        elif a1 is not None and a1.alive:
            # The agent was still being rung: Dial() gives up on it.
            self.emit(self._dial_event("DialEnd", a1, [("DialStatus", "CANCEL")], src=one))
        if a1 is not None and a1.alive:
            self.emit(channel_event("HangupRequest", a2 or a1, [("Cause", str(cause))]))
            self._gone(a1, cause)
            if debtor_side:
                # Dial() returns on the ;1 half, which is already being hung up.
                self.emit(channel_event("SoftHangupRequest", one, soft))
            if a2 is not None:
                self.emit(channel_event("SoftHangupRequest", a2, soft))
        if a2 is not None and a2.alive:
            self._gone(a2, cause)
        self._run_h(one, cause)
        self._gone(one, cause)
        if two is not None and two.alive:
            self.emit(channel_event("SoftHangupRequest", two, soft))
            self._gone(two, cause)
