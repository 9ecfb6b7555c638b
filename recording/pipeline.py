"""After archiving: measure the call, transcribe each party's speech, index it, check it.

One `transcribe` job per recording. Each step replaces what an earlier run of the same job
stored (transcripts per party and engine, the QA result), so a job re-run after a crash
transcribes the call again but never twice into the store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from asr.protocol import Recognizer
from asr.service import transcribe_samples
from dialer.errors import StoreError
from dialer.store.db import Store
from dialer.store.models import JobKind, Party, Recording
from recording.archive import Archive, inspect_wav
from recording.audio_io import read_wav
from recording.errors import BadRecording, RecordingError
from recording.jobs import Job, JobQueue
from recording.metrics import CallMetrics, measure_call
from recording.parties import party_files
from recording.qa import QaResult, RuleSet, check_call
from recording.transcripts import Segment, TranscriptIn, Word, store_transcript
from recording.vad import cut, speech_segments

log = logging.getLogger(__name__)

# A stereo recording: the agent on the left, the debtor on the right.
STEREO_PARTIES = (Party.AGENT, Party.DEBTOR)


@dataclass(frozen=True)
class CallProcessed:
    attempt_id: int
    metrics: CallMetrics | None
    transcripts: tuple[TranscriptIn, ...]
    qa: QaResult
    speech_s: float  # what was sent to the recogniser (VAD keeps silence out)
    audio_s: float


def _party_segments(
    recognizer: Recognizer, samples: object, rate: int
) -> tuple[tuple[Segment, ...], float]:
    """Only the speech goes to the recogniser, each piece with its offset in the call."""
    found: list[Segment] = []
    speech = 0.0
    for piece in cut(samples, rate, speech_segments(samples, rate)):  # type: ignore[arg-type]
        speech += piece.end_s - piece.start_s
        for heard in transcribe_samples(recognizer, piece.samples, rate, offset_s=piece.start_s):
            if not heard.text:
                continue
            found.append(
                Segment(
                    start_s=heard.start_s,
                    end_s=heard.end_s,
                    text=heard.text,
                    words=tuple(
                        Word(w.text, w.start_s, w.end_s, w.confidence) for w in heard.words
                    ),
                    confidence=heard.confidence,
                )
            )
    return tuple(found), speech


@dataclass(frozen=True)
class CallAnalysis:
    """What the audio alone says about a call (no store involved): computed where the
    recogniser lives (a pool process), stored by `record_analysis`."""

    metrics: CallMetrics | None
    transcripts: tuple[TranscriptIn, ...]
    speech_s: float
    audio_s: float


def party_sides(path: Path) -> tuple[list[tuple[Party, Any]], int, float]:
    """Each party's samples, the rate and the length: a stereo file (agent left, debtor
    right), a mono file with MixMonitor's r()/t() files beside it (`recording.parties`), or a
    mono file alone (both parties mixed)."""
    audio = read_wav(path)
    if audio.channels >= 2:
        sides = [(party, audio.channel(i)) for i, party in enumerate(STEREO_PARTIES)]
        return sides, audio.rate, audio.duration_s
    split = party_files(path)
    if split is not None:
        agent, debtor = (read_wav(p) for p in split)
        if agent.rate != debtor.rate:
            raise BadRecording(path, f"r()/t() files at {debtor.rate} and {agent.rate} Hz")
        duration = max(agent.duration_s, debtor.duration_s)
        return (
            [(Party.AGENT, agent.channel(0)), (Party.DEBTOR, debtor.channel(0))],
            agent.rate,
            duration,
        )
    return [(Party.MIXED, audio.channel(0))], audio.rate, audio.duration_s


def analyse_call(recognizer: Recognizer, path: Path) -> CallAnalysis:
    """Measure and transcribe one recorded call. BadRecording for a file that cannot be read
    (naming it and why)."""
    if inspect_wav(path).frames == 0:
        return CallAnalysis(None, (), 0.0, 0.0)  # never bridged: no conversation to hear
    sides, rate, duration = party_sides(path)
    metrics = None
    if len(sides) == 2:
        # One mixed file has no parties to tell apart, no overtalk to measure.
        metrics = measure_call(sides[0][1], sides[1][1], rate)
    transcripts = []
    speech = 0.0
    for party, samples in sides:
        segments, said = _party_segments(recognizer, samples, rate)
        speech += said
        transcripts.append(
            TranscriptIn(
                party=party,
                engine=recognizer.engine,
                model=recognizer.model,
                language=recognizer.language,
                segments=segments,
            )
        )
    return CallAnalysis(metrics, tuple(transcripts), speech, duration)


def record_analysis(
    store: Store,
    rules: RuleSet,
    analysis: CallAnalysis,
    *,
    tenant_id: int,
    attempt_id: int,
    recording_id: int | None,
    now: datetime,
) -> CallProcessed:
    """Store each party's transcript (replacing an earlier run's) and QA-check the call."""
    for transcript in analysis.transcripts:
        store_transcript(
            store, tenant_id, attempt_id, transcript, recording_id=recording_id, now=now
        )
    # A recording with no audio has nothing to check (every mandatory phrase would be
    # "missing" from a call that never took place).
    qa = (
        check_call(store, tenant_id, attempt_id, rules, analysis.metrics)
        if analysis.audio_s > 0
        else QaResult(100.0, ())
    )
    return CallProcessed(
        attempt_id,
        analysis.metrics,
        analysis.transcripts,
        qa,
        analysis.speech_s,
        analysis.audio_s,
    )


def process_recording(
    store: Store,
    recognizer: Recognizer,
    rules: RuleSet,
    *,
    tenant_id: int,
    attempt_id: int,
    recording_id: int | None,
    path: Path,
    now: datetime,
) -> CallProcessed:
    """Measure, transcribe, store and check one recorded call. BadRecording for a file that
    cannot be read (naming it and why)."""
    return record_analysis(
        store,
        rules,
        analyse_call(recognizer, path),
        tenant_id=tenant_id,
        attempt_id=attempt_id,
        recording_id=recording_id,
        now=now,
    )


@dataclass
class ProcessRun:
    done: list[CallProcessed] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)  # (recording id, why)


def process_pending(
    store: Store,
    archive: Archive,
    recognizer: Recognizer,
    rules: RuleSet,
    *,
    now: Callable[[], datetime],
    max_jobs: int | None = None,
    on_done: Callable[[CallProcessed], object] | None = None,
) -> ProcessRun:
    """Run the due `transcribe` jobs one after another (the recogniser is this process's)."""
    queue = JobQueue(store)
    run = ProcessRun()
    while max_jobs is None or len(run.done) + len(run.failed) < max_jobs:
        claimed = queue.claim(now(), kinds=(JobKind.TRANSCRIBE,))
        if not claimed:
            break
        job = claimed[0]
        try:
            processed = _run_job(store, archive, recognizer, rules, job, now())
        except BadRecording as exc:
            queue.fail(job, str(exc), now(), retry=False)
            run.failed.append((job.recording_id, str(exc)))
            log.warning("x recording %s: %s", job.recording_id, exc)
            continue
        except (RecordingError, StoreError, OSError) as exc:
            queue.fail(job, str(exc), now())
            run.failed.append((job.recording_id, str(exc)))
            log.warning("x recording %s: %s (will retry)", job.recording_id, exc)
            continue
        queue.done(job, now())
        run.done.append(processed)
        if on_done is not None:
            on_done(processed)
    return run


def _run_job(
    store: Store,
    archive: Archive,
    recognizer: Recognizer,
    rules: RuleSet,
    job: Job,
    now: datetime,
) -> CallProcessed:
    with store.session() as session:
        rec = session.scalars(select(Recording).where(Recording.id == job.recording_id)).one()
        attempt_id, archived = rec.attempt_id, rec.archive_path
    if not archived:
        raise RecordingError(f"recording {job.recording_id} is not archived yet")
    path = Path(archived)
    if not path.is_absolute():
        path = archive.root / path
    return process_recording(
        store,
        recognizer,
        rules,
        tenant_id=job.tenant_id,
        attempt_id=attempt_id,
        recording_id=job.recording_id,
        path=path,
        now=now,
    )
