"""Nailed-up agent phones on the simulator: the same flow and expectations as against a real
Asterisk (tests/test_asterisk_nailed.py), and the real captures replayed event for event."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from dialer.agents.transfer import TransferError
from sim.asterisk import AmiConfig, AsteriskSim, PbxConfig
from tests.asterisk_capture import NAILED_CAPTURES, TRANSFER_CAPTURES, capture, capture_transfer
from tests.nailed_flow import (
    CONFERENCE,
    LOGIN_ID,
    AmiDriver,
    ami_driver,
    assert_nailed_run,
    assert_transfer_run,
    connect_agi,
    debtor_fields,
    log_in,
    run_nailed_flow,
    run_transfer_flow,
    spy_fields,
)
from tests.test_sim_helpers import capture_messages, normalise

SECRET = "sim-secret"
HUMAN_NUMBERS = [f"121255501{i}1" for i in range(10)]


@asynccontextmanager
async def nailed_sim(time_scale: float = 20.0) -> AsyncIterator[AsteriskSim]:
    """A simulated Asterisk with asterisk-conf's manager.conf `channelvars = AGENT_ID`."""
    sim = AsteriskSim(
        AmiConfig(port=0, secret=SECRET, auth_failure_delay=0.05),
        # The shipped safe-harbour message lasts 10.3 s.
        PbxConfig(time_scale=time_scale, channelvars=("AGENT_ID",), safe_harbour_secs=10.3),
    )
    await sim.start()
    try:
        yield sim
    finally:
        await sim.close()


# ---------------------------------------------------------------- the flow


async def test_ten_debtors_join_the_agents_conference_and_the_agent_stays() -> None:
    async with nailed_sim() as sim, connect_agi() as agi, ami_driver(sim.port, SECRET) as ami:
        run = await run_nailed_flow(ami, agi.port, HUMAN_NUMBERS, hold_s=0.05, timeout=10)
        assert_nailed_run(ami, run)
        assert len(run.debtors) == 10
        # The simulator counts the debtors as connected to an agent.
        assert sim.pbx.stats["connected"] == 10
        # The agent's phone is still up, alone in its conference again.
        assert sim.pbx.find(LOGIN_ID) is not None
        assert [m.channel.uniqueid for m in sim.pbx.nailed.conferences[CONFERENCE].members] == [
            LOGIN_ID
        ]


async def _bridged_debtor(ami: AmiDriver, agi_port: int, number: str, call_id: str) -> None:
    await ami.originate(debtor_fields(number, call_id, 1, agi_port))
    await ami.event("ConfbridgeJoin", 10, Uniqueid=call_id)


async def test_the_agents_phone_dropping_puts_the_debtor_out_and_ends_the_conference() -> None:
    async with nailed_sim() as sim, connect_agi() as agi, ami_driver(sim.port, SECRET) as ami:
        agent = await log_in(ami, 10)
        await _bridged_debtor(ami, agi.port, "12125550108", "dlr-long")
        await ami.hangup(agent)
        gone = await ami.event("Hangup", 10, Uniqueid="dlr-long")
        result = ami.named("VarSet", Uniqueid="dlr-long", Variable="CONFBRIDGE_RESULT")
        assert [m.get("Value") for m in result] == ["ENDMARKED"]
        assert gone.get("Cause") == "16"
        await ami.event("ConfbridgeEnd", 10, Conference=CONFERENCE)
        assert sim.pbx.nailed.conferences == {}


async def test_a_debtor_for_an_empty_conference_hears_the_safe_harbour_message() -> None:
    async with nailed_sim() as sim, connect_agi() as agi, ami_driver(sim.port, SECRET) as ami:
        await ami.originate(debtor_fields("12125550101", "dlr-alone", 1, agi.port))
        await ami.event("Hangup", 10, Uniqueid="dlr-alone")
        routes = [
            m.get("Value") for m in ami.named("VarSet", Uniqueid="dlr-alone", Variable="ROUTE")
        ]
        assert routes == ["bridge", "abandon"]
        played = [m.get("AppData") for m in ami.named("Newexten", Uniqueid="dlr-alone")]
        assert "dialer/safe-harbour" in played
        assert ami.named("ConfbridgeJoin") == [] and sim.pbx.nailed.conferences == {}


