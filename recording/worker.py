"""The recording pipeline inside a running dialer: each finished call's recording collected,
archived, measured, transcribed, indexed and QA-checked while the campaign goes on.

Nothing here runs on the event loop. An intake thread collects finished calls and archives
them (file and database work: the GIL is released while it waits); a transcription thread
feeds the recogniser process pool one call at a time (`AnalyseCall`: reading the audio, VAD,
measures and recognition all run in the pool's processes, off this process's GIL) and stores
what comes back. Every step goes through the durable job queue (recording/jobs.py): stopping
leaves the unfinished jobs queued, released without counting an attempt, for the next run or
`dialer recordings process`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from sqlalchemy import func, select, update
from sqlalchemy.exc import SQLAlchemyError

from asr.errors import AsrError
from asr.pool import Outcome, RecognizerPool, run_job
from asr.protocol import Recognizer
from dialer.config import RecordingsConfig
from dialer.errors import ConfigError, StoreError
from dialer.store.db import Store
from dialer.store.models import JobKind, JobState, Recording, RecordingJob
from recording.archive import Archive, RetentionPolicy
from recording.errors import BadRecording, RecordingError
from recording.jobs import Job, JobQueue, LeaseLost, RetryPolicy
from recording.pipeline import CallAnalysis, CallProcessed, analyse_call, record_analysis
from recording.qa import QaRulesError, RuleSet, load_rules
from recording.script_text import ScriptRecognizer, load_truth, truth_path
from recording.service import archive_pending, collect_finished

log = logging.getLogger(__name__)

J = RecordingJob
# A call has ended before MixMonitor (or the simulator) has closed its files: a missing file is
# looked for again soon, then less often (1, 2, 4 ... 64 s: about two minutes in all).
INTAKE_RETRY = RetryPolicy(max_attempts=8, backoff_s=1.0, backoff_max_s=64.0)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Analysed:
    """A pool job's answer: the analysis, or why the recording cannot be read (for good)."""

    analysis: CallAnalysis | None
    bad: str | None = None


@dataclass(frozen=True, slots=True)
class AnalyseCall:
    """The audio side of one call, run where the recogniser lives (a pool process).

    `truth`: the simulator's script sidecar, used instead of the recogniser when `text_route`
    is set or the call's language is one of `text_languages` (no model for it here)."""

    job_id: int
    path: str
    truth: str = ""
    text_route: bool = False
    text_languages: tuple[str, ...] = ()

    def run(self, recognizer: Recognizer) -> Analysed:
        chosen: Recognizer = recognizer
        if self.text_route or self.text_languages:
            script = load_truth(Path(self.truth)) if self.truth else None
            if self.text_route or (script and script.get("language") in self.text_languages):
                chosen = ScriptRecognizer(script)
        try:
            return Analysed(analyse_call(chosen, Path(self.path)))
        except BadRecording as exc:
            return Analysed(None, str(exc))


class Analyser(Protocol):
    """Runs `AnalyseCall` jobs; outcomes as they complete."""

    def imap(self, jobs: Iterable[AnalyseCall]) -> Iterator[Outcome[Analysed]]: ...

    def close(self) -> None: ...

    def terminate(self) -> None: ...


class PoolAnalyser:
    """A started `RecognizerPool`: one model per process."""

    def __init__(self, pool: RecognizerPool) -> None:
        self.pool = pool

    def imap(self, jobs: Iterable[AnalyseCall]) -> Iterator[Outcome[Analysed]]:
        return self.pool.imap(jobs, ordered=False)

    def close(self) -> None:
        self.pool.close()

    def terminate(self) -> None:
        self.pool.terminate()


class InlineAnalyser:
    """In the calling thread: the text route (no recognition), tests."""

    def __init__(self, recognizer: Recognizer | None = None) -> None:
        self.recognizer: Recognizer = recognizer or ScriptRecognizer()

    def imap(self, jobs: Iterable[AnalyseCall]) -> Iterator[Outcome[Analysed]]:
        for index, job in enumerate(jobs):
            yield Outcome(index, job, *run_job(self.recognizer, job))

    def close(self) -> None:
        pass

    def terminate(self) -> None:
        pass


