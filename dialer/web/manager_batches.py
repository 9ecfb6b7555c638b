"""Message batches from the managers' pages: send a tenant's SMS or e-mail template to a saved
segment. A dry run answers at once with the figures; a real start runs in the background
(dialer/messaging/jobs.py) and the page polls its progress. A thin edge: the batch itself is
MessagingService's (the guard on every message, a batch key never sending twice).

===========================================  ==========  =======
route                                        supervisor  manager
===========================================  ==========  =======
GET /api/manager/batches (setup, recent)     yes         yes
GET /api/manager/batches/{job}               yes         yes
POST /api/manager/batches (dry run, start)   no          yes
===========================================  ==========  =======
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import datetime, tzinfo
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from dialer.cases import segments
from dialer.cases.errors import CaseError
from dialer.cases.tenant_files import DocumentInvalid, TenantFiles
from dialer.errors import DialerError
from dialer.messaging.jobs import BatchJobs, BatchRequest, batch_key_for
from dialer.messaging.models import Channel
from dialer.messaging.templates import Template
from dialer.store.db import Store
from dialer.store.models import Role
from dialer.web.auth import Auth, Caller
from dialer.web.refusals import field_refused

NOT_WIRED = "sending from the pages is not set up in this process"


class BatchBody(BaseModel):
    segment: str = Field(min_length=1, max_length=64)
    template: str = Field(min_length=1, max_length=100)
    # Left out: each debtor's own (zh-CN for an address in China, else en).
    language: str | None = Field(default=None, pattern=r"^(zh-CN|en)$")
    dry_run: bool = False
    # Left out: <template>-<segment>-<day>, so a second start the same day sends nothing twice.
    batch: str | None = Field(default=None, min_length=1, max_length=100, pattern=r"^[^\s/]+$")


def _templates(files: TenantFiles, tenant: str) -> Mapping[str, Template]:
    """The tenant's templates as the strategy run reads them; a tenant file with a mistake
    sends nothing until it is fixed (the templates editor shows where)."""
    try:
        return files.templates(tenant)
    except DocumentInvalid as exc:
        raise HTTPException(409, f"the tenant's templates file has problems: {exc}") from None


def batches_router(
    store: Store,
    auth: Auth,
    files: TenantFiles,
    jobs: BatchJobs | None,
    *,
    clock: Callable[[], datetime],
    tz: tzinfo,
) -> APIRouter:
    """/api/manager/batches...; `jobs` None: the routes answer that sending is off."""
    router = APIRouter(tags=["manager"])
    readers = Depends(auth.require(Role.SUPERVISOR, Role.MANAGER))
    editors = Depends(auth.require(Role.MANAGER))

    def refusal(caller: Caller) -> str | None:
        return NOT_WIRED if jobs is None else jobs.outbox.refusal(caller.tenant)

    @router.get("/api/manager/batches")
    async def setup(caller: Caller = readers) -> dict[str, Any]:
        """Whether this tenant may send from the pages (and why not), the templates it may
        send with, and its latest batches."""
        off = refusal(caller)
        channels = set(jobs.outbox.providers) if jobs is not None else set()

        def read() -> list[dict[str, Any]]:
            found = _templates(files, caller.tenant)
            return [
                {
                    "name": t.name,
                    "channel": t.channel.value,
                    "languages": list(t.variants),
                    "provider": t.channel in channels,
                }
                for t in sorted(found.values(), key=lambda t: t.name)
            ]

        templates = await asyncio.to_thread(read)
        recent = jobs.recent(caller.tenant_id) if jobs is not None else []
        return {
            "on": off is None,
            "why_off": off,
            "templates": templates,
            "jobs": [j.to_json() for j in recent],
        }

    @router.post("/api/manager/batches", responses={202: {}, 409: {}, 422: {}})
    async def start(body: BatchBody, request: Request, caller: Caller = editors) -> Any:
        """`dry_run`: the figures now (how many would go now, wait, be refused, be skipped;
        a few messages written out), nothing written. Otherwise 202 with the job (the running
        one, `joined`, when the same batch is already on its way)."""
        off = refusal(caller)
        if off is not None or jobs is None:
            raise HTTPException(409, off or NOT_WIRED)
        try:
            await asyncio.to_thread(segments.get_segment, store, caller.tenant_id, body.segment)
        except CaseError:
            return field_refused("segment", f"no segment {body.segment!r}")
        templates = await asyncio.to_thread(_templates, files, caller.tenant)
        template = templates.get(body.template)
        if template is None:
            known = ", ".join(sorted(templates))
            return field_refused("template", f"no template {body.template!r} (there: {known})")
        if template.channel not in jobs.outbox.providers:
            word = "SMS" if template.channel is Channel.SMS else "e-mail"
            return field_refused("template", f"{jobs.outbox.source} has no {word} provider")
        key = body.batch or batch_key_for(
            template.name, body.segment, clock().astimezone(tz).date()
        )
        wanted = BatchRequest(
            tenant=caller.tenant,
            tenant_id=caller.tenant_id,
            template=template,
            segment=body.segment,
            audience=lambda: segments.segment_debtor_ids(store, caller.tenant_id, body.segment),
            batch_key=key,
            language=body.language,
            started_by=caller.username,
        )
        what = {"segment": body.segment, "template": template.name, "language": body.language}
        if body.dry_run:
            try:
                found = await asyncio.to_thread(jobs.dry_run, wanted)
            except DialerError as exc:
                raise HTTPException(409, str(exc)) from None
            await auth.audit(
                caller, "messages.batch_dry_run", f"batch:{key}", new=what, request=request
            )
            return {"dry_run": found.to_json()}
        try:
            job, joined = jobs.start(wanted)
        except DialerError as exc:
            raise HTTPException(409, str(exc)) from None
        await auth.audit(
            caller,
            "messages.batch_start",
            f"batch:{key}",
            new={**what, "job": job.id, "joined": joined},
            request=request,
        )
        return JSONResponse({"job": job.to_json(), "joined": joined}, status_code=202)

    @router.get("/api/manager/batches/{job_id}", responses={404: {}})
    async def progress(
        job_id: Annotated[str, PathParam(min_length=1, max_length=32, pattern=r"^[0-9a-f]+$")],
        caller: Caller = readers,
    ) -> dict[str, Any]:
        """How far the batch got: planned, processed (the bar), and sent, scheduled,
        refused, failed as each chunk is recorded; `done`, and `error` when it failed."""
        job = jobs.get(caller.tenant_id, job_id) if jobs is not None else None
        if job is None:
            raise HTTPException(404, f"no batch job {job_id}")
        return job.to_json()

    return router
