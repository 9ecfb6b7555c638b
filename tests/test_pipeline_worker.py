"""The pipeline inside a running dialer (recording/worker.py), on SQLite and PostgreSQL: a
finished call's r()/t() recording becomes an archived two-channel file, transcribed per party
and searchable with no CLI run; a stop in the middle of a transcription leaves the job queued,
and the next run transcribes that call once; a broken party file fails its call only.

Transcription takes the text route (the simulator's script as the words): these tests are about
the pipeline's plumbing, not recognition. Skips without the simulator's audio sources."""

from __future__ import annotations

import dataclasses
import hashlib
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from asr.models import Segment
from dialer.calls.models import AttemptStatus, Outcome
from dialer.config import load_config
from dialer.errors import ConfigError
from dialer.importer import import_csv
from dialer.portfolio import write_sample_portfolio
from dialer.store import attempts as repo
from dialer.store.db import Store, open_store
from dialer.store.models import JobKind, Recording, RecordingJob, Transcript
from recording.archive import Archive, RetentionPolicy, verify
from recording.audio_io import read_wav
from recording.manifest import MANIFEST_NAME, verify_chain
from recording.qa import load_rules
from recording.search import search
from recording.worker import InlineAnalyser, PipelineWorker, QaRules, start_pipeline
from sim.audio import CallKind, CallSpec, Corpus, Layout, compose_call, rt_paths, write_call
from sim.audio.errors import AudioUnavailable
from tests.conftest import REQUIRE_SERVICES


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    try:
        return Corpus.open()
    except AudioUnavailable as exc:
        if REQUIRE_SERVICES:
            pytest.fail(f"{exc} and DIALER_REQUIRE_SERVICES=1")
        pytest.skip(str(exc))


def _finished_calls(store: Store, spool: Path, corpus: Corpus, count: int) -> list[int]:
    """`count` calls that reached an agent and ended, each recorded as MixMonitor r()/t()."""
    portfolio = spool.parent / "p.csv"
    write_sample_portfolio(portfolio, debtors=count, seed=5)
    import_csv(store, portfolio, tenant="default")
    tenant_id = repo.ensure_tenant(store, "default")
    campaign_id = repo.ensure_campaign(store, tenant_id, "pipeline", "progressive")
    start = datetime.now(UTC) - timedelta(minutes=5)
    ids = []
    for i, candidate in enumerate(repo.next_candidates(store, campaign_id, limit=count)):
        (attempt_id,) = repo.create_attempts(
            store,
            [
                repo.NewAttempt(
                    tenant_id=tenant_id,
                    campaign_id=campaign_id,
                    debtor_id=candidate.debtor_id,
                    debt_id=candidate.debt_id,
                    phone_id=candidate.phone_id,
                    node_id="t",
                    server="sim",
                    uniqueid=f"dlr-w-{spool.parent.name[-8:]}-{i}",
                    dialed_at=start,
                    reservation_id=None,
                )
            ],
        )
        path = spool / f"call-{attempt_id}.wav"
        spec = CallSpec("en", CallKind.CONVERSATION, 30.0, None, seed=20 + i)
        write_call(compose_call(corpus, spec), path, Layout.RT)
        repo.update_attempt(
            store,
            attempt_id,
            repo.AttemptChange(
                status=AttemptStatus.ENDED,
                outcome=Outcome.ANSWERED,
                answered_at=start,
                connected_at=start + timedelta(seconds=2),
                hungup_at=start + timedelta(seconds=32),
                agent_id="agent1",
                recording_path=str(path),
            ),
        )
        ids.append(attempt_id)
    return ids


def _worker(store: Store, tmp_path: Path, analyser: InlineAnalyser) -> PipelineWorker:
    return PipelineWorker(
        store,
        Archive(tmp_path / "archive"),
        RetentionPolicy(),
        QaRules(load_rules("us-collections"), {}),
        analyser,
        node_id="t",
        poll_s=0.1,
    )


def _transcripts(store: Store) -> list[tuple[int, str]]:
    with store.session() as session:
        rows = session.execute(select(Transcript.attempt_id, Transcript.party)).all()
    return sorted((int(a), str(p)) for a, p in rows)


