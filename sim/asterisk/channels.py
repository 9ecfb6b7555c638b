"""Channels and bridges as Asterisk 20 shows them on AMI: states, causes and the field groups."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

Fields = list[tuple[str, str]]
# One AMI event, as ordered (key, value) pairs; encoded once and written to every session.
Event = tuple[tuple[str, str], ...]


class State(enum.IntEnum):
    """`ChannelState` numbers (AST_STATE_*) with the `ChannelStateDesc` Asterisk prints."""

    DOWN = 0
    RING = 4
    RINGING = 5
    UP = 6
    BUSY = 7

    @property
    def desc(self) -> str:
        return {0: "Down", 4: "Ring", 5: "Ringing", 6: "Up", 7: "Busy"}[self.value]


CAUSE_TEXT = {
    0: "Unknown",
    1: "Unallocated (unassigned) number",
    16: "Normal Clearing",
    17: "User busy",
    18: "No user responding",
    19: "User alerting, no answer",
    21: "Call Rejected",
    34: "Circuit/channel congestion",
}

# AST_SOFTHANGUP_* flags as seen in SoftHangupRequest (not Q.850 causes).
SOFTHANGUP_APPUNLOAD = 16
SOFTHANGUP_EXPLICIT = 32

UNKNOWN = "<unknown>"


@dataclass(slots=True, eq=False)
class Channel:
    """One Asterisk channel. Mutable: its state, dialplan position and variables change."""

    name: str
    uniqueid: str
    linkedid: str
    context: str
    exten: str
    state: State
    created: float  # simulated seconds, for Duration/Seconds
    tech: str = "Local"
    priority: int = 1
    caller_num: str = UNKNOWN
    caller_name: str = UNKNOWN
    connected_num: str = UNKNOWN
    connected_name: str = UNKNOWN
    application: str = ""
    app_data: str = ""
    bridge_id: str = ""
    variables: dict[str, str] = field(default_factory=dict)
    mixmonitor: bool = False
    alive: bool = True
    # manager.conf `channelvars`: shown as `ChanVariable: NAME=value` in every snapshot.
    manager_vars: tuple[str, ...] = ()

    def fields(self, prefix: str = "") -> Fields:
        """The standard channel snapshot group (`Channel`…`Linkedid`, then one
        `ChanVariable` per manager.conf channelvar), optionally prefixed."""
        return [
            (f"{prefix}Channel", self.name),
            (f"{prefix}ChannelState", str(self.state.value)),
            (f"{prefix}ChannelStateDesc", self.state.desc),
            (f"{prefix}CallerIDNum", self.caller_num),
            (f"{prefix}CallerIDName", self.caller_name),
            (f"{prefix}ConnectedLineNum", self.connected_num),
            (f"{prefix}ConnectedLineName", self.connected_name),
            (f"{prefix}Language", "en"),
            (f"{prefix}AccountCode", ""),
            (f"{prefix}Context", self.context),
            (f"{prefix}Exten", self.exten),
            (f"{prefix}Priority", str(self.priority)),
            (f"{prefix}Uniqueid", self.uniqueid),
            (f"{prefix}Linkedid", self.linkedid),
            *[
                (f"{prefix}ChanVariable", f"{name}={self.variables.get(name, '')}")
                for name in self.manager_vars
            ],
        ]

    def goto(self, context: str, exten: str, priority: int = 1) -> None:
        self.context, self.exten, self.priority = context, exten, priority


@dataclass(slots=True, eq=False)
class Bridge:
    """A bridge: by default the basic two-party one Dial() makes."""

    uniqueid: str
    channels: list[Channel] = field(default_factory=list)
    kind: str = "basic"
    technology: str = "simple_bridge"
    creator: str = UNKNOWN
    name: str = UNKNOWN
    # Members AMI never shows as channels but counts (ConfBridge's announcer, CBAnn/...;2).
    hidden: int = 0

    def fields(self) -> Fields:
        return [
            ("BridgeUniqueid", self.uniqueid),
            ("BridgeType", self.kind),
            ("BridgeTechnology", self.technology),
            ("BridgeCreator", self.creator),
            ("BridgeName", self.name),
            ("BridgeNumChannels", str(len(self.channels) + self.hidden)),
            ("BridgeVideoSourceMode", "none"),
        ]


def event(name: str, privilege: str, *groups: Fields) -> Event:
    """Assemble an event: `Event`, `Privilege`, then the field groups in order."""
    pairs: Fields = [("Event", name), ("Privilege", privilege)]
    for group in groups:
        pairs.extend(group)
    return tuple(pairs)


def channel_event(
    name: str, channel: Channel, *extra: Fields, privilege: str = "call,all"
) -> Event:
    return event(name, privilege, channel.fields(), *extra)


def hangup_event(channel: Channel, cause: int) -> Event:
    return channel_event(
        "Hangup", channel, [("Cause", str(cause)), ("Cause-txt", CAUSE_TEXT.get(cause, "Unknown"))]
    )


def varset_event(channel: Channel, variable: str, value: str) -> Event:
    return channel_event(
        "VarSet", channel, [("Variable", variable), ("Value", value)], privilege="dialplan,all"
    )


def newexten_event(channel: Channel, application: str, app_data: str) -> Event:
    channel.application, channel.app_data = application, app_data
    return channel_event(
        "Newexten",
        channel,
        [("Extension", channel.exten), ("Application", application), ("AppData", app_data)],
        privilege="dialplan,all",
    )


def duration(seconds: float) -> str:
    """`HH:MM:SS` as CoreShowChannel prints it."""
    total = max(0, int(seconds))
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"
