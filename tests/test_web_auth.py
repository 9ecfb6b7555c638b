"""The web API's door: session cookie, roles, tenant scope, throttled logins, audited refusals."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import Depends, FastAPI, WebSocket
from starlette.types import Message

from dialer.store import users
from dialer.store.db import Store, open_store
from dialer.store.models import Role
from dialer.web.auth import COOKIE, Auth, Caller

PASSWORD = "correct horse battery"


@dataclass
class Clock:
    now: datetime = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@dataclass
class Rig:
    store: Store
    auth: Auth
    clock: Clock
    app: FastAPI


def _app(store: Store, clock: Clock, *, cookie_secure: bool = False) -> Rig:
    auth = Auth(store, session_ttl_s=3600, cookie_secure=cookie_secure, clock=clock)
    app = FastAPI()
    app.include_router(auth.router())

    @app.get("/agent-only")
    async def agent_only(caller: Caller = Depends(auth.require(Role.AGENT))) -> str:  # noqa: B008
        return caller.username

    @app.get("/supervisors")
    async def supervisors(
        caller: Caller = Depends(auth.require(Role.SUPERVISOR)),  # noqa: B008
    ) -> str:
        return caller.username

    @app.get("/managers-exactly")
    async def managers(
        caller: Caller = Depends(auth.require(Role.MANAGER, exact=True)),  # noqa: B008
    ) -> str:
        return caller.username

    @app.get("/tenants/{tenant_id}/campaigns")
    async def campaigns(tenant_id: int, caller: Caller = Depends(auth.caller)) -> str:  # noqa: B008
        auth.same_tenant(caller, tenant_id)
        return caller.tenant

    return Rig(store, auth, clock, app)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    opened = open_store(database_url)
    for tenant, name, role, agent_id in [
        ("acme", "alice", Role.AGENT, "agent1"),
        ("acme", "sue", Role.SUPERVISOR, None),
        ("acme", "ada", Role.ADMIN, None),
        ("acme", "max", Role.MANAGER, None),
        ("other", "olga", Role.SUPERVISOR, None),
    ]:
        users.add_user(opened, tenant, name, PASSWORD, role, agent_id=agent_id)
    yield opened
    opened.close()


@pytest.fixture
def rig(store: Store) -> Rig:
    return _app(store, Clock())


@pytest.fixture
async def client(rig: Rig) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=rig.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


async def _login(
    client: httpx.AsyncClient, username: str, password: str = PASSWORD, tenant: str = "acme"
) -> httpx.Response:
    return await client.post(
        "/api/login", json={"tenant": tenant, "username": username, "password": password}
    )


def _forbidden_events(rig: Rig, tenant: str = "acme") -> list[users.AuditEntry]:
    user = users.find_user(rig.store, tenant, "alice" if tenant == "acme" else "olga")
    assert user is not None
    return [e for e in users.list_audit(rig.store, user.tenant_id) if e.action == "forbidden"]


async def test_without_a_session_every_route_answers_401_and_says_so_in_the_log(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    for path in ("/api/me", "/agent-only", "/supervisors", "/tenants/1/campaigns"):
        res = await client.get(path)
        assert res.status_code == 401, path
        assert res.json() == {"detail": "not signed in"}
    client.cookies.set(COOKIE, "forged-token")
    res = await client.get("/api/me")
    assert res.status_code == 401
    assert "sign in again" in res.json()["detail"]
    refusals = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("401 GET /supervisors" in r.getMessage() for r in refusals)
    assert all("forged-token" not in r.getMessage() for r in caplog.records)


async def test_login_sets_a_strict_httponly_cookie_and_me_answers(
    client: httpx.AsyncClient,
) -> None:
    res = await _login(client, "alice")
    assert res.status_code == 200
    assert res.json()["user"] == {
        "username": "alice",
        "display_name": "alice",
        "role": "agent",
        "tenant": "acme",
        "language": "en",
        "agent_id": "agent1",
    }
    cookie = res.headers["set-cookie"]
    attributes = {part.strip().split("=")[0].lower(): part for part in cookie.split(";")}
    assert cookie.startswith(f"{COOKIE}=")
    assert "httponly" in attributes
    assert attributes["samesite"].strip().lower() == "samesite=strict"
    assert attributes["path"].strip() == "Path=/"
    assert "secure" not in attributes  # plain HTTP in the lab; see the next test
    assert "max-age" not in attributes and "expires" not in attributes

    me = await client.get("/api/me")
    assert me.status_code == 200 and me.json()["username"] == "alice"
    assert (await client.get("/agent-only")).text == '"alice"'


async def test_behind_https_the_cookie_is_secure(store: Store) -> None:
    rig = _app(store, Clock(), cookie_secure=True)
    transport = httpx.ASGITransport(app=rig.app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
        res = await _login(client, "sue")
        assert res.status_code == 200
        assert "secure" in [p.strip().lower() for p in res.headers["set-cookie"].split(";")]
        assert (await client.get("/supervisors")).status_code == 200


async def test_bad_credentials_get_one_generic_answer_and_no_cookie(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    answers = [
        await _login(client, "alice", "wrong password"),
        await _login(client, "nobody"),
        await _login(client, "alice", tenant="other"),
    ]
    assert {r.status_code for r in answers} == {401}
    assert {r.json()["detail"] for r in answers} == {"wrong tenant, username or password"}
    assert all("set-cookie" not in r.headers for r in answers)
    assert (await client.get("/api/me")).status_code == 401
    assert not any(PASSWORD in r.getMessage() for r in caplog.records)
    assert not any("wrong password" in r.getMessage().split(":")[0] for r in caplog.records)


async def test_a_role_outside_the_route_gets_403_logged_and_audited(
    client: httpx.AsyncClient, rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    await _login(client, "alice")
    token = client.cookies[COOKIE]
    res = await client.get("/supervisors")
    assert res.status_code == 403
    assert "supervisor" in res.json()["detail"]
    (event,) = _forbidden_events(rig)
    assert event.username == "alice"
    assert event.target == "GET /supervisors"
    assert event.new_value is not None and event.new_value["role"] == "agent"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        "403 GET /supervisors" in m and "'alice'" in m and "role=agent" in m for m in warnings
    )
    assert not any(token in r.getMessage() for r in caplog.records)
    assert event.tenant_id is not None
    assert not any(token in str(e.new_value) for e in users.list_audit(rig.store, event.tenant_id))


async def test_admin_is_admitted_where_supervisors_are_unless_the_route_is_exact(
    client: httpx.AsyncClient, rig: Rig
) -> None:
    await _login(client, "ada")
    assert (await client.get("/supervisors")).status_code == 200
    assert (await client.get("/managers-exactly")).status_code == 403
    assert (await client.get("/agent-only")).status_code == 403
    await _login(client, "max")
    assert (await client.get("/managers-exactly")).status_code == 200
    # roles are not ranked: a manager is not a supervisor
    assert (await client.get("/supervisors")).status_code == 403
    await _login(client, "sue")
    assert (await client.get("/agent-only")).status_code == 403
    assert len(_forbidden_events(rig)) == 4


async def test_another_tenants_resource_is_refused_and_audited(
    client: httpx.AsyncClient, rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    await _login(client, "olga", tenant="other")
    olga = users.find_user(rig.store, "other", "olga")
    alice = users.find_user(rig.store, "acme", "alice")
    assert olga is not None and alice is not None
    assert (await client.get(f"/tenants/{olga.tenant_id}/campaigns")).text == '"other"'
    res = await client.get(f"/tenants/{alice.tenant_id}/campaigns")
    assert res.status_code == 403
    assert res.json() == {"detail": "forbidden: not in your tenant"}
    await rig.auth.drain()
    (event,) = _forbidden_events(rig, "other")
    assert event.username == "olga"
    assert event.target == f"GET /tenants/{alice.tenant_id}/campaigns"
    assert _forbidden_events(rig, "acme") == []  # the victim tenant's trail is not written to
    assert any(
        f"403 GET /tenants/{alice.tenant_id}/campaigns" in r.getMessage()
        and "'olga'" in r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING
    )


async def test_five_failures_lock_the_username_for_five_minutes(
    client: httpx.AsyncClient, rig: Rig
) -> None:
    for _ in range(5):
        assert (await _login(client, "alice", "guess-guess")).status_code == 401
    locked = await _login(client, "alice")  # even the right password now
    assert locked.status_code == 429
    assert 0 < int(locked.headers["Retry-After"]) <= 300
    assert (await _login(client, "sue")).status_code == 200  # others are not locked out
    rig.clock.advance(minutes=4)
    assert (await _login(client, "alice")).status_code == 429
    rig.clock.advance(minutes=1, seconds=1)
    assert (await _login(client, "alice")).status_code == 200


async def test_failures_spread_over_more_than_five_minutes_do_not_lock(
    client: httpx.AsyncClient, rig: Rig
) -> None:
    for _ in range(8):
        assert (await _login(client, "alice", "guess-guess")).status_code == 401
        rig.clock.advance(minutes=1, seconds=30)
    assert (await _login(client, "alice")).status_code == 200


async def test_a_burst_of_parallel_guesses_is_cut_at_five(client: httpx.AsyncClient) -> None:
    answers = await asyncio.gather(*(_login(client, "alice", f"guess-{i}") for i in range(12)))
    codes = sorted(r.status_code for r in answers)
    assert codes.count(401) <= 5
    assert codes.count(429) >= 7


async def test_logout_ends_the_session_at_once(client: httpx.AsyncClient, rig: Rig) -> None:
    await _login(client, "sue")
    token = client.cookies[COOKIE]
    assert (await client.get("/api/me")).status_code == 200  # now in the memory cache
    res = await client.post("/api/logout")
    assert res.status_code == 204
    assert f'{COOKIE}=""' in res.headers["set-cookie"] or "Max-Age=0" in res.headers["set-cookie"]
    # the old token, replayed by hand, is refused
    client.cookies.set(COOKIE, token)
    assert (await client.get("/api/me")).status_code == 401
    assert (await client.post("/api/logout")).status_code == 204  # harmless twice
    sue = users.find_user(rig.store, "acme", "sue")
    assert sue is not None
    actions = [e.action for e in users.list_audit(rig.store, sue.tenant_id)]
    assert actions[:2] == ["logout", "login"]


async def test_idle_sessions_expire_and_used_ones_slide(
    client: httpx.AsyncClient, rig: Rig
) -> None:
    await _login(client, "sue")
    for _ in range(3):  # used every 40 minutes, an hour-long session goes on
        rig.clock.advance(minutes=40)
        assert (await client.get("/supervisors")).status_code == 200
    rig.clock.advance(minutes=61)
    res = await client.get("/supervisors")
    assert res.status_code == 401
    assert "sign in again" in res.json()["detail"]


async def test_new_password_or_disabling_ends_sessions_within_seconds(
    client: httpx.AsyncClient, rig: Rig
) -> None:
    await _login(client, "alice")
    assert (await client.get("/api/me")).status_code == 200
    alice = users.find_user(rig.store, "acme", "alice")
    assert alice is not None
    users.set_password(rig.store, alice.id, "a fresh passphrase")  # e.g. `dialer users passwd`
    rig.clock.advance(seconds=6)  # past the memory cache
    assert (await client.get("/api/me")).status_code == 401
    assert (await _login(client, "alice", "a fresh passphrase")).status_code == 200
    users.disable(rig.store, alice.id)
    rig.clock.advance(seconds=6)
    assert (await client.get("/agent-only")).status_code == 401
    assert (await _login(client, "alice", "a fresh passphrase")).status_code == 401


async def test_language_choice_is_kept(client: httpx.AsyncClient) -> None:
    await _login(client, "alice")
    res = await client.post("/api/me/language", json={"language": "zh-CN"})
    assert res.status_code == 200 and res.json()["language"] == "zh-CN"
    assert (await client.get("/api/me")).json()["language"] == "zh-CN"
    assert (await client.post("/api/me/language", json={"language": "fr"})).status_code == 422
    await client.post("/api/logout")
    assert (await _login(client, "alice")).json()["user"]["language"] == "zh-CN"


async def test_password_checks_do_not_stall_other_requests(client: httpx.AsyncClient) -> None:
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            await asyncio.sleep(0.005)
            ticks += 1

    task = asyncio.create_task(ticker())
    started = asyncio.get_running_loop().time()
    await asyncio.gather(*(_login(client, name) for name in ("alice", "sue", "max")))
    elapsed = asyncio.get_running_loop().time() - started
    done.set()
    await task
    # argon2 on the event loop would leave the ticker a handful of ticks at most
    assert ticks >= elapsed / 0.005 * 0.3, (ticks, elapsed)


def _handshake(cookie: str | None) -> WebSocket:
    headers = [(b"host", b"testserver")]
    if cookie is not None:
        headers.append((b"cookie", f"{COOKIE}={cookie}".encode()))
    scope = {
        "type": "websocket",
        "path": "/ws/agent",
        "headers": headers,
        "query_string": b"",
        "client": ("10.0.0.9", 50000),
        "server": ("testserver", 80),
        "scheme": "ws",
    }

    async def never() -> Message:
        raise AssertionError("not read")

    async def ignore(message: Message) -> None:
        raise AssertionError("not sent")

    return WebSocket(scope, never, ignore)


async def test_websocket_needs_the_session_cookie(
    client: httpx.AsyncClient, rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    assert await rig.auth.websocket_caller(_handshake(None)) is None
    assert await rig.auth.websocket_caller(_handshake("forged")) is None
    assert any("401 WS /ws/agent" in r.getMessage() for r in caplog.records)
    await _login(client, "alice")
    token = client.cookies[COOKIE]
    caller = await rig.auth.websocket_caller(_handshake(token))
    assert caller is not None and caller.username == "alice" and caller.agent_id == "agent1"
    await client.post("/api/logout")
    assert await rig.auth.websocket_caller(_handshake(token)) is None
