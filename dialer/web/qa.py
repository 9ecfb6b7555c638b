"""The QA pages' API: search calls by what was said, review a call (transcript, measures,
flags, the recording from any second), mark flags, the flagged calls and each rule's
precision. A thin edge over recording/qa_service.py; QA, supervisor, manager and admin only,
each seeing their own tenant's calls."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel

from dialer.store.db import Store
from dialer.store.models import Party, QaVerdict, Role
from dialer.web.auth import Auth, Caller
from dialer.web.refusals import field_refused
from recording import qa_service as svc

STATIC = Path(__file__).parent / "static"
CallId = Annotated[int, PathParam(ge=1, le=2**62)]


class VerdictBody(BaseModel):
    verdict: QaVerdict


def _refused(exc: svc.QaRequestError, where: str = "query") -> JSONResponse:
    return field_refused(exc.field, str(exc), where)


def _aware(when: datetime | None) -> datetime | None:
    if when is None:
        return None
    # A time without its offset is taken as UTC, as the CLI does.
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def qa_router(
    auth: Auth,
    store: Store,
    archive_root: Path,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> APIRouter:
    """GET /qa (the page) and /api/qa/...; `archive_root`: where archived recordings live."""
    router = APIRouter(tags=["qa"])
    reviewer = Depends(auth.require(Role.QA, Role.SUPERVISOR, Role.MANAGER))
    measures = svc.CallMeasures(archive_root)

    async def own_call(caller: Caller, call_id: int) -> None:
        tenant_id = await asyncio.to_thread(svc.call_tenant, store, call_id)
        if tenant_id is None:
            raise HTTPException(404, f"no call {call_id}")
        auth.same_tenant(caller, tenant_id)

    @router.get("/qa", include_in_schema=False)
    async def qa_page() -> FileResponse:
        return FileResponse(STATIC / "qa.html")

    @router.get("/api/qa/options")
    async def options(caller: Caller = reviewer) -> dict[str, Any]:
        found = await asyncio.to_thread(svc.search_options, store, caller.tenant_id)
        return {
            "campaigns": [{"id": i, "name": n} for i, n in found.campaigns],
            "agents": list(found.agents),
            "outcomes": list(found.outcomes),
            "parties": list(found.parties),
        }

    @router.get("/api/qa/search", responses={422: {"description": "names the field"}})
    async def search_calls(
        q: Annotated[str, Query(min_length=1, max_length=200)],
        campaign_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
        agent: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
        since: datetime | None = None,
        until: datetime | None = None,
        outcome: Annotated[str | None, Query(max_length=20)] = None,
        party: Party | None = None,
        flagged: Literal["any", "flagged", "unflagged"] = "any",
        limit: Annotated[int, Query(ge=1, le=svc.MAX_PAGE)] = 25,
        offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
        caller: Caller = reviewer,
    ) -> Any:
        request = svc.SearchRequest(
            query=q,
            campaign_id=campaign_id,
            agent_id=agent,
            since=_aware(since),
            until=_aware(until),
            outcome=outcome or None,
            party=party,
            flagged={"any": None, "flagged": True, "unflagged": False}[flagged],
            limit=limit,
            offset=offset,
        )
        try:
            page = await asyncio.to_thread(svc.find_calls, store, caller.tenant_id, request)
        except svc.QaRequestError as exc:
            return _refused(exc)
        return {"hits": [h.to_json() for h in page.hits], "more": page.more, "offset": offset}

    @router.get("/api/qa/calls/{call_id}", responses={403: {}, 404: {}})
    async def review_call(call_id: CallId, caller: Caller = reviewer) -> dict[str, Any]:
        await own_call(caller, call_id)
        found = await asyncio.to_thread(svc.call_review, store, caller.tenant_id, call_id, measures)
        if found is None:
            raise HTTPException(404, f"no call {call_id}")
        precision = await asyncio.to_thread(svc.precision_table, store, caller.tenant_id)
        rules = {f.rule_id for f in found.flags}
        return {
            "call": found.call.to_json(),
            "lines": [
                {"party": x.party.value, "start_s": x.start_s, "end_s": x.end_s, "text": x.text}
                for x in found.lines
            ],
            "flags": [f.as_json() for f in found.flags],
            "measures": None if found.measures is None else found.measures.to_json(),
            "engines": [{"party": p.value, "engine": e} for p, e in found.engines],
            "precision": [p.to_json() for p in precision if p.rule_id in rules],
        }

    @router.get(
        "/api/qa/calls/{call_id}/audio",
        responses={200: {"content": {"audio/wav": {}}}, 206: {}, 403: {}, 404: {}},
        response_class=FileResponse,
    )
    async def call_audio(call_id: CallId, caller: Caller = reviewer) -> FileResponse:
        """The archived recording; Range requests are answered (206) so a player can seek."""
        await own_call(caller, call_id)
        try:
            path = await asyncio.to_thread(
                svc.recording_file, store, caller.tenant_id, call_id, measures
            )
        except svc.AudioUnavailable as exc:
            raise HTTPException(404, str(exc)) from None
        # Starlette's FileResponse answers Range and If-Range itself (206, 416).
        return FileResponse(path, media_type="audio/wav", headers={"Cache-Control": "private"})

    @router.post(
        "/api/qa/calls/{call_id}/flags/{flag_id}/verdict",
        responses={403: {}, 404: {}, 422: {}},
    )
    async def verdict(
        call_id: CallId,
        flag_id: CallId,
        body: VerdictBody,
        request: Request,
        caller: Caller = reviewer,
    ) -> dict[str, Any]:
        await own_call(caller, call_id)
        try:
            before, after = await asyncio.to_thread(
                svc.mark_flag,
                store,
                caller.tenant_id,
                call_id,
                flag_id,
                body.verdict,
                caller.username,
                now=clock(),
            )
        except svc.FlagNotFound as exc:
            raise HTTPException(404, str(exc)) from None
        await auth.audit(
            caller,
            "qa.verdict",
            f"call:{call_id}/flag:{flag_id}",
            old={"rule": before.rule_id, "verdict": before.verdict},
            new={"rule": after.rule_id, "verdict": after.verdict},
            request=request,
        )
        table = await asyncio.to_thread(svc.precision_table, store, caller.tenant_id)
        return {
            "flag": after.as_json(),
            "precision": next((p.to_json() for p in table if p.rule_id == after.rule_id), None),
        }

    @router.get("/api/qa/queue", responses={422: {}})
    async def queue(
        limit: Annotated[int, Query(ge=1, le=svc.MAX_PAGE)] = 25,
        offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
        only_flagged: bool = True,
        caller: Caller = reviewer,
    ) -> Any:
        try:
            rows, more = await asyncio.to_thread(
                svc.flagged_calls,
                store,
                caller.tenant_id,
                limit=limit,
                offset=offset,
                only_flagged=only_flagged,
            )
        except svc.QaRequestError as exc:
            return _refused(exc)
        return {
            "calls": [{**r.call.to_json(), "unreviewed": r.unreviewed} for r in rows],
            "more": more,
            "offset": offset,
        }

    @router.get("/api/qa/precision")
    async def precision(caller: Caller = reviewer) -> list[dict[str, Any]]:
        table = await asyncio.to_thread(svc.precision_table, store, caller.tenant_id)
        return [p.to_json() for p in table]

    return router
