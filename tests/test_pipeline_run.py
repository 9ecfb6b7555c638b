"""`dialer run` as a real process runs the recording pipeline itself: while the campaign goes
on, finished calls' recordings are archived in two channels, transcribed and QA-checked with no
CLI run; when the campaign ends, whatever is not through yet is still queued (none lost) for the
next start or `dialer recordings process`. The simulated PBX writes the recordings; transcription takes the
text route ([recordings] engine = "script"). Skips without the simulator's audio sources."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from dialer.importer import import_csv
from dialer.portfolio import write_sample_portfolio
from dialer.store.db import open_store
from sim.asterisk import AmiConfig, AsteriskSim, PbxConfig
from sim.audio import unavailable
from sim.audio.recorder import CallMix
from sim.behaviour import SeededDebtors
from tests.asterisk_rig import LAB_RULESET
from tests.conftest import REQUIRE_SERVICES

SCALE = 50.0


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[AsteriskSim]:
    why = unavailable()
    if why is not None:
        if REQUIRE_SERVICES:
            pytest.fail(f"{why} and DIALER_REQUIRE_SERVICES=1")
        pytest.skip(why)
    server = AsteriskSim(
        AmiConfig(port=0),
        PbxConfig(
            time_scale=SCALE,
            seed=11,
            agi_grace_secs=0.2,
            recordings_dir=str(tmp_path / "spool"),
            call_audio=CallMix(languages=(("en", 1.0),)),
        ),
        debtors=SeededDebtors(seed=11),
    )
    await server.start()
    yield server
    await server.close()


def _config(tmp_path: Path, sim: AsteriskSim, url: str) -> Path:
    agents = "\n".join(
        f'[[agents]]\nid = "agent{i}"\nchannel = "Local/agent{i}@agents"\n' for i in range(1, 4)
    )
    config = tmp_path / "dialer.toml"
    config.write_text(
        f"""
node_id = "n1"
time_scale = {SCALE}
database_url = "{url}"
data_dir = "{tmp_path}"

[[ami.servers]]
name = "sim"
port = {sim.port}
secret = "dialer"

[agi]
port = 0

[web]
port = 0

[dialing]
recording_dir = "{tmp_path / "spool"}"

[recordings]
engine = "script"
poll_s = 0.2

[compliance]
ruleset = "{LAB_RULESET}"

[campaign]
name = "recorded"
wrap_up_s = 5

{agents}
""",
        encoding="utf-8",
    )
    return config


async def _dialer_run(config: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dialer.cli",
        "run",
        "--config",
        str(config),
        "--json",
        "--quiet",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    async with asyncio.timeout(120):
        _out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()[-3000:]


def _counts(url: str) -> dict[str, int]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            one = lambda q: int(conn.execute(sa.text(q)).scalar_one())  # noqa: E731
            return {
                "connected": one(
                    "SELECT count(*) FROM call_attempts WHERE connected_at IS NOT NULL"
                ),
                "archived": one("SELECT count(*) FROM recordings WHERE status = 'archived'"),
                "two_channel": one("SELECT count(*) FROM recordings WHERE channels = 2"),
                "transcribed": one("SELECT count(DISTINCT attempt_id) FROM transcripts"),
                "scored": one("SELECT count(*) FROM qa_scores"),
                "queued": one(
                    "SELECT count(*) FROM recording_jobs WHERE state IN ('queued', 'running')"
                ),
                "failed": one("SELECT count(*) FROM recording_jobs WHERE state = 'failed'"),
                # Ended in the last moments: the next start's intake collects them.
                "uncollected": one(
                    "SELECT count(*) FROM call_attempts a WHERE a.connected_at IS NOT NULL "
                    "AND NOT EXISTS (SELECT 1 FROM recordings r WHERE r.attempt_id = a.id)"
                ),
            }
    finally:
        engine.dispose()


@pytest.mark.slow
async def test_dialer_run_archives_transcribes_and_checks_its_calls_as_it_goes(
    tmp_path: Path, sim: AsteriskSim
) -> None:
    url = f"sqlite:///{tmp_path / 'dialer.db'}"
    store = open_store(url)
    write_sample_portfolio(tmp_path / "p.csv", debtors=20, seed=2)
    import_csv(store, tmp_path / "p.csv", tenant="default")
    store.close()
    config = _config(tmp_path, sim, url)
    await _dialer_run(config)
    first = _counts(url)
    assert first["connected"] >= 3, first
    # The pipeline ran inside `dialer run`: calls were archived and transcribed by it.
    assert first["transcribed"] >= 1, first
    assert first["two_channel"] == first["archived"]
    assert first["failed"] == 0, first
    # Nothing lost: every connected call is through, or its job waits in the queue, or it
    # ended so late that its attempt still waits to be collected.
    assert first["transcribed"] + first["queued"] + first["uncollected"] == first["connected"]
