"""The messaging HTTP API: the gateway's webhooks (token-checked receipts and replies) and a
debtor's message log for a manager, tenant-scoped."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from compliance_guard.models import Channel, Flag, FlagScope
from compliance_guard.service import Guard
from dialer.messaging.file_provider import FileProvider
from dialer.messaging.service import MessagingService, MessagingSettings
from dialer.store import users
from dialer.store.db import Store, open_store
from dialer.store.models import Role
from dialer.web.auth import Auth
from dialer.web.messaging_api import messaging_router
from tests.messaging_fixtures import Clock, Seeded, seed, sql_guard, templates

MIDDAY = datetime(2026, 12, 2, 4, 0, tzinfo=UTC)
TOKEN = "whk-3c9d7e"
PASSWORD = "messaging-api-password"


@dataclass
class World:
    store: Store
    guard: Guard
    seeded: Seeded
    app: FastAPI

    def client(self, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://msg.test", headers=headers
        )


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    store = open_store(f"sqlite:///{tmp_path / 'dialer.db'}")
    seeded = seed(store, count=2)
    guard = sql_guard(store)
    auth = Auth(store, clock=lambda: MIDDAY)
    app = FastAPI()
    app.include_router(auth.router())
    app.include_router(
        messaging_router(
            store,
            auth,
            guard,
            "bank",
            clock=lambda: MIDDAY,
            env={"DIALER_MESSAGING_WEBHOOK_TOKEN": TOKEN},
        )
    )
    yield World(store, guard, seeded, app)
    await auth.drain()
    store.close()


async def test_a_tuiding_reply_posted_by_the_gateway_opts_the_number_out(world: World) -> None:
    async with world.client({"Authorization": f"Bearer {TOKEN}"}) as gateway:
        reply = await gateway.post(
            "/api/messaging/inbound", json={"from": "+8613800138001", "text": "退订"}
        )
    assert reply.status_code == 200, reply.text
    assert reply.json() == {
        "opted_out": True,
        "flags": ["opt_out_sms"],
        "channels_refused": ["sms"],
    }
    assert Flag.OPT_OUT_SMS.value in world.guard.flags("bank", FlagScope.PHONE, "+8613800138001")


async def test_webhooks_refuse_a_wrong_token(world: World) -> None:
    async with world.client({"Authorization": "Bearer guess"}) as stranger:
        reply = await stranger.post(
            "/api/messaging/inbound", json={"from": "+8613800138001", "text": "STOP"}
        )
    assert reply.status_code == 401
    assert world.guard.flags("bank", FlagScope.PHONE, "+8613800138001") == frozenset()


async def test_a_receipt_called_back_marks_the_message_delivered_in_the_managers_log(
    world: World, tmp_path: Path
) -> None:
    service = MessagingService(
        world.store,
        world.guard,
        {Channel.SMS: FileProvider(Channel.SMS, tmp_path / "out.jsonl")},
        MessagingSettings(tenant="bank"),
        clock=Clock(MIDDAY),
    )
    debtor = world.seeded.debtors["D-1"]
    service.plan(templates()["gentle"], [debtor], "b1")
    assert service.dispatch("b1").sent == 1
    ref = "file-m-1"  # what the file provider answers as the provider's id
    async with world.client({"Authorization": f"Bearer {TOKEN}"}) as gateway:
        reply = await gateway.post(
            "/api/messaging/receipts",
            json=[{"id": ref, "status": "delivered", "at": "2026-12-02T04:00:05+00:00"}],
        )
    assert reply.json() == {"received": 1, "matched": 1}

    users.add_user(world.store, "bank", "mei", PASSWORD, Role.MANAGER)
    users.add_user(world.store, "other", "boss", PASSWORD, Role.MANAGER)
    async with world.client() as mei, world.client() as boss:
        for client, tenant, name in ((mei, "bank", "mei"), (boss, "other", "boss")):
            login = await client.post(
                "/api/login", json={"tenant": tenant, "username": name, "password": PASSWORD}
            )
            assert login.status_code == 200
        log = await mei.get(f"/api/messaging/debtors/{debtor}/messages")
        assert log.status_code == 200
        [message] = log.json()
        assert message["status"] == "delivered"
        assert message["body"].startswith("张1您好")
        assert [e["kind"] for e in message["events"]] == ["sent", "delivered"]
        hidden = await boss.get(f"/api/messaging/debtors/{debtor}/messages")
        assert hidden.status_code == 404
