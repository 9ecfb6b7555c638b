"""The simulator replays the captured Originates and answers with Asterisk 20.20.1's sequence."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.test_sim_helpers import Probe, capture_messages, normalise, running_sim

# Events that only the capture's test dialplan produces, or that no dialer acts on.
COSMETIC = {
    "NewCallerid",
    "NewConnectedLine",
    "DeviceStateChange",
    "QueueMemberStatus",
    "Newexten",
    "AGIExecStart",
    "AGIExecEnd",
    "FullyBooted",
    "SuccessfulAuth",
}


def _uid(value: str | None) -> str | None:
    if value is None:
        return None
    return "<epoch.seq>" if re.fullmatch(r"\d+\.\d+", value) else value


def call_sequence(
    messages: list[dict[str, str]], variables: set[str]
) -> list[tuple[str | None, ...]]:
    """What a dialer sees of one call: names and key fields, counters normalised."""
    names: dict[str, str] = {}
    out: list[tuple[str | None, ...]] = []
    for f in messages:
        name = f.get("Event")
        if name is None:
            out.append(("Response", f.get("Response"), f.get("Message")))
            continue
        if name in COSMETIC or (name == "VarSet" and f.get("Variable") not in variables):
            continue
        channel = f.get("Channel")
        dest = f.get("DestChannel")
        out.append(
            (
                name,
                normalise(channel, names) if channel else None,
                normalise(dest, names) if dest else None,
                f.get("ChannelStateDesc"),
                _uid(f.get("Uniqueid")),
                _uid(f.get("Linkedid")),
                f.get("Cause"),
                f.get("DialStatus"),
                f.get("Reason"),
                f.get("Response"),
                f.get("Variable"),
                f.get("Value"),
                f.get("BridgeNumChannels"),
                f.get("DialString"),
            )
        )
    return out


def captured_call(path: Path) -> tuple[dict[str, str], list[str], list[dict[str, str]]]:
    """The capture's Originate action, its Variable values, and what the server sent after it."""
    messages = capture_messages(path)
    start = next(
        i for i, (d, f) in enumerate(messages) if d == "C>S" and f.get("Action") == "Originate"
    )
    action = messages[start][1]
    raw = path.read_text().splitlines()
    variables = [line.split("C>S Variable: ", 1)[1] for line in raw if "C>S Variable: " in line]
    after = [f for d, f in messages[start + 1 :] if d == "S>C" and f.get("Response") != "Goodbye"]
    return action, variables, after


def assert_same_call(
    ours: list[dict[str, str]], theirs: list[dict[str, str]], names: set[str]
) -> None:
    """Same messages, and the same order on every channel.

    Asterisk runs the two Local halves in different threads, so the interleaving across
    channels differs from run to run (fact 21); the order on each channel never does.
    """
    mine, captured = call_sequence(ours, names), call_sequence(theirs, names)
    assert Counter(mine) == Counter(captured)
    for channel in ({key[1] for key in captured} | {key[2] for key in captured}) - {None}:
        on_channel = [k for k in mine if channel in (k[1], k[2])]
        assert on_channel == [k for k in captured if channel in (k[1], k[2])], channel


async def replay(probe: Probe, action: dict[str, str], variables: list[str], *extra: str) -> None:
    fields = [(k, v) for k, v in action.items() if k not in ("Action", "ActionID", "Variable")]
    fields += [("Variable", v) for v in [*variables, *extra]]
    probe.send("Originate", *fields, action_id=action["ActionID"])