@pytest.mark.parametrize("mode, options", [("listen", "qESu"), ("barge", "qESuB")])
async def test_listen_and_barge_run_chanspy_with_their_options(mode: str, options: str) -> None:
    async with nailed_sim() as sim, connect_agi(), ami_driver(sim.port, SECRET) as ami:
        agent = await log_in(ami, 10)
        await ami.originate(spy_fields(agent, mode))
        start = await ami.event("ChanSpyStart", 10)
        assert start.get("SpyeeUniqueid") == LOGIN_ID
        spy = [m.get("AppData") for m in ami.named("Newexten", Application="ChanSpy")]
        assert spy == [f"{agent},{options}"]
        # E: the spy ends with the agent's channel.
        await ami.hangup(agent)
        await ami.event("ChanSpyStop", 10)
        await ami.event("Hangup", 10, Uniqueid=start.get("SpyerUniqueid") or "")


async def test_a_spy_on_a_channel_that_is_not_there_is_hung_up() -> None:
    async with nailed_sim() as sim, ami_driver(sim.port, SECRET) as ami:
        await ami.originate(spy_fields("Local/agent9@agents-0000abcd;1", "whisper"))
        await ami.event("Hangup", 10, Uniqueid="lab1-spy-1")
        assert ami.named("ChanSpyStart") == []


# ---------------------------------------------------------------- transfer to a supervisor


async def test_a_debtor_transferred_to_a_supervisor_leaves_the_agent_in_its_conference() -> None:
    async with nailed_sim() as sim, connect_agi() as agi, ami_driver(sim.port, SECRET) as ami:
        run = await run_transfer_flow(ami, agi.port, hold_s=0.05, timeout=10)
        assert_transfer_run(ami, run)
        # The agent's phone is still up, alone in its conference; the supervisor's is gone.
        assert sim.pbx.find(LOGIN_ID) is not None
        members = sim.pbx.nailed.conferences[CONFERENCE].members
        assert [m.channel.uniqueid for m in members] == [LOGIN_ID]
        assert sim.pbx.find(run.supervisor_channel) is None
        assert sim.pbx.outcomes["transferred"] == 1
        assert sim.pbx.outcomes["transfer_refused"] == 1


async def _transferred(ami: AmiDriver, agi_port: int, call_id: str, to: str) -> None:
    await log_in(ami, 10)
    await _bridged_debtor(ami, agi_port, "12125550108", call_id)
    await ami.transfer(call_id, to)


async def test_a_busy_supervisor_leaves_the_debtor_the_safe_harbour_message() -> None:
    async with nailed_sim() as sim, connect_agi() as agi, ami_driver(sim.port, SECRET) as ami:
        await _transferred(ami, agi.port, "dlr-busy", "Local/12125550102@debtor-sim")
        gone = await ami.event("Hangup", 10, Uniqueid="dlr-busy")
        assert [m.get("DialStatus") for m in ami.named("DialEnd", Uniqueid="dlr-busy")] == ["BUSY"]
        statuses = ami.named("VarSet", Uniqueid="dlr-busy", Variable="DIALSTATUS")
        assert [m.get("Value") for m in statuses] == ["", "BUSY"]
        steps = [
            (m.get("Application"), m.get("AppData"))
            for m in ami.named("Newexten", Uniqueid="dlr-busy")
        ]
        assert steps[-3:-1] == [("Playback", "dialer/safe-harbour"), ("Hangup", "")]
        assert gone.get("Cause") == "16"
        assert sim.pbx.outcomes["transfer_not_answered"] == 1
        assert sim.pbx.find(LOGIN_ID) is not None


async def test_a_supervisor_who_never_answers_is_given_up_after_thirty_seconds() -> None:
    async with (
        nailed_sim(time_scale=200) as sim,
        connect_agi() as agi,
        ami_driver(sim.port, SECRET) as ami,
    ):
        await _transferred(ami, agi.port, "dlr-ring", "Local/12125550103@debtor-sim")
        end = await ami.event("DialEnd", 10, Uniqueid="dlr-ring")
        assert end.get("DialStatus") == "NOANSWER"
        await ami.event("Hangup", 10, Uniqueid="dlr-ring")
        played = [m.get("AppData") for m in ami.named("Newexten", Uniqueid="dlr-ring")]
        assert "dialer/safe-harbour" in played
        assert sim.pbx.outcomes["transfer_not_answered"] == 1


