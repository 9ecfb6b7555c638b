"""The product end to end on a real Asterisk 20 configured from asterisk-conf/ as shipped: a
person signs in to the pages, logs in to the dialer with a desk phone (nailed up: called once),
says ready, and four debtors are bridged into their conference one after the other; the phone
is never called again. Skips without an Asterisk."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
import websockets

from dialer.config import load_config
from dialer.run import run_campaign
from dialer.store import users
from dialer.store.db import open_store
from dialer.store.models import AgentSessionRow, Role
from sim.lab import AsteriskLab
from tests.asterisk_rig import SHORT_CALL, lab_dialer, lab_number
from tests.test_asterisk_real import StartLab, _assert_books_closed

pytestmark = pytest.mark.asterisk

PASSWORD = "desktop-test-password"


async def test_a_nailed_up_agent_takes_debtor_after_debtor_on_one_phone_call(
    tmp_path: Path, asterisk_lab: StartLab
) -> None:
    lab: AsteriskLab = asterisk_lab()
    # Short calls (answer, hello, hang up), one after the other on the same conference.
    numbers = [lab_number(i, SHORT_CALL) for i in range(4)]
    dialer = lab_dialer(tmp_path, lab, numbers, agents=0, talk_secs=1)
    # Answering-machine detection is tested elsewhere; here it would only add seconds a call.
    toml = dialer.config_path.read_text(encoding="utf-8")
    dialer.config_path.write_text(
        toml.replace("[dialing]\n", "[dialing]\nuse_amd = false\n", 1), encoding="utf-8"
    )
    config = load_config(dialer.config_path)
    store = open_store(config.effective_database_url)
    users.add_user(store, "default", "agent1", PASSWORD, Role.AGENT, agent_id="agent1")
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    pops: list[int] = []
    try:
        async with asyncio.timeout(150):
            run = asyncio.create_task(
                run_campaign(
                    config,
                    store,
                    campaign_name="lab",
                    stop=asyncio.Event(),
                    show_progress=False,
                    serve_web=True,
                    web_port=0,
                    on_web_ready=ready.set_result,
                )
            )
            url = f"http://127.0.0.1:{await ready}"
            async with httpx.AsyncClient(base_url=url, timeout=10) as page:
                reply = await page.post(
                    "/api/login",
                    json={"tenant": "default", "username": "agent1", "password": PASSWORD},
                )
                assert reply.status_code == 200, reply.text
                cookie = page.cookies["dialer_session"]
                async with websockets.connect(
                    url.replace("http", "ws") + "/ws/agent",
                    additional_headers={"Cookie": f"dialer_session={cookie}"},
                ) as feed:
                    reply = await page.post(
                        "/api/agent/login", json={"phone": "Local/agent1@agents"}
                    )
                    assert reply.status_code == 200, reply.text
                    # The desk phone rings; the person answers; then they say ready.
                    while (await page.post("/api/agent/ready")).status_code != 200:
                        await asyncio.sleep(0.1)
                    while len(pops) < len(numbers):
                        message = json.loads(await feed.recv())
                        if message["type"] == "pop":
                            pops.append(message["case"]["attempt_id"])
            summary = await run
    finally:
        store.close()
    rows = _assert_books_closed(dialer)
    assert summary.attempts == len(numbers)
    connected = [r for r in rows if r.connected_at is not None]
    assert len(connected) == len(numbers), [(r.outcome, r.agent_id) for r in rows]
    assert {r.agent_id for r in connected} == {"agent1"}
    # Each debtor popped on the agent's screen, the case of the call they were connected to.
    assert sorted(pops) == sorted(r.id for r in connected)
    # One login call for the whole shift: the dialplan's dialer-agent ran once.
    log = lab.messages_log.read_text(encoding="utf-8")
    assert log.count("DIALER-AGENT Local/agent1@agents") == 1, log[-3000:]
    # Every debtor joined the agent's conference (not a Dial of the agent's phone).
    assert log.count("agent-agent1,dialer_agent_bridge,dialer_debtor") == len(numbers)
    engine = sa.create_engine(dialer.database_url)
    with engine.connect() as conn:
        shifts = list(conn.execute(sa.select(AgentSessionRow)))
    engine.dispose()
    assert len(shifts) == 1
    shift = shifts[0]
    assert shift.phone_call_id == "lab1-agent-agent1-1"
    # The campaign's end logged the agent out and hung the phone up.
    assert shift.logged_out_at is not None
