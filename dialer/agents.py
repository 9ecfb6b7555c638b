"""Agents of a campaign and their session states: ready, reserved, on call, wrap-up, paused.

Pure bookkeeping with an injected `now`; the engine drives it from AMI events and the FastAGI
router, and the time spent in each state gives agent occupancy.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable, Iterator
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


_ALLOWED: dict[AgentState, frozenset[AgentState]] = {
    AgentState.LOGGED_OUT: frozenset({AgentState.READY}),
    AgentState.READY: frozenset({AgentState.RESERVED, AgentState.PAUSED, AgentState.LOGGED_OUT}),
    AgentState.RESERVED: frozenset({AgentState.ON_CALL, AgentState.READY, AgentState.WRAP_UP}),
    AgentState.ON_CALL: frozenset({AgentState.WRAP_UP}),
    AgentState.WRAP_UP: frozenset({AgentState.READY, AgentState.PAUSED, AgentState.LOGGED_OUT}),
    AgentState.PAUSED: frozenset({AgentState.READY, AgentState.LOGGED_OUT}),
}


@dataclass
class AgentSession:
    id: str
    channel: str
    state: AgentState = AgentState.LOGGED_OUT
    since: float = 0.0
    attempt_id: int | None = None
    seconds_in: dict[AgentState, float] = field(default_factory=dict)


class IllegalAgentTransition(ValueError):
    """An agent was asked to move between states that do not connect (a bug upstream)."""


class AgentPool:
    """Every agent session of one dialer node."""

    def __init__(self, agents: Iterable[AgentConfig]) -> None:
        self._agents = {a.id: AgentSession(a.id, a.channel) for a in agents}

    def __iter__(self) -> Iterator[AgentSession]:
        return iter(self._agents.values())

    def get(self, agent_id: str) -> AgentSession | None:
        return self._agents.get(agent_id)

    def _move(self, agent: AgentSession, new: AgentState, now: float) -> None:
        if new not in _ALLOWED[agent.state]:
            raise IllegalAgentTransition(f"agent {agent.id}: {agent.state.value} -> {new.value}")
        spent = agent.seconds_in.get(agent.state, 0.0) + max(0.0, now - agent.since)
        agent.seconds_in[agent.state] = spent
        log.debug("= agent %s: %s -> %s", agent.id, agent.state.value, new.value)
        agent.state = new
        agent.since = now

    def log_in_all(self, now: float) -> None:
        for agent in self._agents.values():
            if agent.state is AgentState.LOGGED_OUT:
                agent.since = now
                self._move(agent, AgentState.READY, now)

    def log_out_all(self, now: float) -> None:
        """End of the campaign: close the books on every agent's time."""
        for agent in self._agents.values():
            if agent.state in (AgentState.ON_CALL, AgentState.RESERVED):
                self._move(agent, AgentState.WRAP_UP, now)
            if agent.state is not AgentState.LOGGED_OUT:
                self._move(agent, AgentState.LOGGED_OUT, now)

    def count(self, state: AgentState) -> int:
        return sum(1 for a in self._agents.values() if a.state is state)

    def elapsed(self, state: AgentState, now: float) -> tuple[float, ...]:
        return tuple(now - a.since for a in self._agents.values() if a.state is state)

    def reserve_longest_idle(self, attempt_id: int, now: float) -> AgentSession | None:
        """Pick the agent who has been ready the longest: fair, and what agents expect."""
        ready = [a for a in self._agents.values() if a.state is AgentState.READY]
        if not ready:
            return None
        agent = min(ready, key=lambda a: a.since)
        self._move(agent, AgentState.RESERVED, now)
        agent.attempt_id = attempt_id
        return agent

    def cancel_reservation(self, agent_id: str, now: float) -> None:
        agent = self._agents[agent_id]
        if agent.state is AgentState.RESERVED:
            self._move(agent, AgentState.READY, now)
            agent.attempt_id = None

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
        agent.attempt_id = None
        return True

    def adopt_call(self, agent_id: str, attempt_id: int, now: float) -> bool:
        """After a restart: the agent is still talking on a call the dialer adopted, so they
        are on that call, not ready. False if the agent is unknown or already taken."""
        agent = self._agents.get(agent_id)
        if agent is None or agent.state not in (AgentState.LOGGED_OUT, AgentState.READY):
            return False
        if agent.state is AgentState.LOGGED_OUT:
            agent.since = now
            self._move(agent, AgentState.READY, now)
        self._move(agent, AgentState.RESERVED, now)
        self._move(agent, AgentState.ON_CALL, now)
        agent.attempt_id = attempt_id
        return True

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

    def finish_wrap_up(self, agent_id: str, now: float) -> None:
        agent = self._agents[agent_id]
        if agent.state is AgentState.WRAP_UP:
            self._move(agent, AgentState.READY, now)

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
