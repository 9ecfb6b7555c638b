"""A process pool of recognisers: one model per process, a bounded window of work, clean stops.

Recognition is CPU-bound native code that holds the GIL for long stretches, so threads do not
scale; each worker process loads its own model once (the initialiser) and then takes jobs.

- Backpressure: each worker holds at most one job, and the job iterator is read only when a
  worker is free, so a generator of a million paths (or of audio arrays from a queue) never sits
  in memory. In ordered mode, results waiting for an earlier slow job are capped
  (`reorder_limit`); dispatch pauses until the slow one is in.
- Results come in submission order (`ordered=True`) or as completed.
- A job that fails (bad audio, engine error) yields an Outcome with its error; the others go
  on. A worker that dies (a crash in native code) fails only the job it held, and is replaced.
- A model that cannot load fails `start()` with the worker's reason (WorkerFailed).
- Ctrl-C: workers ignore SIGINT; the parent's KeyboardInterrupt terminates them and propagates.
- Workers start with forkserver where available: the dialer process runs threads, and forking
  a threaded process is unsafe.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import signal
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.context import ForkContext, ForkServerContext, SpawnContext
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

from asr.engines import EngineSpec, build_recognizer
from asr.errors import AsrError, WorkerFailed
from asr.models import Segment, Transcript
from asr.protocol import Recognizer, Samples
from asr.resample import Quality
from asr.service import transcribe_file, transcribe_samples

log = logging.getLogger(__name__)

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Job(Protocol[T_co]):
    """Picklable work for a recogniser."""

    def run(self, recognizer: Recognizer) -> T_co: ...


@dataclass(frozen=True, slots=True)
class TranscribeFile:
    """Transcribe one WAV file (all channels)."""

    path: str
    quality: Quality = "HQ"

    def run(self, recognizer: Recognizer) -> Transcript:
        return transcribe_file(recognizer, self.path, quality=self.quality)


@dataclass(frozen=True, slots=True)
class TranscribeSamples:
    """Transcribe a piece of one channel (a VAD segment), with times offset into the call."""

    samples: Samples
    sample_rate: int
    channel: int = 0
    offset_s: float = 0.0

    def run(self, recognizer: Recognizer) -> list[Segment]:
        return transcribe_samples(
            recognizer,
            self.samples,
            self.sample_rate,
            channel=self.channel,
            offset_s=self.offset_s,
        )


@dataclass(frozen=True, slots=True)
class Outcome(Generic[T]):
    """What became of job number `index`: its value, or the reason it failed."""

    index: int
    job: Job[T]
    value: T | None
    error: str | None
    busy_s: float  # wall time the recogniser spent on it
    cpu_s: float = 0.0  # CPU time of the process that ran it, meanwhile

    @property
    def ok(self) -> bool:
        return self.error is None


def describe(exc: BaseException) -> str:
    """An error as reported per job: the message of our own errors, type and message otherwise."""
    return str(exc) if isinstance(exc, AsrError) else f"{type(exc).__name__}: {exc}"


def run_job(recognizer: Recognizer, job: Job[T]) -> tuple[T | None, str | None, float, float]:
    """Run one job: (value, error, wall seconds, CPU seconds); errors are caught, not raised."""
    started = time.perf_counter()
    cpu = time.process_time()
    try:
        value: T | None = job.run(recognizer)
        error = None
    except AsrError as exc:
        value, error = None, describe(exc)
    except Exception as exc:  # an engine bug must not stop the batch: report it on this job
        log.exception("x job %r failed", job)
        value, error = None, describe(exc)
    return value, error, time.perf_counter() - started, time.process_time() - cpu


def run_inline(recognizer: Recognizer, jobs: Iterable[Job[T]]) -> Iterator[Outcome[T]]:
    """The same contract as `RecognizerPool.imap`, in this process (one model, no workers)."""
    for index, job in enumerate(jobs):
        yield Outcome(index, job, *run_job(recognizer, job))


def _worker_main(spec: EngineSpec, conn: Connection) -> None:
    """A worker process: load the model once, then run jobs until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:
        recognizer = build_recognizer(spec)
    except Exception as exc:  # reported to the parent, which raises WorkerFailed
        conn.send(("failed", describe(exc)))
        return
    conn.send(("ready", None))
    while True:
        try:
            message = conn.recv()
        except EOFError:  # the parent went away
            return
        if message is None:
            return
        index, job = message
        value, error, busy, cpu = run_job(recognizer, job)
        try:
            conn.send(("done", (index, value, error, busy, cpu)))
        except OSError:  # the parent went away (killed): nobody to report to
            return
        except Exception as exc:  # e.g. a value that does not pickle
            conn.send(("done", (index, None, describe(exc), busy, cpu)))


