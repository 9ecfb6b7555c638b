"""The call state machine classifies real Asterisk 20.20.1 calls the way a collector would."""

from __future__ import annotations

from pathlib import Path

import pytest

from dialer.ami.protocol import Message
from dialer.ami.traces import read_trace
from dialer.calls.models import Outcome
from dialer.calls.state import (
    CHANNEL_EVENTS_GRACE_S,
    Call,
    CallState,
    Ended,
    failed_without_channels,
)
from dialer.calls.table import CallTable


def replay(path: Path, abandon_after_s: float = 2.0) -> dict[str, Call]:
    """Originate every call of a capture through a CallTable; return calls by ActionID."""
    table = CallTable()
    calls: dict[str, Call] = {}
    ended: dict[str, Ended] = {}
    for item in read_trace(path):
        msg = item.message
        if item.direction == "C>S":
            if msg.action == "Originate":
                channel_id = msg.get("ChannelId")
                call = Call(
                    attempt_id=len(calls) + 1,
                    linkedid=channel_id or "",
                    server="ast1",
                    dialed_at=item.at,
                    abandon_after_s=abandon_after_s,
                    originate_action_id=msg.action_id,
                )
                table.add(call, None if channel_id else msg.get("Channel"))
                calls[msg.action_id or ""] = call
            continue
        result = table.dispatch(msg, item.at)
        if result is None:
            continue
        call, effects = result
        for effect in effects:
            if isinstance(effect, Ended):
                ended[call.originate_action_id or ""] = effect
                table.remove(call)
    return calls


def _one(traces_dir: Path, name: str) -> Call:
    [call] = replay(traces_dir / name).values()
    return call


def test_answered_call_is_connected_to_the_agent_within_the_window(traces_dir: Path) -> None:
    call = _one(traces_dir, "ami_originate_answered.log")
    assert call.state is CallState.ENDED
    assert call.outcome is Outcome.ANSWERED
    assert call.connected_at is not None and call.answered_at is not None
    assert call.connected_at - call.answered_at == pytest.approx(1.06, abs=0.01)
    assert not call.abandoned
    assert call.channel == "Local/15550001@debtor-sim-00000000;1"


def test_busy_is_classified_from_the_reason_not_the_first_half_cause(traces_dir: Path) -> None:
    for name in ("ami_originate_busy.log", "ami_originate_busy_channelid.log"):
        call = _one(traces_dir, name)
        assert call.outcome is Outcome.BUSY, name
        assert call.reason == 5
        assert 0 in call.causes.values() and 17 in call.causes.values()


def test_ring_timeout_is_a_no_answer_even_without_dial_end(traces_dir: Path) -> None:
    call = _one(traces_dir, "ami_originate_noanswer.log")
    assert call.outcome is Outcome.NO_ANSWER
    assert call.ended_at is not None and call.ended_at - call.dialed_at == pytest.approx(
        15.44, abs=0.01
    )


def test_human_detected_by_amd_counts_from_the_end_of_the_greeting(traces_dir: Path) -> None:
    call = _one(traces_dir, "ami_originate_human_amd.log")
    assert call.outcome is Outcome.ANSWERED
    assert call.amd_status == "HUMAN"
    assert call.greeting_done_at is not None and call.answered_at is not None
    assert call.greeting_done_at > call.answered_at
    assert call.connected_at is not None and not call.abandoned


def test_batch_of_six_originates_gets_every_outcome_right(traces_dir: Path) -> None:
    calls = replay(traces_dir / "ami_originate_batch.log")
    outcomes = {action_id[-4:]: call.outcome for action_id, call in calls.items()}
    assert outcomes == {
        "L101": Outcome.ANSWERED,
        "L102": Outcome.BUSY,
        "L103": Outcome.NO_ANSWER,
        # Ending 4 is an answering machine, but without AMD the dialer hears a live answer.
        "L104": Outcome.ANSWERED,
        "L105": Outcome.CONGESTION,
        "L100": Outcome.INVALID_NUMBER,
    }
    assert all(c.state is CallState.ENDED for c in calls.values())


def test_queue_routed_call_is_connected_when_the_bridge_forms(traces_dir: Path) -> None:
    call = _one(traces_dir, "ami_originate_queue.log")
    assert call.outcome is Outcome.ANSWERED and call.connected_at is not None


def test_call_the_dialer_hangs_up_from_agi_is_answered_and_never_connected(
    traces_dir: Path,
) -> None:
    call = _one(traces_dir, "ami_originate_agi_hangup.log")
    assert call.outcome is Outcome.ANSWERED
    assert call.connected_at is None
    assert call.route == "hangup"