def build_analyser(settings: RecordingsConfig) -> Analyser:
    """The configured recogniser: a started pool (models loaded), or the text route inline.
    ConfigError when a model will not load, before any call is taken."""
    if settings.engine == "script":
        return InlineAnalyser()
    from asr.engines import EngineSpec

    pool = RecognizerPool(
        EngineSpec(engine=settings.engine, model=settings.model or None),
        settings.recogniser_processes,
    )
    try:
        pool.start()
    except AsrError as exc:
        raise ConfigError(f"recordings.engine {settings.engine}: {exc}") from exc
    return PoolAnalyser(pool)


@dataclass(frozen=True)
class QaRules:
    """The rule set for a call: by its transcripts' language, else the default."""

    default: RuleSet
    by_language: Mapping[str, RuleSet]

    def for_language(self, language: str) -> RuleSet:
        return self.by_language.get(language, self.default)

    @classmethod
    def from_config(cls, settings: RecordingsConfig) -> QaRules:
        """ConfigError names the key whose rule set will not load."""
        try:
            default = load_rules(settings.rules)
        except (QaRulesError, OSError) as exc:
            raise ConfigError(f"recordings.rules: {exc}") from exc
        by_language = {}
        for language, name in settings.rules_by_language.items():
            try:
                by_language[language] = load_rules(name)
            except (QaRulesError, OSError) as exc:
                raise ConfigError(f"recordings.rules_by_language.{language}: {exc}") from exc
        return cls(default, by_language)


@dataclass(frozen=True)
class Finished:
    """One call through the pipeline: what the bench times and the demo's bar counts."""

    recording_id: int
    attempt_id: int
    processed: CallProcessed | None  # None: failed (`error`)
    error: str | None = None