def test_a_finished_call_is_archived_in_two_channels_transcribed_and_found(
    corpus: Corpus, tmp_path: Path, database_url: str
) -> None:
    store = open_store(database_url)
    spool = tmp_path / "spool"
    try:
        (attempt_id,) = _finished_calls(store, spool, corpus, 1)
        path = spool / f"call-{attempt_id}.wav"
        written = {
            p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (path, *rt_paths(path))
        }
        worker = _worker(store, tmp_path, InlineAnalyser())
        worker.start()
        try:
            assert worker.drain(30.0)
        finally:
            worker.stop()
        with store.session() as session:
            rec = session.scalars(select(Recording)).one()
        assert (rec.status, rec.channels) == ("archived", 2)
        # The evidence chain names the three files the recorder wrote, as they were, and which
        # channel of the archived file carries each party's samples unchanged.
        (entry,) = verify_chain(tmp_path / "archive" / MANIFEST_NAME).entries
        assert {s.name: s.sha256 for s in entry.sources} == written
        debtor_side, agent_side = rt_paths(path)
        channels = {s.name: s.channel for s in entry.sources}
        assert channels == {path.name: None, agent_side.name: 0, debtor_side.name: 1}
        kept = read_wav(tmp_path / "archive" / entry.path)
        for source in entry.sources:
            if source.channel is not None:
                samples = kept.channel(source.channel)[: source.frames].astype("<i2")
                assert hashlib.sha256(samples.tobytes()).hexdigest() == source.pcm_sha256
        # The agent (t) on the left, the debtor (r) on the right, each transcribed alone.
        assert _transcripts(store) == [(attempt_id, "agent"), (attempt_id, "debtor")]
        assert verify(tmp_path / "archive").ok
        hits = search(store, repo.ensure_tenant(store, "default"), '"attempt to collect a debt"')
        assert [h.attempt_id for h in hits] == [attempt_id]
        assert {h.party for h in hits} == {"agent"}
        # The spool is empty of the call's audio: the three files are now one archived file.
        assert not any(p.exists() for p in (path, *rt_paths(path)))
    finally:
        store.close()


class _Slow:
    """A recogniser that takes its time over the first piece of audio (and hears nothing)."""

    engine = "slow"
    model = "m"
    language = "en"
    sample_rate = 8000

    def __init__(self) -> None:
        self.calls = 0

    def transcribe(
        self, samples: np.ndarray, sample_rate: int, *, offset_s: float = 0.0
    ) -> list[Segment]:
        self.calls += 1
        if self.calls == 1:
            time.sleep(1.5)
        return []


def test_a_stop_mid_transcription_leaves_the_job_queued_and_the_next_run_does_it_once(
    corpus: Corpus, tmp_path: Path, database_url: str
) -> None:
    store = open_store(database_url)
    try:
        (attempt_id,) = _finished_calls(store, tmp_path / "spool", corpus, 1)
        slow = _Slow()
        first = _worker(store, tmp_path, InlineAnalyser(slow))  # type: ignore[arg-type]
        first.start()
        deadline = time.monotonic() + 20
        while slow.calls == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert slow.calls == 1, "the transcription never started"
        assert first.stop(grace_s=0.2) == 1  # one job went back to the queue
        with store.session() as session:
            job = session.scalars(
                select(RecordingJob).where(RecordingJob.kind == JobKind.TRANSCRIBE.value)
            ).one()
        # Queued again, its interrupted claim not counted against its attempts.
        assert (job.state, job.attempts, job.locked_by) == ("queued", 0, None)
        assert _transcripts(store) == []

        second = _worker(store, tmp_path, InlineAnalyser())
        second.start()
        try:
            assert second.drain(30.0)
        finally:
            second.stop()
        assert _transcripts(store) == [(attempt_id, "agent"), (attempt_id, "debtor")]
        with store.session() as session:
            job = session.scalars(
                select(RecordingJob).where(RecordingJob.kind == JobKind.TRANSCRIBE.value)
            ).one()
        assert (job.state, job.attempts) == ("done", 1)
    finally:
        store.close()


def test_a_truncated_party_file_fails_its_call_with_the_reason_and_the_rest_go_on(
    corpus: Corpus, tmp_path: Path
) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'd.db'}")
    spool = tmp_path / "spool"
    try:
        broken, fine = _finished_calls(store, spool, corpus, 2)
        debtor_side = rt_paths(spool / f"call-{broken}.wav")[0]
        data = debtor_side.read_bytes()
        debtor_side.write_bytes(data[: len(data) // 2])  # the recorder died mid-call
        worker = _worker(store, tmp_path, InlineAnalyser())
        worker.start()
        try:
            assert worker.drain(30.0)
        finally:
            worker.stop()
        with store.session() as session:
            recs = {r.attempt_id: r for r in session.scalars(select(Recording))}
        assert recs[broken].status == "failed"
        assert debtor_side.name in (recs[broken].error or "")
        assert "truncated" in (recs[broken].error or "")
        assert recs[fine].status == "archived"
        assert {a for a, _ in _transcripts(store)} == {fine}
    finally:
        store.close()


@pytest.mark.parametrize(
    ("table", "named"),
    [
        ('engine = "whisper"', "recordings.engine"),
        ('engine = "vosk"', "recordings.model"),
        ("processes = -1", "recordings.processes"),
        ("poll_s = 0", "recordings.poll_s"),
        ('rules = ""', "recordings.rules"),
    ],
)
def test_a_bad_recordings_setting_is_refused_naming_the_key(
    tmp_path: Path, table: str, named: str
) -> None:
    config = tmp_path / "dialer.toml"
    config.write_text(f"[recordings]\n{table}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=named):
        load_config(config, env={})


def test_a_rule_set_that_will_not_load_stops_the_start_naming_the_key(tmp_path: Path) -> None:
    settings = load_config(None, env={}).recordings
    bad = dataclasses.replace(settings, engine="script", rules_by_language={"zh": "no-such"})
    store = open_store(f"sqlite:///{tmp_path / 'd.db'}")
    try:
        with pytest.raises(ConfigError, match=r"recordings\.rules_by_language\.zh"):
            start_pipeline(store, bad, tmp_path, node_id="t")
    finally:
        store.close()
