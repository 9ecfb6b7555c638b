"""A durable job queue on the store's `recording_jobs` table, for SQLite in process and for
PostgreSQL with workers on several machines.

- **Enqueue** in the caller's transaction (`enqueue(conn, ...)`), so a recording row and its
  first job commit together; (recording, kind) is unique, so a job is never queued twice.
- **Claim** takes due jobs and sets a lease (`locked_by`, `locked_until`): on PostgreSQL with
  `SELECT ... FOR UPDATE SKIP LOCKED` (workers never wait on each other's rows), on SQLite
  inside `BEGIN IMMEDIATE` (the one writer lock, so two claims never overlap).
- **A crashed worker's job** is claimable again once its lease has run out; each claim counts
  an attempt, and past `max_attempts` the job fails instead of running again.
- **done / fail** name the claim they finish (worker and attempt number, a fencing token): a
  worker whose lease ran out and whose job was taken over gets LeaseLost and changes nothing.
  Both accept the caller's connection, so a job's result and its `done` commit together.
- **Retries**: `fail(reason)` re-queues with exponential backoff and jitter until the attempts
  are spent; `fail(reason, retry=False)` gives up at once (a corrupt file stays corrupt).

What this gives: a restart loses no job, and no job runs on two workers at once while its lease
holds (a handler that may outlive the lease calls `extend`). What it cannot give: a job whose
work finished but whose `done` was lost (crash, lost connection) runs again. Every job kind
must therefore be idempotent: archiving finds its file already moved and entered, analysis and
transcription overwrite their results for the recording rather than add to them.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Connection, Insert, and_, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from dialer.errors import StoreError
from dialer.store.db import Store, error_reason
from dialer.store.models import JobKind, JobState, RecordingJob
from recording.errors import RecordingError

log = logging.getLogger(__name__)

J = RecordingJob


class JobError(RecordingError):
    """Base of the queue's errors."""


class LeaseLost(JobError):
    """The job is no longer this worker's: its lease ran out and another worker claimed it (or
    it was finished already). Whatever this worker did must not be recorded as the result."""


@dataclass(frozen=True)
class Job:
    """One claimed job: this worker may run it until `locked_until` (or `extend` it)."""

    id: int
    tenant_id: int
    recording_id: int
    kind: JobKind
    attempts: int  # this claim's number, 1 for the first
    worker: str
    locked_until: datetime


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    backoff_s: float = 30.0  # before the 2nd attempt; doubled for each one after
    backoff_max_s: float = 3600.0

    def delay(self, attempts: int, rng: random.Random) -> timedelta:
        """Wait after failed attempt number `attempts`: exponential, capped, jittered to
        between half and all of it so that jobs failed together do not return together."""
        full = min(self.backoff_max_s, self.backoff_s * 2 ** max(0, attempts - 1))
        return timedelta(seconds=full * (0.5 + 0.5 * rng.random()))


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def enqueue(
    conn: Connection,
    *,
    tenant_id: int,
    recording_id: int,
    kind: JobKind,
    now: datetime,
    not_before: datetime | None = None,
) -> bool:
    """Queue a job in the caller's transaction; False when that recording has one of that kind
    already (in any state: a job is never queued twice)."""
    values = {
        "tenant_id": tenant_id,
        "recording_id": recording_id,
        "kind": kind.value,
        "state": JobState.QUEUED.value,
        "attempts": 0,
        "not_before": not_before or now,
        "created_at": now,
        "updated_at": now,
    }
    if conn.dialect.name == "postgresql":
        stmt: Insert = postgresql.insert(J).values(values).on_conflict_do_nothing()
    else:
        stmt = sqlite.insert(J).values(values).on_conflict_do_nothing()
    # rowcount is not reliable here (psycopg reports -1 for an INSERT with RETURNING).
    return conn.execute(stmt.returning(J.id)).first() is not None