class PipelineWorker:
    """The pipeline's two threads; `start()`, then `stop()` (or `drain()` first)."""

    def __init__(
        self,
        store: Store,
        archive: Archive,
        retention: RetentionPolicy,
        rules: QaRules,
        analyser: Analyser,
        *,
        node_id: str = "node1",
        archive_workers: int = 2,
        poll_s: float = 1.0,
        text_languages: tuple[str, ...] = (),
        now: Callable[[], datetime] = _utcnow,
        on_finished: Callable[[Finished], object] | None = None,
        lease_s: float = 600.0,
    ) -> None:
        self.store = store
        self.archive = archive
        self.retention = retention
        self.rules = rules
        self.analyser = analyser
        self.archive_workers = archive_workers
        self.poll_s = poll_s
        self.text_languages = text_languages
        self.now = now
        self.on_finished = on_finished
        self.lease_s = lease_s
        self.worker_id = f"{node_id}-pipeline-{os.getpid()}-{id(self):x}"
        self.queue = JobQueue(store, f"{self.worker_id}-asr", lease_s=lease_s)
        self.text_route = isinstance(analyser, InlineAnalyser) and isinstance(
            analyser.recognizer, ScriptRecognizer
        )
        self._stop = threading.Event()
        self._wake = threading.Event()  # intake: look for finished calls now
        self._work = threading.Event()  # transcription: archived calls are waiting
        self._abandoned = threading.Event()  # stop's grace is over
        self._released = 0  # jobs handed back by the transcription thread as it stopped
        self._lock = threading.Lock()
        self._held: dict[int, tuple[Job, int]] = {}  # job id -> (job, attempt id)
        self._threads: list[threading.Thread] = []
        self.intake_rounds = 0
        self.transcribed = 0
        self.failed: list[tuple[int, str]] = []  # (recording id, why)

    # -- life -----------------------------------------------------------------------------

    def start(self) -> None:
        for name, target in (("intake", self._intake_loop), ("asr", self._transcribe_loop)):
            thread = threading.Thread(target=target, name=f"pipeline-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def wake(self) -> None:
        """A call has ended: look now rather than at the next poll."""
        self._wake.set()

    def stop(self, grace_s: float = 5.0) -> int:
        """Stop taking work; what is unfinished after `grace_s` is abandoned and its jobs go
        back to the queue (durable: the next run takes them). How many went back."""
        self._stop.set()
        self._wake.set()
        self._work.set()
        for thread in self._threads:
            thread.join(grace_s)
        self._abandoned.set()  # whatever finishes from now on is not recorded
        if any(t.is_alive() for t in self._threads):
            # A long recognition in flight: its process is stopped, its job released below.
            self.analyser.terminate()
            for thread in self._threads:
                thread.join(10.0)
        else:
            self.analyser.close()
        released = self._released + self._release_all()
        if released:
            log.info(
                "= pipeline stopped: %d recording job(s) left queued for the next run", released
            )
        return released

    def pending(self) -> int:
        """Work left: recording jobs queued or running."""
        # Queued jobs waiting out a retry's backoff count too: a file still being written
        # arrives within the first retries.
        left = J.state.in_((JobState.QUEUED.value, JobState.RUNNING.value))
        with self.store.begin() as conn:
            jobs = conn.execute(select(func.count()).select_from(J).where(left)).scalar_one()
        return int(jobs)

    def drain(
        self,
        timeout_s: float,
        progress: Callable[[int], object] | None = None,
    ) -> bool:
        """Wait until every finished call collected so far is through (True), or `timeout_s`
        has passed (False); `progress(left)` now and then."""
        deadline = time.monotonic() + timeout_s
        rounds = self.intake_rounds
        self.wake()
        while time.monotonic() < deadline:
            # Only an intake round begun after the call has seen every finished call.
            left = self.pending()
            if progress is not None:
                progress(left)
            if self.intake_rounds >= rounds + 2 and left == 0:
                return True
            time.sleep(0.2)
        return False

    # -- intake: collect and archive ------------------------------------------------------

    def _intake_loop(self) -> None:
        while not self._stop.is_set():
            try:
                collect_finished(self.store, self.now())
                run = archive_pending(
                    self.store,
                    self.archive,
                    self.retention,
                    now=self.now,
                    workers=self.archive_workers,
                    worker_prefix=f"{self.worker_id}-archive",
                    lease_s=self.lease_s,
                    stop=self._stop,
                    then=(JobKind.TRANSCRIBE,),
                    retry=INTAKE_RETRY,
                )
                if run.count("archived"):
                    self._work.set()
                for outcome in run.outcomes:
                    if outcome.result == "failed":
                        self._report(
                            Finished(outcome.recording_id, outcome.attempt_id, None, outcome.detail)
                        )
            except (StoreError, RecordingError, OSError, SQLAlchemyError) as exc:
                log.warning("x recording intake: %s (trying again)", exc)
            except Exception:  # a bug must not end the pipeline for the rest of the run
                log.exception("x recording intake failed (trying again)")
            self.intake_rounds += 1
            self._wake.wait(self.poll_s)
            self._wake.clear()

    # -- transcription --------------------------------------------------------------------

    def _transcribe_loop(self) -> None:
        while not self._stop.is_set():
            ran = 0
            try:
                ran = self._transcribe_round()
            except (StoreError, SQLAlchemyError, OSError) as exc:
                log.warning("x transcription: %s (trying again)", exc)
            except Exception:
                if self._stop.is_set():
                    break  # the pool was stopped under it: the jobs go back to the queue
                log.exception("x transcription failed (trying again)")
            if not ran:
                self._work.wait(self.poll_s)
                self._work.clear()

    def _claims(self) -> Iterator[AnalyseCall]:
        """Claim a job whenever a recogniser is free (the pool reads this lazily)."""
        while not self._stop.is_set():
            claimed = self.queue.claim(self.now(), kinds=(JobKind.TRANSCRIBE,))
            if not claimed:
                return
            job = claimed[0]
            with self.store.session() as session:
                rec = session.get(Recording, job.recording_id)
                found = (rec.attempt_id, rec.archive_path, rec.source_path) if rec else None
            if found is None or not found[1]:
                why = f"recording {job.recording_id} is not archived"
                self.queue.fail(job, why, self.now())
                continue
            attempt_id, archived, source = found
            path = Path(str(archived))
            if not path.is_absolute():
                path = self.archive.root / path
            truth = truth_path(Path(source))
            with self._lock:
                self._held[job.id] = (job, attempt_id)
            yield AnalyseCall(
                job.id,
                str(path),
                truth=str(truth) if truth.exists() else "",
                text_route=self.text_route,
                text_languages=self.text_languages,
            )

    def _transcribe_round(self) -> int:
        ran = 0
        for outcome in self.analyser.imap(self._claims()):
            ran += 1
            call = outcome.job
            assert isinstance(call, AnalyseCall)
            with self._lock:
                held = self._held.pop(call.job_id, None)
            if held is None:
                continue
            job, attempt_id = held
            if self._abandoned.is_set() or (self._stop.is_set() and not outcome.ok):
                self._release(job)  # cut short by the stop, not a failure of the recording
                continue
            self._finish(job, attempt_id, outcome)
        return ran

    def _finish(self, job: Job, attempt_id: int, outcome: Outcome[Analysed]) -> None:
        now = self.now()
        result = outcome.value
        try:
            if result is None or result.analysis is None:
                why = result.bad if result is not None and result.bad else outcome.error or "?"
                # A file that cannot be read stays unreadable; an engine failure may pass.
                bad = result is not None and result.bad is not None
                self.queue.fail(job, why, now, retry=not bad)
                log.warning("x recording %s: %s", job.recording_id, why)
                self._report(Finished(job.recording_id, attempt_id, None, why))
                return
            analysis = result.analysis
            language = next((t.language for t in analysis.transcripts), "und")
            processed = record_analysis(
                self.store,
                self.rules.for_language(language),
                analysis,
                tenant_id=job.tenant_id,
                attempt_id=attempt_id,
                recording_id=job.recording_id,
                now=now,
            )
            self.queue.done(job, self.now())
        except LeaseLost as exc:
            log.warning("x %s", exc)
            return
        except (StoreError, SQLAlchemyError, RecordingError) as exc:
            log.warning("x recording %s: %s (will retry)", job.recording_id, exc)
            try:
                self.queue.fail(job, str(exc), self.now())
            except (LeaseLost, StoreError) as second:
                log.warning("x recording %s: %s", job.recording_id, second)
            return
        self.transcribed += 1
        self._report(Finished(job.recording_id, attempt_id, processed))

    def _report(self, finished: Finished) -> None:
        if finished.processed is None:
            self.failed.append((finished.recording_id, finished.error or "?"))
        if self.on_finished is not None:
            try:
                self.on_finished(finished)
            except Exception:
                log.exception("x pipeline on_finished callback")

    # -- stopping -------------------------------------------------------------------------

    def _release(self, job: Job) -> None:
        """Back to the queue, its claim not counted (it was stopped, it did not fail)."""
        with self.store.begin() as conn:
            self._released += conn.execute(
                update(J)
                .where(
                    J.id == job.id,
                    J.state == JobState.RUNNING.value,
                    J.locked_by == job.worker,
                    J.attempts == job.attempts,
                )
                .values(
                    state=JobState.QUEUED.value,
                    attempts=J.attempts - 1,
                    locked_by=None,
                    locked_until=None,
                    updated_at=self.now(),
                )
            ).rowcount

    def _release_all(self) -> int:
        """Every job this worker's threads still hold goes back to the queue."""
        with self.store.begin() as conn:
            count = conn.execute(
                update(J)
                .where(
                    J.state == JobState.RUNNING.value,
                    J.locked_by.like(f"{self.worker_id}-%"),
                )
                .values(
                    state=JobState.QUEUED.value,
                    attempts=J.attempts - 1,
                    locked_by=None,
                    locked_until=None,
                    updated_at=self.now(),
                )
            ).rowcount
        with self._lock:
            self._held.clear()
        return int(count or 0)


def start_pipeline(
    store: Store,
    settings: RecordingsConfig,
    data_dir: Path,
    *,
    node_id: str,
    text_languages: tuple[str, ...] = (),
    now: Callable[[], datetime] = _utcnow,
    on_finished: Callable[[Finished], object] | None = None,
) -> PipelineWorker:
    """The pipeline as configured in [recordings], started. ConfigError for a rule set or a
    model that will not load (before any call is taken)."""
    rules = QaRules.from_config(settings)
    analyser = build_analyser(settings)
    worker = PipelineWorker(
        store,
        Archive(settings.archive_root(data_dir)),
        RetentionPolicy(settings.default_retention_days, dict(settings.retention_days)),
        rules,
        analyser,
        node_id=node_id,
        archive_workers=settings.workers,
        poll_s=settings.poll_s,
        text_languages=text_languages,
        now=now,
        on_finished=on_finished,
    )
    worker.start()
    return worker
