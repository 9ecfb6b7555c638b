"""The pages' HTTP API and WebSockets: a thin FastAPI edge over the agents', desk's and
console's services (docs/agents-web.md has the contract). No business rule lives here."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import Depends, FastAPI, HTTPException, Query, Request, WebSocket
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from compliance_guard.service import Guard
from dialer.agents.pool import Connect
from dialer.agents.sessions import AgentError, AgentStatus
from dialer.agents.transfer import TransferError
from dialer.cases.tenant_files import TenantFiles
from dialer.config import Config
from dialer.console.controls import CampaignControls, CampaignNotFound, ControlError, apply_controls
from dialer.console.engine_view import engine_view
from dialer.console.figures import CampaignFigures
from dialer.console.spy import SpyError, spy_originate
from dialer.desk import dispositions, pop
from dialer.desk.errors import ComplianceNotUpdated, DispositionError
from dialer.desk.feed import ScreenPops
from dialer.desk.preview import build_preview
from dialer.engine import CampaignEngine, PreviewRefused
from dialer.errors import DialerError, StoreError
from dialer.messaging.jobs import BatchJobs
from dialer.store import users
from dialer.store.models import DispositionCode, Role
from dialer.web.auth import WS_UNAUTHORIZED, Auth, Caller
from dialer.web.cases_api import cases_router
from dialer.web.edge import RefuseLoneSurrogates
from dialer.web.hub import Hub
from dialer.web.manager import manager_router
from dialer.web.messaging_api import messaging_router
from dialer.web.qa import qa_router
from dialer.web.refusals import field_refused
from pacing.models import DialMode

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
# How often the supervisors' pages get the live figures.
LIVE_EVERY_S = 1.0
# How often a disposition's compliance update is tried again while the guard is unreachable.
GUARD_RETRY_S = 5.0


@dataclass
class WebServices:
    """Everything the pages reach, owned by the dialer process."""

    config: Config
    auth: Auth
    hub: Hub
    engine: CampaignEngine
    guard: Guard
    pops: ScreenPops
    figures: CampaignFigures
    # Agent id -> the person's name, for the script the agent reads.
    agent_names: dict[str, str]
    # Set by a supervisor's stop: the run stops dialling and ends once its calls have.
    stop: asyncio.Event
    # Message batches sent from the managers' pages (with the messaging file's providers).
    jobs: BatchJobs | None = None
    _spy_seq: int = 0
    _retries: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def store(self) -> Any:
        return self.engine.store

    def next_spy(self) -> int:
        self._spy_seq += 1
        return self._spy_seq

    def retry_guard(self, failed: ComplianceNotUpdated) -> None:
        """Tell the guard a saved disposition's flags and outcome until it listens (every
        GUARD_RETRY_S seconds for up to an hour); the dialer's own do-not-call marks on the
        debtor's phones already stop new dials meanwhile."""
        task = asyncio.get_running_loop().create_task(self._retry_guard(failed))
        self._retries.add(task)
        task.add_done_callback(self._retries.discard)

    async def _retry_guard(self, failed: ComplianceNotUpdated) -> None:
        for _ in range(int(3600 / GUARD_RETRY_S)):
            await asyncio.sleep(GUARD_RETRY_S)
            try:
                await asyncio.to_thread(
                    dispositions.apply_guard_effects,
                    self.guard,
                    self.config.campaign.tenant,
                    failed.effects,
                    self.engine.wallclock(),
                )
            except DialerError as exc:
                log.warning(
                    "x disposition %s: guard still not updated: %s", failed.disposition_id, exc
                )
                continue
            log.info("= disposition %s: guard updated", failed.disposition_id)
            return
        log.error("x disposition %s: guard not updated within an hour", failed.disposition_id)


# ----- request and response bodies -----


class AgentLoginBody(BaseModel):
    phone: str | None = Field(default=None, max_length=200)


class PauseBody(BaseModel):
    reason: str = Field(max_length=32)


class DispositionBody(BaseModel):
    attempt_id: int = Field(ge=1, le=2**62)
    code: DispositionCode
    note: str | None = Field(default=None, max_length=2000)
    promise_amount: Decimal | None = Field(default=None, max_digits=14, decimal_places=2)
    promise_date: date | None = None
    payment_amount: Decimal | None = Field(default=None, max_digits=14, decimal_places=2)
    callback_at: datetime | None = None
    callback_same_agent: bool = False


