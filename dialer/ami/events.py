"""Typed AMI events: the handful the dialer acts on, built from raw messages by one registry.

Field names and meanings as real Asterisk 20 sends them (see sim/traces). Events the
dialer does not act on stay raw `Message`s and are skipped cheaply.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dialer.ami.protocol import Message


def _int(value: str | None, default: int = 0) -> int:
    try:
        return int(value) if value else default
    except ValueError:
        return default


@dataclass(frozen=True, slots=True)
class Newchannel:
    channel: str
    uniqueid: str
    linkedid: str
    state_desc: str


@dataclass(frozen=True, slots=True)
class Newstate:
    channel: str
    linkedid: str
    state_desc: str  # Down, Ring, Ringing, Up, Busy


@dataclass(frozen=True, slots=True)
class DialProgress:
    """DialState or DialEnd. The Originate's own have no source `Channel` (trace fact 17)."""

    final: bool  # True for DialEnd
    has_source: bool
    dest_uniqueid: str
    dest_linkedid: str
    status: str  # RINGING, ANSWER, BUSY, NOANSWER, CONGESTION, CANCEL...


@dataclass(frozen=True, slots=True)
class OriginateResponse:
    action_id: str
    success: bool
    reason: int | None  # last AST_CONTROL_* frame: 3 ringing, 4 answer, 5 busy, 8 congestion
    channel: str  # the real channel on success, the requested dial string on failure
    uniqueid: str  # `<unknown>` on failure unless ChannelId was given


@dataclass(frozen=True, slots=True)
class VarSet:
    channel: str
    linkedid: str
    variable: str
    value: str


@dataclass(frozen=True, slots=True)
class BridgeEnter:
    channel: str
    linkedid: str
    bridge_id: str
    channels_in_bridge: int


@dataclass(frozen=True, slots=True)
class Hangup:
    channel: str
    linkedid: str
    cause: int  # Q.850; the ;1 half of a Local call says 0 on busy/congestion (fact 22)


AmiEvent = Newchannel | Newstate | DialProgress | OriginateResponse | VarSet | BridgeEnter | Hangup


def _newchannel(f: dict[str, str]) -> Newchannel:
    return Newchannel(
        f.get("Channel", ""),
        f.get("Uniqueid", ""),
        f.get("Linkedid", ""),
        f.get("ChannelStateDesc", ""),
    )


def _newstate(f: dict[str, str]) -> Newstate:
    return Newstate(f.get("Channel", ""), f.get("Linkedid", ""), f.get("ChannelStateDesc", ""))


def _dial(final: bool) -> Callable[[dict[str, str]], DialProgress]:
    def build(f: dict[str, str]) -> DialProgress:
        return DialProgress(
            final,
            "Channel" in f,
            f.get("DestUniqueid", ""),
            f.get("DestLinkedid", ""),
            f.get("DialStatus", ""),
        )

    return build


def _originate_response(f: dict[str, str]) -> OriginateResponse:
    reason = f.get("Reason")
    return OriginateResponse(
        f.get("ActionID", ""),
        f.get("Response") == "Success",
        _int(reason) if reason and reason.isdigit() else None,
        f.get("Channel", ""),
        f.get("Uniqueid", ""),
    )


def _varset(f: dict[str, str]) -> VarSet:
    return VarSet(
        f.get("Channel", ""), f.get("Linkedid", ""), f.get("Variable", ""), f.get("Value", "")
    )


def _bridge_enter(f: dict[str, str]) -> BridgeEnter:
    return BridgeEnter(
        f.get("Channel", ""),
        f.get("Linkedid", ""),
        f.get("BridgeUniqueid", ""),
        _int(f.get("BridgeNumChannels")),
    )


def _hangup(f: dict[str, str]) -> Hangup:
    return Hangup(f.get("Channel", ""), f.get("Linkedid", ""), _int(f.get("Cause")))


_BUILDERS: dict[str, Callable[[dict[str, str]], AmiEvent]] = {
    "Newchannel": _newchannel,
    "Newstate": _newstate,
    "DialState": _dial(False),
    "DialEnd": _dial(True),
    "OriginateResponse": _originate_response,
    "VarSet": _varset,
    "BridgeEnter": _bridge_enter,
    "Hangup": _hangup,
}


def typed_event(msg: Message) -> AmiEvent | None:
    """The typed form of `msg`, or None for events the dialer does not act on."""
    builder = _BUILDERS.get(msg.fields.get("Event", ""))
    return builder(msg.fields) if builder is not None else None
