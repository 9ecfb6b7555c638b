"""The calls in flight on one dialer node, and the routing of each AMI event to its call."""

from __future__ import annotations

from collections.abc import Iterator

from dialer.ami.events import typed_event
from dialer.ami.protocol import Message
from dialer.calls.state import Call, Effect, apply_event


class CallTable:
    """Finds the call an event belongs to: by Linkedid, DestLinkedid, or the Originate's ActionID.

    Events of channels that are not ours (other dialers, inbound calls) cost one dict miss.
    """

    def __init__(self) -> None:
        self._by_linkedid: dict[str, Call] = {}
        self._by_action_id: dict[str, Call] = {}
        # Calls originated without a ChannelId, waiting for their first channel to show up.
        self._unbound: dict[str, list[Call]] = {}

    def add(self, call: Call, dial_string: str | None = None) -> None:
        """Track `call`. With `dial_string` and no ChannelId, the Linkedid is learnt from the
        first `Newchannel` whose name is that dial string plus Asterisk's `-<hex>;1` suffix."""
        if dial_string is None:
            self._by_linkedid[call.linkedid] = call
        else:
            self._unbound.setdefault(dial_string, []).append(call)
        if call.originate_action_id is not None:
            self._by_action_id[call.originate_action_id] = call

    def _bind_new_channel(self, fields: dict[str, str]) -> Call | None:
        channel = fields.get("Channel", "")
        uniqueid = fields.get("Uniqueid")
        if not self._unbound or uniqueid is None or uniqueid != fields.get("Linkedid"):
            return None
        waiting = self._unbound.get(channel.rpartition("-")[0])
        if not waiting:
            return None
        call = waiting.pop(0)
        call.linkedid = uniqueid
        self._by_linkedid[uniqueid] = call
        return call

    def bind_action(self, call: Call, action_id: str) -> None:
        call.originate_action_id = action_id
        self._by_action_id[action_id] = call

    def remove(self, call: Call) -> None:
        if self._by_linkedid.get(call.linkedid) is call:
            del self._by_linkedid[call.linkedid]
        for waiting in self._unbound.values():
            if call in waiting:
                waiting.remove(call)
        if call.originate_action_id is not None:
            self._by_action_id.pop(call.originate_action_id, None)

    def find(self, msg: Message) -> Call | None:
        fields = msg.fields
        linkedid = fields.get("Linkedid") or fields.get("DestLinkedid")
        if linkedid is not None:
            call = self._by_linkedid.get(linkedid)
            if call is not None:
                return call
            if fields.get("Event") == "Newchannel":
                return self._bind_new_channel(fields)
        if fields.get("Event") == "OriginateResponse":
            # On failure Uniqueid is our ChannelId (or <unknown> without one): try both keys.
            call = self._by_linkedid.get(fields.get("Uniqueid", ""))
            if call is None:
                call = self._by_action_id.get(fields.get("ActionID", ""))
            return call
        return None

    def dispatch(self, msg: Message, now: float) -> tuple[Call, list[Effect]] | None:
        """Apply `msg` to its call; None when the event is not about one of our calls."""
        call = self.find(msg)
        if call is None:
            return None
        event = typed_event(msg)
        if event is None:
            return call, []
        return call, apply_event(call, event, now)

    def __len__(self) -> int:
        return len(self._by_linkedid)

    def __iter__(self) -> Iterator[Call]:
        return iter(list(self._by_linkedid.values()))

    def get(self, linkedid: str) -> Call | None:
        return self._by_linkedid.get(linkedid)