class JobQueue:
    """One worker's view of the queue; several may share a store (threads, processes, nodes)."""

    def __init__(
        self,
        store: Store,
        worker_id: str | None = None,
        *,
        lease_s: float = 300.0,
        retry: RetryPolicy | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.worker_id = worker_id or default_worker_id()
        self.lease = timedelta(seconds=lease_s)
        self.retry = retry or RetryPolicy()
        self._rng = rng or random.Random()

    def claim(
        self, now: datetime, kinds: Collection[JobKind] | None = None, limit: int = 1
    ) -> list[Job]:
        """Lease up to `limit` due jobs (of `kinds`, or any): queued ones whose time has come
        and running ones whose lease has run out, oldest first."""
        claimable = or_(
            and_(J.state == JobState.QUEUED.value, J.not_before <= now),
            and_(J.state == JobState.RUNNING.value, J.locked_until < now),
        )
        if kinds is not None:
            claimable = and_(claimable, J.kind.in_([k.value for k in kinds]))
        pick = select(J.id).where(claimable).order_by(J.not_before, J.id).limit(limit)
        until = now + self.lease
        values = {
            "state": JobState.RUNNING.value,
            "locked_by": self.worker_id,
            "locked_until": until,
            "attempts": J.attempts + 1,
            "updated_at": now,
        }
        returning = (J.id, J.tenant_id, J.recording_id, J.kind, J.attempts)
        try:
            with self.store.begin() as conn:
                if conn.dialect.name == "postgresql":
                    picked = pick.with_for_update(skip_locked=True).cte("picked")
                    stmt = update(J).where(J.id == picked.c.id)
                else:
                    if conn.dialect.name == "sqlite":
                        conn.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock, now
                    stmt = update(J).where(J.id.in_(pick.scalar_subquery()))
                rows = conn.execute(stmt.values(values).returning(*returning)).all()
                jobs: list[Job] = []
                for job_id, tenant_id, recording_id, kind, attempts in sorted(rows):
                    if attempts > self.retry.max_attempts:
                        # Only a lease that ran out gets here: fail() stops at the last attempt.
                        conn.execute(
                            update(J)
                            .where(J.id == job_id)
                            .values(
                                state=JobState.FAILED.value,
                                locked_until=None,
                                error=f"gave up: the lease of attempt {attempts - 1} of "
                                f"{self.retry.max_attempts} ran out (worker lost)",
                            )
                        )
                        log.warning("x job %s gave up: worker lost on its last attempt", job_id)
                        continue
                    jobs.append(
                        Job(
                            job_id,
                            tenant_id,
                            recording_id,
                            JobKind(kind),
                            attempts,
                            self.worker_id,
                            until,
                        )
                    )
                return jobs
        except SQLAlchemyError as exc:
            raise StoreError(f"claim recording jobs: {error_reason(exc)}") from exc

    def _mine(self, job: Job) -> list[ColumnElement[bool]]:
        return [
            J.id == job.id,
            J.state == JobState.RUNNING.value,
            J.locked_by == job.worker,
            J.attempts == job.attempts,
        ]

    def _finish(self, job: Job, values: dict[str, object], conn: Connection | None) -> None:
        stmt = update(J).where(*self._mine(job)).values(values)
        try:
            if conn is not None:
                count = conn.execute(stmt).rowcount
            else:
                with self.store.begin() as own:
                    count = own.execute(stmt).rowcount
        except SQLAlchemyError as exc:
            raise StoreError(f"recording job {job.id}: {error_reason(exc)}") from exc
        if count != 1:
            raise LeaseLost(
                f"recording job {job.id} ({job.kind.value}, attempt {job.attempts}) is no "
                f"longer held by {job.worker}"
            )

    def extend(self, job: Job, now: datetime) -> Job:
        """Renew the lease for a job that takes longer than it (a heartbeat)."""
        until = now + self.lease
        self._finish(job, {"locked_until": until, "updated_at": now}, None)
        return replace(job, locked_until=until)

    def done(self, job: Job, now: datetime, conn: Connection | None = None) -> None:
        """The job's work is recorded; pass `conn` to commit this with that work."""
        self._finish(
            job,
            {"state": JobState.DONE.value, "locked_until": None, "error": None, "updated_at": now},
            conn,
        )

    def fail(
        self,
        job: Job,
        reason: str,
        now: datetime,
        *,
        retry: bool = True,
        conn: Connection | None = None,
    ) -> JobState:
        """Record a failed attempt: queued again after a backoff while attempts remain (and
        `retry`), else failed for good. Returns the job's new state."""
        again = retry and job.attempts < self.retry.max_attempts
        values: dict[str, object] = {
            "state": (JobState.QUEUED if again else JobState.FAILED).value,
            "locked_until": None,
            "error": reason[:2000],
            "updated_at": now,
        }
        if again:
            values["not_before"] = now + self.retry.delay(job.attempts, self._rng)
        self._finish(job, values, conn)
        return JobState.QUEUED if again else JobState.FAILED

    def counts(self) -> dict[tuple[JobKind, JobState], int]:
        """Jobs by kind and state."""
        with self.store.begin() as conn:
            rows = conn.execute(
                select(J.kind, J.state, func.count()).group_by(J.kind, J.state)
            ).all()
        return {(JobKind(k), JobState(s)): int(n) for k, s, n in rows}


Handler = Callable[[JobQueue, Job], None]
"""Runs one job and finishes it (`queue.done` or `queue.fail`), ideally in the transaction that
records its result. An exception out of it fails the attempt (retried while attempts remain)."""


def drain(
    queue: JobQueue,
    handler: Handler,
    *,
    now: Callable[[], datetime],
    kinds: Collection[JobKind] | None = None,
    stop: threading.Event | None = None,
    max_jobs: int | None = None,
) -> int:
    """Run due jobs one at a time until none is claimable (or `stop` is set); how many ran."""
    ran = 0
    while (stop is None or not stop.is_set()) and (max_jobs is None or ran < max_jobs):
        jobs = queue.claim(now(), kinds)
        if not jobs:
            break
        job = jobs[0]
        ran += 1
        try:
            handler(queue, job)
        except LeaseLost as exc:
            log.warning("x %s", exc)
        except Exception as exc:
            log.exception("x recording job %s (%s) failed", job.id, job.kind.value)
            try:
                queue.fail(job, f"{type(exc).__name__}: {exc}", now())
            except (LeaseLost, StoreError) as second:
                log.warning("x recording job %s: could not record the failure: %s", job.id, second)
    return ran


def run_workers(
    make_queue: Callable[[int], JobQueue],
    handler: Handler,
    *,
    workers: int,
    now: Callable[[], datetime],
    kinds: Collection[JobKind] | None = None,
    stop: threading.Event | None = None,
) -> int:
    """`workers` threads, each with its own queue (its own worker id), draining the due jobs;
    returns how many ran. For file and database work: the GIL is released while they wait."""
    counts: list[int] = [0] * workers
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            counts[i] = drain(make_queue(i), handler, now=now, kinds=kinds, stop=stop)
        except Exception as exc:  # a dead database: reported after the others stop
            errors.append(exc)

    threads: Sequence[threading.Thread] = [
        threading.Thread(target=work, args=(i,), name=f"recording-worker-{i}")
        for i in range(workers)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return sum(counts)
