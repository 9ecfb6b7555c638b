"""Agents of a campaign and their states: ready, reserved, on call, wrap-up, paused.

Pure bookkeeping with an injected `now`; the engine drives it from AMI events, the FastAGI
router and the agents' own requests (the desktop), and every change is reported to one
listener (the stored shift, the desktop's feed). Time spent in each state gives occupancy.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from dialer.config import AgentConfig

log = logging.getLogger(__name__)


class AgentState(enum.Enum):
    LOGGED_OUT = "logged_out"
    READY = "ready"
    RESERVED = "reserved"  # chosen for an answered call, not yet bridged
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"
    PAUSED = "paused"


class Connect(enum.StrEnum):
    """How an answered debtor reaches the agent."""

    # The agent's phone is called once at login and waits in the agent's conference; a debtor
    # is bridged in at once (no ringing, no pick-up delay).
    NAILED = "nailed"
    # The agent's phone is dialled for every call: only for phones that answer by themselves.
    DIAL = "dial"


# Pause reasons the dialer itself sets; agents pick theirs from the campaign's list.
PHONE_LOST = "phone_lost"
PAUSE_REASONS = ("break", "lunch", "training", "meeting", "technical", "callback", PHONE_LOST)

_ALLOWED: dict[AgentState, frozenset[AgentState]] = {
    AgentState.LOGGED_OUT: frozenset({AgentState.READY, AgentState.PAUSED}),
    AgentState.READY: frozenset({AgentState.RESERVED, AgentState.PAUSED, AgentState.LOGGED_OUT}),
    AgentState.RESERVED: frozenset({AgentState.ON_CALL, AgentState.READY, AgentState.WRAP_UP}),
    AgentState.ON_CALL: frozenset({AgentState.WRAP_UP}),
    AgentState.WRAP_UP: frozenset({AgentState.READY, AgentState.PAUSED, AgentState.LOGGED_OUT}),
    AgentState.PAUSED: frozenset({AgentState.READY, AgentState.LOGGED_OUT}),
}


@dataclass
class AgentSession:
    id: str
    # The agent's phone as Asterisk dials it (PJSIP/1001, Local/agent1@agents).
    channel: str
    connect: Connect = Connect.DIAL
    state: AgentState = AgentState.LOGGED_OUT
    since: float = 0.0
    attempt_id: int | None = None
    pause_reason: str | None = None
    # A nailed-up phone: is its channel up in the agent's conference?
    phone_up: bool = False
    # Asked to pause while on a call: pause when the call's wrap-up ends.
    pause_after_call: str | None = None
    seconds_in: dict[AgentState, float] = field(default_factory=dict)

    @property
    def conference(self) -> str:
        """The agent's own ConfBridge, where the nailed-up phone waits."""
        return f"agent-{self.id}"


class IllegalAgentTransition(ValueError):
    """An agent was asked to move between states that do not connect."""


Listener = Callable[[AgentSession, AgentState], None]


