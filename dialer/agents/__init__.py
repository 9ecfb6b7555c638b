"""Agents at work: their states, stored shifts and nailed-up phones."""

from dialer.agents.pool import AgentPool, AgentSession, AgentState, IllegalAgentTransition

__all__ = ["AgentPool", "AgentSession", "AgentState", "IllegalAgentTransition"]
