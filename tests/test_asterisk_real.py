"""The dialer against a real Asterisk 20 configured with asterisk-conf/ as shipped.

Each test starts its own Asterisk on loopback (sim/lab.py), imports a lab portfolio whose
numbers pick their behaviour in the shipped `debtor-sim` context, and runs the dialer through
the real AMI and FastAGI. Calls take real time: talk times are a second or two, calls run in
parallel. Without an Asterisk these tests skip with the reason (see tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import signal
import sys
import time
import wave
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from dialer.store.db import open_store
from dialer.store.models import Recording
from sim.lab import AsteriskLab
from tests.asterisk_rig import (
    BUSY,
    CONGESTION,
    GIVES_UP,
    HUMAN,
    MACHINE,
    NO_ANSWER,
    SHORT_CALL,
    UNALLOCATED,
    AmiCable,
    LabDialer,
    lab_dialer,
    lab_number,
)

pytestmark = pytest.mark.asterisk

StartLab = Callable[..., AsteriskLab]

# What a collector expects to read on the attempt: the outcome and the Q.850 cause.
EXPECTED = {
    HUMAN: ("answered", 16),
    BUSY: ("busy", 17),
    NO_ANSWER: ("no_answer", 19),
    MACHINE: ("machine", 16),
    CONGESTION: ("congestion", 34),
    GIVES_UP: ("no_answer", 19),
    SHORT_CALL: ("answered", 16),
    UNALLOCATED: ("invalid_number", 1),
}


def _assert_books_closed(dialer: LabDialer) -> list[object]:
    """Every attempt ended with an outcome, nobody dialled twice, no reservation pending."""
    rows = dialer.rows()
    assert rows, "nobody was dialled"
    assert [r.id for r in rows if r.status != "ended" or not r.outcome] == []
    twice = [phone for phone, n in Counter(r.e164 for r in rows).items() if n > 1]
    assert twice == [], f"dialled twice: {twice}"
    assert dialer.pending_reservations() == 0
    return list(rows)


def _wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / w.getframerate()


async def test_every_call_class_ends_with_the_outcome_and_cause_a_collector_expects(
    tmp_path: Path, asterisk_lab: StartLab
) -> None:
    lab = asterisk_lab()
    numbers = {behaviour: lab_number(0, behaviour) for behaviour in EXPECTED}
    dialer = lab_dialer(tmp_path, lab, list(numbers.values()), agents=8, talk_secs=2)
    async with asyncio.timeout(90):
        summary = await dialer.run()
    rows = {r.e164: r for r in _assert_books_closed(dialer)}
    got = {b: (rows[n].outcome, rows[n].hangup_cause) for b, n in numbers.items()}
    assert got == EXPECTED
    assert summary.attempts == len(EXPECTED)
    for behaviour in (HUMAN, SHORT_CALL):
        row = rows[numbers[behaviour]]
        # Answered, AMD heard a human, FastAGI `connect` chose an agent and the two talked.
        assert row.amd_status == "HUMAN"
        assert row.agent_id and row.connected_at is not None and not row.abandoned
        assert row.reason == 4
        # Every leg carries the dialer's call id as Linkedid (routing depends on it).
        assert row.linkedid == row.uniqueid
        # MixMonitor wrote a real recording where the dialer said, and the row points at it.
        recording = Path(row.recording_path)
        assert recording.is_relative_to(lab.recordings)
        assert recording.is_file(), f"no recording at {recording}"
        assert _wav_seconds(recording) > 0.5
    assert rows[numbers[MACHINE]].amd_status == "MACHINE"
    assert rows[numbers[MACHINE]].agent_id is None
    # The human talked longer than the short call hung up.
    human, short = rows[numbers[HUMAN]], rows[numbers[SHORT_CALL]]
    assert human.hungup_at - human.connected_at > short.hungup_at - short.connected_at


def _archived(dialer: LabDialer, attempt_id: int) -> bool:
    """The attempt's recording is in the evidence archive, two channels, on disk."""
    store = open_store(dialer.database_url)
    try:
        with store.session() as session:
            rec = session.scalars(
                sa.select(Recording).where(Recording.attempt_id == attempt_id)
            ).one_or_none()
    finally:
        store.close()
    if rec is None or rec.status != "archived" or not rec.archive_path:
        return False
    root = dialer.config_path.parent / "dialer-data" / "recordings"
    return rec.channels == 2 and (root / rec.archive_path).is_file()


def _log_time(line: str) -> float:
    stamp = line[1:24]  # [2026-12-04 18:30:01.123]
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp()


