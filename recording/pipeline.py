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

from sqlalchemy import select

from asr.protocol import Recognizer
from asr.service import transcribe_samples
from dialer.errors import StoreError
from dialer.store.db import Store
from dialer.store.models import JobKind, Party, Recording
from recording.archive import Archive
from recording.audio_io import read_wav
from recording.errors import BadRecording, RecordingError
from recording.jobs import Job, JobQueue
from recording.metrics import CallMetrics, measure_call
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
    audio = read_wav(path)
    if audio.channels >= 2:
        sides = [(party, audio.channel(i)) for i, party in enumerate(STEREO_PARTIES)]
        metrics: CallMetrics | None = measure_call(sides[0][1], sides[1][1], audio.rate)
    else:
        # One mixed file: no parties to tell apart, no overtalk to measure.
        sides = [(Party.MIXED, audio.channel(0))]
        metrics = None
    transcripts = []
    speech = 0.0
    for party, samples in sides:
        segments, said = _party_segments(recognizer, samples, audio.rate)
        speech += said
        transcript = TranscriptIn(
            party=party,
            engine=recognizer.engine,
            model=recognizer.model,
            language=recognizer.language,
            segments=segments,
        )
        store_transcript(
            store, tenant_id, attempt_id, transcript, recording_id=recording_id, now=now
        )
        transcripts.append(transcript)
    qa = check_call(store, tenant_id, attempt_id, rules, metrics)
    return CallProcessed(attempt_id, metrics, tuple(transcripts), qa, speech, audio.duration_s)


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
