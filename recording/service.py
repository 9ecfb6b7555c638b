"""Recording intake as use cases: find the recordings of finished calls, archive them through
the job queue, delete what retention allows. Plain functions on the store; the CLI (and later
the engine and the pages) call them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Insert, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from dialer.calls.models import AttemptStatus
from dialer.errors import StoreError
from dialer.store.db import Store, error_reason
from dialer.store.models import (
    CallAttempt,
    JobKind,
    JobState,
    Recording,
    RecordingStatus,
    Tenant,
)
from recording.archive import (
    Archive,
    ArchiveError,
    RecordingMissing,
    RetentionPolicy,
)
from recording.errors import BadRecording, RecordingUnfinished
from recording.jobs import Job, JobQueue, RetryPolicy, enqueue, run_workers
from recording.manifest import ManifestError
from recording.parties import join_parties, remove_sources, sources_of

log = logging.getLogger(__name__)

R = Recording


@dataclass(frozen=True)
class CollectResult:
    recordings: int  # recording rows added
    jobs: int  # archive jobs queued


def collect_finished(store: Store, now: datetime, *, batch: int = 500) -> CollectResult:
    """Every ended, connected attempt with a recording path and no recording row gets one
    (pending) and an
    `archive` job, in one transaction per batch. Idempotent, and safe to run on several nodes
    at once: the attempt is unique among recordings and a job among (recording, kind)."""
    a = CallAttempt
    recorded_at = func.coalesce(a.connected_at, a.hungup_at, a.dialed_at)
    found = (
        select(a.id, a.tenant_id, a.campaign_id, a.recording_path, recorded_at)
        .outerjoin(R, R.attempt_id == a.id)
        .where(
            a.status == AttemptStatus.ENDED.value,
            # Only a call that reached its agent has a conversation on record (MixMonitor's
            # option b); one dropped before leaves no file, or an empty one.
            a.connected_at.is_not(None),
            a.recording_path.is_not(None),
            a.recording_path != "",
            R.id.is_(None),
        )
        .order_by(a.id)
        .limit(batch)
    )
    recordings = jobs = 0
    try:
        while True:
            with store.begin() as conn:
                if conn.dialect.name == "sqlite":
                    # Read then write: take the write lock first, or a writer in between makes
                    # SQLite refuse the upgrade at once instead of waiting (WAL snapshots).
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                rows = conn.execute(found).all()
                if not rows:
                    break
                values = [
                    {
                        "tenant_id": tenant_id,
                        "attempt_id": attempt_id,
                        "campaign_id": campaign_id,
                        "source_path": path,
                        "status": RecordingStatus.PENDING.value,
                        "recorded_at": at,
                    }
                    for attempt_id, tenant_id, campaign_id, path, at in rows
                ]
                for recording_id, tenant_id in _insert_new(conn, values):
                    recordings += 1
                    jobs += enqueue(
                        conn,
                        tenant_id=tenant_id,
                        recording_id=recording_id,
                        kind=JobKind.ARCHIVE,
                        now=now,
                    )
            if len(rows) < batch:
                break
    except SQLAlchemyError as exc:
        raise StoreError(f"collect finished recordings: {error_reason(exc)}") from exc
    if recordings:
        log.info("= %d finished recordings found, %d archive jobs queued", recordings, jobs)
    return CollectResult(recordings, jobs)


def _insert_new(conn: Connection, values: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """Insert recording rows, skipping attempts another node has just taken; (id, tenant)."""
    if conn.dialect.name == "postgresql":
        stmt: Insert = postgresql.insert(R).values(values).on_conflict_do_nothing()
    else:
        stmt = sqlite.insert(R).values(values).on_conflict_do_nothing()
    rows = conn.execute(stmt.returning(R.id, R.tenant_id)).all()
    return [(int(i), int(t)) for i, t in rows]


@dataclass(frozen=True)
class ArchiveOutcome:
    recording_id: int
    attempt_id: int
    result: str  # archived | failed (for good) | retry (queued again) | skipped (done before)
    detail: str = ""


def _load(store: Store, recording_id: int) -> tuple[Recording, str]:
    with store.session() as session:
        row = session.execute(
            select(R, Tenant.name)
            .join(Tenant, Tenant.id == R.tenant_id)
            .where(R.id == recording_id)
        ).one()
        return row[0], str(row[1])


def run_archive_job(
    store: Store,
    queue: JobQueue,
    job: Job,
    archive: Archive,
    retention: RetentionPolicy,
    now: datetime,
    *,
    then: Sequence[JobKind] = (),
) -> ArchiveOutcome:
    """Archive one recording (an `archive` job's work) and finish the job in the transaction
    that records the result. Idempotent (Archive.intake is). A corrupt or truncated WAV fails
    the recording at once with the reason; a missing file is retried with backoff (it may
    still be on its way) and fails when the attempts are spent. `then`: kinds of job to queue
    once archived (analyse, transcribe), in the same transaction."""
    rec, tenant = _load(store, job.recording_id)
    if rec.status in (RecordingStatus.ARCHIVED.value, RecordingStatus.DELETED.value):
        queue.done(job, now)
        return ArchiveOutcome(rec.id, rec.attempt_id, "skipped", rec.status)
    source = Path(rec.source_path)
    try:
        # MixMonitor's r()/t() files beside the mixed one: the archive keeps the two parties.
        joined = join_parties(source)
        archived = archive.intake(
            tenant=tenant,
            attempt_id=rec.attempt_id,
            source=joined or source,
            recorded_at=rec.recorded_at,
            now=now,
            sources=sources_of(source, joined) if joined else (),
        )
    except (RecordingMissing, RecordingUnfinished, ArchiveError, ManifestError, OSError) as exc:
        # Before BadRecording: a file whose writer has not closed it yet is looked at again.
        reason = str(exc) if isinstance(exc, ArchiveError) else f"{type(exc).__name__}: {exc}"
        with store.begin() as conn:
            state = queue.fail(job, reason, now, conn=conn)
            if state is JobState.FAILED:
                _set_failed(conn, rec.id, reason)
            else:
                conn.execute(update(R).where(R.id == rec.id).values(error=reason))
        result = "failed" if state is JobState.FAILED else "retry"
        # A file still being written is looked for again: only giving up is worth a warning.
        log.log(
            logging.WARNING if result == "failed" else logging.INFO,
            "x recording %s (attempt %s): %s%s",
            rec.id,
            rec.attempt_id,
            reason,
            "" if result == "failed" else " (will retry)",
        )
        return ArchiveOutcome(rec.id, rec.attempt_id, result, reason)
    except BadRecording as exc:
        reason = f"corrupt recording {exc}"
        with store.begin() as conn:
            _set_failed(conn, rec.id, reason)
            queue.fail(job, reason, now, retry=False, conn=conn)
        log.warning("x recording %s (attempt %s): %s", rec.id, rec.attempt_id, reason)
        return ArchiveOutcome(rec.id, rec.attempt_id, "failed", reason)
    with store.begin() as conn:
        conn.execute(
            update(R)
            .where(R.id == rec.id)
            .values(
                status=RecordingStatus.ARCHIVED.value,
                archive_path=archived.path,
                sha256=archived.sha256,
                bytes=archived.bytes,
                duration_s=archived.wav.duration_s,
                sample_rate=archived.wav.sample_rate,
                channels=archived.wav.channels,
                error=None,
                archived_at=now,
                retain_until=retention.keep_until(tenant, rec.recorded_at),
            )
        )
        for kind in then:
            enqueue(conn, tenant_id=rec.tenant_id, recording_id=rec.id, kind=kind, now=now)
        queue.done(job, now, conn=conn)
    try:
        remove_sources(source)
    except OSError as exc:  # archived all the same: what is left is swept by the next run
        log.warning("x archived %s but could not clear its spool files: %s", archived.path, exc)
    log.info("= recording %s archived as %s (seq %s)", rec.id, archived.path, archived.entry.seq)
    return ArchiveOutcome(rec.id, rec.attempt_id, "archived", archived.path)


def _set_failed(conn: Connection, recording_id: int, reason: str) -> None:
    conn.execute(
        update(R)
        .where(R.id == recording_id)
        .values(status=RecordingStatus.FAILED.value, error=reason[:2000])
    )


@dataclass
class ArchiveRun:
    outcomes: list[ArchiveOutcome] = field(default_factory=list)
    jobs: int = 0  # jobs claimed (an outcome each unless the worker lost its lease)

    def count(self, result: str) -> int:
        return sum(1 for o in self.outcomes if o.result == result)


def archive_pending(
    store: Store,
    archive: Archive,
    retention: RetentionPolicy,
    *,
    now: Callable[[], datetime],
    workers: int = 1,
    worker_prefix: str | None = None,
    lease_s: float = 300.0,
    retry: RetryPolicy | None = None,
    stop: threading.Event | None = None,
    then: Sequence[JobKind] = (),
) -> ArchiveRun:
    """Run every due `archive` job with `workers` threads until none is left; `then`: the jobs
    each archived recording gets next (see run_archive_job)."""
    run = ArchiveRun()
    lock = threading.Lock()

    def make_queue(i: int) -> JobQueue:
        worker = f"{worker_prefix}-{i}" if worker_prefix else None
        return JobQueue(store, worker, lease_s=lease_s, retry=retry)

    def handle(queue: JobQueue, job: Job) -> None:
        outcome = run_archive_job(store, queue, job, archive, retention, now(), then=then)
        with lock:
            run.outcomes.append(outcome)

    run.jobs = run_workers(
        make_queue, handle, workers=workers, now=now, kinds=(JobKind.ARCHIVE,), stop=stop
    )
    return run


@dataclass(frozen=True)
class DeletedRecording:
    recording_id: int
    attempt_id: int
    tenant: str
    path: str


@dataclass
class RetentionResult:
    deleted: list[DeletedRecording] = field(default_factory=list)
    extended: int = 0  # kept longer: the tenant's retention was raised since they were archived
    errors: list[str] = field(default_factory=list)


def retention_run(
    store: Store,
    archive: Archive,
    retention: RetentionPolicy,
    now: datetime,
    *,
    batch: int = 500,
) -> RetentionResult:
    """Delete the archived recordings whose keeping time is over, each entered in the manifest
    as `deleted`. The only path by which a recording leaves the archive.

    A recording is kept until the later of its `retain_until` (set from the tenant's retention
    when archived) and the tenant's retention now: lowering a setting by mistake never deletes
    early, raising it keeps what is already archived longer. A file that cannot be deleted is
    reported and the run goes on. Idempotent; safe on several nodes at once.
    """
    result = RetentionResult()
    after = 0
    due = (
        select(R, Tenant.name)
        .join(Tenant, Tenant.id == R.tenant_id)
        .where(R.status == RecordingStatus.ARCHIVED.value, R.retain_until <= now)
        .order_by(R.id)
        .limit(batch)
    )
    try:
        while True:
            with store.session() as session:
                rows = [(rec, str(name)) for rec, name in session.execute(due.where(R.id > after))]
            for rec, tenant in rows:
                after = rec.id
                if _delete_if_due(store, archive, retention, rec, tenant, now, result):
                    log.info("= recording %s deleted by retention (%s)", rec.id, rec.archive_path)
            if len(rows) < batch:
                break
    except SQLAlchemyError as exc:
        raise StoreError(f"retention run: {error_reason(exc)}") from exc
    return result


def _delete_if_due(
    store: Store,
    archive: Archive,
    retention: RetentionPolicy,
    rec: Recording,
    tenant: str,
    now: datetime,
    result: RetentionResult,
) -> bool:
    keep = retention.keep_until(tenant, rec.recorded_at)
    if rec.retain_until is not None:
        keep = max(keep, rec.retain_until)
    if keep > now:
        with store.begin() as conn:
            conn.execute(update(R).where(R.id == rec.id).values(retain_until=keep))
        result.extended += 1
        return False
    if rec.archive_path is None or rec.sha256 is None or rec.bytes is None:
        result.errors.append(f"recording {rec.id}: archived without a path or hash; left alone")
        return False
    try:
        archive.delete(
            tenant=tenant,
            attempt_id=rec.attempt_id,
            path=rec.archive_path,
            sha256=rec.sha256,
            size=rec.bytes,
            now=now,
        )
    except (OSError, ArchiveError, ManifestError) as exc:
        result.errors.append(f"recording {rec.id} ({rec.archive_path}): {exc}")
        log.warning("x retention: recording %s (%s): %s", rec.id, rec.archive_path, exc)
        return False
    with store.begin() as conn:
        conn.execute(
            update(R)
            .where(R.id == rec.id)
            .values(status=RecordingStatus.DELETED.value, deleted_at=now)
        )
    result.deleted.append(DeletedRecording(rec.id, rec.attempt_id, tenant, rec.archive_path))
    return True
