"""Who is calling the web API: session cookie, login and logout, roles and tenant scope.

Roles are not ranked. Each route names the roles it admits, `auth.require(Role.AGENT)`; the one
implied rule is that admin is admitted wherever supervisor or manager is, unless the route says
`auth.require(..., exact=True)`. Resources of another tenant are refused with
`auth.same_tenant(caller, tenant_id)`.

Every 401 and 403 is logged at WARNING (user, role, method, path; never a token or password) and
every 403 is written to audit_events with action "forbidden".

Sessions live in the database (web_sessions holds SHA-256 hashes of the tokens); a token's user
is remembered in memory for CACHE_S seconds, so a session ended by another process (`dialer
users passwd`) may still be honoured that long. Login throttling is per process.
"""

import asyncio
import contextvars
import dataclasses
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NoReturn

from fastapi import APIRouter, Depends, HTTPException, Request, Response, WebSocket
from pydantic import BaseModel, Field, SecretStr

from dialer.store import users
from dialer.store.db import Store
from dialer.store.models import Role

log = logging.getLogger(__name__)

COOKIE = "dialer_session"
# How long a token's user is trusted from memory before the database is asked again.
CACHE_S = 5.0
_CACHE_MAX = 10_000
MAX_FAILURES = 5
FAILURE_WINDOW = timedelta(minutes=5)
LOCKOUT = timedelta(minutes=5)
_THROTTLE_MAX_KEYS = 10_000
# Close code for a WebSocket without a valid session (4000-4999: the application's own).
WS_UNAUTHORIZED = 4401


@dataclass(frozen=True)
class Caller:
    """The signed-in user behind a request."""

    user_id: int
    tenant_id: int
    tenant: str
    username: str
    display_name: str
    role: Role
    language: str
    agent_id: str | None


@dataclass(frozen=True)
class _RequestInfo:
    method: str
    path: str
    client: str | None


# The request being served, so same_tenant() can log and audit without being handed it.
_current_request: contextvars.ContextVar[_RequestInfo | None] = contextvars.ContextVar(
    "dialer_current_request", default=None
)


@dataclass(frozen=True)
class _Cached:
    caller: Caller
    at: datetime


@dataclass
class _Attempts:
    """Recent failed logins of one (tenant, username)."""

    failures: list[datetime] = field(default_factory=list)
    locked_until: datetime | None = None
    in_flight: int = 0


class LoginBody(BaseModel):
    tenant: str = Field(min_length=1, max_length=100)
    username: str = Field(min_length=1, max_length=64)
    password: SecretStr = Field(min_length=1, max_length=users.MAX_PASSWORD_LENGTH)


class Me(BaseModel):
    username: str
    display_name: str
    role: Role
    tenant: str
    language: str
    agent_id: str | None


class LoginResult(BaseModel):
    user: Me


class LanguageBody(BaseModel):
    language: Literal["en", "zh-CN"]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _caller(user: users.UserRow) -> Caller:
    return Caller(
        user_id=user.id,
        tenant_id=user.tenant_id,
        tenant=user.tenant,
        username=user.username,
        display_name=user.display_name,
        role=user.role,
        language=user.language,
        agent_id=user.agent_id,
    )


def _me(caller: Caller) -> Me:
    return Me(
        username=caller.username,
        display_name=caller.display_name,
        role=caller.role,
        tenant=caller.tenant,
        language=caller.language,
        agent_id=caller.agent_id,
    )


def _info(request: Request | WebSocket) -> _RequestInfo:
    method = request.method if isinstance(request, Request) else "WS"
    return _RequestInfo(method, request.url.path, request.client.host if request.client else None)


class _Throttle:
    """At most MAX_FAILURES failed logins per key within FAILURE_WINDOW, then LOCKOUT."""

    def __init__(self) -> None:
        self._keys: dict[tuple[str, str], _Attempts] = {}

    def refused_for(self, key: tuple[str, str], now: datetime) -> float:
        """Seconds this key must still wait; 0 when it may try."""
        entry = self._keys.get(key)
        if entry is None:
            return 0.0
        if entry.locked_until is not None:
            if now < entry.locked_until:
                return (entry.locked_until - now).total_seconds()
            entry.locked_until = None
            entry.failures.clear()
        entry.failures = [t for t in entry.failures if now - t < FAILURE_WINDOW]
        # Logins still being verified count too, or a burst sent at once would all get through.
        if len(entry.failures) + entry.in_flight >= MAX_FAILURES:
            return 1.0
        return 0.0

    def start(self, key: tuple[str, str]) -> None:
        if key not in self._keys and len(self._keys) >= _THROTTLE_MAX_KEYS:
            self._prune()
        self._keys.setdefault(key, _Attempts()).in_flight += 1

    def finish(self, key: tuple[str, str], now: datetime, *, ok: bool) -> None:
        entry = self._keys.setdefault(key, _Attempts())
        entry.in_flight = max(0, entry.in_flight - 1)
        if ok:
            if entry.in_flight == 0:
                del self._keys[key]
            else:
                entry.failures.clear()
            return
        entry.failures = [t for t in entry.failures if now - t < FAILURE_WINDOW]
        entry.failures.append(now)
        if len(entry.failures) >= MAX_FAILURES:
            entry.locked_until = now + LOCKOUT

    def _prune(self) -> None:
        # Random usernames must not grow the table without bound: forget the idle keys.
        for key in [k for k, e in self._keys.items() if e.in_flight == 0]:
            del self._keys[key]


