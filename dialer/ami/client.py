"""Sans-I/O AMI client core: ActionIDs out, replies matched back to them, event lists collected.

The core never re-sends anything. When the connection drops, `connection_lost()` hands back every
pending action so the caller can fail it; an Originate in that list may or may not have reached
Asterisk, and only the caller (who can ask Asterisk with CoreShowChannels) may decide what to do.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

from dialer.ami.protocol import AmiParser, Banner, FrameError, Message, encode_action


class ActionIds:
    """ActionID generator: a prefix unique per connection plus a counter (deterministic in tests)."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}-{next(self._counter)}"


@dataclass(frozen=True, slots=True)
class Reply:
    """The outcome of one action: its Response message, and for list actions the items."""

    action: str
    action_id: str
    response: Message
    items: tuple[Message, ...] = ()

    @property
    def ok(self) -> bool:
        return self.response.response in ("Success", "Goodbye", "Follows")

    @property
    def message(self) -> str:
        return self.response.get("Message") or ""


@dataclass(slots=True)
class _Pending:
    action: str
    expects_list: bool
    response: Message | None = None
    items: list[Message] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ReplyReady:
    reply: Reply


@dataclass(frozen=True, slots=True)
class EventReceived:
    message: Message


@dataclass(frozen=True, slots=True)
class BannerReceived:
    version: str


@dataclass(frozen=True, slots=True)
class BadFrame:
    reason: str
    raw: str


ClientOutput = ReplyReady | EventReceived | BannerReceived | BadFrame


class AmiClientCore:
    """Feed bytes in, get replies/events out; build action bytes with fresh ActionIDs."""

    def __init__(self, action_ids: ActionIds) -> None:
        self._ids = action_ids
        self._parser = AmiParser()
        self._pending: dict[str, _Pending] = {}

    def build_action(
        self, action: str, fields: Iterable[tuple[str, str]] = (), *, expects_list: bool = False
    ) -> tuple[str, bytes]:
        """Return (ActionID, bytes to send) and remember the action until its reply completes."""
        action_id = self._ids.next()
        data = encode_action(action, action_id, fields)
        self._pending[action_id] = _Pending(action, expects_list)
        return action_id, data

    def forget(self, action_id: str) -> None:
        """Stop waiting for a reply (its caller timed out); a late reply becomes an event."""
        self._pending.pop(action_id, None)

    def receive_data(self, data: bytes) -> list[ClientOutput]:
        out: list[ClientOutput] = []
        for frame in self._parser.feed(data):
            if isinstance(frame, Message):
                self._route(frame, out)
            elif isinstance(frame, Banner):
                out.append(BannerReceived(frame.version))
            else:
                assert isinstance(frame, FrameError)
                out.append(BadFrame(frame.reason, frame.raw))
        return out

    def _route(self, msg: Message, out: list[ClientOutput]) -> None:
        fields = msg.fields
        # OriginateResponse is an event that also has a `Response:` field: `Event` decides.
        is_event = "Event" in fields
        action_id = fields.get("ActionID")
        pending = self._pending.get(action_id) if action_id is not None else None
        if pending is None:
            if is_event:
                out.append(EventReceived(msg))
            # A Response nobody waits for (timed-out caller) is dropped: it is not an event.
            return
        assert action_id is not None
        if not is_event:
            if pending.response is None:
                pending.response = msg
                # Only a successful list action announces items ("EventList: start").
                if not (pending.expects_list and fields.get("EventList") == "start"):
                    self._complete(action_id, pending, out)
            return
        if pending.expects_list and pending.response is not None:
            if fields.get("EventList") == "Complete":
                self._complete(action_id, pending, out)
            else:
                pending.items.append(msg)
            return
        # An event that merely carries our ActionID (OriginateResponse) is an ordinary event.
        out.append(EventReceived(msg))

    def _complete(self, action_id: str, pending: _Pending, out: list[ClientOutput]) -> None:
        del self._pending[action_id]
        assert pending.response is not None
        out.append(
            ReplyReady(Reply(pending.action, action_id, pending.response, tuple(pending.items)))
        )

    def connection_lost(self) -> list[tuple[str, str]]:
        """Forget all pending actions; return (ActionID, action) for each so callers can fail them.

        Bytes of a frame cut by the drop are discarded: they belong to the dead connection.
        """
        lost = [(action_id, p.action) for action_id, p in self._pending.items()]
        self._pending.clear()
        self._parser = AmiParser()
        return lost

    @property
    def pending_count(self) -> int:
        return len(self._pending)
