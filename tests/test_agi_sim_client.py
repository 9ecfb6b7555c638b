"""The simulator's FastAGI client answers like the captured Asterisk 20.20.1, byte for byte."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sim.agi_client import AgiExec, AgiOutcome, SimAgiChannel, run_agi
from tests.test_agi_protocol import CapturedSession, load_capture

# ---------------------------------------------------------------- a scripted channel


@dataclass
class FakeChannel:
    """A channel whose sounds, applications and debtor behaviour the test decides."""

    name: str = "Local/15550001@debtor-sim-00000000;1"
    uniqueid: str = "dialer-L001"
    type: str = "Local"
    language: str = "en"
    callerid_num: str | None = "8005550100"
    callerid_name: str | None = "Acme Collections"
    context: str = "dialer-connect"
    exten: str = "s"
    priority: int = 6
    accountcode: str = ""
    state: int = 6
    variables: dict[str, str] = field(default_factory=dict)
    sounds: dict[str, int] = field(default_factory=dict)  # file -> milliseconds
    debtor_hangs_up_during: str | None = None  # this sound is cut short by the debtor
    applications: frozenset[str] = frozenset({"Playback", "Wait", "NoOp"})
    executed: list[tuple[str, str]] = field(default_factory=list)
    hangup_cause: int | None = None
    _gone: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def hung_up(self) -> bool:
        return self._gone.is_set()

    def debtor_hangs_up(self) -> None:
        self.state = 0
        self._gone.set()

    def get_variable(self, name: str) -> str | None:
        return self.variables.get(name)

    def set_variable(self, name: str, value: str) -> None:
        self.variables[name] = value

    async def wait_hung_up(self) -> None:
        await self._gone.wait()

    async def play(self, file: str) -> int | None:
        if file not in self.sounds:
            return None
        if file == self.debtor_hangs_up_during:
            self.debtor_hangs_up()
        return self.sounds[file]

    async def exec(self, app: str, args: str) -> int | None:
        self.executed.append((app, args))
        if app not in self.applications:
            return None
        if app == "Playback":
            await self.play(args)
        return 0

    async def answer(self) -> None:
        self.state = 6

    async def hangup(self, cause: int) -> None:
        self.hangup_cause = cause
        self.debtor_hangs_up()


def _conforms(channel: FakeChannel) -> SimAgiChannel:
    return channel  # mypy checks that the fake is a SimAgiChannel


# ---------------------------------------------------------------- the capture as expectations


def channel_for(session: CapturedSession) -> FakeChannel:
    """The channel Asterisk had in that session, rebuilt from the header and the replies."""
    channel = FakeChannel(
        name=session.header_value("agi_channel"),
        uniqueid=session.header_value("agi_uniqueid"),
        type=session.header_value("agi_type"),
        language=session.header_value("agi_language"),
        callerid_num=session.header_value("agi_callerid"),
        callerid_name=session.header_value("agi_calleridname"),
        context=session.header_value("agi_context"),
        exten=session.header_value("agi_extension"),
        priority=int(session.header_value("agi_priority")),
        accountcode=session.header_value("agi_accountcode"),
    )
    for command, lines in session.exchanges:
        words = command.split()
        reply = lines[-1]
        get = re.fullmatch(r"GET VARIABLE (\S+)", command)
        if get and (value := re.fullmatch(r"200 result=1 \((.*)\)", reply)):
            channel.variables.setdefault(get[1], value[1])
        end = re.search(r"endpos=(\d+)", reply)
        if words[:2] == ["STREAM", "FILE"] and end and int(end[1]) > 0:
            channel.sounds[words[2]] = int(end[1]) // 8  # 8 samples per millisecond
            if "result=-1" in reply:
                channel.debtor_hangs_up_during = words[2]
    return channel


def ami_messages(path: Path) -> list[dict[str, str]]:
    messages: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        match = re.match(r"^\s*\d+\.\d+ S>C (.*)$", raw)
        if match is None:
            continue
        if match[1] == "":
            if current:
                messages.append(current)
            current = {}
        else:
            key, _, value = match[1].partition(": ")
            current.setdefault(key, value)
    return messages


@dataclass(frozen=True)
class AmiView:
    agistatus: str | None
    exec_ends: list[tuple[str, int, str]]  # (Command, ResultCode, Result) from AGIExecEnd


def ami_view(traces_dir: Path, channel: str) -> AmiView:
    """What AMI reported for a channel's AGI in any captured AMI session."""
    status = None
    ends: list[tuple[str, int, str]] = []
    for path in sorted(traces_dir.glob("ami_*.log")):
        for msg in ami_messages(path):
            if msg.get("Channel") != channel:
                continue
            if msg.get("Event") == "VarSet" and msg.get("Variable") == "AGISTATUS":
                status = msg["Value"]
            if msg.get("Event") == "AGIExecEnd":
                ends.append((msg["Command"], int(msg["ResultCode"]), msg["Result"]))
    return AmiView(status, ends)


@dataclass
class Transcript:
    port: int = 0
    header: list[str] = field(default_factory=list)
    answers: list[list[str]] = field(default_factory=list)