def _context(method: str | None) -> ForkServerContext | SpawnContext | ForkContext:
    if method is None:
        available = multiprocessing.get_all_start_methods()
        method = "forkserver" if "forkserver" in available else "spawn"
    if method == "forkserver":
        return multiprocessing.get_context("forkserver")
    if method == "spawn":
        return multiprocessing.get_context("spawn")
    if method == "fork":
        return multiprocessing.get_context("fork")
    raise ValueError(f"unknown start method {method!r}")


class _Worker:
    def __init__(self, process: BaseProcess, conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.job: tuple[int, Job[Any]] | None = None


class RecognizerPool:
    """`processes` workers, each with its own recogniser built from `spec`.

    Use as a context manager (`with RecognizerPool(spec, 2) as pool: for o in pool.imap(jobs)`):
    entering starts the workers and waits until every model is loaded (`load_s`); leaving stops
    them, or terminates them if an exception (Ctrl-C included) is on its way out.
    """

    def __init__(
        self,
        spec: EngineSpec,
        processes: int,
        *,
        start_method: str | None = None,
        start_timeout_s: float = 300.0,
        reorder_limit: int | None = None,
    ) -> None:
        if processes < 1:
            raise ValueError(f"processes must be at least 1, not {processes}")
        self.spec = spec
        self.processes = processes
        self._ctx = _context(start_method)
        self._start_timeout_s = start_timeout_s
        self._reorder_limit = reorder_limit or 8 * processes
        self._workers: list[_Worker] = []
        self._started = False
        self._stopped = False
        self.load_s = 0.0
        self.restarts = 0

    def __enter__(self) -> RecognizerPool:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.terminate()

    def start(self) -> None:
        """Start the workers and wait until each has loaded its model."""
        if self._started:
            return
        self._started = True
        begun = time.perf_counter()
        ready = False
        try:
            self._await_ready([self._spawn() for _ in range(self.processes)])
            ready = True
        finally:
            if not ready:  # a model that would not load, a timeout, or Ctrl-C while loading
                self.terminate()
        self.load_s = time.perf_counter() - begun

    def _spawn(self) -> _Worker:
        parent, child = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(
            target=_worker_main, args=(self.spec, child), name="asr-worker", daemon=True
        )
        process.start()
        child.close()
        worker = _Worker(process, parent)
        self._workers.append(worker)
        return worker

    def _await_ready(self, pending: list[_Worker]) -> None:
        deadline = time.monotonic() + self._start_timeout_s
        waiting = list(pending)
        while waiting:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WorkerFailed(
                    f"{len(waiting)} recognition worker(s) did not load their model "
                    f"within {self._start_timeout_s:.0f} s"
                )
            wait([w.conn for w in waiting] + [w.process.sentinel for w in waiting], remaining)
            for worker in list(waiting):
                kind, detail = "", None
                if worker.conn.poll():
                    try:
                        kind, detail = worker.conn.recv()
                    except EOFError:
                        worker.process.join(timeout=5)
                if kind == "failed":
                    raise WorkerFailed(f"recognition worker could not start: {detail}")
                if kind == "ready":
                    waiting.remove(worker)
                elif not worker.process.is_alive():
                    raise WorkerFailed(
                        f"recognition worker died while loading its model "
                        f"(exit code {worker.process.exitcode})"
                    )

    def imap(self, jobs: Iterable[Job[T]], *, ordered: bool = True) -> Iterator[Outcome[T]]:
        """Run the jobs on the workers; one Outcome per job, in order or as completed."""
        if not self._started:
            self.start()
        if self._stopped:
            raise AsrError("the recognition pool is closed")
        source = iter(jobs)
        exhausted = False
        next_index = 0
        next_out = 0
        held: dict[int, Outcome[T]] = {}
        try:
            while True:
                for worker in list(self._workers):
                    if exhausted or worker.job is not None:
                        continue
                    if ordered and len(held) >= self._reorder_limit:
                        break
                    try:
                        job = next(source)
                    except StopIteration:
                        exhausted = True
                        break
                    self._send(worker, (next_index, job))
                    next_index += 1
                busy = [w for w in self._workers if w.job is not None]
                if not busy:
                    return
                for outcome in self._collect(busy):
                    if not ordered:
                        yield outcome
                        continue
                    held[outcome.index] = outcome
                    while next_out in held:
                        yield held.pop(next_out)
                        next_out += 1
        except KeyboardInterrupt:
            self.terminate()
            raise
        finally:
            if not self._stopped:
                self._drain()  # the consumer stopped early: let the workers finish their job

    def _send(self, worker: _Worker, item: tuple[int, Job[Any]]) -> None:
        """Hand a job to a worker; one that died while idle is replaced and the job goes there."""
        try:
            worker.conn.send(item)
        except OSError:
            log.warning("x recognition worker gone (exit code %s)", worker.process.exitcode)
            worker = self._replace(worker)
            worker.conn.send(item)
        worker.job = item

    def _collect(self, busy: list[_Worker]) -> list[Outcome[Any]]:
        wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
        outcomes: list[Outcome[Any]] = []
        for worker in busy:
            assert worker.job is not None
            index, job = worker.job
            if worker.conn.poll():
                try:
                    kind, (done_index, value, error, busy_s, cpu_s) = worker.conn.recv()
                except EOFError:
                    pass
                else:
                    assert kind == "done" and done_index == index
                    worker.job = None
                    outcomes.append(Outcome(index, job, value, error, busy_s, cpu_s))
                    continue
            if not worker.process.is_alive():
                code = worker.process.exitcode
                log.warning("x recognition worker died (exit code %s) on job %r", code, job)
                outcomes.append(
                    Outcome(index, job, None, f"recognition worker died (exit code {code})", 0.0)
                )
                self._replace(worker)
        return outcomes

    def _replace(self, dead: _Worker) -> _Worker:
        self._workers.remove(dead)
        dead.conn.close()
        dead.process.join(timeout=1)
        self.restarts += 1
        fresh = self._spawn()
        self._await_ready([fresh])
        return fresh

    def _drain(self) -> None:
        for worker in self._workers:
            if worker.job is None:
                continue
            with contextlib.suppress(EOFError, OSError):
                worker.conn.recv()
            worker.job = None

    def close(self) -> None:
        """Let the workers finish and exit."""
        if self._stopped:
            return
        self._stopped = True
        for worker in self._workers:
            with contextlib.suppress(OSError):
                worker.conn.send(None)
        for worker in self._workers:
            worker.process.join(timeout=10)
        self._kill_remaining()

    def terminate(self) -> None:
        """Stop the workers now (SIGTERM, then SIGKILL), abandoning their jobs."""
        self._stopped = True
        for worker in self._workers:
            if worker.process.is_alive():
                worker.process.terminate()
        self._kill_remaining()

    def _kill_remaining(self) -> None:
        for worker in self._workers:
            worker.process.join(timeout=2)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=2)
            worker.conn.close()
        self._workers.clear()


def transcribe_paths(
    spec: EngineSpec, paths: Iterable[str | Path], processes: int
) -> Iterator[Outcome[Transcript]]:
    """Convenience: WAV files transcribed by `processes` workers (in this process if 1)."""
    jobs = (TranscribeFile(str(p)) for p in paths)
    if processes <= 1:
        yield from run_inline(build_recognizer(spec), jobs)
        return
    with RecognizerPool(spec, processes) as pool:
        yield from pool.imap(jobs)