async def test_the_debtor_hanging_up_while_the_supervisor_rings_cancels_the_dial() -> None:
    async with nailed_sim() as sim, connect_agi() as agi, ami_driver(sim.port, SECRET) as ami:
        await _transferred(ami, agi.port, "dlr-gone", "Local/12125550103@debtor-sim")
        begin = await ami.event("DialBegin", 10, Uniqueid="dlr-gone")
        await ami.hangup("dlr-gone-2")
        await ami.event("Hangup", 10, Uniqueid="dlr-gone")
        assert [m.get("DialStatus") for m in ami.named("DialEnd", Uniqueid="dlr-gone")] == [
            "CANCEL"
        ]
        assert ami.named("Hangup", Channel=begin.get("DestChannel") or "")
        assert sim.pbx.find(begin.get("DestChannel") or "") is None
        assert sim.pbx.outcomes["transfer_abandoned"] == 1


async def test_a_pjsip_supervisor_phone_answers_and_the_dialer_can_hang_up_by_call_id() -> None:
    async with nailed_sim() as sim, connect_agi() as agi, ami_driver(sim.port, SECRET) as ami:
        await _transferred(ami, agi.port, "dlr-pjsip", "PJSIP/1000")
        begin = await ami.event("DialBegin", 10, Uniqueid="dlr-pjsip")
        phone = begin.get("DestChannel") or ""
        assert begin.get("DialString") == "1000" and phone.startswith("PJSIP/1000-")
        enter = await ami.event("BridgeEnter", 10, Channel=phone)
        assert enter.get("Linkedid") == "dlr-pjsip"
        await ami.hangup("dlr-pjsip")
        await ami.event("Hangup", 10, Uniqueid="dlr-pjsip")
        (gone,) = ami.named("Hangup", Channel=phone)
        assert gone.get("Linkedid") == "dlr-pjsip"
        assert sim.pbx.find(LOGIN_ID) is not None


async def test_a_transfer_the_builder_refuses_sends_nothing() -> None:
    async with nailed_sim() as sim, connect_agi() as agi, ami_driver(sim.port, SECRET) as ami:
        await log_in(ami, 10)
        await _bridged_debtor(ami, agi.port, "12125550108", "dlr-stay")
        with pytest.raises(TransferError, match=r"^transfer_to: "):
            await ami.transfer("dlr-stay", "PJSIP/1000,,tT")
        assert ami.named("VarSet", Variable="TRANSFER_TO") == []
        assert ami.named("ConfbridgeLeave") == []
        assert len(sim.pbx.nailed.conferences[CONFERENCE].members) == 2


# ---------------------------------------------------------------- the captures replayed

# Events no dialer acts on, or that only the capture's PJSIP trunk produced.
COSMETIC = {
    "NewCallerid",
    "NewConnectedLine",
    "DeviceStateChange",
    "Newexten",
    "AGIExecStart",
    "AGIExecEnd",
    "FullyBooted",
    "SuccessfulAuth",
    "ContactStatus",
}
# Channel variables the comparison looks at (others are the lab dialplan's own); the values of
# the last two hold a port and a folder of the capturing machine.
VARIABLES = {"ROUTE", "TARGET_AGENT", "TARGET_BRIDGE", "RECORDING_FILE", "CONFBRIDGE_RESULT"}
VARIABLES |= {"AGENT_ID", "AGENT_CONF", "DIALER_NODE", "SPY_TARGET", "SPY_MODE", "AGISTATUS"}
VARIABLES |= {"ATTEMPT_ID", "CAMPAIGN_ID", "LEAD_ID", "USE_AMD", "RECORD", "TALK_SECS"}
VARIABLES |= {"TRANSFER_TO", "DIALSTATUS"}
UNCOMPARED_VALUES = {"DIALER_AGI", "MIXMONITOR_FILENAME"}
CHANNEL_KEYS = ("Channel", "DestChannel", "SpyerChannel", "SpyeeChannel")
# Published from another thread than the channel's own events, so where they fall among
# them varies between runs of the same Asterisk (the captures hold several orders): the
# OriginateResponse (the Originate's thread, trace fact 12) and ConfbridgeLeave (ConfBridge's
# leave hook). They are counted, and checked to come before the channel's Hangup.
FLOATING = ("OriginateResponse", "ConfbridgeLeave")
# For the same reason the count a ConfbridgeLeave or BridgeLeave shows varies.
LEAVES = ("ConfbridgeLeave", "BridgeLeave")

Key = tuple[str | None, ...]


def _uid(value: str | None) -> str | None:
    return "<epoch.seq>" if value and re.fullmatch(r"\d+\.\d+", value) else value


