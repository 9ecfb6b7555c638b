"""Two-party recording on a real Asterisk 20 configured with asterisk-conf/ as shipped: the
dialplan's MixMonitor writes the mixed call and each party alone (r() the debtor, t() the
agent), the two files hold different sides, and the dialer's intake joins them into one
archived two-channel WAV, agent left, debtor right, samples unchanged.

The lab's debtor (debtor-sim) and agent (agents) are Local channels that each play their own
prompt (`sim/debtor_talk`, `sim/agent_hello`), so each side's file must carry its own sound.
Skips without an Asterisk (see tests/conftest.py)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from sqlalchemy import select

from dialer.store.db import open_store
from dialer.store.models import Recording
from recording.archive import Archive, RetentionPolicy, verify
from recording.audio_io import read_wav
from recording.manifest import MANIFEST_NAME, verify_chain
from recording.parties import party_paths
from recording.service import archive_pending, collect_finished
from sim.lab import AsteriskLab
from tests.asterisk_rig import HUMAN, lab_dialer, lab_number

pytestmark = [pytest.mark.asterisk, pytest.mark.slow]

StartLab = Callable[..., AsteriskLab]


def _speech_frames(samples: npt.NDArray[np.int16], rate: int) -> npt.NDArray[np.bool_]:
    """Which 50 ms frames hold sound well above the line's noise."""
    frame = rate // 20
    usable = len(samples) // frame * frame
    rms = np.sqrt(np.mean(samples[:usable].astype(np.float64).reshape(-1, frame) ** 2, axis=1))
    return rms > 300.0


async def test_mixmonitor_writes_each_party_alone_and_the_archive_keeps_both_channels(
    tmp_path: Path, asterisk_lab: StartLab
) -> None:
    lab = asterisk_lab()
    dialer = lab_dialer(tmp_path, lab, [lab_number(0, HUMAN)], agents=1, talk_secs=3)
    async with asyncio.timeout(60):
        summary = await dialer.run()
    assert summary.connected == 1
    (row,) = dialer.rows()
    mixed = Path(row.recording_path)
    agent_file, debtor_file = party_paths(mixed)
    # The three files MixMonitor wrote, in Asterisk's monitor folder where the dialer said.
    assert mixed.is_file() and agent_file.is_file() and debtor_file.is_file()
    agent, debtor, both = (read_wav(p) for p in (agent_file, debtor_file, mixed))
    assert agent.rate == debtor.rate == both.rate == 8000
    assert agent.channels == debtor.channels == 1
    # Asterisk keeps r() and t() in step: the same length, give or take a frame.
    assert abs(agent.frames - debtor.frames) <= 320
    a_on = _speech_frames(agent.channel(0), 8000)
    d_on = _speech_frames(debtor.channel(0), 8000)
    # Each side carries sound, and not the same sound at the same moments: two parties.
    assert a_on.sum() >= 10 and d_on.sum() >= 10, (a_on.sum(), d_on.sum())
    n = min(len(a_on), len(d_on))
    overlap = (a_on[:n] & d_on[:n]).sum() / max(1, min(a_on.sum(), d_on.sum()))
    assert overlap < 0.5, overlap
    # The mixed file is their sum: it sounds wherever either side does.
    m_on = _speech_frames(both.channel(0), 8000)
    k = min(n, len(m_on))
    assert (m_on[:k] | ~(a_on[:k] | d_on[:k])).mean() > 0.9

    # The dialer's intake: collected from the attempt, joined, archived as one 2-channel WAV.
    written = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (mixed, agent_file, debtor_file)
    }
    store = open_store(dialer.database_url)
    archive = Archive(tmp_path / "archive")
    try:
        now = datetime.now(UTC)
        assert collect_finished(store, now).recordings == 1
        run = archive_pending(store, archive, RetentionPolicy(), now=lambda: now)
        assert run.count("archived") == 1, run.outcomes
        with store.session() as session:
            rec = session.scalars(select(Recording)).one()
    finally:
        store.close()
    assert rec.channels == 2
    kept = read_wav(archive.root / str(rec.archive_path))
    # Agent left, debtor right, each exactly the file Asterisk wrote for that party.
    np.testing.assert_array_equal(kept.channel(0)[: agent.frames], agent.channel(0))
    np.testing.assert_array_equal(kept.channel(1)[: debtor.frames], debtor.channel(0))
    assert verify(archive.root).ok
    assert not any(p.exists() for p in (mixed, agent_file, debtor_file))
    # The evidence chain vouches for Asterisk's own three files, gone from the spool now.
    (entry,) = verify_chain(archive.root / MANIFEST_NAME).entries
    assert {x.name: x.sha256 for x in entry.sources} == written
