"""What a running campaign engine shows the supervisor right now (the console's EngineView)."""

from __future__ import annotations

from dialer.agents.pool import AgentState
from dialer.console.figures import EngineView
from dialer.engine import CampaignEngine

# Fewer dials than this behind the answer mix: the prior speaks, not the campaign.
MIN_EVIDENCE = 20.0


def engine_view(engine: CampaignEngine) -> EngineView:
    settings = engine.pacer.settings
    statistics = engine.pacer.statistics
    snapshot = engine.snapshot()
    now = engine.clock()
    minute = 60.0 / engine.scale
    dials = sum(1 for t in reversed(engine.dial_times) if now - t <= minute)
    mix = statistics.answer_mix(engine.pacing_state().now)
    logged_in = sum(1 for a in engine.agents if a.state is not AgentState.LOGGED_OUT)
    by_state: dict[str, int] = {}
    for agent in engine.agents:
        if agent.state is not AgentState.LOGGED_OUT:
            by_state[agent.state.value] = by_state.get(agent.state.value, 0) + 1
    return EngineView(
        status="stopped" if engine.stopping else "paused" if settings.paused else "running",
        dial_mode=settings.dial_mode.value,
        target_abandon_rate=settings.target_abandon_rate,
        max_dial_ratio=settings.max_dial_ratio,
        ringing=snapshot.ringing,
        waiting=snapshot.answered_waiting,
        connected=snapshot.connected,
        dials_in_last_minute=dials,
        live_answer_rate=mix.live if mix.evidence >= MIN_EVIDENCE else None,
        occupancy=engine.agents.occupancy(now) if logged_in else None,
        mean_talk_s=statistics.talk.mean(0.0) if statistics.talk.total > 0 else None,
        mean_wrap_up_s=statistics.wrap_up.mean(0.0) if statistics.wrap_up.total > 0 else None,
        agents_by_state=by_state,
    )