async def test_live_answer_without_a_free_agent_hears_the_safe_harbour_message_at_two_seconds(
    tmp_path: Path, asterisk_lab: StartLab
) -> None:
    lab = asterisk_lab()
    # One agent, two lines: both debtors answer together, one must wait and is abandoned.
    numbers = [lab_number(1, HUMAN), lab_number(2, HUMAN)]
    dialer = lab_dialer(tmp_path, lab, numbers, agents=1, dial_mode="ratio", talk_secs=3)
    async with asyncio.timeout(60):
        await dialer.run()
    rows = _assert_books_closed(dialer)
    abandoned = [r for r in rows if r.abandoned]
    assert len(abandoned) == 1, [(r.e164, r.outcome, r.abandoned) for r in rows]
    row = abandoned[0]
    assert row.outcome == "answered" and row.connected_at is None and row.agent_id is None
    # Asterisk played the message on that call, 2 s after it asked the dialer for an agent.
    log = lab.messages_log.read_text(encoding="utf-8").splitlines()
    channel = re.escape(row.channel)
    asked = [line for line in log if re.search(rf'AGI\("{channel}"', line)]
    played = [
        line
        for line in log
        if re.search(rf"<{channel}> Playing 'dialer/safe-harbour", line)
        or re.search(rf'Playback\("{channel}", "dialer/safe-harbour"\)', line)
    ]
    assert asked and played, f"no AGI / safe-harbour playback for {row.channel} in the log"
    waited = _log_time(played[0]) - _log_time(asked[0])
    assert 1.9 <= waited <= 2.6, waited


async def test_ami_drop_and_asterisk_restart_mid_campaign_dial_nobody_twice(
    tmp_path: Path, asterisk_lab: StartLab
) -> None:
    lab = asterisk_lab()
    cable = AmiCable(lab.ports.ami)
    await cable.start()
    behaviours = [HUMAN, BUSY, SHORT_CALL, CONGESTION, UNALLOCATED]
    numbers = [lab_number(i, b) for i in range(3) for b in behaviours]
    dialer = lab_dialer(tmp_path, lab, numbers, agents=3, talk_secs=1, ami_port=cable.port)
    try:
        async with asyncio.timeout(150):
            task = asyncio.create_task(dialer.run())
            while len(dialer.rows()) < 4:
                await asyncio.sleep(0.1)
            assert cable.cut() > 0  # the network drops; Asterisk goes on
            while len(dialer.rows()) < 9:
                await asyncio.sleep(0.1)
            await asyncio.to_thread(lab.stop)
            await asyncio.sleep(1.0)
            await asyncio.to_thread(lab.start)
            back = time.monotonic()
            summary = await task
    finally:
        await cable.close()
    rows = _assert_books_closed(dialer)
    assert len(rows) == len(numbers) == summary.attempts
    # The dialer was back on Asterisk's AMI within a second or two of it listening again.
    reconnected = [t - back for t in cable.connected_at if t >= back]
    assert reconnected and reconnected[0] < 2.5, reconnected
    # Calls cut by the restart end as what was seen of them; the others finished normally.
    assert {r.outcome for r in rows} >= {"answered", "busy"}
    # No number here fails on the network: a `failed` row would be an Originate refused while
    # Asterisk was shutting down ("Asterisk is shutting down"), booked against the debtor.
    assert [r.e164 for r in rows if r.outcome == "failed"] == []


async def _wait_until(predicate: Callable[[], bool], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.1)


async def test_dialer_killed_mid_call_then_restarted_keeps_agents_facts_and_the_law(
    tmp_path: Path, asterisk_lab: StartLab
) -> None:
    lab = asterisk_lab()
    # Four long conversations with two agents, and more debtors behind them.
    numbers = [lab_number(i, HUMAN) for i in range(4)] + [lab_number(i, BUSY) for i in range(3)]
    dialer = lab_dialer(tmp_path, lab, numbers, agents=2, talk_secs=8)
    command = [sys.executable, "-m", "dialer.cli", "run", "--config", str(dialer.config_path)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first = await asyncio.create_subprocess_exec(
        *command,
        "--quiet",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        await _wait_until(
            lambda: sum(r.status == "connected" for r in dialer.rows()) >= 2, timeout=40
        )
    finally:
        first.send_signal(signal.SIGKILL)
        await first.wait()
    talking = {r.id: r for r in dialer.rows() if r.status == "connected"}
    assert len(talking) == 2

    second = await asyncio.create_subprocess_exec(
        *command,
        "--quiet",
        "--json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    async with asyncio.timeout(90):
        _out, err = await second.communicate()
    assert second.returncode == 0, err.decode()[-3000:]
    rows = _assert_books_closed(dialer)
    by_id = {r.id: r for r in rows}
    for attempt_id in talking:
        row = by_id[attempt_id]
        # The adopted calls kept their facts: recording, AMD verdict, reason, agent.
        assert row.outcome == "answered" and row.reason == 4
        assert row.amd_status == "HUMAN"
        assert row.recording_path and row.agent_id
        # `dialer run` archives each finished call's recording as it goes (both parties, one
        # two-channel file): the file is in the spool still, or in the archive.
        assert Path(row.recording_path).is_file() or _archived(dialer, attempt_id)
    # No agent was given a second call while still talking on an adopted one.
    for agent in {r.agent_id for r in rows if r.agent_id}:
        spans = sorted(
            (r.connected_at, r.hungup_at) for r in rows if r.agent_id == agent and r.connected_at
        )
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end, f"agent {agent} had two calls at once"
    # The conversations reached the guard's ledger: a new campaign the same day may not call
    # those debtors again (Reg F's 7-day conversation period).
    async with asyncio.timeout(60):
        await dialer.run(campaign="lab-again")
    again = [r for r in dialer.rows() if r.campaign_id != rows[0].campaign_id]
    talked = {by_id[i].e164 for i in talking}
    assert talked.isdisjoint({r.e164 for r in again})
