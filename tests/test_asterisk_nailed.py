"""Nailed-up agent phones against a real Asterisk 20 configured with asterisk-conf/ as shipped.

The agent's phone is called once and waits in its conference; debtors answered by the lab's
debtor-sim join it through dialer-connect (ROUTE=bridge from our FastAGI `connect`) and leave
it; a supervisor whispers. Driven with the dialer's own AMI client (tests/nailed_flow.py, the
same flow tests/test_sim_nailed.py runs on the simulator). Skips without an Asterisk.
"""

from __future__ import annotations

import asyncio
import wave
from collections.abc import Callable
from pathlib import Path

import pytest

from sim.lab import AsteriskLab
from tests.asterisk_rig import HUMAN, lab_number
from tests.nailed_flow import (
    CONFERENCE,
    LOGIN_ID,
    SUPERVISOR_PHONE,
    ami_driver,
    assert_nailed_run,
    assert_transfer_run,
    connect_agi,
    debtor_fields,
    log_in,
    recording_name,
    run_nailed_flow,
    run_transfer_flow,
)

pytestmark = pytest.mark.asterisk

StartLab = Callable[..., AsteriskLab]


def _wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / w.getframerate()


async def test_one_agent_call_takes_debtors_one_after_another_then_a_whisper(
    asterisk_lab: StartLab,
) -> None:
    """Three debtors here; ten, through the whole product, in tests/test_asterisk_desktop.py."""
    lab = asterisk_lab()
    numbers = [lab_number(i, HUMAN).lstrip("+") for i in range(3)]
    async with connect_agi() as agi, ami_driver(lab.ports.ami, lab.ami_secret) as ami:
        async with asyncio.timeout(150):
            run = await run_nailed_flow(ami, agi.port, numbers, hold_s=1.0)
        assert_nailed_run(ami, run)
        # The agent's channel is still up after the last debtor and the supervisor left.
        channels = lab.cli("core show channels concise")
        assert run.agent_channel in channels, channels
    # MixMonitor wrote each debtor's conversation where the dialer said.
    for attempt in range(1, len(numbers) + 1):
        recording = lab.recordings / recording_name(attempt)
        assert recording.is_file(), f"no recording at {recording}"
        assert _wav_seconds(recording) > 0.5, recording


async def test_the_agents_phone_dropping_puts_the_debtor_out(asterisk_lab: StartLab) -> None:
    lab = asterisk_lab()
    async with connect_agi() as agi, ami_driver(lab.ports.ami, lab.ami_secret) as ami:
        async with asyncio.timeout(60):
            agent = await log_in(ami)
            # A long call (last digit 8): the debtor would stay two minutes.
            await ami.originate(debtor_fields("12125550108", "dlr-long", 1, agi.port))
            await ami.event("ConfbridgeJoin", Uniqueid="dlr-long")
            await ami.hangup(agent)
            gone = await ami.event("Hangup", Uniqueid="dlr-long")
            await ami.event("ConfbridgeEnd", Conference=CONFERENCE)
    results = ami.named("VarSet", Uniqueid="dlr-long", Variable="CONFBRIDGE_RESULT")
    assert [m.get("Value") for m in results] == ["ENDMARKED"]
    assert gone.get("Cause") == "16"
    assert [m.get("Cause") for m in ami.named("Hangup", Uniqueid=LOGIN_ID)] == ["16"]


async def test_a_debtor_routed_to_an_empty_conference_is_abandoned(asterisk_lab: StartLab) -> None:
    """Without the dialplan's guard ConfBridge would seat the debtor alone: end_marked acts
    only when a marked user leaves. The debtor hears the safe-harbour message instead."""
    lab = asterisk_lab()
    async with connect_agi() as agi, ami_driver(lab.ports.ami, lab.ami_secret) as ami:
        async with asyncio.timeout(60):
            await ami.originate(debtor_fields("12125550101", "dlr-alone", 1, agi.port))
            await ami.event("Hangup", Uniqueid="dlr-alone")
    routes = [m.get("Value") for m in ami.named("VarSet", Uniqueid="dlr-alone", Variable="ROUTE")]
    assert routes == ["bridge", "abandon"]
    assert ami.named("ConfbridgeJoin") == []
    log = lab.messages_log.read_text(encoding="utf-8")
    assert "Playing 'dialer/safe-harbour" in log


async def test_a_debtor_transferred_to_a_supervisor_leaves_the_agent_in_its_conference(
    asterisk_lab: StartLab,
) -> None:
    """Setvar TRANSFER_TO + Redirect into dialer-transfer (dialer/agents/transfer.py): the
    debtor is bridged to the supervisor's phone, the agent's phone stays nailed up, the debtor's
    Linkedid carries on and MixMonitor records on; a Redirect without TRANSFER_TO is refused."""
    lab = asterisk_lab()
    hold_s = 2.0
    async with connect_agi() as agi, ami_driver(lab.ports.ami, lab.ami_secret) as ami:
        async with asyncio.timeout(30):
            run = await run_transfer_flow(ami, agi.port, hold_s=hold_s)
        assert_transfer_run(ami, run)
        channels = lab.cli("core show channels concise")
        assert run.agent_channel in channels, channels
        assert run.supervisor_channel not in channels, channels
    # The recording goes on after the Redirect: the file holds more sound than the debtor's few
    # milliseconds in the conference (MixMonitor writes the frames that flow, and Local
    # channels carry none while nothing plays: its length is not the call's).
    seconds = _wav_seconds(lab.recordings / recording_name(1))
    in_conference = run.redirected_at - run.recording_at
    assert seconds > in_conference + hold_s / 2, (seconds, in_conference)
    # Asterisk's log: the debtor's channel dialled the supervisor from dialer-transfer, and its
    # recording ended only after that, with the channel; the refused one's h says cause 21.
    log = lab.messages_log.read_text(encoding="utf-8")
    debtor = ami.named("Newchannel", Uniqueid=run.transferred)[0].get("Channel") or ""
    dialled = log.index(
        f'Executing [s@dialer-transfer:3] Dial("{debtor}", "{SUPERVISOR_PHONE},30")'
    )
    assert log.index(f"End MixMonitor Recording {debtor}") > dialled
    assert f"DIALER-TRANSFER hangup {debtor} cause=16 DIALSTATUS=ANSWER" in log
    refused = ami.named("Newchannel", Uniqueid=run.refused)[0].get("Channel") or ""
    assert f'DIALER-TRANSFER hangup {refused} cause=21 DIALSTATUS=")' in log
