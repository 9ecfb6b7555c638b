"""Message batches started from the managers' pages: the messaging file as the running dialer
reads it (the outbox), a dry run's figures, and batches sent in the background with their
progress.

`MessagingService.dispatch` blocks for as long as the batch takes, so each batch runs on a worker
thread owned by `BatchJobs`, never on the event loop. One worker: batches of the dialer go one
after another, so the providers (one HTTP client, one SMTP session, one file) are never shared by
two threads. A batch key is idempotent in the service (a re-run sends nothing twice); on top of
that, a second start of a batch that is queued or running joins it instead of racing it.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from compliance_guard.service import Guard
from dialer.errors import DialerError
from dialer.messaging.config import build_providers, load_messaging_file
from dialer.messaging.models import Channel
from dialer.messaging.provider import Provider
from dialer.messaging.service import (
    DispatchReport,
    MessagingService,
    MessagingSettings,
    Preview,
    mask_recipient,
)
from dialer.messaging.templates import Template
from dialer.store.db import Store

log = logging.getLogger(__name__)

MAX_KEY = 100  # MessagingService.plan's limit on a batch key
PREVIEWS = 3  # messages a dry run shows written out
KEPT_JOBS = 50  # finished jobs remembered per tenant (the page's "recent batches")


@dataclass(frozen=True)
class Outbox:
    """What the dialer sends with: the messaging file's providers and payment link, for one
    tenant; or, when `off` is set, why sending from the pages is off."""

    tenant: str
    providers: Mapping[Channel, Provider] = field(default_factory=dict)
    payment_link: str = ""
    campaign_id: str = "messages"
    source: str = ""
    off: str | None = None

    def refusal(self, tenant: str) -> str | None:
        """Why `tenant` may not send now, or None."""
        if self.off is not None:
            return self.off
        if tenant != self.tenant:
            return f"{self.source} sends for tenant {self.tenant!r} only"
        return None

    def close(self) -> None:
        for provider in self.providers.values():
            provider.close()


def open_outbox(path: Path | None, default_tenant: str) -> Outbox:
    """The messaging file at `path` read as `dialer messages` reads it (ConfigError names the
    key of a mistake). No path, or no file there: an outbox that is off and says why."""
    if path is None:
        return Outbox(default_tenant, off="no messaging file is set ([messaging] file)")
    if not path.is_file():
        return Outbox(default_tenant, source=str(path), off=f"{path}: no such messaging file")
    settings = load_messaging_file(path)
    return Outbox(
        tenant=settings.tenant or default_tenant,
        providers=build_providers(settings),
        payment_link=settings.payment_link,
        campaign_id=settings.campaign_id,
        source=settings.source,
    )


def batch_key_for(template: str, segment: str, day: date) -> str:
    """`<template>-<segment>-<day>`: the same batch all day, so a second start sends nothing
    twice. Names too long for a key are cut and told apart by a digest of the whole."""
    key = f"{template}-{segment}-{day.isoformat()}"
    if len(key) <= MAX_KEY:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return f"{template[:40]}-{segment[:36]}-{day.isoformat()}-{digest}"


# ----- dry run -----


@dataclass(frozen=True)
class DryRun:
    """What a batch would do now; nothing written, nothing reserved."""

    batch_key: str
    debtors: int
    already: int  # planned by an earlier start of the same batch
    go_now: int
    wait: int  # the guard names a time (a window opens, a cap resets)
    refused: int  # the guard refuses with no end in sight (opt-out, flag)
    skipped: Mapping[str, int]  # reason -> debtors (no mobile number, no open debt)
    previews: tuple[Preview, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "batch_key": self.batch_key,
            "debtors": self.debtors,
            "already": self.already,
            "go_now": self.go_now,
            "wait": self.wait,
            "refused": self.refused,
            "skipped": sum(self.skipped.values()),
            "skipped_by_reason": dict(self.skipped),
            "previews": [_preview_json(p) for p in self.previews],
        }


def _preview_json(p: Preview) -> dict[str, Any]:
    d = p.decision
    return {
        "recipient": mask_recipient(p.recipient),
        "language": p.rendered.language,
        "subject": p.rendered.subject,
        "body": p.rendered.body,
        "allowed": d.allowed,
        "reasons": [r.message for r in d.reasons],
        "next_allowed_at": d.next_allowed_at.isoformat() if d.next_allowed_at else None,
    }


# ----- jobs -----


@dataclass
class BatchJob:
    """One start of a batch and how far it got. Written by the worker, read by the pages: every
    read goes through `to_json`, under the job's lock."""

    id: str
    tenant_id: int
    batch_key: str
    template: str
    channel: str
    segment: str
    language: str | None
    started_by: str
    started_at: datetime
    state: str = "queued"  # queued, running, done, failed, stopped
    debtors: int = 0
    created: int = 0
    already: int = 0
    skipped: int = 0
    planned: int = 0  # messages this start puts to the guard and the provider
    processed: int = 0
    # What became of the messages handled so far, chunk by chunk.
    outcome: DispatchReport = field(default_factory=DispatchReport)
    error: str | None = None
    finished_at: datetime | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def done(self) -> bool:
        return self.state in ("done", "failed", "stopped")

    def update(self, **values: Any) -> None:
        with self.lock:
            for name, value in values.items():
                setattr(self, name, value)

    def to_json(self) -> dict[str, Any]:
        with self.lock:
            shown = min(self.processed, self.planned)
            percent = (
                100
                if self.state == "done"
                else (100 * shown // self.planned if self.planned else 0)
            )
            return {
                "id": self.id,
                "batch_key": self.batch_key,
                "template": self.template,
                "channel": self.channel,
                "segment": self.segment,
                "language": self.language,
                "started_by": self.started_by,
                "started_at": self.started_at.isoformat(),
                "finished_at": self.finished_at.isoformat() if self.finished_at else None,
                "state": self.state,
                "done": self.done,
                "debtors": self.debtors,
                "created": self.created,
                "already": self.already,
                "skipped": self.skipped,
                "planned": self.planned,
                "processed": shown,
                "percent": percent,
                "sent": self.outcome.sent,
                "scheduled": self.outcome.scheduled,
                "refused": self.outcome.blocked,
                "failed": self.outcome.failed,
                "unknown": self.outcome.unknown,
                "error": self.error,
            }


class _Stopped(Exception):
    """The dialer is shutting down: the worker leaves the batch between two chunks."""


@dataclass(frozen=True)
class BatchRequest:
    """A batch to send: `audience` reads the debtor ids when the batch starts (a segment is
    read at that moment, not when the manager clicked)."""

    tenant: str
    tenant_id: int
    template: Template
    segment: str
    audience: Callable[[], Sequence[int]]
    batch_key: str
    language: str | None
    started_by: str


class BatchJobs:
    """Message batches of the pages: dry runs answered at once, sends on one worker thread."""

    def __init__(
        self,
        store: Store,
        guard: Guard,
        outbox: Outbox,
        *,
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.guard = guard
        self.outbox = outbox
        self.clock = clock
        self._lock = threading.Lock()
        self._jobs: dict[str, BatchJob] = {}
        self._active: dict[tuple[int, str], BatchJob] = {}
        self._recent: dict[int, deque[str]] = {}
        self._stop = threading.Event()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="message-batch")

    def service(self, tenant: str) -> MessagingService:
        settings = MessagingSettings(
            tenant=tenant,
            campaign_id=self.outbox.campaign_id,
            payment_link=self.outbox.payment_link,
        )
        return MessagingService(
            self.store, self.guard, self.outbox.providers, settings, clock=self.clock
        )

    def dry_run(self, request: BatchRequest) -> DryRun:
        """The batch's figures as of now; blocking (call it off the event loop)."""
        ids = list(dict.fromkeys(request.audience()))
        plan, previews = self.service(request.tenant).plan(
            request.template, ids, request.batch_key, language=request.language, dry_run=True
        )
        go = sum(p.decision.allowed for p in previews)
        wait = sum(1 for p in previews if not p.decision.allowed and p.decision.next_allowed_at)
        return DryRun(
            batch_key=request.batch_key,
            debtors=len(ids),
            already=plan.existing,
            go_now=go,
            wait=wait,
            refused=len(previews) - go - wait,
            skipped=dict(Counter(s.reason for s in plan.skipped)),
            previews=tuple(previews[:PREVIEWS]),
        )

    def start(self, request: BatchRequest) -> tuple[BatchJob, bool]:
        """The batch's job, started; or, while one of the same key is queued or running, that
        job (True: joined)."""
        key = (request.tenant_id, request.batch_key)
        with self._lock:
            if self._stop.is_set():
                raise DialerError("the dialer is stopping: no new message batch")
            running = self._active.get(key)
            if running is not None:
                return running, True
            job = BatchJob(
                id=secrets.token_hex(8),
                tenant_id=request.tenant_id,
                batch_key=request.batch_key,
                template=request.template.name,
                channel=request.template.channel.value,
                segment=request.segment,
                language=request.language,
                started_by=request.started_by,
                started_at=self.clock(),
            )
            self._jobs[job.id] = job
            self._active[key] = job
            recent = self._recent.setdefault(request.tenant_id, deque())
            recent.appendleft(job.id)
            while len(recent) > KEPT_JOBS:
                self._jobs.pop(recent.pop(), None)
            self._worker.submit(self._run, job, request)
        return job, False

    def get(self, tenant_id: int, job_id: str) -> BatchJob | None:
        with self._lock:
            job = self._jobs.get(job_id)
        return job if job is not None and job.tenant_id == tenant_id else None

    def recent(self, tenant_id: int) -> list[BatchJob]:
        """The tenant's latest jobs, newest first."""
        with self._lock:
            return [self._jobs[i] for i in self._recent.get(tenant_id, ()) if i in self._jobs]

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop between two chunks (a batch is resumable: starting it again goes on where it
        stopped), drop queued batches, close the providers."""
        self._stop.set()
        finished = threading.Event()

        def shut() -> None:
            self._worker.shutdown(wait=True, cancel_futures=True)
            finished.set()

        threading.Thread(target=shut, name="message-batch-close", daemon=True).start()
        if not finished.wait(timeout_s):
            log.warning("x a message batch was still sending at shutdown")
        with self._lock:
            for job in self._active.values():
                if not job.done:
                    job.update(state="stopped", error="the dialer stopped; start it again")
            self._active.clear()
        self.outbox.close()

    # -- the worker --------------------------------------------------------------------

    def _run(self, job: BatchJob, request: BatchRequest) -> None:
        try:
            if self._stop.is_set():
                raise _Stopped
            job.update(state="running")
            self._send(job, request)
            job.update(state="done")
        except _Stopped:
            job.update(state="stopped", error="the dialer stopped; start the batch again")
        except DialerError as exc:
            job.update(state="failed", error=str(exc))
            log.warning("x message batch %s failed: %s", job.batch_key, exc)
        except Exception as exc:  # the page must see the job end, whatever went wrong
            log.exception("x message batch %s failed", job.batch_key)
            job.update(state="failed", error=f"{type(exc).__name__}: {exc}")
        finally:
            job.update(finished_at=self.clock())
            with self._lock:
                if self._active.get((job.tenant_id, job.batch_key)) is job:
                    del self._active[(job.tenant_id, job.batch_key)]

    def _send(self, job: BatchJob, request: BatchRequest) -> None:
        ids = list(dict.fromkeys(request.audience()))
        job.update(debtors=len(ids))
        service = self.service(request.tenant)
        plan, _ = service.plan(request.template, ids, request.batch_key, language=request.language)
        job.update(created=plan.created, already=plan.existing, skipped=len(plan.skipped))
        job.update(planned=service.due_count(request.batch_key))

        def advance(n: int, chunk: DispatchReport) -> None:
            # What became of each chunk shows as it goes, not only at the end.
            with job.lock:
                job.processed += n
                job.outcome.add(chunk)
            if self._stop.is_set():
                raise _Stopped

        # Every chunk's report reached `advance`: the job's outcome is the whole batch's.
        service.dispatch(request.batch_key, progress=advance)