class DispositionSaved(BaseModel):
    disposition_id: int
    callback_id: int | None


class ControlsBody(BaseModel):
    # stopped: no new calls, calls in progress finish, the run ends (like a first Ctrl-C).
    status: Literal["running", "paused", "stopped"] | None = None
    dial_mode: DialMode | None = None
    target_abandon_rate: float | None = Field(default=None, gt=0, le=1)
    max_dial_ratio: float | None = Field(default=None, ge=1, le=100)


class SpyBody(BaseModel):
    agent_id: str = Field(min_length=1, max_length=64)
    mode: Literal["listen", "whisper", "barge"]
    phone: str = Field(min_length=1, max_length=200)


class Ok(BaseModel):
    ok: bool = True


def create_app(services: WebServices) -> FastAPI:
    app = FastAPI(
        title="Collection dialer",
        version="1",
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        lifespan=lambda _app: _live_feed(services),
    )
    app.add_middleware(RefuseLoneSurrogates)
    auth = services.auth
    engine = services.engine
    sessions = engine.sessions
    hub = services.hub
    agent_only = Depends(auth.require(Role.AGENT, exact=True))
    supervisor = Depends(auth.require(Role.SUPERVISOR, Role.MANAGER))
    signed_in = Depends(auth.caller)
    app.include_router(auth.router())
    app.include_router(cases_router(services.store, auth, engine.wallclock))
    app.include_router(
        messaging_router(
            services.store,
            auth,
            services.guard,
            services.config.campaign.tenant,
            clock=engine.wallclock,
        )
    )
    app.include_router(
        qa_router(
            auth,
            services.store,
            services.config.recordings.archive_root(services.config.data_dir),
        )
    )
    app.include_router(
        manager_router(
            services.store,
            auth,
            TenantFiles(services.config.data_dir / "tenants"),
            guard=services.guard,
            clock=engine.wallclock,
            tz=ZoneInfo(services.config.campaign.timezone),
            payment_link=services.jobs.outbox.payment_link if services.jobs else "",
            jobs=services.jobs,
        )
    )

    def own_tenant(caller: Caller) -> None:
        auth.same_tenant(caller, engine.tenant_id)

    def agent_of(caller: Caller) -> str:
        own_tenant(caller)
        if not caller.agent_id:
            raise HTTPException(409, "your user has no agent id; ask an administrator")
        return caller.agent_id

    def _status_json(status: AgentStatus) -> dict[str, object]:
        # The page offers preview dialling when the campaign is in preview mode.
        return {
            **status.to_json(),
            "dial_mode": engine.pacer.settings.dial_mode.value,
            "can_transfer": bool(services.config.web.transfer_to),
        }

    def refused(exc: AgentError) -> HTTPException:
        return HTTPException(409, str(exc))

    # ----- pages -----

    @app.get("/", include_in_schema=False)
    async def login_page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/agent", include_in_schema=False)
    async def agent_page() -> FileResponse:
        return FileResponse(STATIC / "agent.html")

    @app.get("/supervisor", include_in_schema=False)
    async def supervisor_page() -> FileResponse:
        return FileResponse(STATIC / "supervisor.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    # ----- the agent -----

    @app.post("/api/agent/login", responses={409: {"description": "cannot log in"}})
    async def agent_login(body: AgentLoginBody, caller: Caller = agent_only) -> dict[str, object]:
        agent_id = agent_of(caller)
        services.agent_names[agent_id] = caller.display_name
        phone = _phone(services.config, agent_id, body.phone)
        connect = _connect_of(services.config, agent_id)
        try:
            status = await sessions.log_in(agent_id, phone, connect, user_id=caller.user_id)
        except AgentError as exc:
            raise refused(exc) from None
        return _status_json(status)

    @app.post("/api/agent/ready", responses={409: {"description": "not possible now"}})
    async def agent_ready(caller: Caller = agent_only) -> dict[str, object]:
        try:
            return _status_json(sessions.ready(agent_of(caller)))
        except AgentError as exc:
            raise refused(exc) from None

    @app.post("/api/agent/pause", responses={409: {"description": "not possible now"}})
    async def agent_pause(body: PauseBody, caller: Caller = agent_only) -> dict[str, object]:
        try:
            return _status_json(sessions.pause(agent_of(caller), body.reason))
        except AgentError as exc:
            raise refused(exc) from None

    @app.post("/api/agent/logout", responses={409: {"description": "not possible now"}})
    async def agent_logout(caller: Caller = agent_only) -> dict[str, object]:
        try:
            return _status_json(sessions.log_out(agent_of(caller)))
        except AgentError as exc:
            raise refused(exc) from None

    @app.post("/api/agent/redial-phone", responses={409: {"description": "not possible now"}})
    async def agent_redial(caller: Caller = agent_only) -> dict[str, object]:
        try:
            return _status_json(sessions.redial_phone(agent_of(caller)))
        except AgentError as exc:
            raise refused(exc) from None

    @app.post("/api/agent/hangup", responses={409: {"description": "no call"}})
    async def agent_hangup(caller: Caller = agent_only) -> Ok:
        if not engine.hang_up_agent_call(agent_of(caller)):
            raise HTTPException(409, "you have no call to hang up")
        return Ok()

    @app.post("/api/agent/transfer", responses={409: {"description": "not possible now"}})
    async def agent_transfer(caller: Caller = agent_only) -> dict[str, object]:
        """Put the debtor through to the supervisors' line ([web] transfer_to)."""
        agent_id = agent_of(caller)
        if not services.config.web.transfer_to:
            raise HTTPException(409, "no supervisor line is configured ([web] transfer_to)")
        try:
            attempt_id = await engine.transfer_agent_call(agent_id, services.config.web.transfer_to)
        except TransferError as exc:
            raise HTTPException(409, exc.reason) from None
        return {"attempt_id": attempt_id}

    @app.get("/api/agent/preview", responses={409: {"description": "not possible now"}})
    async def agent_preview(caller: Caller = agent_only) -> dict[str, object]:
        """The next case of a preview campaign, held for the agent until they dial it."""
        agent_id = agent_of(caller)
        try:
            candidate = engine.preview_next(agent_id)
        except PreviewRefused as exc:
            raise HTTPException(409, str(exc)) from None
        if candidate is None:
            return {"case": None}
        case = await asyncio.to_thread(build_preview, services.store, engine.tenant_id, candidate)
        return {"case": case}

    @app.post("/api/agent/preview/dial", responses={409: {"description": "not possible now"}})
    async def agent_preview_dial(caller: Caller = agent_only) -> dict[str, object]:
        try:
            attempt_id = await engine.preview_dial(agent_of(caller))
        except PreviewRefused as exc:
            raise HTTPException(409, str(exc)) from None
        return {"attempt_id": attempt_id}

    @app.get("/api/agent/status")
    async def agent_status(caller: Caller = agent_only) -> dict[str, object]:
        agent_id = agent_of(caller)
        status = sessions.status(agent_id)
        if status is None:
            return {
                "agent_id": agent_id,
                "state": "logged_out",
                "since": None,
                "pause_reason": None,
                "attempt_id": None,
                "phone_up": False,
                "connect": _connect_of(services.config, agent_id).value,
                "campaign": engine.campaign_name,
                "wrap_up_left_s": None,
            }
        return _status_json(status)

    @app.get("/api/cases/by-attempt/{attempt_id}", responses={404: {}, 403: {}})
    async def case_by_attempt(
        attempt_id: Annotated[int, PathParam(ge=1, le=2**62)],
        caller: Caller = signed_in,
    ) -> dict[str, object]:
        own_tenant(caller)
        if caller.role not in (Role.AGENT, Role.SUPERVISOR, Role.MANAGER, Role.QA, Role.ADMIN):
            raise HTTPException(403, "forbidden")
        owner = await asyncio.to_thread(
            pop.attempt_owner, services.store, engine.tenant_id, attempt_id
        )
        if owner is None:
            raise HTTPException(404, f"no call attempt {attempt_id}")
        if caller.role is Role.AGENT and owner.agent_id != caller.agent_id:
            # The call the agent is on now is theirs even before its row says so (the row is
            # written behind the call, on the store's worker).
            now_on = sessions.status(caller.agent_id) if caller.agent_id else None
            if now_on is None or now_on.attempt_id != attempt_id:
                await auth.forbid(caller, f"attempt {attempt_id} is another agent's call")
        found = await asyncio.to_thread(
            pop.build_screen_pop,
            services.store,
            engine.tenant_id,
            attempt_id,
            now=engine.wallclock(),
            script_template=services.config.campaign.script,
            agent_name=caller.display_name,
            creditor=services.config.campaign.tenant,
        )
        if found is None:
            raise HTTPException(404, f"no call attempt {attempt_id}")
        return found.to_json()

    @app.post(
        "/api/dispositions",
        status_code=201,
        responses={422: {"description": "refused, with the reason"}},
    )
    async def save_disposition(body: DispositionBody, caller: Caller = agent_only) -> Any:
        agent_id = agent_of(caller)
        request = dispositions.DispositionRequest(
            attempt_id=body.attempt_id,
            code=body.code,
            note=body.note,
            promise_amount=body.promise_amount,
            promise_date=body.promise_date,
            payment_amount=body.payment_amount,
            callback_at=body.callback_at,
            callback_same_agent=body.callback_same_agent,
        )
        try:
            result = await asyncio.to_thread(
                dispositions.record_disposition,
                services.store,
                services.guard,
                services.config.campaign.tenant,
                engine.tenant_id,
                request,
                agent_id=agent_id,
                now=engine.wallclock(),
            )
        except DispositionError as exc:
            return field_refused(exc.field, str(exc))
        except ComplianceNotUpdated as exc:
            # The agent's work is saved; telling the guard is the dialer's job: keep trying.
            log.error("x %s; retrying in the background", exc)
            services.retry_guard(exc)
            result = dispositions.DispositionResult(exc.disposition_id, exc.callback_id)
        engine.end_wrap_up(agent_id, body.attempt_id)
        return DispositionSaved(
            disposition_id=result.disposition_id, callback_id=result.callback_id
        )

    # ----- the supervisor -----

    @app.get("/api/campaigns")
    async def live_campaigns(caller: Caller = supervisor) -> list[dict[str, object]]:
        if caller.tenant_id != engine.tenant_id:
            return []
        return [await services.figures.live(engine_view(engine), engine.wallclock())]

    @app.post("/api/campaigns/{campaign_id}/controls", responses={404: {}, 422: {}})
    async def campaign_controls(
        campaign_id: Annotated[int, PathParam(ge=1, le=2**62)],
        body: ControlsBody,
        request: Request,
        caller: Caller = supervisor,
    ) -> dict[str, object]:
        own_tenant(caller)
        if campaign_id != engine.campaign_id:
            raise HTTPException(404, f"campaign {campaign_id} is not running on this node")
        if body.status == "stopped":
            await auth.audit(
                caller,
                "campaign.stop",
                f"campaign:{campaign_id}",
                old={"status": "running"},
                new={"status": "stopped"},
                request=request,
            )
            services.stop.set()
            log.info("= campaign %s: stopped by %s", campaign_id, caller.username)
            if (
                body.dial_mode is None
                and body.target_abandon_rate is None
                and (body.max_dial_ratio is None)
            ):
                return {"old": {"status": "running"}, "new": {"status": "stopped"}}
        controls = CampaignControls(
            status=None if body.status == "stopped" else body.status,
            dial_mode=body.dial_mode.value if body.dial_mode else None,
            target_abandon_rate=body.target_abandon_rate,
            max_dial_ratio=body.max_dial_ratio,
        )
        try:
            changed = await asyncio.to_thread(
                apply_controls,
                services.store,
                engine.tenant_id,
                campaign_id,
                controls,
                user=caller,
                now=engine.wallclock(),
                client=request.client.host if request.client else None,
            )
        except CampaignNotFound:
            raise HTTPException(404, f"no campaign {campaign_id} in your tenant") from None
        except ControlError as exc:
            return field_refused(exc.field, str(exc))  # type: ignore[return-value]
        services.figures.invalidate()
        return {"old": changed.old, "new": changed.new}

    @app.post("/api/spy", responses={404: {}, 409: {}, 422: {}})
    async def spy(body: SpyBody, request: Request, caller: Caller = supervisor) -> Ok:
        own_tenant(caller)
        call = sessions.phone_call(body.agent_id)
        if sessions.status(body.agent_id) is None:
            raise HTTPException(404, f"agent {body.agent_id} is not logged in here")
        if call is None or not call.channel:
            raise HTTPException(409, f"agent {body.agent_id} has no nailed-up phone to listen to")
        phone = _phone(services.config, body.agent_id, body.phone)
        try:
            fields = spy_originate(
                services.config.node_id, services.next_spy(), phone, call.channel, body.mode
            )
        except SpyError as exc:
            raise HTTPException(422, str(exc)) from None
        if engine.originate_phone(fields, server=call.server) is None:
            raise HTTPException(409, "the agent's Asterisk server is not reachable")
        await auth.audit(
            caller,
            f"spy.{body.mode}",
            f"agent:{body.agent_id}",
            new={"mode": body.mode, "phone": phone},
            request=request,
        )
        return Ok()

    @app.get("/api/audit")
    async def audit_log(
        caller: Caller = supervisor, limit: Annotated[int, Query(ge=1, le=1000)] = 100
    ) -> list[dict[str, object]]:
        entries = await asyncio.to_thread(users.list_audit, services.store, caller.tenant_id, limit)
        return [{**dataclasses.asdict(e), "at": e.at.isoformat()} for e in entries]

    # ----- live feeds -----

    @app.websocket("/ws/agent")
    async def agent_feed(websocket: WebSocket) -> None:
        caller = await auth.websocket_caller(websocket)
        if caller is None or caller.role is not Role.AGENT or not caller.agent_id:
            await websocket.close(code=WS_UNAUTHORIZED)
            return
        if caller.tenant_id != engine.tenant_id:
            await websocket.close(code=WS_UNAUTHORIZED)
            return
        await websocket.accept()
        feed = hub.open_agent(caller.tenant_id, caller.agent_id, websocket)
        status = sessions.status(caller.agent_id)
        if status is not None:
            feed.send(_json({"type": "state", **_status_json(status)}))
        try:
            await feed.pump()
        finally:
            hub.close_agent(caller.tenant_id, caller.agent_id, feed)

    @app.websocket("/ws/supervisor")
    async def supervisor_feed(websocket: WebSocket) -> None:
        caller = await auth.websocket_caller(websocket)
        if caller is None or caller.role not in (Role.SUPERVISOR, Role.MANAGER, Role.ADMIN):
            await websocket.close(code=WS_UNAUTHORIZED)
            return
        await websocket.accept()
        feed = hub.open_supervisor(caller.tenant_id, websocket)
        try:
            await feed.pump()
        finally:
            hub.close_supervisor(caller.tenant_id, feed)

    def agent_changed(status: AgentStatus) -> None:
        hub.to_agent(engine.tenant_id, status.agent_id, {"type": "state", **_status_json(status)})

    sessions.subscribe(agent_changed)

    return app


def _json(message: dict[str, object]) -> str:
    return json.dumps(message, default=str)


@contextlib.asynccontextmanager
async def _live_feed(services: WebServices) -> AsyncIterator[None]:
    task = asyncio.get_running_loop().create_task(_live_loop(services), name="web-live")
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await services.auth.drain()


async def _live_loop(services: WebServices) -> None:
    """Once a second, the live figures to every supervisor page of the campaign's tenant."""
    engine = services.engine
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    while True:
        # On the beat, not a second after the last send's work (no drift).
        next_at += LIVE_EVERY_S
        await asyncio.sleep(max(0.0, next_at - loop.time()))
        next_at = max(next_at, loop.time() - LIVE_EVERY_S)
        if engine.tenant_id not in services.hub.supervisor_tenants():
            continue
        try:
            now = engine.wallclock()
            campaign = await services.figures.live(engine_view(engine), now)
            agents = [{**s.to_json(), "name": s.agent_id} for s in engine.sessions.statuses()]
        except StoreError as exc:
            log.warning("x live figures not read: %s", exc)
            continue
        services.hub.to_supervisors(
            engine.tenant_id,
            # "at" on the real clock, as the agents' "since" (the engine's may be simulated).
            {
                "type": "live",
                "at": datetime.now(UTC).isoformat(),
                "campaigns": [campaign],
                "agents": agents,
            },
        )


def _phone(config: Config, agent_id: str, typed: str | None) -> str:
    """The phone to call: what the person typed (an extension becomes PJSIP/<ext> by the
    template), else the agent's phone in the config, else the template with the agent id."""
    if typed:
        typed = typed.strip()
        return typed if "/" in typed else config.web.phone_template.format(extension=typed)
    for agent in config.agents:
        if agent.id == agent_id:
            return agent.channel
    return config.web.phone_template.format(extension=agent_id)


def _connect_of(config: Config, agent_id: str) -> Connect:
    for agent in config.agents:
        if agent.id == agent_id:
            return Connect(agent.connect)
    return Connect(config.web.agent_connect)
