"""The dialer through a real SIP trunk: Asterisk's `trunk` (asterisk-conf/pjsip_wizard.conf, as
shipped) towards the PSTN played by SIPp (sim/sip/carrier.xml).

Each SIP answer the carrier gives must reach the outcome and the Q.850 cause a collector reads
on the attempt; AMD must tell the live "Hello?" from the voicemail greeting on real RTP audio,
in mu-law and A-law; the far end's BYE ends the call with cause 16; every channel of a call
carries the dialer's ChannelId as Linkedid. Calls run in parallel, a few seconds each. The
first test needs no Asterisk: SIPp calls the carrier itself, so the scenario is checked wherever
SIPp is installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from dialer.ami.client import ActionIds, AmiClientCore, EventReceived, ReplyReady
from dialer.ami.protocol import Message
from dialer.store.db import open_store
from dialer.store.models import Recording
from recording.archive import Archive, RetentionPolicy, verify
from recording.audio_io import read_wav
from recording.parties import party_paths
from recording.service import archive_pending, collect_finished
from sim.lab import SHIPPED_CONF, AsteriskLab, LabPorts
from sim.sip.carrier import (
    AUDIO_DIR,
    BEHAVIOURS,
    CALLER_SCENARIO,
    SIPP,
    CarrierCall,
    SippCarrier,
    options_probe,
    parse_calls,
    sipp_available,
)
from sim.sip.make_audio import make_audio
from tests.asterisk_rig import LabDialer, lab_dialer
from tests.conftest import REQUIRE_SERVICES
from tests.test_asterisk_recording import _speech_frames

StartLab = Callable[..., AsteriskLab]
StartCarrier = Callable[[int], SippCarrier]

OFFER = "0 8 101"  # what Asterisk's trunk offers (allow = ulaw,alaw; RFC 4733 DTMF)
PAYLOAD = {"PCMU": 0, "PCMA": 8}
SUFFIX = {"PCMU": "ulaw", "PCMA": "alaw"}


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def sipp() -> None:
    """Skips (or, with DIALER_REQUIRE_SERVICES=1, fails) where no SIPp with RTPSTREAM is."""
    reason = sipp_available()
    if reason is not None:
        if REQUIRE_SERVICES:
            pytest.fail(f"{reason} and DIALER_REQUIRE_SERVICES=1")
        pytest.skip(reason)


@pytest.fixture
def sip_carrier(tmp_path: Path, sipp: None) -> Iterator[StartCarrier]:
    """Starts SIPp carriers on loopback (sim/sip/carrier.py); all stopped after the test."""
    started: list[SippCarrier] = []

    def start(port: int) -> SippCarrier:
        carrier = SippCarrier(port, workdir=tmp_path / f"carrier-{port}", max_seconds=300)
        started.append(carrier)
        carrier.start()
        return carrier

    yield start
    for carrier in started:
        carrier.stop()


# ---------------------------------------------------------------- the scenario, without Asterisk


class RtpSink(asyncio.DatagramProtocol):
    """Where the test caller's SDP sends the carrier's audio: keeps (payload type, payload)."""

    def __init__(self) -> None:
        self.packets: list[tuple[int, bytes]] = []

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if len(data) > 12 and data[0] >> 6 == 2:
            self.packets.append((data[1] & 0x7F, data[12:]))

    @property
    def payload(self) -> bytes:
        return b"".join(p for _, p in self.packets)


@dataclass(frozen=True)
class Case:
    number: str
    ringing: int | None
    final: int
    codec: str | None = None
    offer: str = OFFER
    early_media: bool = False


CASES = [
    Case("12125550107", 180, 200, "PCMU"),  # short call: "Hello?", BYE
    Case("12125550117", 180, 200, "PCMA", offer="8 0 101"),  # the first G.711 offered
    Case("12125550187", 180, 200, "PCMA"),  # A-law number: PCMA though PCMU came first
    Case("12125550177", 183, 200, "PCMU", early_media=True),  # 183 + ringback, then answer
    Case("12125550102", None, 486),
    Case("12125550105", None, 503),
    Case("12125550100", None, 404),
    Case("12125550190", None, 484),
    Case("12125550106", 180, 480),  # rings 3 s, the far end gives up
    Case("12125550196", 180, 408),
    Case("12125550176", 183, 480, "PCMU", early_media=True),
    Case("12125550103", 180, 487),  # rings on: the caller cancels after 5 s
    Case("12125550147", None, 488, offer="9 101"),  # no G.711 in the offer
    Case("s", None, 404),  # not a number: unallocated
]


async def _call(carrier: SippCarrier, case: Case, workdir: Path) -> tuple[int, RtpSink, bytes]:
    loop = asyncio.get_running_loop()
    rtp_port = _free_udp_port()
    transport, sink = await loop.create_datagram_endpoint(
        RtpSink, local_addr=("127.0.0.1", rtp_port)
    )
    try:
        proc = await asyncio.create_subprocess_exec(
            SIPP,
            f"{carrier.host}:{carrier.port}",
            *("-sf", str(CALLER_SCENARIO), "-s", case.number, "-m", "1"),
            *("-i", "127.0.0.1", "-mi", "127.0.0.1", "-bind_local"),
            *("-key", "offer", case.offer, "-key", "rtp_port", str(rtp_port)),
            *("-cp", str(_free_udp_port()), "-nostdin", "-timeout", "30s"),
            *("-trace_err", "-error_file", str(workdir / f"caller-{case.number}.err")),
            cwd=workdir,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await proc.communicate()
        await asyncio.sleep(0.1)  # the last RTP packets
    finally:
        transport.close()
    assert proc.returncode is not None
    return proc.returncode, sink, err


async def test_the_carrier_answers_each_number_as_its_digits_say_without_asterisk(
    tmp_path: Path, sip_carrier: StartCarrier
) -> None:
    carrier = sip_carrier(_free_udp_port())
    async with asyncio.timeout(30):
        results = await asyncio.gather(*(_call(carrier, case, tmp_path) for case in CASES))
    for case, (rc, _, err) in zip(CASES, results, strict=True):
        assert rc == 0, f"{case.number}: the caller failed ({rc}): {err.decode()[-500:]}"
    await asyncio.sleep(0.3)  # the carrier logs the end of the last calls
    calls = carrier.by_number()
    for case, (_, sink, _) in zip(CASES, results, strict=True):
        call = calls[case.number if case.number.isdigit() else "?"]
        assert (call.ringing, call.final, call.codec) == (case.ringing, case.final, case.codec)
        assert call.ended, call
        if case.final != 200:
            assert not case.early_media or sink.packets, f"{case.number}: no early media"
            continue
        assert call.hung_up_by == "debtor"
        # The answer's audio, in the codec of the answer: the file's bytes as they are.
        assert sink.packets, f"{case.number}: no RTP"
        assert {pt for pt, _ in sink.packets} == {PAYLOAD[case.codec or ""]}
        suffix = SUFFIX[case.codec or ""]
        hello = (AUDIO_DIR / f"hello.{suffix}").read_bytes()
        payload = sink.payload
        if case.early_media:
            ringback = (AUDIO_DIR / f"ringback.{suffix}").read_bytes()
            assert payload.startswith(ringback[:1600])
            assert hello[:3200] in payload
        else:
            assert payload.startswith(hello[:3200])
    assert carrier.running
    assert carrier.stop() == 0
    stats = carrier.stats()  # written again as SIPp ends
    assert stats["FailedCall(C)"] == "0", carrier.errors()[-2000:]
    assert int(stats["SuccessfulCall(C)"]) == len(CASES) + 1  # and the start's OPTIONS probe


def test_carrier_log_lines_make_calls() -> None:
    text = (
        "sipcarrier call=3 number=12125550171 event=invite\n"
        "sipcarrier call=3 number=12125550171 event=ringing code=183 codec=PCMU\n"
        "noise\n"
        "sipcarrier call=3 number=12125550171 event=answered code=200 codec=PCMU\n"
        "sipcarrier call=4 number=12125550102 event=invite\n"
        "sipcarrier call=4 number=12125550102 event=refused code=486\n"
        "sipcarrier call=3 number=12125550171 event=hangup by=debtor\n"
        "sipcarrier call=5 number=12125550104 event=answered code=200 codec=PCMA\n"
    )
    calls = parse_calls(text)
    assert calls[3] == CarrierCall(3, "12125550171", 183, 200, "PCMU", "debtor")
    assert calls[3].ended
    assert calls[4] == CarrierCall(4, "12125550102", None, 486)
    assert calls[4].ended
    assert not calls[5].ended  # answered, still talking


def test_the_committed_audio_is_what_make_audio_makes(tmp_path: Path) -> None:
    if shutil.which("sox") is None:
        pytest.skip("sox is not installed")
    for path in make_audio(tmp_path):
        assert path.read_bytes() == (AUDIO_DIR / path.name).read_bytes(), (
            f"{path.name} is stale: run python -m sim.sip.make_audio"
        )


def test_the_lab_points_its_trunk_at_its_own_carrier_port(tmp_path: Path) -> None:
    ports = LabPorts(ami=15038, sip=15060, carrier=15090)
    lab = AsteriskLab(tmp_path / "lab", ports=ports)
    lab.write_config()
    wizard = (lab.etc / "pjsip_wizard.conf").read_text(encoding="utf-8")
    assert "remote_hosts = 127.0.0.1:15090" in wizard.splitlines()
    assert "bind = 127.0.0.1:15060" in (lab.etc / "pjsip.conf").read_text(encoding="utf-8")
    # The production variants are samples: nothing of them reaches a lab.
    assert not list(lab.etc.glob("*.sample"))


async def test_dialer_sim_sip_serves_until_sigterm_and_takes_sipp_with_it(
    tmp_path: Path, sipp: None
) -> None:
    port = _free_udp_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "dialer.cli", "sim", "--sip", "--sip-port", str(port)),
        *("--sip-logs", str(tmp_path / "logs")),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(20):
            banner: list[str] = []
            while not banner or not banner[-1].startswith("what a number does"):
                line = (await proc.stdout.readline()).decode()
                assert line, (await proc.stderr.read()).decode() if proc.stderr else ""
                banner.append(line.strip())
            table = [(await proc.stdout.readline()).decode() for _ in BEHAVIOURS]
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    assert f"udp 127.0.0.1:{port}" in banner[0]
    assert any("486 Busy Here" in row for row in table)
    assert await asyncio.to_thread(options_probe, "127.0.0.1", port)
    proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(15):
        out, _ = await proc.communicate()
    assert proc.returncode == 0
    assert "calls:" in out.decode()
    # SIPp went with it: nothing answers on the port any more.
    assert not await asyncio.to_thread(options_probe, "127.0.0.1", port, 0.5)


# ---------------------------------------------------------------- through a real Asterisk


def trunk_dialer(
    tmp_path: Path, lab: AsteriskLab, numbers: list[str], *, agents: int, ring_timeout_s: float = 15
) -> LabDialer:
    """The lab dialer (tests/asterisk_rig.py), its calls sent down the SIP trunk."""
    dialer = lab_dialer(
        tmp_path,
        lab,
        [f"+{n}" for n in numbers],
        agents=agents,
        ring_timeout_s=ring_timeout_s,
        channel_template="PJSIP/{number}@trunk",
    )
    return dialer


@dataclass
class AmiRecorder:
    """A second AMI session that keeps every event while the dialer runs."""

    port: int
    secret: str
    events: list[Message] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        core = AmiClientCore(ActionIds("recorder"))
        _, login = core.build_action(
            "Login", [("Username", "dialer"), ("Secret", self.secret), ("Events", "on")]
        )
        writer.write(login)
        logged_in = asyncio.Event()

        async def read() -> None:
            try:
                while chunk := await reader.read(65536):
                    for item in core.receive_data(chunk):
                        if isinstance(item, ReplyReady):
                            assert item.reply.ok, item.reply.message
                            logged_in.set()
                        elif isinstance(item, EventReceived):
                            self.events.append(item.message)
            finally:
                writer.close()

        self._task = asyncio.create_task(read())
        async with asyncio.timeout(5):
            await logged_in.wait()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def named(self, event: str) -> list[Message]:
        return [m for m in self.events if m.event == event]


def _rows_by_number(dialer: LabDialer) -> dict[str, Any]:
    rows = dialer.rows()
    assert rows, "nobody was dialled"
    assert [r.id for r in rows if r.status != "ended" or not r.outcome] == []
    assert dialer.pending_reservations() == 0
    return {str(r.e164).lstrip("+"): r for r in rows}


# What each refusal or unanswered ring must be booked as: (outcome, Q.850 cause), and the SIP
# final response the carrier sent. Measured on Asterisk 20.20.1: the OriginateResponse of a
# refused PJSIP call says Reason 0, so the cause of its Hangup decides.
REFUSALS = {
    "12125550102": ("busy", 17, 486),
    "12125550105": ("congestion", 34, 503),
    "12125550100": ("invalid_number", 1, 404),
    "12125550190": ("invalid_number", 28, 484),
    "12125550106": ("no_answer", 19, 480),
    "12125550196": ("no_answer", 18, 408),
    "12125550176": ("no_answer", 19, 480),  # after 183 and early media
    "12125550103": ("no_answer", 19, 487),  # the dialer's ring timeout: CANCEL
    "12125550173": ("no_answer", 19, 487),  # the same after 183 and early media
}


@pytest.mark.asterisk
async def test_every_sip_refusal_is_booked_with_the_outcome_and_cause_a_collector_expects(
    tmp_path: Path, asterisk_lab: StartLab, sip_carrier: StartCarrier
) -> None:
    lab = asterisk_lab("pbx")
    carrier = sip_carrier(lab.ports.carrier)
    numbers = list(REFUSALS)
    dialer = trunk_dialer(tmp_path, lab, numbers, agents=len(numbers), ring_timeout_s=4.0)
    async with asyncio.timeout(60):
        summary = await dialer.run()
    rows = _rows_by_number(dialer)
    assert summary.attempts == len(numbers)
    got = {n: (rows[n].outcome, rows[n].hangup_cause) for n in numbers}
    assert got == {n: (outcome, cause) for n, (outcome, cause, _) in REFUSALS.items()}
    calls = carrier.by_number()
    assert {n: calls[n].final for n in numbers} == {n: code for n, (*_, code) in REFUSALS.items()}
    for number in numbers:
        row = rows[number]
        assert row.answered_at is None and row.agent_id is None
        # Reason 0 for every refusal through the trunk (a Local pair says 5 for busy, 8 for
        # congestion): the simulator's trunk calls copy this (tests/test_sim_ami.py).
        assert row.reason == (3 if REFUSALS[number][2] == 487 else 0), number


# Answered calls: (outcome, AMD verdict, codec of the answer, who hangs up, agent connected).
ANSWERED = {
    "12125550101": ("answered", "HUMAN", "PCMU", "debtor", True),
    "12125550181": ("answered", "HUMAN", "PCMA", "debtor", True),
    "12125550171": ("answered", "HUMAN", "PCMU", "debtor", True),  # after 183 + early media
    "12125550104": ("machine", "MACHINE", "PCMU", "dialer", False),
    "12125550184": ("machine", "MACHINE", "PCMA", "dialer", False),
}


@pytest.mark.asterisk
async def test_answered_calls_amd_on_real_audio_far_end_bye_and_linkedid_on_every_leg(
    tmp_path: Path, asterisk_lab: StartLab, sip_carrier: StartCarrier
) -> None:
    lab = asterisk_lab("pbx")
    carrier = sip_carrier(lab.ports.carrier)
    recorder = AmiRecorder(lab.ports.ami, lab.ami_secret)
    await recorder.start()
    numbers = list(ANSWERED)
    dialer = trunk_dialer(tmp_path, lab, numbers, agents=len(numbers))
    try:
        async with asyncio.timeout(60):
            await dialer.run()
        await asyncio.sleep(0.3)
    finally:
        await recorder.close()
    rows = _rows_by_number(dialer)
    calls = carrier.by_number()
    for number, (outcome, amd, codec, hung_up_by, talked) in ANSWERED.items():
        row, call = rows[number], calls[number]
        assert (row.outcome, row.amd_status) == (outcome, amd), number
        assert (call.codec, call.hung_up_by) == (codec, hung_up_by), number
        assert row.reason == 4
        assert bool(row.agent_id and row.connected_at) is talked, number
        # The debtor's BYE (Reason: Q.850;cause=16) and the dialplan's Hangup() both end with 16.
        assert row.hangup_cause == 16, number
    # Every channel of every call carries the dialer's ChannelId as Linkedid: the trunk leg
    # (whose Uniqueid it is) and, for the calls put through, both halves of the agent's leg.
    call_ids = {str(r.linkedid) for r in rows.values()}
    assert call_ids == {str(r.uniqueid) for r in rows.values()}
    channels = recorder.named("Newchannel")
    assert {m.get("Linkedid") for m in channels} == call_ids
    trunk_legs = {
        m.get("Uniqueid") for m in channels if str(m.get("Channel")).startswith("PJSIP/trunk-")
    }
    assert trunk_legs == call_ids
    for row in rows.values():
        legs = [str(m.get("Channel")) for m in channels if m.get("Linkedid") == row.linkedid]
        kinds = sorted(leg.split("/")[0] for leg in legs)
        assert kinds == (["Local", "Local", "PJSIP"] if row.agent_id else ["PJSIP"]), legs

    # Recorded over the trunk too: the debtor's file carries the carrier's real RTP (its
    # "Hello?", looped while it waits), the agent's the lab agent's prompt, in µ-law and A-law
    # calls alike; the intake joins each pair into one archived two-channel WAV, unchanged.
    talked = [r for r in rows.values() if r.agent_id]
    parties = {}
    for row in talked:
        agent_file, debtor_file = party_paths(Path(row.recording_path))
        agent, debtor = read_wav(agent_file), read_wav(debtor_file)
        assert agent.rate == debtor.rate == 8000
        assert _speech_frames(debtor.channel(0), 8000).sum() >= 10, row.number
        assert _speech_frames(agent.channel(0), 8000).sum() >= 10, row.number
        parties[row.id] = (agent.channel(0), debtor.channel(0))
    store = open_store(dialer.database_url)
    archive = Archive(tmp_path / "archive")
    try:
        now = datetime.now(UTC)
        assert collect_finished(store, now).recordings == len(talked)
        run = archive_pending(store, archive, RetentionPolicy(), now=lambda: now)
        assert run.count("archived") == len(talked), run.outcomes
        with store.session() as session:
            kept = {r.attempt_id: r for r in session.scalars(select(Recording))}
    finally:
        store.close()
    for attempt_id, (agent_side, debtor_side) in parties.items():
        joined = read_wav(archive.root / str(kept[attempt_id].archive_path))
        assert joined.channels == 2
        np.testing.assert_array_equal(joined.channel(0)[: len(agent_side)], agent_side)
        np.testing.assert_array_equal(joined.channel(1)[: len(debtor_side)], debtor_side)
    assert verify(archive.root).ok


@pytest.mark.asterisk
@pytest.mark.parametrize("variant", ["ip", "register"])
def test_each_production_trunk_sample_makes_the_trunk_it_says(
    tmp_path: Path, asterisk_lab: StartLab, variant: str
) -> None:
    # The sample in place of the lab trunk, its CHANGE-ME carrier host made a loopback one.
    conf = tmp_path / "conf"
    shutil.copytree(SHIPPED_CONF, conf)
    sample = (SHIPPED_CONF / f"pjsip-trunk-{variant}.conf.sample").read_text(encoding="utf-8")
    sample = re.sub(r"^remote_hosts = .*$", "remote_hosts = 127.0.0.1:5090", sample, flags=re.M)
    sample = sample.replace("sip.carrier.example", "127.0.0.1")
    wizard = (conf / "pjsip_wizard.conf").read_text(encoding="utf-8")
    (conf / "pjsip_wizard.conf").write_text(
        wizard[: wizard.index("\n[trunk]\n")] + "\n" + sample, encoding="utf-8"
    )
    lab = asterisk_lab(variant, conf_dir=conf)
    endpoint = lab.cli("pjsip show endpoint trunk")
    assert f"trunk/sip:127.0.0.1:{lab.ports.carrier}" in endpoint
    for option, value in (("dtmf_mode", "rfc4733"), ("direct_media", "false")):
        assert re.search(rf"^ {option}\s+: {value}$", endpoint, re.M), option
    assert re.search(r"^ allow\s+: \(ulaw\|alaw\)$", endpoint, re.M)
    registrations = lab.cli("pjsip show registrations")
    if variant == "register":
        assert re.search(r"^ outbound_auth\s+: trunk-oauth$", endpoint, re.M)
        assert "trunk-reg-0/sip:127.0.0.1" in registrations
    else:
        assert re.search(r"^ outbound_auth\s+: $", endpoint, re.M)
        assert "trunk-reg" not in registrations
