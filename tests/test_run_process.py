"""`dialer run` as a real process: killed with SIGKILL and restarted, or stopped with SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from dialer.importer import import_csv
from dialer.portfolio import write_sample_portfolio
from dialer.store.db import open_store
from sim.asterisk import AmiConfig, AsteriskSim, PbxConfig
from sim.behaviour import SeededDebtors
from tests.asterisk_rig import LAB_RULESET

SCALE = 50.0


@pytest.fixture
async def sim() -> AsyncIterator[AsteriskSim]:
    server = AsteriskSim(
        AmiConfig(port=0),
        PbxConfig(time_scale=SCALE, seed=11, agi_grace_secs=0.2),
        debtors=SeededDebtors(seed=11),
    )
    await server.start()
    yield server
    await server.close()


def _setup(tmp_path: Path, sim: AsteriskSim, debtors: int) -> tuple[Path, str]:
    url = f"sqlite:///{tmp_path / 'dialer.db'}"
    store = open_store(url)
    write_sample_portfolio(tmp_path / "p.csv", debtors=debtors, seed=2)
    import_csv(store, tmp_path / "p.csv", tenant="default")
    store.close()
    agents = "\n".join(
        f'[[agents]]\nid = "agent{i}"\nchannel = "Local/agent{i}@agents"\n' for i in range(1, 5)
    )
    config = tmp_path / "dialer.toml"
    config.write_text(
        f"""
node_id = "n1"
time_scale = {SCALE}
database_url = "{url}"

[[ami.servers]]
name = "sim"
port = {sim.port}
secret = "dialer"

[agi]
port = 0

[web]
port = 0

[compliance]
ruleset = "{LAB_RULESET}"

[campaign]
name = "night"
wrap_up_s = 5

{agents}
""",
        encoding="utf-8",
    )
    return config, url


async def _start(config: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
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


def _rows(url: str) -> list[sa.Row[tuple[int, str, str | None, int]]]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = list(
            conn.execute(sa.text("SELECT id, status, outcome, phone_id FROM call_attempts"))
        )
    engine.dispose()
    return rows


async def _wait_for_attempts(url: str, at_least: int) -> None:
    while len(_rows(url)) < at_least:
        await asyncio.sleep(0.05)


async def test_killed_dialer_restarts_with_every_attempt_consistent(
    tmp_path: Path, sim: AsteriskSim
) -> None:
    config, url = _setup(tmp_path, sim, debtors=30)
    async with asyncio.timeout(120):
        first = await _start(config)
        await _wait_for_attempts(url, 6)
        first.send_signal(signal.SIGKILL)
        await first.wait()
        stuck = [r for r in _rows(url) if r.status != "ended"]
        assert stuck, "the kill should leave calls in progress for the restart to reconcile"
        left_by_first = len(_rows(url))

        second = await _start(config)
        out, err = await second.communicate()
    assert second.returncode == 0, err.decode()
    rows = _rows(url)
    assert [r for r in rows if r.status != "ended"] == []
    assert all(r.outcome for r in rows)
    assert [p for p, n in Counter(r.phone_id for r in rows).items() if n > 1] == []
    # Every Originate has its row. A row may lack its Originate: the kill can land between a
    # tick's commit of its rows and the sending of their Originates; the restart closes those
    # rows, never dials them again.
    assert sim.stats()["originates"] <= len(rows)
    summary = json.loads(out.decode().strip().splitlines()[-1])
    # The restart reports what it placed; the killed run's attempts are in the campaign's totals.
    assert summary["attempts"] == len(rows) - left_by_first
    assert summary["campaign_totals"]["attempts"] == len(rows)
    # The compliance ledger lives in the same database by default: it survived the kill.
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        reservations = conn.execute(
            sa.text("SELECT count(*) FROM compliance_reservation")
        ).scalar_one()
    engine.dispose()
    assert reservations >= len(rows)


async def test_sigterm_stops_dialling_lets_calls_finish_and_exits_cleanly(
    tmp_path: Path, sim: AsteriskSim
) -> None:
    config, url = _setup(tmp_path, sim, debtors=60)
    async with asyncio.timeout(120):
        proc = await _start(config)
        await _wait_for_attempts(url, 5)
        proc.send_signal(signal.SIGTERM)
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    rows = _rows(url)
    assert [r for r in rows if r.status != "ended"] == []
    assert len(rows) < 60
    summary = json.loads(out.decode().strip().splitlines()[-1])
    assert summary["attempts"] == len(rows)
    assert set(summary["outcomes"]) == {
        "answered",
        "busy",
        "no_answer",
        "congestion",
        "invalid_number",
        "machine",
        "failed",
    }


async def _line_with(stream: asyncio.StreamReader, text: str) -> str:
    """The first line of `stream` containing `text` (log lines may come before it)."""
    while line := (await stream.readline()).decode():
        if text in line:
            return line
    raise AssertionError(f"the process never said {text!r}")


async def test_first_sigterm_says_what_it_waits_for_and_the_second_hangs_up(
    tmp_path: Path,
) -> None:
    # Conversations of about 50 simulated minutes: a minute of real time each at this scale.
    sim = AsteriskSim(
        AmiConfig(port=0),
        PbxConfig(time_scale=SCALE, seed=11, agi_grace_secs=0.2),
        debtors=SeededDebtors(seed=11, talk_median_secs=3000.0),
    )
    await sim.start()
    try:
        config, url = _setup(tmp_path, sim, debtors=30)
        async with asyncio.timeout(60):
            proc = await _start(config)
            assert proc.stderr is not None
            while not [r for r in _rows(url) if r.status == "connected"]:
                await asyncio.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            said = await _line_with(proc.stderr, "stopping:")
            assert "waiting for" in said and "call(s) in progress" in said
            assert "again to hang them up" in said
            proc.send_signal(signal.SIGTERM)
            await _line_with(proc.stderr, "hanging up")
            _, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
    finally:
        await sim.close()
    rows = _rows(url)
    assert rows and [r for r in rows if r.status != "ended"] == []
