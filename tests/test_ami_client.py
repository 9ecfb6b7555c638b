"""AMI client core: replies matched by ActionID, event lists, events that look like replies."""

from __future__ import annotations

from dialer.ami.client import ActionIds, AmiClientCore, EventReceived, ReplyReady
from dialer.ami.protocol import encode


def _core() -> AmiClientCore:
    return AmiClientCore(ActionIds("t"))


def test_originate_response_after_the_reply_is_delivered_as_an_event() -> None:
    core = _core()
    action_id, _ = core.build_action("Originate", [("Channel", "Local/1@x"), ("Async", "true")])
    out = core.receive_data(
        encode(
            {
                "Response": "Success",
                "ActionID": action_id,
                "Message": "Originate successfully queued",
            }
        )
    )
    assert isinstance(out[0], ReplyReady) and out[0].reply.ok
    event = {
        "Event": "OriginateResponse",
        "Privilege": "call,all",
        "ActionID": action_id,
        "Response": "Failure",
        "Reason": "5",
    }
    [item] = core.receive_data(encode(event))
    assert isinstance(item, EventReceived)
    assert item.message.get("Reason") == "5"


def test_originate_response_before_the_reply_does_not_complete_the_action() -> None:
    core = _core()
    action_id, _ = core.build_action("Originate")
    event = {
        "Event": "OriginateResponse",
        "ActionID": action_id,
        "Response": "Failure",
        "Reason": "8",
    }
    [item] = core.receive_data(encode(event))
    assert isinstance(item, EventReceived)
    [reply] = core.receive_data(encode({"Response": "Success", "ActionID": action_id}))
    assert isinstance(reply, ReplyReady) and reply.reply.ok


def test_event_list_collects_items_until_complete() -> None:
    core = _core()
    action_id, _ = core.build_action("CoreShowChannels", expects_list=True)
    data = (
        encode(
            {
                "Response": "Success",
                "ActionID": action_id,
                "EventList": "start",
                "Message": "Channels will follow",
            }
        )
        + encode(
            {
                "Event": "CoreShowChannel",
                "ActionID": action_id,
                "Channel": "Local/1@x-00000000;1",
                "Linkedid": "a",
            }
        )
        + encode({"Event": "Newstate", "Channel": "PJSIP/other-00000001"})
        + encode(
            {
                "Event": "CoreShowChannelsComplete",
                "ActionID": action_id,
                "EventList": "Complete",
                "ListItems": "1",
            }
        )
    )
    out = core.receive_data(data)
    assert [type(o) for o in out] == [EventReceived, ReplyReady]
    reply = out[1]
    assert isinstance(reply, ReplyReady)
    assert [i.get("Linkedid") for i in reply.reply.items] == ["a"]


def test_failed_list_action_completes_at_once() -> None:
    core = _core()
    action_id, _ = core.build_action("Status", expects_list=True)
    [reply] = core.receive_data(
        encode({"Response": "Error", "ActionID": action_id, "Message": "No such channel"})
    )
    assert (
        isinstance(reply, ReplyReady)
        and not reply.reply.ok
        and reply.reply.message == "No such channel"
    )


def test_connection_lost_hands_back_every_pending_action_and_never_resends() -> None:
    core = _core()
    first, _ = core.build_action("Originate")
    second, _ = core.build_action("Ping")
    assert core.connection_lost() == [(first, "Originate"), (second, "Ping")]
    assert core.pending_count == 0
    # A late reply for a forgotten action is dropped, not mistaken for an event.
    assert core.receive_data(encode({"Response": "Success", "ActionID": first})) == []