class AgentPool:
    """Every agent session of one dialer node."""

    def __init__(
        self, agents: Iterable[AgentConfig] = (), listener: Listener | None = None
    ) -> None:
        self._agents = {a.id: AgentSession(a.id, a.channel, Connect(a.connect)) for a in agents}
        self.listener = listener

    def __iter__(self) -> Iterator[AgentSession]:
        return iter(self._agents.values())

    def __len__(self) -> int:
        return len(self._agents)

    def get(self, agent_id: str) -> AgentSession | None:
        return self._agents.get(agent_id)

    def add(self, agent_id: str, channel: str, connect: Connect, now: float) -> AgentSession:
        """An agent logs in (from the desktop): known from now on, logged out until ready."""
        agent = self._agents.get(agent_id)
        if agent is None:
            agent = AgentSession(agent_id, channel, connect, since=now)
            self._agents[agent_id] = agent
        elif agent.state is AgentState.LOGGED_OUT:
            agent.channel, agent.connect, agent.since = channel, connect, now
        return agent

    def _move(
        self, agent: AgentSession, new: AgentState, now: float, reason: str | None = None
    ) -> None:
        if new not in _ALLOWED[agent.state]:
            raise IllegalAgentTransition(f"agent {agent.id}: {agent.state.value} -> {new.value}")
        spent = agent.seconds_in.get(agent.state, 0.0) + max(0.0, now - agent.since)
        agent.seconds_in[agent.state] = spent
        log.debug("= agent %s: %s -> %s", agent.id, agent.state.value, new.value)
        old = agent.state
        agent.state = new
        agent.since = now
        agent.pause_reason = reason if new is AgentState.PAUSED else None
        # The call's id stays through wrap-up: the disposition is about it.
        if new not in (AgentState.RESERVED, AgentState.ON_CALL, AgentState.WRAP_UP):
            agent.attempt_id = None
        if self.listener is not None:
            self.listener(agent, old)

    def log_in_all(self, now: float) -> None:
        """Agents from the config file: ready at once (dialled per call, or phones already up)."""
        for agent in self._agents.values():
            if agent.state is AgentState.LOGGED_OUT and (
                agent.connect is Connect.DIAL or agent.phone_up
            ):
                agent.since = now
                self._move(agent, AgentState.READY, now)

    def log_out_all(self, now: float) -> None:
        """End of the campaign: close the books on every agent's time."""
        for agent in self._agents.values():
            self.log_out(agent.id, now)

    def log_out(self, agent_id: str, now: float) -> bool:
        """The agent leaves (a call in progress goes through wrap-up first). False if unknown."""
        agent = self._agents.get(agent_id)
        if agent is None:
            return False
        if agent.state in (AgentState.ON_CALL, AgentState.RESERVED):
            self._move(agent, AgentState.WRAP_UP, now)
        if agent.state is not AgentState.LOGGED_OUT:
            self._move(agent, AgentState.LOGGED_OUT, now)
        return True

    def ready(self, agent_id: str, now: float) -> bool:
        """The agent takes calls (after login, a pause or wrap-up). False when they cannot:
        a nailed-up agent whose phone is not up, or an agent on a call."""
        agent = self._agents.get(agent_id)
        if agent is None:
            return False
        if agent.connect is Connect.NAILED and not agent.phone_up:
            return False
        if agent.state in (AgentState.LOGGED_OUT, AgentState.PAUSED, AgentState.WRAP_UP):
            agent.pause_after_call = None
            self._move(agent, AgentState.READY, now)
            return True
        return agent.state is AgentState.READY

    def pause(self, agent_id: str, reason: str, now: float) -> bool:
        """Pause now, or after the call when on one. False if the agent is unknown."""
        agent = self._agents.get(agent_id)
        if agent is None:
            return False
        if agent.state in (AgentState.RESERVED, AgentState.ON_CALL):
            agent.pause_after_call = reason
        elif agent.state is AgentState.PAUSED:
            agent.pause_reason = reason
            if self.listener is not None:
                self.listener(agent, AgentState.PAUSED)
        else:
            self._move(agent, AgentState.PAUSED, now, reason)
        return True

    def count(self, state: AgentState) -> int:
        return sum(1 for a in self._agents.values() if a.state is state)

    def elapsed(self, state: AgentState, now: float) -> tuple[float, ...]:
        return tuple(now - a.since for a in self._agents.values() if a.state is state)

    def reserve_longest_idle(
        self, attempt_id: int, now: float, only: str | None = None
    ) -> AgentSession | None:
        """Pick the agent who has been ready the longest: fair, and what agents expect.
        With `only`, that agent or nobody (a personal callback)."""
        ready = [
            a
            for a in self._agents.values()
            if a.state is AgentState.READY and (only is None or a.id == only)
        ]
        if not ready:
            return None
        agent = min(ready, key=lambda a: a.since)
        agent.attempt_id = attempt_id
        self._move(agent, AgentState.RESERVED, now)
        return agent

    def cancel_reservation(self, agent_id: str, now: float) -> None:
        agent = self._agents[agent_id]
        if agent.state is AgentState.RESERVED:
            self._move(agent, AgentState.READY, now)

    def start_call(self, agent_id: str, now: float) -> None:
        agent = self._agents[agent_id]
        if agent.state is AgentState.RESERVED:
            self._move(agent, AgentState.ON_CALL, now)

    def end_call(self, agent_id: str, now: float) -> bool:
        """The call ended: the agent goes to wrap-up. False if the agent had no call."""
        agent = self._agents.get(agent_id)
        if agent is None or agent.state not in (AgentState.ON_CALL, AgentState.RESERVED):
            return False
        self._move(agent, AgentState.WRAP_UP, now)
        return True

    def adopt_call(self, agent_id: str, attempt_id: int, now: float) -> bool:
        """After a restart: the agent is still talking on a call the dialer adopted, so they
        are on that call, not ready. False if the agent is unknown or already taken."""
        agent = self._agents.get(agent_id)
        if agent is None or agent.state not in (
            AgentState.LOGGED_OUT,
            AgentState.READY,
            AgentState.PAUSED,
        ):
            return False
        if agent.state is not AgentState.READY:
            agent.since = now
            self._move(agent, AgentState.READY, now)
        agent.attempt_id = attempt_id
        self._move(agent, AgentState.RESERVED, now)
        self._move(agent, AgentState.ON_CALL, now)
        return True

    def phone_changed(self, agent_id: str, up: bool, now: float) -> AgentSession | None:
        """A nailed-up phone came up (the agent is ready unless paused) or dropped (paused
        with reason phone_lost; a call in progress still ends through wrap-up)."""
        agent = self._agents.get(agent_id)
        if agent is None or agent.phone_up == up:
            return agent
        agent.phone_up = up
        if up:
            if agent.state is AgentState.LOGGED_OUT or (
                agent.state is AgentState.PAUSED and agent.pause_reason == PHONE_LOST
            ):
                self._move(agent, AgentState.READY, now)
            elif self.listener is not None:
                self.listener(agent, agent.state)
        elif agent.state in (AgentState.READY, AgentState.WRAP_UP, AgentState.LOGGED_OUT):
            self._move(agent, AgentState.PAUSED, now, PHONE_LOST)
        elif agent.state in (AgentState.RESERVED, AgentState.ON_CALL):
            agent.pause_after_call = PHONE_LOST
        elif self.listener is not None:
            self.listener(agent, agent.state)
        return agent

    def on_channel(self, channel_name: str) -> AgentSession | None:
        """The agent whose phone this Asterisk channel is (`PJSIP/agent1-0000002a`,
        `Local/agent1@agents-00000005;1`), if any."""
        for agent in self._agents.values():
            prefix = agent.channel
            if channel_name.startswith(prefix) and channel_name[len(prefix) : len(prefix) + 1] in (
                "-",
                ";",
            ):
                return agent
        return None

    def finish_wrap_up(self, agent_id: str, now: float) -> bool:
        """Wrap-up ends (disposition saved, or the campaign's limit ran out): ready again, or
        paused if the agent asked for it during the call. False if not in wrap-up."""
        agent = self._agents.get(agent_id)
        if agent is None or agent.state is not AgentState.WRAP_UP:
            return False
        reason, agent.pause_after_call = agent.pause_after_call, None
        if reason is None and agent.connect is Connect.NAILED and not agent.phone_up:
            reason = PHONE_LOST
        if reason is not None:
            self._move(agent, AgentState.PAUSED, now, reason)
        else:
            self._move(agent, AgentState.READY, now)
        return True

    def occupancy(self, now: float) -> float:
        """Talk time over logged-in time, across all agents (the trade's 'occupancy')."""
        talk = logged_in = 0.0
        for agent in self._agents.values():
            seconds = dict(agent.seconds_in)
            if agent.state is not AgentState.LOGGED_OUT:
                seconds[agent.state] = seconds.get(agent.state, 0.0) + max(0.0, now - agent.since)
            talk += seconds.get(AgentState.ON_CALL, 0.0)
            logged_in += sum(v for k, v in seconds.items() if k is not AgentState.LOGGED_OUT)
        return talk / logged_in if logged_in > 0 else 0.0