def test_live_answer_left_waiting_past_the_window_is_abandoned() -> None:
    call = Call(attempt_id=1, linkedid="n1-1", server="a", dialed_at=0.0, abandon_after_s=2.0)
    table = CallTable()
    table.add(call)
    ch = "Local/1555@debtor-sim-00000001;1"
    events = [
        (0.0, {"Event": "Newchannel", "Channel": ch, "Uniqueid": "n1-1", "Linkedid": "n1-1"}),
        (3.0, {"Event": "Newstate", "Channel": ch, "ChannelStateDesc": "Up", "Linkedid": "n1-1"}),
        (
            3.0,
            {
                "Event": "OriginateResponse",
                "Response": "Success",
                "Uniqueid": "n1-1",
                "Reason": "4",
            },
        ),
        (
            5.5,
            {
                "Event": "VarSet",
                "Channel": ch,
                "Variable": "ROUTE",
                "Value": "abandon",
                "Linkedid": "n1-1",
            },
        ),
        (9.0, {"Event": "Hangup", "Channel": ch, "Cause": "16", "Linkedid": "n1-1"}),
    ]
    for at, fields in events:
        table.dispatch(Message(fields), at)
    assert call.outcome is Outcome.ANSWERED
    assert call.abandoned
    assert call.route == "abandon"


def test_events_of_other_calls_are_ignored() -> None:
    table = CallTable()
    assert table.dispatch(Message({"Event": "Hangup", "Linkedid": "someone-else"}), 1.0) is None


def test_call_adopted_after_lost_events_is_not_called_answered_unless_it_was() -> None:
    """Rebuilt from CoreShowChannels while ringing, then rang out: no answer, not 'answered'."""
    from dialer.calls.state import CallState

    call = Call(attempt_id=7, linkedid="n1-7", server="a", dialed_at=0.0, adopted=True)
    ch1, ch2 = "Local/1555@debtor-sim-00000009;1", "Local/1555@debtor-sim-00000009;2"
    call.channel = ch1
    call.live_channels = {ch1, ch2}
    call.seen_channel = True
    table = CallTable()
    table.add(call)
    for channel in (ch2, ch1):
        table.dispatch(
            Message({"Event": "Hangup", "Channel": channel, "Cause": "19", "Linkedid": "n1-7"}),
            30.0,
        )
    assert call.state is CallState.ENDED
    assert call.outcome is Outcome.NO_ANSWER


def _reordered(path: Path) -> list[tuple[str, float, Message]]:
    """The capture with its OriginateResponse moved before the call's first channel event, as
    a real Asterisk 20 sometimes delivers them (the response comes from the dialling thread,
    channel events through the message bus)."""
    items = [(i.direction, i.at, i.message) for i in read_trace(path)]
    response = next(x for x in items if x[2].get("Event") == "OriginateResponse")
    items.remove(response)
    first_channel = next(
        n for n, x in enumerate(items) if x[0] == "S>C" and x[2].get("Event") == "Newchannel"
    )
    items.insert(first_channel, response)
    return items


def test_failure_reported_before_its_channels_still_gets_its_cause(traces_dir: Path) -> None:
    table = CallTable()
    call: Call | None = None
    ended: list[Ended] = []
    for direction, at, msg in _reordered(traces_dir / "ami_originate_busy_channelid.log"):
        if direction == "C>S":
            if msg.action == "Originate":
                call = Call(1, msg.get("ChannelId") or "", "ast1", at)
                call.originate_action_id = msg.action_id
                table.add(call)
            continue
        result = table.dispatch(msg, at)
        if result is not None:
            ended += [e for e in result[1] if isinstance(e, Ended)]
            if msg.get("Event") == "OriginateResponse":
                assert ended == [], "a failure must wait for its channels' causes"
    assert call is not None and len(ended) == 1
    assert ended[0].outcome is Outcome.BUSY
    assert ended[0].hangup_cause == 17


def test_failure_whose_channels_never_show_ends_after_the_grace() -> None:
    call = Call(1, "dlr-x", "ast1", 0.0)
    table = CallTable()
    table.add(call)
    failure = Message(
        {
            "Event": "OriginateResponse",
            "Response": "Failure",
            "Channel": "Bogus/123",
            "Reason": "0",
            "Uniqueid": "dlr-x",
        }
    )
    result = table.dispatch(failure, 10.0)
    assert result is not None and result[1] == []
    assert failed_without_channels(call, 10.0 + CHANNEL_EVENTS_GRACE_S / 2) is None
    late = failed_without_channels(call, 10.0 + CHANNEL_EVENTS_GRACE_S)
    assert late is not None and late.outcome is Outcome.FAILED
