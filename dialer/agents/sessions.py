"""Agent shifts on one dialer node: login, ready, pause, logout and the nailed-up phone, stored.

The engine owns the pool; this service is how people (the desktop) and Asterisk (the phone's
events) move agents in it. Every change is written to the agent's stored shift on the engine's
row worker and told to the subscribers (the desktop's WebSocket feed) at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from dialer.agents import store as shifts
from dialer.agents.phones import NailedUpPhones, PhoneCall
from dialer.agents.pool import (
    PAUSE_REASONS,
    PHONE_LOST,
    AgentPool,
    AgentSession,
    AgentState,
    Connect,
)
from dialer.ami.protocol import Message
from dialer.serial_worker import SerialWorker
from dialer.store.db import Store

log = logging.getLogger(__name__)

# Set by the dialer when an agent signs in from the desktop: they start paused and say when
# they are ready, so no call lands on a person still putting on their headset.
LOGGED_IN = "login"


class AgentError(ValueError):
    """An agent asked for something their state does not allow; the message says why."""


class Telephony(Protocol):
    """What the engine lends: Originates and hang-ups on the Asterisk servers it is linked to."""

    def originate_phone(self, fields: list[tuple[str, str]]) -> tuple[str, str] | None:
        """Send the login Originate; (server, action id), or None when no server is up."""
        ...

    def hang_up_channel(self, server: str, channel: str) -> None: ...


@dataclass(frozen=True)
class AgentStatus:
    """What an agent's desktop shows about them."""

    agent_id: str
    state: str
    since: datetime
    pause_reason: str | None
    attempt_id: int | None
    phone_up: bool
    connect: str
    campaign: str
    wrap_up_left_s: float | None

    def to_json(self) -> dict[str, object]:
        return {
            "agent_id": self.agent_id,
            "state": self.state,
            "since": self.since.isoformat(),
            "pause_reason": self.pause_reason,
            "attempt_id": self.attempt_id,
            "phone_up": self.phone_up,
            "connect": self.connect,
            "campaign": self.campaign,
            "wrap_up_left_s": self.wrap_up_left_s,
        }


Subscriber = Callable[[AgentStatus], None]


