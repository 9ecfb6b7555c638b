"""ConfBridge conferences as Asterisk 20 shows them on AMI (the nailed-up agents' rooms).

Pure state and event building; the call coroutines in `sim.asterisk.nailed` drive them. What
these events look like, and in which order, is in sim/traces/ami_nailed_*.log.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sim.asterisk.channels import Bridge, Channel, Event, Fields, event, varset_event

Emit = Callable[[Event], None]


@dataclass(slots=True, eq=False)
class Member:
    """A channel in a conference, with the user profile's flags that matter here."""

    channel: Channel
    marked: bool  # dialer_agent: marked = yes
    end_marked: bool  # dialer_debtor: end_marked = yes
    kick: Callable[[], None] = lambda: None  # tells the member's call it was put out


@dataclass(slots=True, eq=False)
class Conference:
    """One ConfBridge conference: its softmix bridge, the hidden announcer, the members."""

    name: str
    bridge: Bridge
    # CBAnn/<name>-<counter>;2: in the bridge and in BRIDGEPEER, never shown as a channel.
    announcer: str
    members: list[Member] = field(default_factory=list)

    @property
    def marked(self) -> int:
        """What CONFBRIDGE_INFO(marked,<name>) answers."""
        return sum(m.marked for m in self.members)

    def _event(self, name: str, *groups: Fields) -> Event:
        return event(name, "call,all", [("Conference", self.name)], self.bridge.fields(), *groups)

    def _peers(self, emit: Emit) -> None:
        """BRIDGEPEER on every member: the announcer, then the others in the order they joined."""
        for member in self.members:
            others = [m.channel.name for m in self.members if m is not member]
            value = ",".join([self.announcer, *others])
            member.channel.variables["BRIDGEPEER"] = value
            emit(varset_event(member.channel, "BRIDGEPEER", value))

    def start(self, emit: Emit) -> None:
        """The first member arrives: the bridge is made and the announcer pushed into it."""
        emit(event("BridgeCreate", "call,all", self.bridge.fields()))
        self.bridge.hidden = 1
        emit(self._event("ConfbridgeStart"))

    def join(self, member: Member, emit: Emit) -> None:
        ch = member.channel
        self.members.append(member)
        self.bridge.channels.append(ch)
        ch.bridge_id = self.bridge.uniqueid
        emit(event("BridgeEnter", "call,all", self.bridge.fields(), ch.fields()))
        self._peers(emit)
        emit(self._event("ConfbridgeJoin", ch.fields(), [("Admin", "No"), ("Muted", "No")]))

    def leave(self, member: Member, emit: Emit) -> list[Member]:
        """The member leaves (its ConfBridge() returns); the end_marked members it puts out
        when it was the last marked one are returned, their CONFBRIDGE_RESULT already set."""
        ch = member.channel
        emit(self._event("ConfbridgeLeave", ch.fields(), [("Admin", "No")]))
        self.members.remove(member)
        self.bridge.channels.remove(ch)
        ch.bridge_id = ""
        ch.variables["BRIDGEPEER"] = ""
        emit(varset_event(ch, "BRIDGEPEER", ""))
        emit(event("BridgeLeave", "call,all", self.bridge.fields(), ch.fields()))
        self._peers(emit)
        kicked: list[Member] = []
        if member.marked and self.marked == 0:
            # conf_state_multi_marked.c leave_marked: end_marked users are removed at once.
            for other in self.members:
                if other.end_marked:
                    other.channel.variables["CONFBRIDGE_RESULT"] = "ENDMARKED"
                    emit(varset_event(other.channel, "CONFBRIDGE_RESULT", "ENDMARKED"))
                    kicked.append(other)
        return kicked

    def end(self, emit: Emit) -> None:
        """The last member left: the conference ends and its bridge goes."""
        emit(self._event("ConfbridgeEnd"))
        self.bridge.hidden = 0
        emit(event("BridgeDestroy", "call,all", self.bridge.fields()))
