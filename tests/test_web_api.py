"""The pages' API served from the dialer's loop, against the simulator: who may do what, the
screen pop over the WebSocket, a disposition ending wrap-up, supervisors' controls audited, and
no request the OpenAPI allows makes the server fail (schemathesis)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
import websockets

from dialer.agents import store as shift_store
from dialer.gates import build_guard
from dialer.store import users
from dialer.store.models import Role
from dialer.web.wiring import pages
from tests.test_engine import Rig, _rig, _sim

PASSWORD = "api-test-password"


@dataclass
class Served:
    rig: Rig
    url: str
    stop: asyncio.Event
    run: asyncio.Task[None]

    async def client(self, username: str, tenant: str = "default") -> httpx.AsyncClient:
        client = httpx.AsyncClient(base_url=self.url, timeout=10)
        reply = await client.post(
            "/api/login", json={"tenant": tenant, "username": username, "password": PASSWORD}
        )
        assert reply.status_code == 200, reply.text
        return client


@pytest.fixture
async def served(tmp_path: Path, database_url: str) -> AsyncIterator[Served]:
    rig = await _rig(tmp_path, database_url, [_sim()], debtors=30, agents=0)
    for tenant, username, role, agent_id in (
        ("default", "agent1", Role.AGENT, "agent1"),
        ("default", "agent2", Role.AGENT, "agent2"),
        ("default", "supervisor", Role.SUPERVISOR, None),
        ("default", "qa", Role.QA, None),
        ("other", "boss", Role.SUPERVISOR, None),
    ):
        users.add_user(rig.store, tenant, username, PASSWORD, role, agent_id=agent_id)
    stop = asyncio.Event()
    guard = build_guard(rig.config, rig.store)
    # The supervisors' line: a phone of the simulator's agents context.
    config = dataclasses.replace(
        rig.config, web=dataclasses.replace(rig.config.web, transfer_to="Local/supervisor1@agents")
    )
    try:
        async with pages(rig.engine, config, guard, port=0, stop=stop) as port:
            run = asyncio.create_task(rig.engine.run(stop))
            yield Served(rig, f"http://127.0.0.1:{port}", stop, run)
            stop.set()
            rig.engine.hang_up_all()
            async with asyncio.timeout(30):
                await run
    finally:
        rig.store.close()
        await rig.sim.close()


AGENT_ROUTES = [
    ("POST", "/api/agent/login", {}),
    ("POST", "/api/agent/ready", None),
    ("POST", "/api/agent/pause", {"reason": "break"}),
    ("GET", "/api/agent/status", None),
]
SUPERVISOR_ROUTES = [
    ("GET", "/api/campaigns", None),
    ("POST", "/api/campaigns/1/controls", {"target_abandon_rate": 0.02}),
    ("POST", "/api/spy", {"agent_id": "agent1", "mode": "listen", "phone": "PJSIP/9"}),
    ("GET", "/api/audit", None),
]


async def test_every_api_route_needs_a_session(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.url) as anonymous:
        for method, path, body in AGENT_ROUTES + SUPERVISOR_ROUTES:
            reply = await anonymous.request(method, path, json=body)
            assert reply.status_code == 401, (method, path, reply.status_code)


async def test_roles_keep_to_their_own_pages(served: Served) -> None:
    agent = await served.client("agent1")
    qa = await served.client("qa")
    supervisor = await served.client("supervisor")
    for method, path, body in SUPERVISOR_ROUTES:
        for who in (agent, qa):
            reply = await who.request(method, path, json=body)
            assert reply.status_code == 403, (method, path, reply.status_code)
    for method, path, body in AGENT_ROUTES:
        reply = await supervisor.request(method, path, json=body)
        assert reply.status_code == 403, (method, path, reply.status_code)
    # Each refusal is in the audit log, for the supervisor to read.
    audit = (await supervisor.get("/api/audit", params={"limit": 100})).json()
    refused = [e for e in audit if e["action"] == "forbidden"]
    assert {e["username"] for e in refused} >= {"agent1", "qa", "supervisor"}
    for c in (agent, qa, supervisor):
        await c.aclose()


async def test_another_tenants_supervisor_sees_nothing_and_changes_nothing(
    served: Served,
) -> None:
    boss = await served.client("boss", tenant="other")
    assert (await boss.get("/api/campaigns")).json() == []
    cid = served.rig.engine.campaign_id
    reply = await boss.post(f"/api/campaigns/{cid}/controls", json={"target_abandon_rate": 0.01})
    assert reply.status_code == 403
    await boss.aclose()


async def _login_ready(client: httpx.AsyncClient) -> None:
    reply = await client.post("/api/agent/login", json={"phone": "Local/agent1@agents"})
    assert reply.status_code == 200, reply.text
    assert reply.json()["state"] == "paused"
    async with asyncio.timeout(20):
        while True:
            reply = await client.post("/api/agent/ready")
            if reply.status_code == 200:
                break
            assert "phone" in reply.json()["detail"], reply.text
            await asyncio.sleep(0.05)
    assert reply.json()["state"] == "ready"


async def _next(ws: websockets.ClientConnection, kind: str) -> dict[str, object]:
    async with asyncio.timeout(60):
        while True:
            message = json.loads(await ws.recv())
            if message["type"] == kind:
                return dict(message)


async def test_connected_call_pops_the_case_and_a_disposition_ends_wrap_up(
    served: Served,
) -> None:
    agent = await served.client("agent1")
    cookie = agent.cookies.get("dialer_session")
    ws_url = served.url.replace("http", "ws") + "/ws/agent"
    async with websockets.connect(
        ws_url, additional_headers={"Cookie": f"dialer_session={cookie}"}
    ) as ws:
        await _login_ready(agent)
        pop = await _next(ws, "pop")
        case = pop["case"]
        assert isinstance(case, dict)
        attempt_id = case["attempt_id"]
        # The case is the debtor this call was placed to, and it is this agent's call.
        status = (await agent.get("/api/agent/status")).json()
        assert status["attempt_id"] == attempt_id
        assert status["state"] in ("on_call", "wrap_up")
        fetched = await agent.get(f"/api/cases/by-attempt/{attempt_id}")
        assert fetched.status_code == 200
        assert fetched.json()["debtor"] == case["debtor"]
        assert case["accounts"], case
        # Another agent may not read it.
        other = await served.client("agent2")
        assert (await other.get(f"/api/cases/by-attempt/{attempt_id}")).status_code == 403
        await other.aclose()
        await _next(ws, "call_ended")
        saved = await agent.post(
            "/api/dispositions",
            json={
                "attempt_id": attempt_id,
                "code": "promise_to_pay",
                "promise_amount": "25.00",
                "promise_date": (date.today() + timedelta(days=3)).isoformat(),
                "note": "pays Friday",
            },
        )
        assert saved.status_code == 201, saved.text
        # The disposition ended wrap-up: the agent is ready (or already on the next call).
        after = (await agent.get("/api/agent/status")).json()
        assert after["state"] != "wrap_up" or after["attempt_id"] != attempt_id
        again = await agent.post(
            "/api/dispositions", json={"attempt_id": attempt_id, "code": "no_answer"}
        )
        assert again.status_code == 422
    await agent.aclose()


async def test_supervisor_lowers_the_target_and_the_change_is_audited(served: Served) -> None:
    supervisor = await served.client("supervisor")
    live = (await supervisor.get("/api/campaigns")).json()
    assert [c["id"] for c in live] == [served.rig.engine.campaign_id]
    cid = live[0]["id"]
    reply = await supervisor.post(
        f"/api/campaigns/{cid}/controls", json={"target_abandon_rate": 0.015}
    )
    assert reply.status_code == 200, reply.text
    too_high = await supervisor.post(
        f"/api/campaigns/{cid}/controls", json={"target_abandon_rate": 0.5}
    )
    assert too_high.status_code == 422
    audit = (await supervisor.get("/api/audit")).json()
    changes = [e for e in audit if e["action"] == "campaign.controls"]
    assert len(changes) == 1
    assert changes[0]["new_value"]["target_abandon_rate"] == 0.015
    await supervisor.aclose()


async def test_bad_requests_get_clear_errors_not_server_failures(served: Served) -> None:
    agent = await served.client("agent1")
    reply = await agent.post(
        "/api/dispositions", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert reply.status_code == 422
    reply = await agent.post("/api/dispositions", json={"attempt_id": "x", "code": "nope"})
    assert reply.status_code == 422
    fields = {tuple(d["loc"]) for d in reply.json()["detail"]}
    assert ("body", "attempt_id") in fields and ("body", "code") in fields
    reply = await agent.post("/api/agent/pause", json={"reason": "nap"})
    assert reply.status_code == 409  # not logged in to the dialer yet
    # Legal JSON that is not Unicode (a lone surrogate) is refused naming the field, not a 500.
    reply = await agent.post(
        "/api/dispositions",
        content=b'{"attempt_id": 1, "code": "callback", "note": "ok \\udc80"}',
        headers={"Content-Type": "application/json"},
    )
    assert reply.status_code == 422, reply.text
    (problem,) = reply.json()["detail"]
    assert problem["loc"] == ["body", "note"] and "lone surrogate" in problem["msg"]
    # An emoji written as an escaped surrogate pair is ordinary text and goes through.
    reply = await agent.post("/api/agent/pause", json={"reason": "\U0001f600"})
    assert reply.status_code == 409
    reply = await agent.post(
        "/api/agent/pause",
        content=b'{"reason": "\\ud83d\\ude00"}',
        headers={"Content-Type": "application/json"},
    )
    assert reply.status_code == 409, reply.text
    await agent.aclose()


async def test_a_second_login_of_the_agent_takes_the_page_over_never_doubles(
    served: Served,
) -> None:
    first = await served.client("agent1")
    ws_url = served.url.replace("http", "ws") + "/ws/agent"
    old_cookie = first.cookies.get("dialer_session")
    async with websockets.connect(
        ws_url, additional_headers={"Cookie": f"dialer_session={old_cookie}"}
    ) as old_page:
        assert (await first.post("/api/agent/login", json={})).status_code == 200
        await _next(old_page, "state")
        second = await served.client("agent1")
        new_cookie = second.cookies.get("dialer_session")
        async with websockets.connect(
            ws_url, additional_headers={"Cookie": f"dialer_session={new_cookie}"}
        ) as new_page:
            await _next(old_page, "taken_over")
            # The new page opens on the shift as it stands: logged in, paused, one shift.
            state = await _next(new_page, "state")
            assert (state["state"], state["pause_reason"]) == ("paused", "login")
            again = await second.post("/api/agent/login", json={})
            assert again.status_code == 200
    shifts = served.rig.engine.sessions
    assert [s.agent_id for s in shifts.statuses()].count("agent1") == 1
    open_now = shift_store.open_shifts(
        served.rig.store, served.rig.engine.tenant_id, agent_id="agent1"
    )
    assert len(open_now) == 1
    await first.aclose()
    await second.aclose()


async def test_preview_agent_sees_the_case_first_and_the_call_is_theirs(served: Served) -> None:
    supervisor = await served.client("supervisor")
    cid = served.rig.engine.campaign_id
    reply = await supervisor.post(f"/api/campaigns/{cid}/controls", json={"dial_mode": "preview"})
    assert reply.status_code == 200, reply.text
    agent = await served.client("agent1")
    # Nothing to preview before logging in and saying ready.
    assert (await agent.get("/api/agent/preview")).status_code == 409
    async with asyncio.timeout(20):
        while served.rig.engine.pacer.settings.dial_mode.value != "preview":
            await asyncio.sleep(0.05)
    cookie = agent.cookies.get("dialer_session")
    ws_url = served.url.replace("http", "ws") + "/ws/agent"
    async with websockets.connect(
        ws_url, additional_headers={"Cookie": f"dialer_session={cookie}"}
    ) as ws:
        await _login_ready(agent)
        status = (await agent.get("/api/agent/status")).json()
        assert status["dial_mode"] == "preview"
        # A preview campaign places no call by itself.
        assert served.rig.engine.stats.originates_sent == 0
        preview = (await agent.get("/api/agent/preview")).json()["case"]
        assert preview["attempt_id"] is None and preview["accounts"]
        dialled = await agent.post("/api/agent/preview/dial")
        assert dialled.status_code == 200, dialled.text
        attempt_id = dialled.json()["attempt_id"]
        assert served.rig.engine.stats.originates_sent == 1
        with served.rig.store.engine.connect() as conn:
            phone = conn.execute(
                sa.text(
                    "SELECT p.e164 FROM call_attempts a JOIN phones p ON p.id = a.phone_id"
                    " WHERE a.id = :id"
                ),
                {"id": attempt_id},
            ).scalar_one()
        assert phone == preview["phone"]
        # Dialling again needs a new preview.
        assert (await agent.post("/api/agent/preview/dial")).status_code == 409
        # The call goes to the agent who dialled it, if the debtor answers.
        async with asyncio.timeout(60):
            while served.rig.engine.live.get(attempt_id) is not None:
                await asyncio.sleep(0.05)
        with served.rig.store.engine.connect() as conn:
            connected, agent_id = conn.execute(
                sa.text("SELECT connected_at, agent_id FROM call_attempts WHERE id = :id"),
                {"id": attempt_id},
            ).one()
        if connected is not None:
            assert agent_id == "agent1"
            assert (await _next(ws, "pop"))["case"]["attempt_id"] == attempt_id  # type: ignore[index]
    await agent.aclose()
    await supervisor.aclose()


async def test_a_supervisors_stop_ends_the_run_and_is_audited(served: Served) -> None:
    supervisor = await served.client("supervisor")
    cid = served.rig.engine.campaign_id
    reply = await supervisor.post(f"/api/campaigns/{cid}/controls", json={"status": "stopped"})
    assert reply.status_code == 200, reply.text
    async with asyncio.timeout(30):
        await served.run
    audit = (await supervisor.get("/api/audit")).json()
    assert [e["action"] for e in audit if e["action"] == "campaign.stop"] == ["campaign.stop"]
    await supervisor.aclose()


async def test_an_agent_puts_the_debtor_through_to_a_supervisor(served: Served) -> None:
    agent = await served.client("agent1")
    cookie = agent.cookies.get("dialer_session")
    ws_url = served.url.replace("http", "ws") + "/ws/agent"
    async with websockets.connect(
        ws_url, additional_headers={"Cookie": f"dialer_session={cookie}"}
    ) as ws:
        # Not on a call: nothing to transfer.
        await _login_ready(agent)
        assert (await agent.post("/api/agent/transfer")).status_code == 409
        attempt_id = (await _next(ws, "pop"))["case"]["attempt_id"]  # type: ignore[index]
        async with asyncio.timeout(20):
            while (await agent.get("/api/agent/status")).json()["state"] != "on_call":
                await asyncio.sleep(0.02)
        reply = await agent.post("/api/agent/transfer")
        assert reply.status_code == 200, reply.text
        assert reply.json()["attempt_id"] == attempt_id
        # The agent is free of it (wrap-up, then the next call) while the debtor talks on
        # with the supervisor.
        assert served.rig.engine.live.get(attempt_id) is not None
        status = (await agent.get("/api/agent/status")).json()
        assert status["state"] != "on_call" or status["attempt_id"] != attempt_id
        # Stored in the shift as it happened (written behind, on the store's worker).
        async with asyncio.timeout(10):
            while ("on_call", "wrap_up", attempt_id) not in [
                (c.from_state, c.to_state, c.attempt_id)
                for c in shift_store.state_changes(
                    served.rig.store, served.rig.engine.tenant_id, "agent1"
                )
            ]:
                await asyncio.sleep(0.05)
    await agent.aclose()
