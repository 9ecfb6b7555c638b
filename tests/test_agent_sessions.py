"""Agents logged in from the desktop, against the simulator: a nailed-up phone is called once
and takes every debtor; a dropped phone pauses the agent; shifts are stored and survive a
restart. The same engine and sessions as `dialer run`, over real AMI and FastAGI sockets."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dialer.agents import store as shifts
from dialer.agents.pool import PHONE_LOST, AgentState, Connect
from dialer.agents.sessions import LOGGED_IN, AgentError
from dialer.ami.protocol import Message
from dialer.desk import dispositions
from dialer.engine import CampaignEngine
from dialer.gates import build_guard
from dialer.store.db import Store
from dialer.store.models import CallAttempt, Callback, CallbackStatus, DispositionCode
from tests.test_engine import Rig, _rig, _sim

AGENT = "agent1"
PHONE = "Local/agent1@agents"


@pytest.fixture
async def rig(tmp_path: Path, database_url: str) -> AsyncIterator[Rig]:
    """A campaign with no agent of the config file: agent1 logs in from the desktop."""
    r = await _rig(tmp_path, database_url, [_sim()], debtors=15, agents=0)
    yield r
    r.store.close()
    await r.sim.close()


async def _until(condition: object, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.01)


async def _linked_up(engine: CampaignEngine) -> None:
    await _until(lambda: any(engine._usable(n, c) for n, c in engine.connections.items()))


def _attempt_agents(store: Store) -> list[str | None]:
    with store.engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(CallAttempt.agent_id).where(CallAttempt.connected_at.is_not(None))
            ).scalars()
        )


async def test_nailed_up_agent_is_called_once_and_takes_every_debtor(rig: Rig) -> None:
    engine = rig.engine
    stop = asyncio.Event()
    async with asyncio.timeout(90):
        run = asyncio.create_task(engine.run(stop))
        await _linked_up(engine)
        status = await engine.sessions.log_in(AGENT, PHONE, Connect.NAILED, user_id=None)
        # Signed in, paused until they say ready; the phone rings meanwhile.
        assert (status.state, status.pause_reason) == ("paused", LOGGED_IN)
        await _until(lambda: engine.agents.get(AGENT).phone_up)  # type: ignore[union-attr]
        assert engine.sessions.ready(AGENT).state == "ready"
        await run
    connected = _attempt_agents(rig.store)
    assert len(connected) >= 3, "too few debtors reached the agent to show anything"
    assert set(connected) == {AGENT}
    # One Originate for the agent's phone, the rest for debtors: the phone was never redialled.
    with rig.store.engine.connect() as conn:
        attempts = conn.execute(sa.select(sa.func.count()).select_from(CallAttempt)).scalar()
    assert rig.sim.stats()["originates"] == attempts + 1
    # The shift is stored: ready, reserved, on call, wrap-up ... and closed at the end.
    changes = shifts.state_changes(rig.store, engine.tenant_id, AGENT)
    moves = [(c.from_state, c.to_state) for c in changes]
    assert ("reserved", "on_call") in moves and ("on_call", "wrap_up") in moves
    assert moves[-1][1] == "logged_out"
    assert shifts.open_shifts(rig.store, engine.tenant_id, agent_id=AGENT) == []


async def test_dropped_phone_pauses_the_agent_until_they_redial(rig: Rig) -> None:
    engine = rig.engine
    stop = asyncio.Event()
    seen: list[tuple[str, str | None]] = []
    engine.sessions.subscribe(lambda s: seen.append((s.state, s.pause_reason)))
    async with asyncio.timeout(60):
        run = asyncio.create_task(engine.run(stop))
        await _linked_up(engine)
        await engine.sessions.log_in(AGENT, PHONE, Connect.NAILED)
        agent = engine.agents.get(AGENT)
        assert agent is not None
        await _until(lambda: agent.phone_up)
        engine.sessions.ready(AGENT)
        phone = engine.sessions.phone_call(AGENT)
        assert phone is not None and phone.channel
        # The phone drops (the agent pulled the cable; Asterisk hangs the channel up).
        engine.hang_up_channel(phone.server, phone.channel)
        await _until(lambda: agent.state is AgentState.PAUSED and not agent.phone_up)
        await _until(lambda: agent.state is AgentState.PAUSED)
        assert agent.pause_reason == PHONE_LOST
        with pytest.raises(AgentError, match="not connected"):
            engine.sessions.ready(AGENT)
        engine.sessions.redial_phone(AGENT)
        await _until(lambda: agent.phone_up)
        # Back up after a drop: the agent was paused by the drop and is ready again.
        assert agent.state is AgentState.READY
        stop.set()
        await run
    assert ("paused", PHONE_LOST) in seen
    assert rig.sim.stats()["originates"] >= 2


async def test_an_open_shift_resumes_after_a_restart(rig: Rig) -> None:
    """A killed dialer left agent1's shift open and their phone up in Asterisk; agent2's phone
    is gone. The new process resumes both shifts: agent1 paused with a live phone, agent2
    paused with reason phone_lost."""
    engine = rig.engine
    now = datetime.now(UTC)
    ids = {}
    for agent_id in ("agent1", "agent2"):
        ids[agent_id] = shifts.open_shift(
            rig.store,
            tenant_id=engine.tenant_id,
            agent_id=agent_id,
            user_id=None,
            node_id=rig.config.node_id,
            campaign_id=engine.campaign_id,
            phone=f"Local/{agent_id}@agents",
            connect="nailed",
            now=now,
        )
        shifts.set_phone_call(rig.store, ids[agent_id], f"demo-agent-{agent_id}-1")
    channel = Message(
        {
            "Event": "CoreShowChannel",
            "Channel": "Local/agent1@agents-00000001;1",
            "Uniqueid": "demo-agent-agent1-1",
            "Linkedid": "demo-agent-agent1-1",
        }
    )
    engine.sessions.adopt_phones([channel], "pbx0")
    one, two = engine.agents.get("agent1"), engine.agents.get("agent2")
    assert one is not None and two is not None
    assert (one.state, one.pause_reason, one.phone_up) == (AgentState.PAUSED, LOGGED_IN, True)
    assert (two.state, two.pause_reason, two.phone_up) == (AgentState.PAUSED, PHONE_LOST, False)
    # Still one shift each: resumed, not opened anew.
    assert [s.id for s in shifts.open_shifts(rig.store, engine.tenant_id)] == sorted(ids.values())
    # The resumed agent's phone is known again: its hang-up is recognised.
    dropped = Message(
        {
            "Event": "Hangup",
            "Channel": "Local/agent1@agents-00000001;1",
            "Uniqueid": "demo-agent-agent1-1",
            "Linkedid": "demo-agent-agent1-1",
            "Cause": "16",
        }
    )
    assert engine.sessions.on_ami(dropped)
    # Paused already: the reason they chose stays, but they cannot be ready without a phone.
    assert (one.state, one.pause_reason, one.phone_up) == (AgentState.PAUSED, LOGGED_IN, False)
    with pytest.raises(AgentError, match="not connected"):
        engine.sessions.ready("agent1")


def test_a_phone_that_could_inject_ami_headers_is_refused(tmp_path: Path) -> None:
    from dialer.agents.pool import AgentPool
    from dialer.agents.sessions import AgentSessions
    from dialer.serial_worker import SerialWorker

    sessions = AgentSessions(
        AgentPool(),
        None,  # type: ignore[arg-type]
        SerialWorker("t"),
        None,  # type: ignore[arg-type]
        tenant_id=1,
        campaign_id=1,
        campaign_name="t",
        node_id="n",
        clock=lambda: 0.0,
        wallclock=lambda: datetime.now(UTC),
        wrap_up_limit_s=0,
    )
    with pytest.raises(AgentError, match="not a phone"):
        asyncio.run(sessions.log_in(AGENT, "PJSIP/1001\r\nAction: Hangup", Connect.NAILED))


CALLBACK_RULES = Path(__file__).parent / "data" / "callbacks-any-hour.toml"


async def test_a_promised_callback_is_dialled_when_due_and_goes_back_to_that_agent(
    tmp_path: Path, database_url: str
) -> None:
    r = await _rig(tmp_path, database_url, [_sim()], debtors=25, agents=0)
    try:
        config = dataclasses.replace(
            r.config,
            compliance=dataclasses.replace(r.config.compliance, ruleset=str(CALLBACK_RULES)),
        )
        guard = build_guard(config, r.store)
        engine = r.engine
        stop = asyncio.Event()
        async with asyncio.timeout(90):
            run = asyncio.create_task(engine.run(stop))
            await _linked_up(engine)
            for agent_id in ("agent1", "agent2"):
                await engine.sessions.log_in(agent_id, f"Local/{agent_id}@agents", Connect.DIAL)
                engine.sessions.ready(agent_id)
            first = await _first_conversation_of(r.store, "agent1")
            result = dispositions.record_disposition(
                r.store,
                guard,
                "default",
                engine.tenant_id,
                dispositions.DispositionRequest(
                    attempt_id=first.id,
                    code=DispositionCode.CALLBACK,
                    callback_at=datetime.now(UTC) + timedelta(seconds=1),
                    callback_same_agent=True,
                    note="call me back in a second",
                ),
                agent_id="agent1",
                now=datetime.now(UTC),
            )
            assert result.callback_id is not None
            callback = await _dialled(r.store, result.callback_id)
            await _until(lambda: engine.live.get(callback.attempt_id) is None)
            stop.set()
            await run
        with r.store.engine.connect() as conn:
            again = conn.execute(
                sa.select(CallAttempt).where(CallAttempt.id == callback.attempt_id)
            ).one()
        # The same debtor's same phone, called again although every phone is dialled once.
        assert (again.phone_id, again.debtor_id) == (first.phone_id, first.debtor_id)
        if again.connected_at is not None:
            assert again.agent_id == "agent1"
    finally:
        r.store.close()
        await r.sim.close()


async def _first_conversation_of(store: Store, agent_id: str) -> sa.Row[Any]:
    async with asyncio.timeout(30):
        while True:
            with store.engine.connect() as conn:
                row = conn.execute(
                    sa.select(CallAttempt)
                    .where(
                        CallAttempt.agent_id == agent_id,
                        CallAttempt.connected_at.is_not(None),
                        CallAttempt.status == "ended",
                    )
                    .limit(1)
                ).first()
            if row is not None:
                return row
            await asyncio.sleep(0.02)


async def _dialled(store: Store, callback_id: int) -> sa.Row[Any]:
    async with asyncio.timeout(30):
        while True:
            with store.engine.connect() as conn:
                row = conn.execute(sa.select(Callback).where(Callback.id == callback_id)).one()
            if row.status == CallbackStatus.DIALLED.value:
                assert row.attempt_id is not None
                return row
            await asyncio.sleep(0.02)
