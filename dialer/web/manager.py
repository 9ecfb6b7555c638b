"""The managers' pages and their API: the case list (filters, paging), the tenant's strategies
and message templates (read, check with every problem at its key and line, preview, save), and
the reports. A thin edge over dialer/cases/listing.py, dialer/cases/tenant_files.py and the
messaging and reports services.

Who may do what (each in their own tenant):

===========================  ==========  =======
route                        supervisor  manager
===========================  ==========  =======
GET case list, files, check  yes         yes
GET collectors               yes         yes
POST template preview        yes         yes
PUT strategies, templates    no          yes
POST a case's collector      no          yes
===========================  ==========  =======

Admin is admitted where a manager is. A case itself is read and noted through /api/cases.
Message batches to a segment: dialer/web/manager_batches.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from compliance_guard.service import Guard
from dialer.cases import assignment_service, listing, segments, strategy_run
from dialer.cases.config_files import ConfigFileError
from dialer.cases.errors import CaseError, CaseNotFound, CaseRefused
from dialer.cases.models import Actor, CaseStatus
from dialer.cases.service import MAX_REASON, get_case
from dialer.cases.tenant_files import (
    MAX_BYTES,
    Checked,
    Document,
    DocumentConflict,
    DocumentInvalid,
    Kind,
    TenantFiles,
)
from dialer.errors import DialerError
from dialer.messaging.jobs import BatchJobs
from dialer.messaging.service import MessagingService, MessagingSettings
from dialer.messaging.templates import LANGUAGES, PLACEHOLDERS, Personalisation
from dialer.reports.errors import ReportError
from dialer.reports.models import GroupBy, Period
from dialer.reports.render import to_csv
from dialer.reports.service import daily_report
from dialer.store.db import Store
from dialer.store.models import Role
from dialer.web.auth import Auth, Caller
from dialer.web.manager_batches import batches_router
from dialer.web.refusals import field_refused

STATIC = Path(__file__).parent / "static"
Money = Annotated[Decimal, Query(ge=0, max_digits=18, decimal_places=4)]
Days = Annotated[int, Query(ge=0, le=100_000)]
# What a template preview says when no debtor is named: a made-up one in each language.
SAMPLE = {
    "zh-CN": ("张伟", Decimal("1250.00"), "CNY"),
    "en": ("Alex Morgan", Decimal("1250.00"), "USD"),
}
SAMPLE_LINK = "https://pay.example.com/d/SAMPLE"
# A real debtor's preview while the pages are not told the messaging file's payment link: the
# place stays visible rather than silently empty.
UNSET_LINK = "[payment link]"


class FileBody(BaseModel):
    text: str = Field(max_length=MAX_BYTES)


class SaveBody(FileBody):
    # The version the text was edited from (GET's "version"): a save over someone else's is
    # refused rather than lost.
    base_version: str = Field(min_length=1, max_length=64)


class SegmentBody(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    description: str = Field(default="", max_length=500)
    # In the segment file's keys (dialer/cases/segments.py SegmentFilter).
    filter: dict[str, Any]


class OverrideBody(BaseModel):
    # None: clear the override (the nightly re-choice decides again).
    strategy: str | None = Field(default=None, min_length=1, max_length=64)
    why: str = Field(min_length=1, max_length=MAX_REASON)


class CollectorBody(BaseModel):
    # None: back to the team's queue.
    agent_id: str | None = Field(default=None, min_length=1, max_length=64)
    why: str = Field(min_length=1, max_length=MAX_REASON)
    # Kept with this collector through the nightly assignment (the usual reason to do it by hand).
    keep: bool = True


class PreviewBody(BaseModel):
    # The text being edited; left out: the saved file.
    text: str | None = Field(default=None, max_length=MAX_BYTES)
    template: str = Field(min_length=1, max_length=100)
    language: str = Field(pattern=r"^(zh-CN|en)$")
    # A case whose debtor the message is written for (with the guard's answer); left out: a
    # made-up debtor.
    case_id: int | None = Field(default=None, ge=1, le=2**31 - 1)


def _refused(exc: CaseRefused, where: str = "body") -> JSONResponse:
    return field_refused(exc.field, exc.message, where)


def _document(doc: Document, checked: Checked) -> dict[str, Any]:
    return {
        "kind": doc.kind.value,
        "text": doc.text,
        "source": doc.source,
        "version": doc.version,
        "saved_at": doc.saved_at.isoformat() if doc.saved_at else None,
        **_checked(checked),
    }


def _checked(checked: Checked) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ok": checked.ok,
        "problems": [p.to_json() for p in checked.problems],
        "warnings": [p.to_json() for p in checked.warnings],
    }
    if checked.strategies is not None:
        out["strategies"] = checked.strategies.model_dump(mode="json", by_alias=True)
    if checked.templates is not None:
        out["templates"] = [
            {"name": t.name, "channel": t.channel.value, "languages": list(t.variants)}
            for t in checked.templates.values()
        ]
        out["placeholders"] = dict(PLACEHOLDERS)
    return out


def _invalid(exc: DocumentInvalid) -> JSONResponse:
    first = exc.problems[0]
    return JSONResponse(
        {
            "detail": [
                {"loc": ["body", "text", p.key], "msg": f"{p.key}: {p.message}", "type": "invalid"}
                for p in exc.problems
            ],
            "ok": False,
            "problems": [p.to_json() for p in exc.problems],
            "first": first.to_json(),
        },
        status_code=422,
    )


def manager_router(
    store: Store,
    auth: Auth,
    files: TenantFiles,
    *,
    guard: Guard | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    tz: tzinfo = UTC,
    payment_link: str = "",
    jobs: BatchJobs | None = None,
) -> APIRouter:
    """GET /manager (the pages) and /api/manager/...; `files`: the tenants' strategies and
    templates; `guard`: answers a preview for a real debtor (without it, only made-up ones);
    `tz`: where the reports' days start; `payment_link`: the messaging file's pattern; `jobs`:
    sends message batches to segments (without it, the pages say sending is off)."""
    router = APIRouter(tags=["manager"])
    readers = Depends(auth.require(Role.SUPERVISOR, Role.MANAGER))
    editors = Depends(auth.require(Role.MANAGER))
    router.include_router(batches_router(store, auth, files, jobs, clock=clock, tz=tz))

    @router.get("/manager", include_in_schema=False)
    async def manager_page() -> FileResponse:
        return FileResponse(STATIC / "manager.html")

    @router.get("/api/manager/options")
    async def options(caller: Caller = readers) -> dict[str, Any]:
        found = await asyncio.to_thread(listing.list_options, store, caller.tenant_id)
        return {
            "statuses": list(found.statuses),
            "collectors": list(found.collectors),
            "strategies": list(found.strategies),
            "bands": list(found.bands),
            "sorts": list(found.sorts),
            "languages": list(LANGUAGES),
            "can_edit": caller.role in (Role.MANAGER, Role.ADMIN),
        }

    @router.get("/api/manager/cases", responses={422: {"description": "names the field"}})
    async def cases(
        status: Annotated[list[CaseStatus] | None, Query()] = None,
        dpd_min: Days | None = None,
        dpd_max: Days | None = None,
        balance_min: Money | None = None,
        balance_max: Money | None = None,
        segment: Annotated[str | None, Query(max_length=64)] = None,
        collector: Annotated[str | None, Query(max_length=64)] = None,
        strategy: Annotated[str | None, Query(max_length=64)] = None,
        band: Annotated[str | None, Query(pattern=r"^(low|medium|high)$")] = None,
        q: Annotated[str | None, Query(max_length=200)] = None,
        sort: listing.Sort = "dpd",
        limit: Annotated[int, Query(ge=1, le=listing.MAX_PAGE)] = 50,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
        caller: Caller = readers,
    ) -> Any:
        """One page of the tenant's cases; `collector=-` lists the cases nobody works;
        `segment` narrows to a saved segment's cases."""
        chosen = None
        if segment:
            try:
                saved = await asyncio.to_thread(
                    segments.get_segment, store, caller.tenant_id, segment
                )
            except CaseError:
                return _refused(CaseRefused("segment", f"no segment {segment!r}"), "query")
            chosen = segments.SegmentFilter.model_validate(saved.filter)
        wanted = listing.CaseFilter(
            segment=chosen,
            statuses=tuple(status or ()),
            dpd_min=dpd_min,
            dpd_max=dpd_max,
            balance_min=balance_min,
            balance_max=balance_max,
            collector="" if collector == "-" else (collector or None),
            strategy=strategy or None,
            band=band or None,
            text=(q or "").strip() or None,
        )
        try:
            page = await asyncio.to_thread(
                lambda: listing.list_cases(
                    store, caller.tenant_id, wanted, sort=sort, limit=limit, offset=offset
                )
            )
        except CaseRefused as exc:
            return _refused(exc, "query")
        return {"cases": [c.to_json() for c in page.lines], "more": page.more, "offset": offset}

    @router.get("/api/manager/cases/{case_id}/strategy", responses={404: {}})
    async def case_strategy(
        case_id: Annotated[int, PathParam(ge=1, le=2**31 - 1)], caller: Caller = readers
    ) -> dict[str, Any]:
        """The case's strategy, step and reasons, a manager's override, and its risk score
        term by term, as the nightly runs left them."""
        try:
            found = await asyncio.to_thread(listing.strategy_view, store, caller.tenant_id, case_id)
        except CaseNotFound:
            raise HTTPException(404, f"no case {case_id}") from None
        return found.to_json()

    @router.post("/api/manager/cases/{case_id}/strategy", responses={404: {}, 422: {}})
    async def override(
        case_id: Annotated[int, PathParam(ge=1, le=2**31 - 1)],
        body: OverrideBody,
        request: Request,
        caller: Caller = editors,
    ) -> Any:
        """Put the case on a strategy by hand (kept through the nightly re-choice), or with
        `strategy` left out, clear the override; either way in the case's history."""
        who = Actor.user(caller.username)

        def change() -> listing.StrategyView:
            if body.strategy is None:
                strategy_run.clear_override(
                    store, caller.tenant_id, case_id, who, body.why, clock()
                )
            else:
                strategy_run.override_strategy(
                    store,
                    caller.tenant_id,
                    case_id,
                    body.strategy,
                    files.strategies(caller.tenant),
                    who,
                    body.why,
                    clock(),
                )
            return listing.strategy_view(store, caller.tenant_id, case_id)

        try:
            found = await asyncio.to_thread(change)
        except CaseNotFound:
            raise HTTPException(404, f"no case {case_id}") from None
        except CaseRefused as exc:
            return _refused(exc)
        except DocumentInvalid as exc:
            raise HTTPException(409, f"the tenant's strategies file has problems: {exc}") from None
        await auth.audit(
            caller,
            "case.strategy_override",
            f"case:{case_id}",
            new={"strategy": body.strategy, "why": body.why},
            request=request,
        )
        return found.to_json()

    @router.post("/api/manager/cases/{case_id}/collector", responses={404: {}, 422: {}})
    async def give(
        case_id: Annotated[int, PathParam(ge=1, le=2**31 - 1)],
        body: CollectorBody,
        request: Request,
        caller: Caller = editors,
    ) -> Any:
        """Give the case to a collector by hand (or back to the queue); with `keep` the
        nightly assignment leaves it with them. In the case's history."""
        try:
            await asyncio.to_thread(
                assignment_service.give_case,
                store,
                caller.tenant_id,
                case_id,
                body.agent_id,
                Actor.user(caller.username),
                body.why,
                clock(),
                keep=body.keep,
            )
        except CaseNotFound:
            raise HTTPException(404, f"no case {case_id}") from None
        except CaseRefused as exc:
            return _refused(exc)
        await auth.audit(
            caller,
            "case.collector",
            f"case:{case_id}",
            new={"agent_id": body.agent_id, "keep": body.keep, "why": body.why},
            request=request,
        )
        found = await asyncio.to_thread(get_case, store, caller.tenant_id, case_id)
        return {"case_id": case_id, "agent_id": found.agent_id, "kept": found.agent_kept}

    @router.get("/api/manager/collectors")
    async def collectors(caller: Caller = readers) -> list[dict[str, Any]]:
        """The tenant's collectors with their open cases against their capacity (a case is
        given by hand only to an active one)."""
        found = await asyncio.to_thread(assignment_service.list_collectors, store, caller.tenant_id)
        return [
            {
                "agent_id": c.agent_id,
                "name": c.name,
                "team": c.team,
                "seniority": c.seniority,
                "open_cases": c.open_cases,
                "capacity": c.capacity,
                "active": c.active,
            }
            for c in found
        ]

    @router.get("/api/manager/segments")
    async def list_segments(caller: Caller = readers) -> list[dict[str, Any]]:
        found = await asyncio.to_thread(segments.list_segments, store, caller.tenant_id)
        return [_segment(v) for v in found]

    @router.post("/api/manager/segments", status_code=201, responses={422: {}})
    async def save_segment(body: SegmentBody, request: Request, caller: Caller = editors) -> Any:
        """Save the list's filters as a segment (a campaign's call list can come from it);
        the same name replaces its filter."""
        try:
            saved = await asyncio.to_thread(
                segments.save_segment,
                store,
                caller.tenant_id,
                body.name,
                body.filter,
                Actor.user(caller.username),
                clock(),
                description=body.description,
            )
        except ConfigFileError as exc:
            return JSONResponse(
                {
                    "detail": [
                        {"loc": ["body", "filter", *_split_key(p)], "msg": p, "type": "invalid"}
                        for p in exc.problems
                    ]
                },
                status_code=422,
            )
        except CaseRefused as exc:
            return _refused(exc)
        await auth.audit(
            caller,
            "segment.save",
            f"segment:{saved.name}",
            new={"filter": saved.filter},
            request=request,
        )
        return _segment(saved)

    # ----- the tenant's files -----

    @router.get("/api/manager/files/{kind}")
    async def read_file(kind: Kind, caller: Caller = readers) -> dict[str, Any]:
        """The tenant's file (or the shipped one while it has none), checked."""

        def read() -> dict[str, Any]:
            doc = files.read(caller.tenant, kind)
            return _document(doc, files.check(caller.tenant, kind, doc.text))

        return await asyncio.to_thread(read)

    @router.post("/api/manager/files/{kind}/check")
    async def check_file(kind: Kind, body: FileBody, caller: Caller = readers) -> dict[str, Any]:
        """Every problem of the text with its key and line; nothing is saved."""
        checked = await asyncio.to_thread(files.check, caller.tenant, kind, body.text)
        return _checked(checked)

    @router.put("/api/manager/files/{kind}", responses={409: {}, 422: {}})
    async def save_file(
        kind: Kind, body: SaveBody, request: Request, caller: Caller = editors
    ) -> Any:
        """Save the text as the tenant's file: 422 with every problem (nothing saved), 409 when
        someone saved since `base_version`."""
        try:
            doc, checked = await asyncio.to_thread(
                lambda: files.save(
                    caller.tenant, kind, body.text, base_version=body.base_version, now=clock()
                )
            )
        except DocumentInvalid as exc:
            return _invalid(exc)
        except DocumentConflict as exc:
            raise HTTPException(409, str(exc)) from None
        await auth.audit(
            caller,
            f"{kind.value}.save",
            f"tenant:{caller.tenant}/{kind.value}",
            old={"version": body.base_version},
            new={"version": doc.version},
            request=request,
        )
        return _document(doc, checked)

    @router.post("/api/manager/templates/preview", responses={404: {}, 422: {}})
    async def preview(body: PreviewBody, caller: Caller = readers) -> Any:
        """A template written out for a made-up debtor, or for a case's debtor with the
        compliance guard's answer as of now (nothing is sent or reserved)."""

        def render() -> dict[str, Any] | JSONResponse:
            text = body.text
            if text is None:
                text = files.read(caller.tenant, Kind.TEMPLATES).text
            checked = files.check(caller.tenant, Kind.TEMPLATES, text)
            if checked.templates is None:
                return _invalid(DocumentInvalid(Kind.TEMPLATES, checked.problems))
            template = checked.templates.get(body.template)
            if template is None:
                known = ", ".join(sorted(checked.templates))
                raise HTTPException(404, f"no template {body.template!r} (there: {known})")
            if body.case_id is None:
                name, amount, currency = SAMPLE[body.language]
                facts = Personalisation(
                    name, amount, currency, clock().date() - timedelta(days=30), SAMPLE_LINK
                )
                shown = template.render(facts, body.language)
                return {**_rendered(shown), "debtor": None, "guard": None}
            return _for_case(template, body.case_id, body.language, caller)

        return await asyncio.to_thread(render)

    def _for_case(template: Any, case_id: int, language: str, caller: Caller) -> dict[str, Any]:
        if guard is None:
            raise HTTPException(409, "no compliance guard here: preview with a made-up debtor")
        try:
            case = get_case(store, caller.tenant_id, case_id, timeline_limit=1)
        except CaseNotFound:
            raise HTTPException(404, f"no case {case_id}") from None
        settings = MessagingSettings(tenant=caller.tenant, payment_link=payment_link or UNSET_LINK)
        service = MessagingService(store, guard, {}, settings, clock=clock)
        try:
            shown = service.preview(template, case.debtor_id, language)
        except DialerError as exc:
            raise HTTPException(422, str(exc)) from None
        decision = shown.decision
        return {
            **_rendered(shown.rendered),
            "debtor": {"case_id": case_id, "name": case.debtor_name},
            "guard": {
                "allowed": decision.allowed,
                "reasons": [r.message for r in decision.reasons],
                "next_allowed_at": (
                    decision.next_allowed_at.isoformat() if decision.next_allowed_at else None
                ),
            },
        }

    # ----- reports -----

    async def report(caller: Caller, day: date | None, period: Period, by: GroupBy) -> Any:
        when = day or clock().astimezone(tz).date()
        return await asyncio.to_thread(
            lambda: daily_report(
                store, caller.tenant_id, when, period=period, by=by, tz=tz, now=clock()
            )
        )

    @router.get("/api/manager/reports", responses={422: {}})
    async def reports(
        day: date | None = None,
        period: Period = Period.DAY,
        by: GroupBy = GroupBy.CAMPAIGN,
        caller: Caller = readers,
    ) -> Any:
        """The figures of the day, week or month holding `day` (today when left out), one row
        per campaign, team or collector, with each figure's definition."""
        try:
            found = await report(caller, day, period, by)
        except ReportError as exc:
            raise HTTPException(422, str(exc)) from None
        return found.as_json()

    @router.get(
        "/api/manager/reports.csv",
        responses={200: {"content": {"text/csv": {}}}, 422: {}},
        response_class=Response,
    )
    async def reports_csv(
        day: date | None = None,
        period: Period = Period.DAY,
        by: GroupBy = GroupBy.CAMPAIGN,
        caller: Caller = readers,
    ) -> Response:
        try:
            found = await report(caller, day, period, by)
        except ReportError as exc:
            raise HTTPException(422, str(exc)) from None
        name = f"report-{found.span.start.isoformat()}-{period.value}-{by.value}.csv"
        return Response(
            to_csv(found),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    return router


def _segment(view: segments.SegmentView) -> dict[str, Any]:
    return {
        "name": view.name,
        "description": view.description,
        "filter": view.filter,
        "created_by": view.created_by,
        "updated_at": view.updated_at.isoformat(),
    }


def _split_key(problem: str) -> list[str]:
    """ "balance_max: ..." -> ["balance_max"] (the key a filter problem names)."""
    key, sep, _ = problem.partition(": ")
    return [key] if sep and " " not in key else []


def _rendered(shown: Any) -> dict[str, Any]:
    return {
        "template": shown.template,
        "language": shown.language,
        "channel": shown.channel.value,
        "subject": shown.subject,
        "body": shown.body,
        "length": len(shown.body),
    }