async def replay_against_sim(
    session: CapturedSession, channel: FakeChannel, reports: list[AgiExec]
) -> tuple[Transcript, AgiOutcome]:
    """Play the captured FastAGI server: send its commands, record what the simulator answers."""
    transcript = Transcript()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = (await reader.readline()).decode().removesuffix("\n")
                transcript.header.append(line)
                if line == "":
                    break
            for command, expected in session.exchanges:
                writer.write(command.encode() + b"\n")
                await writer.drain()
                transcript.answers.append(
                    [(await reader.readline()).decode().removesuffix("\n") for _ in expected]
                )
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with server:
        port = transcript.port = server.sockets[0].getsockname()[1]
        script = session.header_value("agi_network_script")
        async with asyncio.timeout(5):
            outcome = await run_agi(
                f"agi://127.0.0.1:{port}/{script}", channel, on_command=reports.append
            )
    return transcript, outcome


@pytest.fixture
def capture(traces_dir: Path) -> list[CapturedSession]:
    return load_capture(traces_dir)


async def test_every_captured_session_gets_asterisks_bytes_back(
    capture: list[CapturedSession], traces_dir: Path
) -> None:
    for session in capture:
        channel = channel_for(session)
        reports: list[AgiExec] = []
        transcript, outcome = await replay_against_sim(session, channel, reports)

        # The header block: same keys, same order, same values (the thread id is per process,
        # the port is the test server's).
        assert len(transcript.header) == len(session.header)
        for got, want in zip(transcript.header, session.header, strict=True):
            want = want.replace(":4573/", f":{transcript.port}/")
            if want.startswith("agi_threadid: "):
                assert re.fullmatch(r"agi_threadid: \d+", got)
            else:
                assert got == want, session.scenario
        # Every reply, the unsolicited HANGUP included, as Asterisk wrote it.
        assert transcript.answers == [list(lines) for _, lines in session.exchanges], (
            session.scenario
        )

        ami = ami_view(traces_dir, channel.name)
        if ami.agistatus is not None:
            assert outcome.status == ami.agistatus, session.scenario
        else:  # the abandon session has no AMI capture: fact 33, the channel hung up
            assert outcome.status == "HANGUP"
        if ami.exec_ends:
            ends = [(r.command, r.result_code, r.result) for r in reports if r.finished]
            assert ends == ami.exec_ends, session.scenario
        starts = [r.command_id for r in reports if not r.finished]
        assert starts == [r.command_id for r in reports if r.finished]
        assert len(set(starts)) == len(session.exchanges)


async def test_a_refused_connection_is_failure_with_the_reason() -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    outcome = await run_agi(f"agi://127.0.0.1:{port}/connect", FakeChannel(), timeout_s=2)
    assert outcome.status == "FAILURE"
    assert outcome.reason is not None
    assert f"127.0.0.1:{port}" in outcome.reason


async def test_a_non_agi_url_is_failure() -> None:
    outcome = await run_agi("http://127.0.0.1/connect", FakeChannel())
    assert outcome.status == "FAILURE"
    assert outcome.reason is not None
    assert "agi://" in outcome.reason


async def test_a_server_that_never_sends_a_command_times_out_as_failure() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        async with asyncio.timeout(5):
            outcome = await run_agi(f"agi://127.0.0.1:{port}/x", FakeChannel(), timeout_s=0.2)
    assert outcome.status == "FAILURE"
    assert outcome.reason is not None
    assert "no command" in outcome.reason


async def test_debtor_hangup_while_idle_is_announced_and_channel_commands_get_511() -> None:
    channel = FakeChannel(variables={"CAMPAIGN_ID": "camp42"})
    lines: list[str] = []
    announced = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (await reader.readline()) != b"\n":
            pass
        channel.debtor_hangs_up()  # while Asterisk waits for our next command
        lines.append((await reader.readline()).decode())
        announced.set()
        for command in (b"GET VARIABLE CAMPAIGN_ID\n", b"CHANNEL STATUS\n", b"EXEC Wait 1\n"):
            writer.write(command)
            lines.append((await reader.readline()).decode())
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        async with asyncio.timeout(5):
            outcome = await run_agi(f"agi://127.0.0.1:{port}/connect", channel)
    assert announced.is_set()
    assert lines[0] == "HANGUP\n"
    assert lines[1] == "200 result=1 (camp42)\n"
    assert lines[2].startswith("511 ") and lines[3].startswith("511 ")
    assert channel.executed == [], "no application runs on a dead channel"
    assert outcome.status == "HANGUP"


async def test_get_full_variable_substitutes_nested_references() -> None:
    channel = FakeChannel(variables={"N": "2", "AGENT_2": "agent7"})
    got: list[str] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (await reader.readline()) != b"\n":
            pass
        writer.write(b"GET FULL VARIABLE ${AGENT_${N}}|${MISSING}|${EXTEN}\n")
        got.append((await reader.readline()).decode())
        writer.write(b"get variable N\n")  # Asterisk matches command words in any case
        got.append((await reader.readline()).decode())
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        async with asyncio.timeout(5):
            outcome = await run_agi(f"agi://127.0.0.1:{port}/connect", channel)
    assert got == ["200 result=1 (agent7||s)\n", "200 result=1 (2)\n"]
    assert outcome.status == "SUCCESS"
