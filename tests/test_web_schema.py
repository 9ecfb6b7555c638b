"""Whatever a client sends within (or just outside) the published OpenAPI, the server answers
with a 4xx at worst, never a 5xx: schemathesis generates the requests, signed in as each role.

The pages are served by the real app over a real socket, on a loop of their own; the campaign
engine is built but not dialling (no Asterisk): the routes that need one answer 409."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from dialer.config import Config
from dialer.demo import demo_config
from dialer.engine import CampaignEngine
from dialer.gates import UnguardedGate, build_guard
from dialer.importer import import_csv
from dialer.portfolio import write_sample_portfolio
from dialer.store import attempts as repo
from dialer.store import users
from dialer.store.db import open_store
from dialer.store.models import Role
from dialer.web.wiring import pages
from pacing.service import make_pacer

PASSWORD = "schema-test-password"


@dataclass
class Site:
    url: str
    cookies: dict[str, str]


def _serve(config: Config, ready: threading.Event, box: dict[str, object]) -> None:
    async def main() -> None:
        store = open_store(config.effective_database_url)
        portfolio = config.data_dir / "portfolio.csv"
        write_sample_portfolio(portfolio, debtors=5, seed=2)
        import_csv(store, portfolio, tenant="default")
        tenant_id = repo.ensure_tenant(store, "default")
        campaign_id = repo.ensure_campaign(store, tenant_id, "schema", "progressive")
        for username, role, agent_id in (
            ("agent1", Role.AGENT, "agent1"),
            ("supervisor", Role.SUPERVISOR, None),
            ("qa", Role.QA, None),
        ):
            users.add_user(store, "default", username, PASSWORD, role, agent_id=agent_id)
        engine = CampaignEngine(
            config,
            store,
            tenant_id=tenant_id,
            campaign_id=campaign_id,
            pacer=make_pacer("progressive"),
            gate=UnguardedGate(),
        )
        stop = asyncio.Event()
        box["stop"] = (asyncio.get_running_loop(), stop)
        async with pages(engine, config, build_guard(config, store), port=0) as port:
            box["port"] = port
            ready.set()
            await stop.wait()
        store.close()

    try:
        asyncio.run(main())
    except BaseException as exc:  # reported to the test, which would otherwise wait
        box["error"] = exc
        ready.set()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    data = tmp_path_factory.mktemp("schema")
    config = demo_config(ami_port=1, agents=0, data_dir=Path(data), time_scale=1.0)
    ready = threading.Event()
    box: dict[str, object] = {}
    thread = threading.Thread(target=_serve, args=(config, ready, box), daemon=True)
    thread.start()
    assert ready.wait(30), "the pages did not start"
    if "error" in box:
        raise AssertionError(f"the pages failed to start: {box['error']!r}")
    url = f"http://127.0.0.1:{box['port']}"
    cookies = {}
    for username in ("agent1", "supervisor", "qa"):
        reply = httpx.post(
            url + "/api/login",
            json={"tenant": "default", "username": username, "password": PASSWORD},
        )
        assert reply.status_code == 200, reply.text
        cookies[username] = reply.cookies["dialer_session"]
    yield Site(url, cookies)
    loop, stop = box["stop"]  # type: ignore[misc]
    loop.call_soon_threadsafe(stop.set)
    thread.join(15)


@pytest.mark.parametrize("username", ["agent1", "supervisor", "qa"])
def test_no_generated_request_makes_the_server_fail(site: Site, username: str) -> None:
    schema = schemathesis.openapi.from_url(site.url + "/openapi.json")
    failures: list[str] = []
    # Logging out would end the session the rest of the run needs.
    operations = [
        r.ok() for r in schema.get_all_operations() if r.ok().path not in ("/api/logout",)
    ]
    assert len(operations) >= 15, [o.path for o in operations]
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def exercise(case: schemathesis.Case) -> None:
            response = case.call(
                base_url=site.url, cookies={"dialer_session": site.cookies[username]}
            )
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code}: "
                    f"{response.text[:200]}"
                )

        exercise()
    assert failures == []
