"""One call attempt's state machine: AMI events in, effects out; pure and clock-injected.

All channels of one Originate share a Linkedid (the ChannelId we set), agent legs included, so a
call collects every event carrying its Linkedid. Asterisk does not order the events of the two
Local halves (trace fact 21), so the outcome is decided from the facts gathered once the call has
both its OriginateResponse and no live channel left, never from one event.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field

from dialer.ami.events import (
    AmiEvent,
    BridgeEnter,
    DialProgress,
    Hangup,
    Newchannel,
    Newstate,
    OriginateResponse,
    VarSet,
)
from dialer.calls.models import Outcome

log = logging.getLogger(__name__)


class CallState(enum.Enum):
    ORIGINATING = "originating"  # Originate sent, no channel seen yet
    RINGING = "ringing"
    ANSWERED = "answered"  # far end up: AMD / FastAGI routing in progress
    CONNECTED = "connected"  # bridged with an agent
    ENDED = "ended"


# Legal transitions; anything else is a bug or a reordering we must not act on.
_ALLOWED: dict[CallState, frozenset[CallState]] = {
    CallState.ORIGINATING: frozenset({CallState.RINGING, CallState.ANSWERED, CallState.ENDED}),
    CallState.RINGING: frozenset({CallState.ANSWERED, CallState.ENDED}),
    CallState.ANSWERED: frozenset({CallState.CONNECTED, CallState.ENDED}),
    CallState.CONNECTED: frozenset({CallState.ENDED}),
    CallState.ENDED: frozenset(),
}

# Q.850 causes that mean "this number does not exist / cannot be reached as dialled".
_INVALID_CAUSES = frozenset({1, 2, 3, 22, 28})
_NO_ANSWER_CAUSES = frozenset({18, 19})
_BUSY_CAUSES = frozenset({17})
_CONGESTION_CAUSES = frozenset({34, 38, 41, 42, 44})

# OriginateResponse Reason = the last AST_CONTROL_* frame on the outgoing channel.
_REASON_OUTCOME = {3: Outcome.NO_ANSWER, 5: Outcome.BUSY, 8: Outcome.CONGESTION}


@dataclass(frozen=True, slots=True)
class Answered:
    at: float


@dataclass(frozen=True, slots=True)
class Connected:
    at: float
    agent_id: str | None


@dataclass(frozen=True, slots=True)
class Ended:
    at: float
    outcome: Outcome
    abandoned: bool
    hangup_cause: int | None


Effect = Answered | Connected | Ended


@dataclass(slots=True)
class Call:
    """Everything learned about one Originate; `linkedid` is the ChannelId we chose."""

    attempt_id: int
    linkedid: str
    server: str
    dialed_at: float
    abandon_after_s: float = 2.0
    state: CallState = CallState.ORIGINATING
    originate_action_id: str | None = None
    originate_result: str | None = None  # "Success" | "Failure"
    originate_result_at: float | None = None
    reason: int | None = None
    answered_at: float | None = None
    greeting_done_at: float | None = None  # AMD verdict time: the 2 s rule runs from here
    connected_at: float | None = None
    ended_at: float | None = None
    amd_status: str | None = None
    route: str | None = None
    agent_id: str | None = None
    recording_file: str | None = None
    channel: str | None = None  # the debtor-side ;1 channel
    live_channels: set[str] = field(default_factory=set)
    seen_channel: bool = False
    causes: dict[str, int] = field(default_factory=dict)
    outcome: Outcome | None = None
    abandoned: bool = False
    # Rebuilt from CoreShowChannels after events were lost: its OriginateResponse may never
    # come, so it ends when its channels are gone.
    adopted: bool = False

    def _set_state(self, new: CallState) -> bool:
        if new is self.state:
            return False
        if new not in _ALLOWED[self.state]:
            log.debug("x call %s: ignored %s -> %s", self.attempt_id, self.state.value, new.value)
            return False
        log.debug("= call %s: %s -> %s", self.attempt_id, self.state.value, new.value)
        self.state = new
        return True

    @property
    def in_flight(self) -> bool:
        """Counts against pacing: dialled and not yet with an agent or ended."""
        return self.state in (CallState.ORIGINATING, CallState.RINGING, CallState.ANSWERED)


def apply_event(call: Call, event: AmiEvent, now: float) -> list[Effect]:
    """Apply one typed AMI event belonging to `call`; return what the owner must act on."""
    if call.state is CallState.ENDED:
        return []
    if isinstance(event, Newchannel):
        effects = _on_newchannel(call, event)
    elif isinstance(event, Newstate):
        effects = _on_newstate(call, event, now)
    elif isinstance(event, DialProgress):
        effects = _on_dial_progress(call, event, now)
    elif isinstance(event, OriginateResponse):
        effects = _on_originate_response(call, event, now)
    elif isinstance(event, VarSet):
        effects = _on_varset(call, event, now)
    elif isinstance(event, BridgeEnter):
        effects = _on_bridge_enter(call, event, now)
    else:
        effects = _on_hangup(call, event)
    return effects + _maybe_end(call, now)


def _is_debtor_leg(call: Call, channel: str) -> bool:
    return call.channel is not None and channel == call.channel


def _on_newchannel(call: Call, event: Newchannel) -> list[Effect]:
    call.live_channels.add(event.channel)
    call.seen_channel = True
    if call.channel is None and event.uniqueid == call.linkedid:
        call.channel = event.channel
    return []


def _on_newstate(call: Call, event: Newstate, now: float) -> list[Effect]:
    if not _is_debtor_leg(call, event.channel):
        return []
    if event.state_desc == "Ringing":
        call._set_state(CallState.RINGING)
    elif event.state_desc == "Up":
        return _answer(call, now)
    return []


def _answer(call: Call, now: float) -> list[Effect]:
    if call._set_state(CallState.ANSWERED):
        call.answered_at = now
        return [Answered(now)]
    return []


def _on_dial_progress(call: Call, event: DialProgress, now: float) -> list[Effect]:
    # Only the Originate's own Dial* events (no source channel, fact 17) say how the debtor leg does.
    if event.has_source or event.dest_uniqueid != call.linkedid:
        return []
    if event.status == "RINGING":
        call._set_state(CallState.RINGING)
    elif event.status == "ANSWER":
        return _answer(call, now)
    return []


def _on_originate_response(call: Call, event: OriginateResponse, now: float) -> list[Effect]:
    call.originate_result = "Success" if event.success else "Failure"
    call.originate_result_at = now
    call.reason = event.reason
    if event.success:
        if call.channel is None:
            call.channel = event.channel
        return _answer(call, now)
    return []


def _on_varset(call: Call, event: VarSet, now: float) -> list[Effect]:
    if not _is_debtor_leg(call, event.channel):
        return []
    if event.variable == "AMDSTATUS":
        call.amd_status = event.value
        call.greeting_done_at = now
    elif event.variable == "ROUTE":
        call.route = event.value
    elif event.variable == "TARGET_AGENT":
        call.agent_id = event.value or None
    elif event.variable == "RECORDING_FILE":
        call.recording_file = event.value or None
    elif event.variable == "MIXMONITOR_FILENAME" and event.value:
        # MixMonitor's own word for where it writes: absolute even when the dialer gave a path
        # relative to Asterisk's monitor folder.
        call.recording_file = event.value
    return []


def _on_bridge_enter(call: Call, event: BridgeEnter, now: float) -> list[Effect]:
    # The debtor leg entering a bridge with someone already in it is the moment of connection.
    if not _is_debtor_leg(call, event.channel) or event.channels_in_bridge < 2:
        return []
    if call.state in (CallState.ORIGINATING, CallState.RINGING):
        _answer(call, now)
    if call._set_state(CallState.CONNECTED):
        call.connected_at = now
        return [Connected(now, call.agent_id)]
    return []


def _on_hangup(call: Call, event: Hangup) -> list[Effect]:
    call.live_channels.discard(event.channel)
    call.causes[event.channel] = event.cause
    return []


def _maybe_end(call: Call, now: float) -> list[Effect]:
    if call.live_channels or (call.originate_result is None and not call.adopted):
        return []
    if call.originate_result is not None and not call.seen_channel:
        # Channel events still to come: Asterisk 20 sends OriginateResponse from the dialling
        # thread but channel events through its message bus, so a call that fails at once can
        # report its failure before its channels (seen on the real one: unallocated, congestion).
        # The owner ends it after a grace without them (`failed_without_channels`).
        return []
    return [end_call(call, now, classify(call))]


# How long a failed Originate waits for channel events that may trail its OriginateResponse
# (real seconds: Asterisk's own lag, a few milliseconds, not scaled by a simulator).
CHANNEL_EVENTS_GRACE_S = 1.0


def failed_without_channels(call: Call, now: float) -> Ended | None:
    """The end of a failed Originate whose channels never showed within the grace (a channel
    that could not be created at all, e.g. an unknown technology)."""
    if (
        call.state is CallState.ENDED
        or call.originate_result != "Failure"
        or call.seen_channel
        or call.originate_result_at is None
        or now - call.originate_result_at < CHANNEL_EVENTS_GRACE_S
    ):
        return None
    return end_call(call, now, classify(call))


def end_call(call: Call, now: float, outcome: Outcome) -> Ended:
    """Close the call with `outcome` (also used by reconciliation after a drop or a crash)."""
    call._set_state(CallState.ENDED)
    call.ended_at = now
    call.outcome = outcome
    call.abandoned = outcome is Outcome.ANSWERED and _was_abandoned(call)
    return Ended(now, outcome, call.abandoned, _main_cause(call))


def _was_abandoned(call: Call) -> bool:
    """A live answer not connected to an agent within the window after the greeting."""
    start = call.greeting_done_at or call.answered_at
    if start is None:
        return False
    if call.connected_at is None:
        # A person who hung up inside the window was not abandoned by us.
        end = call.ended_at if call.ended_at is not None else start
        return end - start > call.abandon_after_s
    return call.connected_at - start > call.abandon_after_s


def _main_cause(call: Call) -> int | None:
    """The meaningful Q.850 cause: the ;1 half says 0 on busy/congestion (fact 22)."""
    nonzero = [c for c in call.causes.values() if c]
    return nonzero[0] if nonzero else (next(iter(call.causes.values()), None))


def classify(call: Call) -> Outcome:
    """Network outcome from what the call has gathered. Reason first, causes second (fact 22)."""
    if call.originate_result == "Success" or call.answered_at is not None:
        if call.amd_status == "MACHINE":
            return Outcome.MACHINE
        return Outcome.ANSWERED
    if call.reason in _REASON_OUTCOME:
        return _REASON_OUTCOME[call.reason]
    causes = set(call.causes.values())
    if causes & _INVALID_CAUSES:
        return Outcome.INVALID_NUMBER
    if causes & _BUSY_CAUSES:
        return Outcome.BUSY
    if causes & _CONGESTION_CAUSES:
        return Outcome.CONGESTION
    if causes & _NO_ANSWER_CAUSES:
        return Outcome.NO_ANSWER
    # An adopted call whose end we only partly saw: say so rather than guess.
    return Outcome.UNKNOWN if call.adopted else Outcome.FAILED