def sequence(messages: list[dict[str, str]]) -> list[Key]:
    """What a dialer sees: names and the fields it reads, channel counters normalised."""
    names: dict[str, str] = {}
    out: list[Key] = []
    for f in messages:
        event = f.get("Event")
        if event is None:
            out.append(("Response", f.get("Response"), f.get("Message")))
            continue
        variable = f.get("Variable")
        if event in COSMETIC or (
            event == "VarSet" and variable not in VARIABLES | UNCOMPARED_VALUES
        ):
            continue
        value = None if variable in UNCOMPARED_VALUES else f.get("Value")
        channels = tuple(normalise(f[k], names) if k in f else None for k in CHANNEL_KEYS)
        out.append(
            (
                event,
                *channels,
                f.get("ChannelStateDesc"),
                _uid(f.get("Uniqueid")),
                _uid(f.get("Linkedid")),
                f.get("Cause"),
                f.get("DialStatus"),
                f.get("Reason"),
                f.get("Response"),
                variable,
                value,
                f.get("Conference"),
                None if event in LEAVES else f.get("BridgeNumChannels"),
                # A VarSet shows the channel's last published snapshot, which may or may not
                # hold the variable being set (Asterisk publishes snapshots asynchronously).
                None if event == "VarSet" else f.get("ChanVariable"),
                f.get(f"ChanVariable({f.get('Channel')})"),
                f.get("Admin"),
                f.get("Muted"),
            )
        )
    return out


def on_channel(keys: list[Key], channel: str) -> list[Key]:
    """The keys of one channel in the order that never varies."""
    mine = [k for k in keys if channel in k[1:5] and k[0] not in FLOATING]
    for i in range(len(mine) - 1):
        if _ringing(mine[i]) and _originate_dial(mine[i + 1]):
            mine[i], mine[i + 1] = mine[i + 1], mine[i]
    return mine


# The Originate's DialBegin (it has no source channel) and the `;1` half's Newstate Ringing
# arrive in either order: two captures of the same transfer scenario hold both. Compared with
# the DialBegin first, as the simulator sends them.
def _originate_dial(key: Key) -> bool:
    return key[0] == "DialBegin" and key[1] is None


def _ringing(key: Key) -> bool:
    return key[0] == "Newstate" and key[5] == "Ringing"


def floating_in_place(keys: list[Key], channel: str) -> bool:
    """Each floating event of the channel comes after its Newchannel, before its Hangup."""
    mine = [k for k in keys if channel in k[1:5]]
    names = [k[0] for k in mine]
    first = names.index("Newchannel") if "Newchannel" in names else -1
    last = names.index("Hangup") if "Hangup" in names else len(names)
    return all(first < i < last for i, name in enumerate(names) if name in FLOATING)


def server_messages(path: Path) -> list[dict[str, str]]:
    return [f for d, f in capture_messages(path) if d == "S>C"]


async def test_the_simulator_records_what_the_real_asterisk_recorded(
    traces_dir: Path, tmp_path: Path
) -> None:
    """The capture script, run against the simulator, records the same events per channel as
    it recorded against Asterisk 20.20.1 (login, a debtor in and out, whisper, the agent's
    phone dropping, a debtor with no agent, logout)."""
    async with nailed_sim(time_scale=50) as sim:
        async with asyncio.timeout(60):
            await capture(sim.port, SECRET, tmp_path, pause_s=0.2)
    assert_same_captures(traces_dir, tmp_path, NAILED_CAPTURES)


async def test_the_simulator_records_the_transfers_the_real_asterisk_recorded(
    traces_dir: Path, tmp_path: Path
) -> None:
    """The same for the transfers to a supervisor: answered then the debtor hangs up, refused
    (no TRANSFER_TO), the supervisor's phone busy, the supervisor hanging up."""
    async with nailed_sim(time_scale=50) as sim:
        async with asyncio.timeout(60):
            await capture_transfer(sim.port, SECRET, tmp_path, pause_s=0.2)
    assert_same_captures(traces_dir, tmp_path, TRANSFER_CAPTURES)


def assert_same_captures(theirs_dir: Path, ours_dir: Path, names: tuple[str, ...]) -> None:
    for name in names:
        theirs = sequence(server_messages(theirs_dir / f"{name}.log"))
        ours = sequence(server_messages(ours_dir / f"{name}.log"))
        assert theirs, name
        assert Counter(ours) == Counter(theirs), name
        channels = {c for key in theirs for c in key[1:5] if c is not None}
        for channel in channels:
            assert on_channel(ours, channel) == on_channel(theirs, channel), (name, channel)
            assert floating_in_place(ours, channel), (name, channel)
