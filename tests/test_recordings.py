"""Recordings in, archived as evidence, processed by a durable job queue: intake, the manifest
and its verification, crashes and races of workers, corrupt files, retention."""

from __future__ import annotations

import json
import math
import threading
import wave
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from dialer.calls.models import AttemptStatus, Outcome
from dialer.cli import main
from dialer.config import load_config
from dialer.errors import ConfigError
from dialer.store.attempts import (
    AttemptChange,
    NewAttempt,
    create_attempts,
    ensure_campaign,
    ensure_tenant,
    update_attempts,
)
from dialer.store.db import Store, open_store
from dialer.store.models import (
    Debt,
    Debtor,
    JobKind,
    JobState,
    Phone,
    Recording,
    RecordingJob,
    RecordingStatus,
)
from recording.archive import Archive, RetentionPolicy, archive_path, inspect_wav, verify
from recording.errors import BadRecording
from recording.jobs import Job, JobQueue, LeaseLost, RetryPolicy, drain, enqueue
from recording.manifest import MANIFEST_NAME, FindingKind, Manifest, ManifestAction
from recording.service import (
    archive_pending,
    collect_finished,
    retention_run,
    run_archive_job,
)

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


# -- audio -------------------------------------------------------------------------------------


def write_wav(path: Path, *, hz: float = 440.0, seconds: float = 0.25, rate: int = 8000) -> Path:
    """A real 16-bit mono WAV: a sine (hz=0: silence)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = int(seconds * rate)
    samples = array("h", (int(8000 * math.sin(2 * math.pi * hz * i / rate)) for i in range(frames)))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return path


def truncate(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


# -- calls in the store ------------------------------------------------------------------------


@dataclass(frozen=True)
class Tenancy:
    name: str
    tenant_id: int
    campaign_id: int
    debtor_id: int
    debt_id: int
    phone_id: int


def tenancy(store: Store, name: str) -> Tenancy:
    tenant_id = ensure_tenant(store, name, now=T0)
    campaign_id = ensure_campaign(store, tenant_id, "spring", "progressive", now=T0)
    with store.session() as session:
        debtor = Debtor(tenant_id=tenant_id, external_id="d1", full_name="Li Wei", created_at=T0)
        session.add(debtor)
        session.flush()
        debt = Debt(
            tenant_id=tenant_id,
            debtor_id=debtor.id,
            external_id="acc-1",
            principal=Decimal(500),
            balance=Decimal(400),
            currency="USD",
            days_past_due=40,
            created_at=T0,
        )
        phone = Phone(
            tenant_id=tenant_id,
            debtor_id=debtor.id,
            e164="+12125550100",
            phone_type="mobile",
            consent=True,
            created_at=T0,
        )
        session.add_all([debt, phone])
        session.flush()
        return Tenancy(name, tenant_id, campaign_id, debtor.id, debt.id, phone.id)


def calls(
    store: Store,
    who: Tenancy,
    paths: list[Path | None],
    *,
    at: datetime = T0,
    status: AttemptStatus = AttemptStatus.ENDED,
) -> list[int]:
    """Attempts connected at `at`, in `status`, each with its recording path (None: none)."""
    new = NewAttempt(
        tenant_id=who.tenant_id,
        campaign_id=who.campaign_id,
        debtor_id=who.debtor_id,
        debt_id=who.debt_id,
        phone_id=who.phone_id,
        node_id="node1",
        server="asterisk1",
        uniqueid=None,
        dialed_at=at - timedelta(seconds=20),
    )
    ids = create_attempts(store, [new] * len(paths))
    ended = status is AttemptStatus.ENDED
    update_attempts(
        store,
        [
            (
                attempt_id,
                AttemptChange(
                    status=status,
                    outcome=Outcome.ANSWERED if ended else None,
                    answered_at=at - timedelta(seconds=3),
                    connected_at=at,
                    hungup_at=at + timedelta(seconds=90) if ended else None,
                    agent_id="agent1",
                    recording_path=None if path is None else str(path),
                ),
            )
            for attempt_id, path in zip(ids, paths, strict=True)
        ],
    )
    return ids


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    opened = open_store(database_url)
    yield opened
    opened.close()


@pytest.fixture
def acme(store: Store) -> Tenancy:
    return tenancy(store, "acme")


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def archive(tmp_path: Path) -> Archive:
    return Archive(tmp_path / "archive")


def recordings(store: Store) -> list[Recording]:
    with store.session() as session:
        return list(session.scalars(sa.select(Recording).order_by(Recording.attempt_id)))


def jobs(store: Store) -> list[RecordingJob]:
    with store.session() as session:
        return list(session.scalars(sa.select(RecordingJob).order_by(RecordingJob.id)))


def archived_files(root: Path) -> list[str]:
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.name not in (MANIFEST_NAME, ".manifest.lock")
    )


def manifest_lines(root: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (root / MANIFEST_NAME).read_text().splitlines()]


def clock(start: datetime) -> list[datetime]:
    return [start]


# -- intake ------------------------------------------------------------------------------------


def test_finished_calls_are_collected_once_archived_and_verify_clean(
    store: Store, acme: Tenancy, spool: Path, archive: Archive
) -> None:
    wavs = [write_wav(spool / f"call-{i}.wav", hz=300 + 100 * i) for i in range(3)]
    ids = calls(store, acme, [*wavs, None])
    calls(store, acme, [write_wav(spool / "live.wav")], status=AttemptStatus.CONNECTED)

    found = collect_finished(store, T0)
    assert (found.recordings, found.jobs) == (3, 3)
    assert collect_finished(store, T0).recordings == 0  # idempotent

    run = archive_pending(store, archive, RetentionPolicy(), now=lambda: T0, workers=2)
    assert (run.jobs, run.count("archived")) == (3, 3)
    rows = recordings(store)
    assert [r.attempt_id for r in rows] == ids[:3]
    for row, wav in zip(rows, wavs, strict=True):
        assert row.status == RecordingStatus.ARCHIVED
        assert (
            row.archive_path
            == f"acme/2026/03/02/attempt-{row.attempt_id}-{str(row.sha256)[:8]}.wav"
        )
        assert (row.sample_rate, row.channels, row.duration_s) == (8000, 1, 0.25)
        assert row.retain_until == T0 + timedelta(days=1095)
        assert not wav.exists()  # moved, not copied
    assert [j.state for j in jobs(store)] == [JobState.DONE] * 3
    assert archived_files(archive.root) == sorted(str(r.archive_path) for r in rows)
    entries = manifest_lines(archive.root)
    assert [(e["seq"], e["action"]) for e in entries] == [(i, "archived") for i in range(3)]
    assert sorted(int(str(e["attempt_id"])) for e in entries) == ids[:3]
    report = verify(archive.root)
    assert report.ok, report.findings
    assert (report.entries, report.files) == (3, 3)
    assert (spool / "live.wav").exists()  # a call still going on is left alone


def test_the_archive_path_is_tenant_and_utc_date_and_odd_tenant_names_stay_inside() -> None:
    shanghai_morning = datetime(2026, 1, 1, 7, 0, tzinfo=UTC) + timedelta(hours=-8)
    sha = "ab" * 32
    assert (
        archive_path("acme", 7, sha, shanghai_morning) == "acme/2025/12/31/attempt-7-abababab.wav"
    )
    assert archive_path("招商 银行", 7, sha, T0).startswith("%E6%8B%9B%E5%95%86%20")
    assert archive_path("..", 7, sha, T0).startswith("%2E%2E/")
    assert archive_path("a/b", 7, sha, T0).startswith("a%2Fb/")


# -- verify: each kind of tampering is named ---------------------------------------------------


@pytest.fixture
def three(tmp_path: Path, archive: Archive) -> list[str]:
    """Three recordings archived directly (no database); their relative paths."""
    paths = []
    for i in range(3):
        source = write_wav(tmp_path / "spool" / f"{i}.wav", hz=200 + 50 * i)
        done = archive.intake(
            tenant="acme", attempt_id=i + 1, source=source, recorded_at=T0, now=T0
        )
        paths.append(done.path)
    assert verify(archive.root).ok
    return paths


def kinds(root: Path) -> list[tuple[FindingKind, str | None, int | None]]:
    return [(f.kind, f.path, f.seq) for f in verify(root).findings]


def test_verify_names_a_changed_file(archive: Archive, three: list[str]) -> None:
    target = archive.root / three[1]
    data = bytearray(target.read_bytes())
    data[-1] ^= 0x01  # one bit of audio
    target.write_bytes(bytes(data))
    assert kinds(archive.root) == [(FindingKind.CHANGED, three[1], 1)]


def test_verify_names_a_missing_file(archive: Archive, three: list[str]) -> None:
    (archive.root / three[0]).unlink()
    assert kinds(archive.root) == [(FindingKind.MISSING, three[0], 0)]


def test_verify_names_an_added_file(tmp_path: Path, archive: Archive, three: list[str]) -> None:
    planted = "acme/2026/03/02/attempt-99-deadbeef.wav"
    write_wav(archive.root / planted)
    assert kinds(archive.root) == [(FindingKind.ADDED, planted, None)]


def test_verify_names_an_edited_manifest_entry(archive: Archive, three: list[str]) -> None:
    lines = (archive.root / MANIFEST_NAME).read_text().splitlines()
    entry = json.loads(lines[1])
    entry["sha256"] = "0" * 64  # hide a changed file by editing its entry
    lines[1] = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    (archive.root / MANIFEST_NAME).write_text("\n".join(lines) + "\n")
    found = verify(archive.root).findings
    assert [(f.kind, f.seq) for f in found] == [
        (FindingKind.CHAIN, 1),  # the entry no longer matches its hash
        (FindingKind.CHANGED, 1),  # and the file no longer matches the edited entry
    ]
    assert "chain break at seq 1" in str(found[0])


def test_verify_names_an_edited_and_rehashed_entry_at_the_next_link(
    archive: Archive, three: list[str]
) -> None:
    from recording.manifest import entry_hash

    lines = (archive.root / MANIFEST_NAME).read_text().splitlines()
    entry = json.loads(lines[0])
    entry["bytes"] += 1
    entry["hash"] = entry_hash(entry)  # a forger who knows the format
    lines[0] = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    (archive.root / MANIFEST_NAME).write_text("\n".join(lines) + "\n")
    found = verify(archive.root).findings
    assert [(f.kind, f.seq) for f in found] == [(FindingKind.CHAIN, 1)]
    assert "chain break at seq 1" in str(found[0]) and "seq 0" in str(found[0])


def test_verify_names_a_removed_manifest_entry(archive: Archive, three: list[str]) -> None:
    lines = (archive.root / MANIFEST_NAME).read_text().splitlines()
    del lines[1]
    (archive.root / MANIFEST_NAME).write_text("\n".join(lines) + "\n")
    found = verify(archive.root).findings
    assert [(f.kind, f.seq, f.path) for f in found] == [
        (FindingKind.CHAIN, 1, None),
        (FindingKind.ADDED, None, three[1]),  # its file is no longer accounted for
    ]
    assert str(found[0]).startswith("chain: chain break at seq 1: line 2 holds seq 2")


def test_verify_names_reordered_manifest_entries(archive: Archive, three: list[str]) -> None:
    lines = (archive.root / MANIFEST_NAME).read_text().splitlines()
    lines[0], lines[1] = lines[1], lines[0]
    (archive.root / MANIFEST_NAME).write_text("\n".join(lines) + "\n")
    found = verify(archive.root).findings
    assert {f.kind for f in found} == {FindingKind.CHAIN}
    assert str(found[0]) == (
        "chain: chain break at seq 0: line 1 holds seq 1 (entries removed or reordered)"
    )
    assert "line 2 holds seq 0" in str(found[1])


def test_a_removed_newest_entry_is_found_against_the_anchored_head(
    archive: Archive, three: list[str]
) -> None:
    head = verify(archive.root).head
    lines = (archive.root / MANIFEST_NAME).read_text().splitlines()
    (archive.root / MANIFEST_NAME).write_text("\n".join(lines[:-1]) + "\n")
    (archive.root / three[2]).unlink()  # and its file: the rest is a valid shorter chain
    assert verify(archive.root).ok
    assert [(f.kind, f.seq) for f in verify(archive.root, head).findings] == [
        (FindingKind.CHAIN, 2)
    ]


def test_verify_command_prints_one_line_per_finding_and_fails(
    tmp_path: Path, archive: Archive, three: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    (archive.root / three[0]).unlink()
    write_wav(archive.root / "acme" / "extra.wav")
    code = main(["recordings", "verify", "--archive-dir", str(archive.root)])
    out = capsys.readouterr().out.splitlines()
    assert code == 1
    assert out[:2] == [
        "added: acme/extra.wav: not in the manifest",
        f"missing: {three[0]}: missing (archived at seq 0, attempt 1, never entered as deleted)",
    ]
    assert out[2].endswith("2 findings")
    assert main(["recordings", "verify", "--archive-dir", str(archive.root), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert [f["kind"] for f in report["findings"]] == ["added", "missing"]


# -- interruptions: nothing lost, nothing twice ------------------------------------------------


def test_a_worker_killed_mid_job_is_replaced_after_its_lease_and_the_file_archived_once(
    store: Store, acme: Tenancy, spool: Path, archive: Archive
) -> None:
    calls(store, acme, [write_wav(spool / "a.wav")])
    collect_finished(store, T0)
    retention = RetentionPolicy()
    dead = JobQueue(store, "node1:dead", lease_s=60)
    (held,) = dead.claim(T0)  # ... and the worker dies here
    other = JobQueue(store, "node2:alive", lease_s=60)
    assert other.claim(T0 + timedelta(seconds=59)) == []  # the lease still holds
    (job,) = other.claim(T0 + timedelta(seconds=61))
    assert (job.id, job.attempts) == (held.id, 2)
    outcome = run_archive_job(store, other, job, archive, retention, T0 + timedelta(seconds=62))
    assert outcome.result == "archived"
    with pytest.raises(LeaseLost):  # the dead worker, were it only slow, records nothing
        dead.done(held, T0 + timedelta(seconds=63))
    assert len(manifest_lines(archive.root)) == 1
    assert len(archived_files(archive.root)) == 1
    assert verify(archive.root).ok


def test_work_done_but_done_lost_is_run_again_without_a_second_copy_or_entry(
    store: Store, acme: Tenancy, spool: Path, archive: Archive
) -> None:
    source = write_wav(spool / "a.wav")
    (attempt_id,) = calls(store, acme, [source])
    collect_finished(store, T0)
    first = JobQueue(store, "w1", lease_s=60)
    first.claim(T0)
    # The first worker moved the file and entered it, then crashed before recording it.
    done = archive.intake(
        tenant="acme", attempt_id=attempt_id, source=source, recorded_at=T0, now=T0
    )
    assert not source.exists()
    second = JobQueue(store, "w2", lease_s=60)
    (again,) = second.claim(T0 + timedelta(minutes=2))
    outcome = run_archive_job(store, second, again, archive, RetentionPolicy(), T0)
    assert (outcome.result, outcome.detail) == ("archived", done.path)
    (row,) = recordings(store)
    assert (row.status, row.sha256) == (RecordingStatus.ARCHIVED, done.sha256)
    assert len(manifest_lines(archive.root)) == 1
    assert verify(archive.root).ok


def test_an_intake_interrupted_after_the_rename_enters_the_file_once_when_run_again(
    tmp_path: Path, archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = write_wav(tmp_path / "spool" / "a.wav")

    def power_cut(self: Manifest, **kwargs: object) -> None:
        raise OSError("power cut")

    with monkeypatch.context() as patched:
        patched.setattr(Manifest, "append", power_cut)
        with pytest.raises(OSError, match="power cut"):
            archive.intake(tenant="acme", attempt_id=5, source=source, recorded_at=T0, now=T0)
    assert source.exists()  # never lost: the source stays until the entry is written
    assert [f.kind for f in verify(archive.root).findings] == [FindingKind.ADDED]
    done = archive.intake(tenant="acme", attempt_id=5, source=source, recorded_at=T0, now=T0)
    assert done.already and not source.exists()
    assert len(manifest_lines(archive.root)) == 1
    assert verify(archive.root).ok


def test_an_unfinished_copy_is_named_by_verify_and_cleaned_by_the_next_run(
    tmp_path: Path, archive: Archive
) -> None:
    source = write_wav(tmp_path / "spool" / "a.wav")
    day = archive.root / "acme" / "2026" / "03" / "02"
    day.mkdir(parents=True)
    (day / ".attempt-5.0a0b0c0d.partial").write_bytes(source.read_bytes()[:100])
    assert [f.kind for f in verify(archive.root).findings] == [FindingKind.PARTIAL]
    archive.intake(tenant="acme", attempt_id=5, source=source, recorded_at=T0, now=T0)
    assert verify(archive.root).ok


def test_a_torn_last_manifest_line_is_dropped_before_the_next_entry(
    tmp_path: Path, archive: Archive, three: list[str]
) -> None:
    with (archive.root / MANIFEST_NAME).open("a") as f:
        f.write('{"seq":3,"at":"2026-')  # the crash came mid-write
    assert [f.kind for f in verify(archive.root).findings] == [FindingKind.CHAIN]
    source = write_wav(tmp_path / "spool" / "x.wav", hz=900)
    done = archive.intake(tenant="acme", attempt_id=9, source=source, recorded_at=T0, now=T0)
    assert done.entry.seq == 3
    assert verify(archive.root).ok


def test_two_workers_racing_never_run_the_same_job(store: Store, acme: Tenancy) -> None:
    calls(store, acme, [Path(f"/spool/{i}.wav") for i in range(40)])
    collect_finished(store, T0)
    running: set[int] = set()
    ran: dict[str, list[int]] = {"a": [], "b": []}
    overlaps: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(2)

    def handler(queue: JobQueue, job: Job) -> None:
        with lock:
            if job.id in running:
                overlaps.append(job.id)
            running.add(job.id)
            ran[queue.worker_id].append(job.id)
        with lock:
            running.discard(job.id)
        queue.done(job, T0)

    def worker(name: str) -> None:
        start.wait()
        drain(JobQueue(store, name), handler, now=lambda: T0)

    threads = [threading.Thread(target=worker, args=(n,)) for n in ran]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == []
    assert not set(ran["a"]) & set(ran["b"])
    assert sorted(ran["a"] + ran["b"]) == [j.id for j in jobs(store)]
    assert {j.state for j in jobs(store)} == {JobState.DONE}
    assert {j.attempts for j in jobs(store)} == {1}


# -- bad input ---------------------------------------------------------------------------------


def test_a_truncated_wav_fails_with_its_reason_and_the_others_are_archived(
    store: Store, acme: Tenancy, spool: Path, archive: Archive
) -> None:
    good = [write_wav(spool / f"{i}.wav", hz=300 + 200 * i) for i in range(2)]
    cut = write_wav(spool / "cut.wav", seconds=0.5)
    truncate(cut, 44 + 3000)  # the recorder died: the header promises 8000 bytes
    junk = spool / "junk.wav"
    junk.write_bytes(b"this is not audio")
    ids = calls(store, acme, [good[0], cut, junk, good[1]])
    collect_finished(store, T0)
    run = archive_pending(store, archive, RetentionPolicy(), now=lambda: T0)
    assert (run.count("archived"), run.count("failed")) == (2, 2)
    rows = {r.attempt_id: r for r in recordings(store)}
    assert rows[ids[1]].status == RecordingStatus.FAILED
    assert "truncated: the data chunk declares 8000 bytes of audio, the file holds 3000" in str(
        rows[ids[1]].error
    )
    assert rows[ids[2]].status == RecordingStatus.FAILED
    assert "not a RIFF/WAVE file" in str(rows[ids[2]].error) or "header" in str(rows[ids[2]].error)
    assert [rows[i].status for i in (ids[0], ids[3])] == [RecordingStatus.ARCHIVED] * 2
    failed = [j for j in jobs(store) if j.state == JobState.FAILED]
    assert [j.attempts for j in failed] == [1, 1]  # a corrupt file is not retried
    assert cut.exists() and junk.exists()  # left where they were, for a person to look at
    assert verify(archive.root).ok


def test_inspect_wav_reads_the_format_and_refuses_a_header_cut_short(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "a.wav", seconds=1.0, rate=16000)
    info = inspect_wav(path)
    assert (info.sample_rate, info.channels, info.sample_width, info.frames) == (16000, 1, 2, 16000)
    truncate(path, 20)
    with pytest.raises(BadRecording, match="unreadable WAV header"):
        inspect_wav(path)


def test_a_missing_file_is_retried_with_backoff_then_fails(
    store: Store, acme: Tenancy, spool: Path, archive: Archive
) -> None:
    calls(store, acme, [spool / "never-written.wav"])
    collect_finished(store, T0)
    retry = RetryPolicy(max_attempts=2, backoff_s=60)
    queue = JobQueue(store, "w", retry=retry)
    (job,) = queue.claim(T0)
    first = run_archive_job(store, queue, job, archive, RetentionPolicy(), T0)
    assert first.result == "retry" and "no such file" in first.detail
    assert queue.claim(T0 + timedelta(seconds=29)) == []  # backoff: 30 to 60 s
    (job,) = queue.claim(T0 + timedelta(seconds=61))
    second = run_archive_job(store, queue, job, archive, RetentionPolicy(), T0)
    assert second.result == "failed"
    (row,) = recordings(store)
    assert row.status == RecordingStatus.FAILED and "no such file" in str(row.error)


# -- the queue itself ---------------------------------------------------------------------------


def test_a_job_is_queued_once_and_its_result_is_fenced_to_the_claim(
    store: Store, acme: Tenancy, spool: Path
) -> None:
    calls(store, acme, [spool / "x.wav"])
    collect_finished(store, T0)
    (rec,) = recordings(store)
    with store.begin() as conn:
        assert not enqueue(
            conn, tenant_id=rec.tenant_id, recording_id=rec.id, kind=JobKind.ARCHIVE, now=T0
        )
        assert enqueue(
            conn, tenant_id=rec.tenant_id, recording_id=rec.id, kind=JobKind.TRANSCRIBE, now=T0
        )
    queue = JobQueue(store, "w", lease_s=10, retry=RetryPolicy(max_attempts=2))
    (a,) = queue.claim(T0, kinds=(JobKind.ARCHIVE,))
    a = queue.extend(a, T0 + timedelta(seconds=8))  # a heartbeat keeps it
    assert queue.claim(T0 + timedelta(seconds=15), kinds=(JobKind.ARCHIVE,)) == []
    assert queue.fail(a, "boom", T0, retry=False) is JobState.FAILED
    with pytest.raises(LeaseLost):
        queue.done(a, T0)
    (t,) = queue.claim(T0)
    assert t.kind is JobKind.TRANSCRIBE
    # Lost twice (lease ran out on both attempts): given up, not run a third time.
    (t2,) = queue.claim(T0 + timedelta(seconds=11))
    assert t2.attempts == 2
    assert queue.claim(T0 + timedelta(seconds=22)) == []
    states = {(j.kind, j.state) for j in jobs(store)}
    assert states == {("archive", "failed"), ("transcribe", "failed")}
    assert "worker lost" in str(jobs(store)[1].error)


def test_backoff_doubles_is_capped_and_jittered() -> None:
    import random

    policy = RetryPolicy(backoff_s=10, backoff_max_s=100)
    rng = random.Random(7)
    for attempts, full in ((1, 10), (2, 20), (3, 40), (4, 80), (5, 100), (9, 100)):
        wait = policy.delay(attempts, rng).total_seconds()
        assert full / 2 <= wait <= full


# -- retention -----------------------------------------------------------------------------------


def test_retention_deletes_only_expired_recordings_and_logs_each_in_the_manifest(
    store: Store, tmp_path: Path, archive: Archive
) -> None:
    cn, us = tenancy(store, "cn-bank"), tenancy(store, "us-bank")
    spool = tmp_path / "spool"
    old = T0 - timedelta(days=800)
    cn_ids = calls(store, cn, [write_wav(spool / "cn-old.wav", hz=300)], at=old)
    calls(store, cn, [write_wav(spool / "cn-new.wav", hz=400)], at=T0 - timedelta(days=10))
    calls(store, us, [write_wav(spool / "us-old.wav", hz=500)], at=old)
    policy = RetentionPolicy(default_days=1095, per_tenant={"cn-bank": 730})
    collect_finished(store, T0)
    assert archive_pending(store, archive, policy, now=lambda: T0).count("archived") == 3

    result = retention_run(store, archive, policy, T0)
    assert [(d.tenant, d.attempt_id) for d in result.deleted] == [("cn-bank", cn_ids[0])]
    assert result.errors == []
    rows = {r.attempt_id: r for r in recordings(store)}
    gone = rows[cn_ids[0]]
    assert (gone.status, gone.deleted_at) == (RecordingStatus.DELETED, T0)
    assert not (archive.root / str(gone.archive_path)).exists()
    assert sum(r.status == RecordingStatus.ARCHIVED for r in rows.values()) == 2
    last = manifest_lines(archive.root)[-1]
    assert (last["action"], last["attempt_id"], last["path"]) == (
        "deleted",
        cn_ids[0],
        gone.archive_path,
    )
    assert verify(archive.root).ok  # a deleted file is expected absent
    again = retention_run(store, archive, policy, T0)
    assert again.deleted == [] and len(manifest_lines(archive.root)) == 4


def test_retention_raised_after_archiving_keeps_the_recording_longer(
    store: Store, acme: Tenancy, spool: Path, archive: Archive
) -> None:
    calls(store, acme, [write_wav(spool / "a.wav")], at=T0)
    collect_finished(store, T0)
    archive_pending(store, archive, RetentionPolicy(default_days=730), now=lambda: T0)
    later = T0 + timedelta(days=800)
    result = retention_run(store, archive, RetentionPolicy(default_days=1095), later)
    assert (result.deleted, result.extended) == ([], 1)
    (row,) = recordings(store)
    assert row.retain_until == T0 + timedelta(days=1095)
    # ... and lowered: the promise made at archiving holds.
    result = retention_run(store, archive, RetentionPolicy(default_days=30), later)
    assert result.deleted == []


def test_a_retention_run_interrupted_after_the_unlink_writes_the_entry_when_repeated(
    archive: Archive, three: list[str]
) -> None:
    (archive.root / three[0]).unlink()  # deleted, then the crash: no entry yet
    assert [f.kind for f in verify(archive.root).findings] == [FindingKind.MISSING]
    entry = manifest_lines(archive.root)[0]
    first = archive.delete(
        tenant="acme",
        attempt_id=1,
        path=three[0],
        sha256=str(entry["sha256"]),
        size=int(str(entry["bytes"])),
        now=T0,
    )
    again = archive.delete(
        tenant="acme",
        attempt_id=1,
        path=three[0],
        sha256=str(entry["sha256"]),
        size=int(str(entry["bytes"])),
        now=T0,
    )
    assert first == again and first.action is ManifestAction.DELETED
    assert verify(archive.root).ok


# -- configuration and the command -------------------------------------------------------------


def test_recordings_config_takes_days_or_a_preset_per_tenant(tmp_path: Path) -> None:
    path = tmp_path / "dialer.toml"
    path.write_text(
        f'data_dir = "{tmp_path}"\n[recordings]\nworkers = 3\n'
        'retention_days = { "cn-bank" = "cn", "us-bank" = "us", "eu" = 400 }\n'
    )
    config = load_config(path, env={})
    assert config.recordings.retention_days == {"cn-bank": 730, "us-bank": 1095, "eu": 400}
    assert config.recordings.workers == 3
    assert config.recordings.archive_root(config.data_dir) == tmp_path / "recordings"
    path.write_text('[recordings]\nretention_days = { "x" = "forever" }\n')
    with pytest.raises(ConfigError, match=r"recordings.retention_days.x"):
        load_config(path, env={})


def test_the_recordings_command_collects_archives_and_applies_retention(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    config = tmp_path / "dialer.toml"
    config.write_text(f'data_dir = "{data}"\n[recordings]\nworkers = 2\n')
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("DIALER_DATA_DIR", raising=False)
    store = open_store(f"sqlite:///{data / 'dialer.db'}")
    try:
        who = tenancy(store, "acme")
        now = datetime.now(UTC)
        calls(
            store,
            who,
            [write_wav(tmp_path / "spool" / f"{i}.wav", hz=300 + i) for i in range(2)],
            at=now,
        )
        bad = tmp_path / "spool" / "bad.wav"
        bad.write_bytes(b"RIFF")
        calls(store, who, [bad], at=now)
    finally:
        store.close()
    assert main(["recordings", "collect", "--config", str(config), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"recordings": 3, "jobs": 3}
    assert main(["recordings", "archive", "--config", str(config)]) == 1  # one failed
    out = capsys.readouterr().out
    assert "2 archived, 1 failed" in out and "bad.wav" in out
    assert main(["recordings", "verify", "--config", str(config)]) == 0
    assert "2 manifest entries, 2 files" in capsys.readouterr().out
    assert main(["recordings", "retention", "--config", str(config), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["deleted"] == []


def test_a_wav_whose_header_is_not_finalised_yet_is_archived_once_its_writer_closes_it(
    store: Store, acme: Tenancy, spool: Path, archive: Archive
) -> None:
    # Asterisk fills in a WAV's sizes when MixMonitor closes it; a call can be booked as ended
    # a moment before. Such a file is looked at again, not failed as corrupt.
    path = write_wav(spool / "open.wav", seconds=0.5)
    whole = path.read_bytes()
    unfinished = bytearray(whole)
    unfinished[4:8] = (36).to_bytes(4, "little")  # RIFF size as first written
    unfinished[40:44] = (0).to_bytes(4, "little")  # data size: not yet known
    path.write_bytes(bytes(unfinished))
    calls(store, acme, [path])
    collect_finished(store, T0)
    queue = JobQueue(store, "w", retry=RetryPolicy(max_attempts=3, backoff_s=1))
    (job,) = queue.claim(T0)
    first = run_archive_job(store, queue, job, archive, RetentionPolicy(), T0)
    assert first.result == "retry"
    assert "header not finalised: data size 0 but 8000 bytes follow" in first.detail
    assert path.exists() and archived_files(archive.root) == []
    path.write_bytes(whole)  # the writer closed the file
    (job,) = queue.claim(T0 + timedelta(seconds=5))
    second = run_archive_job(store, queue, job, archive, RetentionPolicy(), T0)
    assert second.result == "archived"
    assert len(archived_files(archive.root)) == 1
    assert verify(archive.root).ok