@pytest.fixture
async def agi_port() -> AsyncIterator[int]:
    """A tiny FastAGI server playing the dialer's `connect` script: route to agent1."""

    async def connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (await reader.readline()).strip():
            pass  # the agi_* header block
        for command in (
            'SET VARIABLE ROUTE "dial"',
            'SET VARIABLE TARGET_CHANNEL "Local/agent1@agents"',
            'SET VARIABLE TARGET_AGENT "agent1"',
            'SET VARIABLE RECORDING_FILE "/var/spool/asterisk/monitor/call-L001.wav"',
        ):
            writer.write(command.encode() + b"\n")
            await writer.drain()
            await reader.readline()
        writer.close()

    server = await asyncio.start_server(connect, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


@pytest.mark.parametrize("scenario", ["busy", "busy_channelid", "noanswer", "pjsip_busy"])
async def test_failed_originate_replays_like_the_capture(traces_dir: Path, scenario: str) -> None:
    action, variables, captured = captured_call(traces_dir / f"ami_originate_{scenario}.log")
    names = {v.partition("=")[0] for v in variables}
    async with running_sim(time_scale=100) as sim:
        probe = await Probe.connect(sim.port)
        await probe.login()
        before = len(probe.messages)
        await replay(probe, action, variables)
        async with asyncio.timeout(5):
            await probe.response(action["ActionID"])
            await sim.wait_calls_ended()
        await probe.action("Ping")
        ours = [m.fields for m in probe.messages[before:-1]]
        await probe.close()
    assert_same_call(ours, captured, names)


async def test_answered_call_replays_like_the_capture(traces_dir: Path, agi_port: int) -> None:
    """Answer, dialer-connect, FastAGI routes to agent1, MixMonitor, bridge, debtor hangs up."""
    action, variables, captured = captured_call(traces_dir / "ami_originate_answered.log")
    names = {v.partition("=")[0] for v in variables}
    async with running_sim(time_scale=100) as sim:
        probe = await Probe.connect(sim.port)
        await probe.login()
        before = len(probe.messages)
        await replay(probe, action, variables, f"DIALER_AGI=agi://127.0.0.1:{agi_port}")
        async with asyncio.timeout(5):
            await probe.response(action["ActionID"])
            await sim.wait_calls_ended()
        await probe.action("Ping")
        ours = [m.fields for m in probe.messages[before:-1]]
        await probe.close()
    assert_same_call(ours, captured, names)
    # The AGI commands are mirrored on AMI, one Start/End pair each, with the same CommandId.
    starts = [f["CommandId"] for f in ours if f.get("Event") == "AGIExecStart"]
    ends = [f["CommandId"] for f in ours if f.get("Event") == "AGIExecEnd"]
    assert starts == ends and len(starts) == 4
    agi_status = [f["Value"] for f in ours if f.get("Variable") == "AGISTATUS"]
    assert agi_status == ["SUCCESS"]


async def test_amd_sets_amdstatus_and_amdcause_like_the_capture(
    traces_dir: Path, agi_port: int
) -> None:
    action, variables, captured = captured_call(traces_dir / "ami_originate_human_amd.log")
    expected = [
        (f["Variable"], f["Value"])
        for f in captured
        if f.get("Variable") in ("AMDSTATUS", "AMDCAUSE")
    ]
    async with running_sim(time_scale=100) as sim:
        probe = await Probe.connect(sim.port)
        await probe.login()
        await replay(probe, action, variables, f"DIALER_AGI=agi://127.0.0.1:{agi_port}")
        async with asyncio.timeout(5):
            await probe.response(action["ActionID"])
            await sim.wait_calls_ended()
        await probe.action("Ping")
        ours = [
            (m.get("Variable"), m.get("Value"))
            for m in probe.messages
            if m.get("Variable") in ("AMDSTATUS", "AMDCAUSE")
        ]
        await probe.close()
    assert expected and ours == expected


async def test_the_captured_burst_replayed_byte_for_byte_gets_the_captured_outcomes(
    traces_dir: Path,
) -> None:
    """The client's exact bytes of the predictive burst; each Originate ends as captured."""
    raw = (traces_dir / "raw" / "ami_originate_batch.c2s.raw").read_bytes()
    blocks = [b + b"\r\n\r\n" for b in raw.split(b"\r\n\r\n") if b.strip()]
    wanted = [b for b in blocks if b.startswith((b"Action: Login", b"Action: Originate"))]
    captured = {
        f["ActionID"]: (f["Response"], f["Reason"])
        for d, f in capture_messages(traces_dir / "ami_originate_batch.log")
        if f.get("Event") == "OriginateResponse"
    }
    async with running_sim(time_scale=100) as sim:
        probe = await Probe.connect(sim.port)
        for block in wanted:
            probe.writer.write(block)
        async with asyncio.timeout(5):
            for action_id in captured:
                await probe.event("OriginateResponse", ActionID=action_id)
            await sim.wait_calls_ended()
        ours = {
            m.action_id: (m.get("Response"), m.get("Reason"))
            for m in probe.messages
            if m.event == "OriginateResponse"
        }
        await probe.close()
    assert ours == captured


async def test_agi_hangup_is_mirrored_like_the_capture(traces_dir: Path) -> None:
    """The FastAGI script sends HANGUP: SoftHangupRequest 32 at once, AGISTATUS=HANGUP after."""
    action, variables, captured = captured_call(traces_dir / "ami_originate_agi_hangup.log")

    async def hangup_script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (await reader.readline()).strip():
            pass
        for command in (b"HANGUP\n", b'SET VARIABLE ROUTE "hangup"\n'):
            writer.write(command)
            while (await reader.readline()).strip() == b"HANGUP":
                pass  # the unsolicited notice may come before the reply (fact 32)
        writer.close()

    server = await asyncio.start_server(hangup_script, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    def tail(messages: list[dict[str, str]]) -> list[tuple[str | None, ...]]:
        keys: list[tuple[str | None, ...]] = [
            (f.get("Event"), f.get("Cause"), f.get("Value"))
            for f in messages
            if f.get("Event") in ("SoftHangupRequest", "Hangup") or f.get("Variable") == "AGISTATUS"
        ]
        return keys

    async with running_sim(time_scale=100) as sim:
        probe = await Probe.connect(sim.port)
        await probe.login()
        await replay(probe, action, variables, f"DIALER_AGI=agi://127.0.0.1:{port}")
        async with asyncio.timeout(5):
            await probe.response(action["ActionID"])
            await sim.wait_calls_ended()
        await probe.action("Ping")
        ours = [m.fields for m in probe.messages]
        await probe.close()
    server.close()
    assert tail(ours) == tail(captured)
