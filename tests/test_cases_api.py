"""The cases' HTTP API with the pages' own sign-in, on SQLite and PostgreSQL: a manager reads a
case whole and records a payment once; an agent works their own cases only; refusals name the
field; another tenant sees nothing."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from dialer.cases import service
from dialer.cases.models import Actor
from dialer.store import users
from dialer.store.models import DispositionCode, Role
from dialer.web.auth import Auth
from dialer.web.cases_api import cases_router
from tests.cases_fixtures import empty, open_world
from tests.test_desk import T0, Desk

PASSWORD = "cases-api-password"
# username -> (tenant, role, agent id)
USERS = {
    "mei": ("bank", Role.MANAGER, None),
    "sam": ("bank", Role.SUPERVISOR, None),
    "a1": ("bank", Role.AGENT, "a1"),
    "qa": ("bank", Role.QA, None),
    "boss": ("other", Role.MANAGER, None),
}
DAY = T0.date()


@dataclass
class Api:
    desk: Desk
    app: FastAPI

    async def client(self, username: str) -> httpx.AsyncClient:
        """A signed-in client of one of USERS (created now: hashing a password is slow)."""
        tenant, role, agent_id = USERS[username]
        users.add_user(self.desk.store, tenant, username, PASSWORD, role, agent_id=agent_id)
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://cases.test"
        )
        reply = await client.post(
            "/api/login", json={"tenant": tenant, "username": username, "password": PASSWORD}
        )
        assert reply.status_code == 200, reply.text
        return client

    def case(self, debtor: str) -> int:
        found = service.case_of(self.desk.store, self.desk.tenant_id, self.desk.debtor_ids[debtor])
        assert found is not None
        return found


@pytest.fixture
async def api(migrated_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    empty(migrated_url)
    desk = open_world(migrated_url, tmp_path)
    auth = Auth(desk.store, clock=lambda: T0)
    app = FastAPI()
    app.include_router(auth.router())
    # Each request a second after the last, so the timeline has an order to tell.
    ticks = itertools.count()
    app.include_router(cases_router(desk.store, auth, lambda: T0 + timedelta(seconds=next(ticks))))
    yield Api(desk, app)
    await auth.drain()
    desk.store.close()


async def test_a_manager_reads_the_case_whole_and_a_payment_counts_once(api: Api) -> None:
    mei = await api.client("mei")
    case_id = api.case("D1")
    url = f"/api/cases/{case_id}"
    promised = await mei.post(
        f"{url}/promises",
        json={"amount": "500", "due_date": (DAY + timedelta(days=7)).isoformat(), "debt_id": "A1"},
    )
    assert promised.status_code == 201, promised.text
    note = await mei.post(f"{url}/notes", json={"body": "will pay from her salary"})
    assert note.status_code == 201
    body = {
        "payment_id": "BANK-77",
        "amount": "250.50",
        "paid_on": DAY.isoformat(),
        "debt_id": "A1",
    }
    first = await mei.post(f"{url}/payments", json=body)
    assert first.status_code == 201, first.text
    assert Decimal(first.json()["balance_after"]) == Decimal("1000.00")
    again = await mei.post(f"{url}/payments", json=body)
    assert again.status_code == 200 and again.json()["created"] is False
    other = await mei.post(f"{url}/payments", json={**body, "amount": "25.05"})
    assert other.status_code == 409
    (detail,) = other.json()["detail"]
    assert detail["loc"] == ["body", "payment_id"]
    assert "250.50" in detail["msg"] and "25.05" in detail["msg"]
    case = (await mei.get(url)).json()
    assert case["status"] == "promise_to_pay"
    assert case["debtor_external_id"] == "D1" and case["debtor_name"] == "Ana Núñez"
    assert [(d["external_id"], Decimal(d["balance"])) for d in case["debts"]] == [
        ("A1", Decimal("1000.00")),
        ("A2", Decimal("99.999")),
    ]
    assert Decimal(case["balance"]["USD"]) == Decimal("1099.999")
    assert [p["payment_id"] for p in case["payments"]] == ["BANK-77"]
    assert [(p["status"], Decimal(p["amount"])) for p in case["promises"]] == [
        ("open", Decimal("500"))
    ]
    assert [e["kind"] for e in case["timeline"]] == ["promise", "status", "note", "payment"]
    assert case["timeline"][-1]["actor"] == "user:mei"
    assert (await mei.get("/api/cases/999999")).status_code == 404
    await mei.aclose()


async def test_an_agent_works_their_own_cases_only(api: Api) -> None:
    mine, theirs = api.case("D2"), api.case("D1")
    service.assign(
        api.desk.store, api.desk.tenant_id, mine, "a1", Actor.user("mei"), "her queue", T0
    )
    agent = await api.client("a1")
    assert (await agent.get(f"/api/cases/{mine}")).status_code == 200
    assert (await agent.get(f"/api/cases/{theirs}")).status_code == 403
    assert (await agent.post(f"/api/cases/{theirs}/notes", json={"body": "x"})).status_code == 403
    promise = {"amount": "30", "due_date": (DAY + timedelta(days=1)).isoformat()}
    assert (await agent.post(f"/api/cases/{mine}/promises", json=promise)).status_code == 201
    # Payments and the decisions beyond in_progress are a supervisor's or manager's.
    pay = {"payment_id": "P1", "amount": "1", "paid_on": DAY.isoformat()}
    assert (await agent.post(f"/api/cases/{mine}/payments", json=pay)).status_code == 403
    legal = {"status": "legal", "reason": "no answer for months"}
    assert (await agent.post(f"/api/cases/{mine}/status", json=legal)).status_code == 403
    back = {"status": "in_progress", "reason": "promise withdrawn on the phone"}
    moved = await agent.post(f"/api/cases/{mine}/status", json=back)
    assert moved.status_code == 200 and moved.json() == {"status": "in_progress"}
    # A debtor the agent has talked to is theirs to work too.
    api.desk.dispose(api.desk.attempt("D1", "+12125550100", "A1"), DispositionCode.REFUSED)
    assert (await agent.get(f"/api/cases/{theirs}")).status_code == 200
    # QA has no business here; another tenant does not even find the case.
    qa = await api.client("qa")
    assert (await qa.get(f"/api/cases/{mine}")).status_code == 403
    boss = await api.client("boss")
    assert (await boss.get(f"/api/cases/{mine}")).status_code == 404
    assert (await boss.post(f"/api/cases/{mine}/notes", json={"body": "x"})).status_code == 404
    history = service.get_case(api.desk.store, api.desk.tenant_id, mine).history
    assert [(h.field, h.new_value, h.actor) for h in reversed(history)] == [
        ("agent", "a1", "user:mei"),
        ("status", "promise_to_pay", "user:a1"),
        ("status", "in_progress", "user:a1"),
    ]
    for client in (agent, qa, boss):
        await client.aclose()


async def test_refusals_name_the_field_and_why(api: Api) -> None:
    sam = await api.client("sam")
    url = f"/api/cases/{api.case('D2')}"
    late = {"amount": "30", "due_date": (DAY + timedelta(days=120)).isoformat()}
    reply = await sam.post(f"{url}/promises", json=late)
    assert reply.status_code == 422
    assert reply.json()["detail"][0]["loc"] == ["body", "due_date"]
    reply = await sam.post(f"{url}/status", json={"status": "paid", "reason": "says so"})
    assert reply.status_code == 422 and "set by payments" in reply.json()["detail"][0]["msg"]
    closed = await sam.post(f"{url}/status", json={"status": "closed", "reason": "sold on"})
    assert closed.status_code == 200
    reply = await sam.post(f"{url}/status", json={"status": "legal", "reason": "counsel"})
    assert reply.status_code == 422
    assert "from closed to legal" in reply.json()["detail"][0]["msg"]
    pay = {"payment_id": "P1", "amount": "-5", "paid_on": DAY.isoformat()}
    assert (await sam.post(f"{url}/payments", json=pay)).status_code == 422
    ahead = {**pay, "amount": "5", "paid_on": (DAY + timedelta(days=2)).isoformat()}
    reply = await sam.post(f"{url}/payments", json=ahead)
    assert reply.status_code == 422 and reply.json()["detail"][0]["loc"] == ["body", "paid_on"]
    reply = await sam.post(f"{url}/notes", json={"body": "a\u0000b"})
    assert reply.status_code == 422 and "NUL" in reply.json()["detail"][0]["msg"]
    await sam.aclose()
