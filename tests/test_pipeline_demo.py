"""The demo's calls go through the whole recording pipeline while it runs: recorded with two
parties (MixMonitor's r()/t() files, as asterisk-conf records), archived as evidence, verified,
transcribed (the text route: the simulator's script, no recognition), searchable in English and
Chinese, and QA flags every scripted violation. Skips without the simulator's audio sources."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from dialer.demo import run_demo
from dialer.store.db import open_store
from dialer.store.models import Recording, Transcript
from recording.archive import verify
from recording.parties import party_paths
from sim.audio import unavailable
from sim.audio.recorder import CallMix
from tests.conftest import REQUIRE_SERVICES


@pytest.fixture(scope="module", autouse=True)
def _audio_sources() -> None:
    why = unavailable()
    if why is not None:
        if REQUIRE_SERVICES:
            pytest.fail(f"{why} and DIALER_REQUIRE_SERVICES=1")
        pytest.skip(why)


@pytest.mark.slow
async def test_a_small_demo_ends_with_every_connected_call_archived_found_and_checked(
    tmp_path: Path,
) -> None:
    summary, report = await run_demo(
        debtors=30,
        agents=3,
        seed=3,
        time_scale=100.0,
        data_dir=tmp_path,
        show_progress=False,
        transcribe="text",
        drain_timeout_s=90.0,
        # Half the conversations break a rule, so a small demo has some to find.
        call_audio=CallMix(violation_rate=0.5),
    )
    assert report is not None
    assert summary.connected >= 5, summary
    # Every call that reached an agent was recorded and is in the archive; none failed.
    assert report.recorded == summary.connected
    assert report.archived == report.recorded and report.failed == 0
    # The evidence manifest and the files agree (what `dialer recordings verify` checks).
    checked = verify(tmp_path / "recordings")
    assert checked.ok, checked.findings
    assert checked.entries == report.archived
    # Every call is transcribed and found by searching its own words, English and Chinese.
    assert report.transcribed == report.archived
    assert report.searchable == report.transcribed, report.not_found
    assert set(report.by_language) == {"en", "zh"}, report.by_language
    # QA flags every scripted violation and misses none.
    assert report.scripted_violations >= 2
    assert report.missed == []
    assert report.violations_flagged == report.scripted_violations
    # Two parties: each archived call is a two-channel file, transcribed per party; the
    # spool keeps none of an archived call's files (mixed, r(), t()).
    store = open_store(f"sqlite:///{tmp_path / 'dialer.db'}")
    try:
        with store.session() as session:
            channels = set(session.scalars(select(Recording.channels)))
            parties = set(session.scalars(select(Transcript.party)))
            sources = [Path(p) for p in session.scalars(select(Recording.source_path))]
    finally:
        store.close()
    assert channels == {2}
    assert parties == {"agent", "debtor"}
    left = [p for s in sources for p in (s, *party_paths(s)) if p.exists()]
    assert left == []