class AgentSessions:
    """Logged-in agents of one campaign on one node, with their stored shifts."""

    def __init__(
        self,
        pool: AgentPool,
        store: Store,
        worker: SerialWorker,
        telephony: Telephony,
        *,
        tenant_id: int,
        campaign_id: int,
        campaign_name: str,
        node_id: str,
        clock: Callable[[], float],
        wallclock: Callable[[], datetime],
        wrap_up_limit_s: float,
        scale: float = 1.0,
    ) -> None:
        self.pool = pool
        self.store = store
        self.worker = worker
        self.telephony = telephony
        self.tenant_id = tenant_id
        self.campaign_id = campaign_id
        self.campaign_name = campaign_name
        self.node_id = node_id
        self.clock = clock
        self.wallclock = wallclock
        self.wrap_up_limit_s = wrap_up_limit_s
        self.scale = scale
        self.phones = NailedUpPhones(node_id)
        self._shift_of: dict[str, int] = {}
        self._since_wall: dict[str, datetime] = {}
        self._subscribers: list[Subscriber] = []
        self._caller_id = '"Dialer" <{agent}>'
        pool.listener = self._changed

    # ----- who is told -----

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call `subscriber` with every agent's new status; returns the unsubscribe."""
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber)

    def status(self, agent_id: str) -> AgentStatus | None:
        agent = self.pool.get(agent_id)
        if agent is None:
            return None
        return self._status(agent)

    def statuses(self) -> list[AgentStatus]:
        return [self._status(a) for a in self.pool]

    def _status(self, agent: AgentSession) -> AgentStatus:
        # Pages count the time in state on the real clock; the engine's may run simulated.
        now = self.wallclock()
        since = datetime.now(UTC) - (now - self._since_wall.get(agent.id, now))
        left = None
        if agent.state is AgentState.WRAP_UP and self.wrap_up_limit_s > 0:
            spent = (self.clock() - agent.since) * self.scale
            left = round(max(0.0, self.wrap_up_limit_s - spent), 1)
        return AgentStatus(
            agent_id=agent.id,
            state=agent.state.value,
            since=since,
            pause_reason=agent.pause_reason,
            attempt_id=agent.attempt_id,
            phone_up=agent.phone_up if agent.connect is Connect.NAILED else True,
            connect=agent.connect.value,
            campaign=self.campaign_name,
            wrap_up_left_s=left,
        )

    def _changed(self, agent: AgentSession, old: AgentState) -> None:
        now = self.wallclock()
        if old is not agent.state:
            self._since_wall[agent.id] = now
        shift = self._shift_of.get(agent.id)
        if shift is not None:
            change = shifts.StateChange(
                agent.id, old.value, agent.state.value, agent.pause_reason, agent.attempt_id, now
            )
            self.worker.later(shifts.record_change, self.store, shift, change)
            if agent.state is AgentState.LOGGED_OUT:
                self._shift_of.pop(agent.id, None)
        status = self._status(agent)
        for subscriber in list(self._subscribers):
            try:
                subscriber(status)
            except Exception:
                log.exception("x agent %s: a subscriber failed", agent.id)

    # ----- the agent's requests -----

    async def log_in(
        self, agent_id: str, phone: str, connect: Connect, *, user_id: int | None = None
    ) -> AgentStatus:
        """Start the agent's shift (taking over one left open anywhere), paused until they say
        ready; a nailed-up phone is called now."""
        if not phone or any(c in phone for c in "\r\n,|"):
            raise AgentError(f"agent {agent_id}: {phone!r} is not a phone Asterisk can dial")
        agent = self.pool.get(agent_id)
        if agent is not None and agent.state is not AgentState.LOGGED_OUT:
            # The same person signing in again (another browser): the shift goes on.
            if agent.connect is Connect.NAILED and not agent.phone_up:
                self._call_phone(agent)
            return self._status(agent)
        now = self.clock()
        agent = self.pool.add(agent_id, phone, connect, now)
        shift = await self._open_shift(agent_id, phone, connect, user_id)
        self._shift_of[agent_id] = shift
        self.pool.pause(agent_id, LOGGED_IN, now)
        if connect is Connect.NAILED:
            self._call_phone(agent)
        log.info("= agent %s: logged in (%s)", agent_id, connect.value)
        return self._status(agent)

    async def _open_shift(
        self, agent_id: str, phone: str, connect: Connect, user_id: int | None
    ) -> int:
        def open_it() -> int:
            return shifts.open_shift(
                self.store,
                tenant_id=self.tenant_id,
                agent_id=agent_id,
                user_id=user_id,
                node_id=self.node_id,
                campaign_id=self.campaign_id,
                phone=phone,
                connect=connect.value,
                now=self.wallclock(),
            )

        return await self.worker.run(open_it)

    def ready(self, agent_id: str) -> AgentStatus:
        agent = self._known(agent_id)
        if agent.state in (AgentState.RESERVED, AgentState.ON_CALL):
            agent.pause_after_call = None
            return self._status(agent)
        if not self.pool.ready(agent_id, self.clock()):
            if agent.connect is Connect.NAILED and not agent.phone_up:
                raise AgentError("your phone is not connected: redial it first")
            raise AgentError(f"not possible while {agent.state.value}")
        return self._status(agent)

    def pause(self, agent_id: str, reason: str) -> AgentStatus:
        agent = self._known(agent_id)
        if reason not in PAUSE_REASONS or reason == PHONE_LOST:
            raise AgentError(f"unknown pause reason {reason!r}")
        self.pool.pause(agent_id, reason, self.clock())
        return self._status(agent)

    def log_out(self, agent_id: str) -> AgentStatus:
        """End the shift; the nailed-up phone is hung up (a call in progress goes on)."""
        agent = self._known(agent_id)
        if agent.state in (AgentState.RESERVED, AgentState.ON_CALL):
            raise AgentError("finish the call first")
        phone = self.phones.forget(agent_id)
        self.pool.log_out(agent_id, self.clock())
        agent.phone_up = False
        if phone is not None and phone.channel:
            self.telephony.hang_up_channel(phone.server, phone.channel)
        log.info("= agent %s: logged out", agent_id)
        return self._status(agent)

    def redial_phone(self, agent_id: str) -> AgentStatus:
        agent = self._known(agent_id)
        if agent.connect is not Connect.NAILED:
            raise AgentError("your phone is dialled for every call; nothing to redial")
        if agent.phone_up:
            raise AgentError("your phone is already connected")
        self._call_phone(agent)
        return self._status(agent)

    def _known(self, agent_id: str) -> AgentSession:
        agent = self.pool.get(agent_id)
        if agent is None or (
            agent.state is AgentState.LOGGED_OUT and agent_id not in self._shift_of
        ):
            raise AgentError("you are not logged in to the dialer")
        return agent

    # ----- the nailed-up phone -----

    def _call_phone(self, agent: AgentSession) -> None:
        call, fields = self.phones.originate(
            agent.id,
            agent.channel,
            agent.conference,
            server="",
            caller_id=self._caller_id.format(agent=agent.id),
        )
        sent = self.telephony.originate_phone(fields)
        if sent is None:
            self.phones.forget(agent.id)
            raise AgentError("no Asterisk server is reachable: your phone cannot be called")
        call.server, action_id = sent
        self.phones.bind_action(call, action_id)
        shift = self._shift_of.get(agent.id)
        if shift is not None:
            self.worker.later(shifts.set_phone_call, self.store, shift, call.call_id)

    def call_config_phones(self) -> None:
        """Agents of the config file with nailed-up phones: call them as the campaign starts."""
        for agent in self.pool:
            if agent.connect is Connect.NAILED and agent.state is AgentState.LOGGED_OUT:
                try:
                    self._call_phone(agent)
                except AgentError as exc:
                    log.warning("x agent %s: %s", agent.id, exc)

    def on_ami(self, msg: Message) -> bool:
        """An AMI message about an agent's phone (True), or not ours (False)."""
        if not self.phones.owns(msg):
            return False
        change = self.phones.on_event(msg)
        if change is not None:
            self.pool.phone_changed(change.agent_id, change.up, self.clock())
        return True

    def adopt_phones(self, channels: Iterable[Message], server: str) -> None:
        """After a restart: stored shifts of this node whose phone call is still up in Asterisk
        go on; the others are paused with reason phone_lost (the agent redials)."""
        live = {m.get("Uniqueid") or "": m for m in channels}
        now = self.clock()
        for shift in shifts.open_shifts(self.store, self.tenant_id, node_id=self.node_id):
            if shift.campaign_id not in (None, self.campaign_id):
                continue
            agent = self.pool.add(shift.agent_id, shift.phone, Connect(shift.connect), now)
            if agent.state is not AgentState.LOGGED_OUT:
                continue
            self._shift_of[shift.agent_id] = shift.id
            channel = live.get(shift.phone_call_id or "")
            if channel is not None and agent.connect is Connect.NAILED:
                self.phones.adopt(
                    agent.id,
                    shift.phone_call_id or "",
                    channel.get("Channel") or "",
                    server,
                    agent.conference,
                )
                agent.phone_up = True
            self._since_wall[agent.id] = self.wallclock()
            if agent.connect is Connect.DIAL or agent.phone_up:
                reason = shift.pause_reason if shift.state == "paused" else None
                self.pool.pause(agent.id, reason or LOGGED_IN, now)
            else:
                self.pool.pause(agent.id, PHONE_LOST, now)
            log.info("= agent %s: shift resumed after a restart (%s)", agent.id, agent.state.value)

    def phone_call(self, agent_id: str) -> PhoneCall | None:
        return self.phones.get(agent_id)