class Auth:
    """Sessions, logins and role checks for one FastAPI app."""

    def __init__(
        self,
        store: Store,
        *,
        session_ttl_s: float = 8 * 3600,
        cookie_secure: bool = False,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        if session_ttl_s <= 0:
            raise ValueError(f"session_ttl_s must be positive, got {session_ttl_s}")
        self._store = store
        self._ttl_s = session_ttl_s
        self._secure = cookie_secure
        self._clock = clock
        self._cache: dict[str, _Cached] = {}
        self._throttle = _Throttle()
        self._pending: set[asyncio.Task[None]] = set()

    # ---- sessions ----

    async def _lookup(self, token: str) -> Caller | None:
        key = users.hash_token(token)
        now = self._clock()
        hit = self._cache.get(key)
        if hit is not None and timedelta(0) <= now - hit.at < timedelta(seconds=CACHE_S):
            return hit.caller
        user = await asyncio.to_thread(users.session_user, self._store, token, now=now)
        if user is None:
            self._cache.pop(key, None)
            return None
        caller = _caller(user)
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[key] = _Cached(caller, now)
        return caller

    def _forget_user(self, user_id: int) -> None:
        for key in [k for k, c in self._cache.items() if c.caller.user_id == user_id]:
            del self._cache[key]

    async def caller(self, request: Request) -> Caller:
        """FastAPI dependency: the signed-in user, or 401."""
        info = _info(request)
        _current_request.set(info)
        token = request.cookies.get(COOKIE)
        if not token:
            self._log_refusal(401, info, None, "no session cookie")
            raise HTTPException(401, "not signed in")
        found = await self._lookup(token)
        if found is None:
            self._log_refusal(401, info, None, "session unknown or expired")
            raise HTTPException(401, "session expired or ended; sign in again")
        return found

    async def websocket_caller(self, websocket: WebSocket) -> Caller | None:
        """The signed-in user of a WebSocket handshake, or None (close with WS_UNAUTHORIZED)."""
        info = _info(websocket)
        token = websocket.cookies.get(COOKIE)
        if not token:
            self._log_refusal(401, info, None, "no session cookie")
            return None
        found = await self._lookup(token)
        if found is None:
            self._log_refusal(401, info, None, "session unknown or expired")
        return found

    # ---- roles and tenants ----

    def require(self, *roles: Role, exact: bool = False) -> Callable[[Request], Awaitable[Caller]]:
        """A dependency admitting only `roles` (plus admin where supervisor or manager is,
        unless `exact`); others get 403, logged and audited."""
        if not roles:
            raise ValueError("require() needs at least one role")
        allowed = set(roles)
        if not exact and allowed & {Role.SUPERVISOR, Role.MANAGER}:
            allowed.add(Role.ADMIN)
        names = ", ".join(r.value for r in Role if r in allowed)

        async def dependency(request: Request) -> Caller:
            caller = await self.caller(request)
            if caller.role not in allowed:
                reason = f"role {caller.role.value} not in ({names})"
                info = _info(request)
                self._log_refusal(403, info, caller, reason)
                await asyncio.to_thread(self._write_forbidden, caller, info, reason)
                raise HTTPException(403, f"forbidden: this needs the role {names}")
            return caller

        return dependency

    def same_tenant(self, caller: Caller, tenant_id: int) -> None:
        """403 (logged and audited) unless the resource of `tenant_id` is the caller's tenant."""
        if caller.tenant_id == tenant_id:
            return
        info = _current_request.get() or _RequestInfo("-", "-", None)
        reason = f"resource of tenant {tenant_id}, caller of tenant {caller.tenant_id}"
        self._log_refusal(403, info, caller, reason)
        self._audit_soon(caller, info, reason)
        raise HTTPException(403, "forbidden: not in your tenant")

    async def forbid(self, caller: Caller, reason: str) -> NoReturn:
        """403 for a resource the caller's role admits but which is not theirs (another
        agent's call): logged and audited like every refusal."""
        info = _current_request.get() or _RequestInfo("-", "-", None)
        self._log_refusal(403, info, caller, reason)
        await asyncio.to_thread(self._write_forbidden, caller, info, reason)
        raise HTTPException(403, f"forbidden: {reason}")

    async def audit(
        self,
        caller: Caller,
        action: str,
        target: str | None = None,
        *,
        old: Mapping[str, Any] | None = None,
        new: Mapping[str, Any] | None = None,
        request: Request | None = None,
    ) -> None:
        """Record what `caller` did (campaign controls, listening in) in audit_events."""
        client = request.client.host if request is not None and request.client else None
        await asyncio.to_thread(
            users.record_audit,
            self._store,
            caller.tenant_id,
            caller.user_id,
            caller.username,
            action,
            target,
            old,
            new,
            client,
            self._clock(),
        )

    async def drain(self) -> None:
        """Wait for audit writes still under way (at shutdown, and in tests)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    def _log_refusal(
        self, status: int, info: _RequestInfo, caller: Caller | None, reason: str
    ) -> None:
        log.warning(
            "refused %d %s %s: user=%s role=%s tenant=%s client=%s: %s",
            status,
            info.method,
            info.path,
            repr(caller.username) if caller else "-",
            caller.role.value if caller else "-",
            repr(caller.tenant) if caller else "-",
            info.client or "-",
            reason,
        )

    def _write_forbidden(self, caller: Caller, info: _RequestInfo, reason: str) -> None:
        users.record_audit(
            self._store,
            caller.tenant_id,
            caller.user_id,
            caller.username,
            "forbidden",
            f"{info.method} {info.path}",
            None,
            {"role": caller.role.value, "reason": reason},
            info.client,
            self._clock(),
        )

    def _audit_soon(self, caller: Caller, info: _RequestInfo, reason: str) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            # Called from a synchronous route: already on a worker thread, so write now.
            self._write_forbidden(caller, info, reason)
            return
        task = loop.create_task(asyncio.to_thread(self._write_forbidden, caller, info, reason))
        self._pending.add(task)
        task.add_done_callback(self._audit_done)

    def _audit_done(self, task: asyncio.Task[None]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("audit event not written: %s", task.exception())

    # ---- routes ----

    def _set_cookie(self, response: Response, token: str) -> None:
        # No Max-Age: the server decides when a session ends; the browser forgets it on exit.
        response.set_cookie(
            COOKIE, token, httponly=True, samesite="strict", secure=self._secure, path="/"
        )

    async def _login(self, body: LoginBody, request: Request, response: Response) -> LoginResult:
        info = _info(request)
        key = (body.tenant, body.username)
        wait = self._throttle.refused_for(key, self._clock())
        if wait > 0:
            log.warning(
                "refused 429 %s %s: user=%r tenant=%r client=%s: too many failed logins",
                info.method,
                info.path,
                body.username,
                body.tenant,
                info.client or "-",
            )
            raise HTTPException(
                429,
                "too many failed logins; try again later",
                headers={"Retry-After": str(math.ceil(wait))},
            )
        self._throttle.start(key)
        user: users.UserRow | None = None
        try:
            user = await asyncio.to_thread(
                users.authenticate,
                self._store,
                body.tenant,
                body.username,
                body.password.get_secret_value(),
                now=self._clock(),
            )
        finally:
            self._throttle.finish(key, self._clock(), ok=user is not None)
        if user is None:
            log.warning(
                "refused 401 %s %s: user=%r tenant=%r client=%s: wrong credentials",
                info.method,
                info.path,
                body.username,
                body.tenant,
                info.client or "-",
            )
            raise HTTPException(401, "wrong tenant, username or password")
        old_token = request.cookies.get(COOKIE)
        if old_token:
            self._cache.pop(users.hash_token(old_token), None)
            await asyncio.to_thread(users.end_session, self._store, old_token)
        token = await asyncio.to_thread(
            users.create_session, self._store, user.id, ttl_s=self._ttl_s, now=self._clock()
        )
        caller = _caller(user)
        await self.audit(caller, "login", request=request)
        self._set_cookie(response, token)
        return LoginResult(user=_me(caller))

    async def _logout(self, request: Request) -> Response:
        response = Response(status_code=204)
        response.delete_cookie(COOKIE, path="/", secure=self._secure, httponly=True)
        token = request.cookies.get(COOKIE)
        if not token:
            return response
        caller = await self._lookup(token)
        self._cache.pop(users.hash_token(token), None)
        await asyncio.to_thread(users.end_session, self._store, token)
        if caller is not None:
            await self.audit(caller, "logout", request=request)
        return response

    def router(self) -> APIRouter:
        """POST /api/login, POST /api/logout, GET /api/me, POST /api/me/language."""
        router = APIRouter(tags=["auth"])
        signed_in = Depends(self.caller)

        @router.post(
            "/api/login",
            responses={
                401: {"description": "wrong credentials"},
                429: {"description": "throttled"},
            },
        )
        async def login(body: LoginBody, request: Request, response: Response) -> LoginResult:
            return await self._login(body, request, response)

        @router.post("/api/logout", status_code=204, response_class=Response)
        async def logout(request: Request) -> Response:
            return await self._logout(request)

        @router.get("/api/me")
        async def me(caller: Caller = signed_in) -> Me:
            return _me(caller)

        @router.post("/api/me/language")
        async def set_language(body: LanguageBody, caller: Caller = signed_in) -> Me:
            await asyncio.to_thread(users.set_language, self._store, caller.user_id, body.language)
            self._forget_user(caller.user_id)
            return _me(dataclasses.replace(caller, language=body.language))

        return router
