"""Nailed-up agent phones: the one call per shift that keeps an agent in their conference.

Sans-I/O: builds the login Originate and reads AMI messages, returning what changed. The
agent's call carries its own ChannelId, so every event of it (its Linkedid) is told apart from
debtor calls without looking at channel names.
"""

from __future__ import annotations

import enum
import itertools
import logging
from dataclasses import dataclass

from dialer.ami.protocol import Message

log = logging.getLogger(__name__)

# The dialplan context the login call runs in (asterisk-conf/extensions.conf).
AGENT_CONTEXT = "dialer-agent"


class PhoneState(enum.Enum):
    DIALLING = "dialling"
    UP = "up"  # in the agent's conference, ready for debtors
    DOWN = "down"


@dataclass
class PhoneCall:
    """The nailed-up call of one agent."""

    agent_id: str
    call_id: str  # ChannelId of the channel in the conference = Linkedid of all its events
    server: str
    phone: str
    conference: str
    state: PhoneState = PhoneState.DIALLING
    channel: str | None = None
    action_id: str | None = None


@dataclass(frozen=True)
class PhoneChange:
    agent_id: str
    up: bool
    why: str


class NailedUpPhones:
    """Every nailed-up agent call of one dialer node."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self._by_call: dict[str, PhoneCall] = {}
        self._by_agent: dict[str, PhoneCall] = {}
        self._by_action: dict[str, PhoneCall] = {}
        self._seq = itertools.count(1)

    def get(self, agent_id: str) -> PhoneCall | None:
        return self._by_agent.get(agent_id)

    def calls(self) -> list[PhoneCall]:
        return list(self._by_agent.values())

    def originate(
        self, agent_id: str, phone: str, conference: str, server: str, caller_id: str
    ) -> tuple[PhoneCall, list[tuple[str, str]]]:
        """A new login call for the agent (replacing any earlier one) and its Originate."""
        self.forget(agent_id)
        call_id = f"{self.node_id}-agent-{agent_id}-{next(self._seq)}"
        call = PhoneCall(agent_id, call_id, server, phone, conference)
        self._by_call[call_id] = call
        self._by_agent[agent_id] = call
        fields = [
            ("Channel", phone),
            ("Context", AGENT_CONTEXT),
            ("Exten", "s"),
            ("Priority", "1"),
            # A person has to pick up a desk phone: give them time.
            ("Timeout", "60000"),
            ("CallerID", caller_id),
            ("Async", "true"),
            ("ChannelId", call_id),
            ("OtherChannelId", f"{call_id}-2"),
            ("Variable", f"AGENT_ID={agent_id}"),
            ("Variable", f"AGENT_CONF={conference}"),
            ("Variable", f"DIALER_NODE={self.node_id}"),
        ]
        return call, fields

    def bind_action(self, call: PhoneCall, action_id: str) -> None:
        call.action_id = action_id
        self._by_action[action_id] = call

    def adopt(
        self, agent_id: str, call_id: str, channel: str, server: str, conference: str
    ) -> PhoneCall:
        """After a restart: the agent's call is still up in Asterisk (seen in CoreShowChannels)."""
        self.forget(agent_id)
        call = PhoneCall(agent_id, call_id, server, channel, conference, PhoneState.UP, channel)
        self._by_call[call_id] = call
        self._by_agent[agent_id] = call
        return call

    def forget(self, agent_id: str) -> PhoneCall | None:
        call = self._by_agent.pop(agent_id, None)
        if call is not None:
            self._by_call.pop(call.call_id, None)
            if call.action_id is not None:
                self._by_action.pop(call.action_id, None)
        return call

    def owns(self, msg: Message) -> bool:
        fields = msg.fields
        return (
            fields.get("Linkedid") in self._by_call or fields.get("ActionID", "") in self._by_action
        )

    def on_event(self, msg: Message) -> PhoneChange | None:
        """Read one AMI message; the change of an agent's phone it means, if any."""
        fields = msg.fields
        name = fields.get("Event")
        if name == "OriginateResponse":
            call = self._by_action.get(fields.get("ActionID", ""))
            if call is None:
                return None
            self._by_action.pop(call.action_id or "", None)
            if fields.get("Response") == "Failure" and call.state is PhoneState.DIALLING:
                return self._down(call, f"phone did not answer (reason {fields.get('Reason')})")
            return None
        call = self._by_call.get(fields.get("Linkedid", ""))
        if call is None or self._by_agent.get(call.agent_id) is not call:
            return None
        uniqueid = fields.get("Uniqueid")
        if name == "ConfbridgeJoin" and uniqueid == call.call_id:
            call.channel = fields.get("Channel")
            if call.state is not PhoneState.UP:
                call.state = PhoneState.UP
                return PhoneChange(call.agent_id, True, "in conference")
        elif name in ("Hangup", "ConfbridgeLeave") and uniqueid == call.call_id:
            return self._down(call, f"{name} cause {fields.get('Cause', '-')}")
        return None

    def _down(self, call: PhoneCall, why: str) -> PhoneChange | None:
        was = call.state
        call.state = PhoneState.DOWN
        self._by_call.pop(call.call_id, None)
        if was is PhoneState.DOWN:
            return None
        log.info("= agent %s: phone down (%s)", call.agent_id, why)
        return PhoneChange(call.agent_id, False, why)
