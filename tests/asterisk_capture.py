"""Record AMI sessions with a real Asterisk in the format of `sim/traces` (README there).

`AmiRecorder` is one AMI connection whose every line, both ways, is kept with its time since
the connection opened; `save()` writes the `.log`, the exact bytes (`raw/`) and a one-line-per-
message summary (`summary/`). The secret of the Login is never written.

`python -m tests.asterisk_capture [DIR] [--only nailed|transfer]` starts a lab Asterisk
(sim/lab.py) and records the nailed-up agent flows, then the transfers to a supervisor, into DIR
(default: sim/traces).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from dialer.agents.transfer import TRANSFER_VARIABLE, transfer_actions
from dialer.ami.protocol import AmiParser, Message, encode_action
from sim.lab import AsteriskLab
from tests.nailed_flow import (
    AGENT,
    LOGIN_ID,
    SPY_ID,
    SUPERVISOR_PHONE,
    agent_login_fields,
    connect_agi,
    debtor_fields,
    redirect_fields,
    spy_fields,
)

MASK = "********"
# The fields a summary line shows, in this order (the rest of a message is in the .log).
SUMMARY_KEYS = (
    "ActionID",
    "Message",
    "Channel",
    "ChannelStateDesc",
    "Uniqueid",
    "Linkedid",
    "Context",
    "Exten",
    "Priority",
    "Application",
    "AppData",
    "Variable",
    "Value",
    "ChanVariable",
    "Conference",
    "BridgeUniqueid",
    "BridgeType",
    "BridgeTechnology",
    "BridgeNumChannels",
    "Admin",
    "Muted",
    "DestChannel",
    "DialString",
    "DialStatus",
    "SpyerChannel",
    "SpyeeChannel",
    "Response",
    "Reason",
    "Cause",
    "Cause-txt",
)


class AmiRecorder:
    """One AMI connection, recorded line by line in both directions."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.started = time.monotonic()
        self.lines: list[str] = []
        self.raw = {"S>C": bytearray(), "C>S": bytearray()}
        self.messages: list[Message] = []
        self._parser = AmiParser()
        self._changed = asyncio.Event()
        self._partial = b""
        self._ids = 0
        self._task = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, port: int, note: str) -> AmiRecorder:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        recorder = cls(reader, writer)
        recorder.note(f"TCP connected to 127.0.0.1:{port}")
        recorder.note(note)
        return recorder

    def _at(self) -> str:
        return f"{time.monotonic() - self.started:9.3f}"

    def note(self, text: str) -> None:
        self.lines.append(f"{self._at()} ### {text}")

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await self.reader.read(65536):
                self.raw["S>C"] += data
                self._record("S>C", data)
                for frame in self._parser.feed(data):
                    if isinstance(frame, Message):
                        self.messages.append(frame)
                self._changed.set()

    def _record(self, direction: str, data: bytes) -> None:
        text = self._partial + data if direction == "S>C" else data
        *complete, rest = text.split(b"\r\n")
        if direction == "S>C":
            self._partial = rest
        at = self._at()
        for line in complete:
            self.lines.append(f"{at} {direction} {line.decode('utf-8', 'replace')}")

    def send(self, action: str, *fields: tuple[str, str], action_id: str | None = None) -> str:
        self._ids += 1
        aid = action_id or f"capture-{self._ids}"
        data = encode_action(action, aid, fields)
        self.writer.write(data)
        shown = encode_action(action, aid, [(k, MASK if k == "Secret" else v) for k, v in fields])
        self.raw["C>S"] += shown
        self._record("C>S", shown)
        return aid

    async def wait_for(self, match: Callable[[Message], bool], timeout: float = 15.0) -> Message:
        seen = 0
        async with asyncio.timeout(timeout):
            while True:
                for msg in self.messages[seen:]:
                    if match(msg):
                        return msg
                seen = len(self.messages)
                self._changed.clear()
                await self._changed.wait()

    async def event(self, name: str, timeout: float = 15.0, **fields: str) -> Message:
        return await self.wait_for(
            lambda m: m.event == name and all(m.get(k) == v for k, v in fields.items()), timeout
        )

    async def action(self, action: str, *fields: tuple[str, str]) -> Message:
        aid = self.send(action, *fields)
        return await self.wait_for(lambda m: m.response is not None and m.action_id == aid)

    async def login(self, secret: str) -> None:
        reply = await self.action("Login", ("Username", "dialer"), ("Secret", secret))
        assert reply.response == "Success", reply.fields

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.action("Logoff"), 2)
        self.writer.close()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def save(self, folder: Path, name: str) -> None:
        """`<name>.log`, `raw/<name>.s2c.raw` + `.c2s.raw`, `summary/<name>.txt`."""
        (folder / "raw").mkdir(parents=True, exist_ok=True)
        (folder / "summary").mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.log").write_text("\n".join(self.lines) + "\n", encoding="utf-8")
        (folder / "raw" / f"{name}.s2c.raw").write_bytes(bytes(self.raw["S>C"]))
        (folder / "raw" / f"{name}.c2s.raw").write_bytes(bytes(self.raw["C>S"]))
        (folder / "summary" / f"{name}.txt").write_text(summary(self.lines), encoding="utf-8")


def summary(lines: list[str]) -> str:
    """One line per message: time, direction, its kind and the interesting fields."""
    out: list[str] = []
    block: list[tuple[str, str]] = []
    started = ""
    for line in lines:
        at, direction, text = line[:9].strip(), line[10:13], line[14:]
        if direction == "###":
            out.append(f"{at} ### {text}")
            continue
        if text.startswith("Asterisk Call Manager/"):
            continue
        if text == "":
            if block:
                head = block[0]
                kind = f"{head[0]}:{head[1]}"
                fields = dict(block[1:])
                shown = " ".join(f"{k}={fields[k]}" for k in SUMMARY_KEYS if k in fields)
                out.append(f"{started} {direction} {kind:<30} {shown}".rstrip())
            block = []
            continue
        if not block:
            started = at
        key, _, value = text.partition(": ")
        block.append((key, value))
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- the nailed-up flows

# What `capture` records, in order (each a connection of its own).
NAILED_CAPTURES = (
    "ami_nailed_agent_login",
    "ami_nailed_debtor_bridge",
    "ami_nailed_spy_whisper",
    "ami_nailed_agent_drop",
    "ami_nailed_no_agent",
    "ami_nailed_agent_logout",
)


async def capture(ami_port: int, secret: str, out: Path, pause_s: float = 1.0) -> None:
    """Record login, a debtor bridged in and out, whisper, the agent's phone dropping with a
    debtor in the conference, a debtor routed to a conference with no agent, and a logout.

    Run against the simulator too (tests/test_sim_nailed.py), which must record the same."""
    async with connect_agi() as agi:
        rec = await AmiRecorder.connect(
            ami_port, "agent login: Local/agent1@agents into dialer-agent"
        )
        await rec.login(secret)
        rec.send("Originate", *agent_login_fields(), action_id="login-agent1")
        join = await rec.event("ConfbridgeJoin", Uniqueid=LOGIN_ID)
        agent_channel = join.get("Channel") or ""
        await asyncio.sleep(pause_s)
        await rec.close()
        rec.save(out, "ami_nailed_agent_login")

        rec = await AmiRecorder.connect(
            ami_port, "debtor 15550001 bridged into agent-agent1, hangs up after talking"
        )
        await rec.login(secret)
        rec.send(
            "Originate",
            *debtor_fields("15550001", "dlr-lab1-debtor1", 1, agi.port),
            action_id="debtor-1",
        )
        await rec.event("ConfbridgeJoin", timeout=20, Uniqueid="dlr-lab1-debtor1")
        await rec.event("Hangup", timeout=30, Uniqueid="dlr-lab1-debtor1")
        await asyncio.sleep(pause_s)
        await rec.close()
        rec.save(out, "ami_nailed_debtor_bridge")

        rec = await AmiRecorder.connect(
            ami_port, f"supervisor whispers to {agent_channel}, then hangs up"
        )
        await rec.login(secret)
        rec.send("Originate", *spy_fields(agent_channel, "whisper"), action_id="spy-1")
        await rec.event("ChanSpyStart", timeout=20)
        await asyncio.sleep(pause_s)
        await rec.action("Hangup", ("Channel", SPY_ID), ("Cause", "16"))
        await rec.event("Hangup", Uniqueid=SPY_ID)
        await asyncio.sleep(pause_s)
        await rec.close()
        rec.save(out, "ami_nailed_spy_whisper")

        rec = await AmiRecorder.connect(
            ami_port, "debtor 15550008 in the conference; the agent's phone drops (AMI Hangup)"
        )
        await rec.login(secret)
        rec.send(
            "Originate",
            *debtor_fields("15550008", "dlr-lab1-debtor2", 2, agi.port),
            action_id="debtor-2",
        )
        await rec.event("ConfbridgeJoin", timeout=20, Uniqueid="dlr-lab1-debtor2")
        await asyncio.sleep(pause_s)
        await rec.action("Hangup", ("Channel", agent_channel), ("Cause", "16"))
        await rec.event("Hangup", timeout=15, Uniqueid="dlr-lab1-debtor2")
        await asyncio.sleep(pause_s)
        await rec.close()
        rec.save(out, "ami_nailed_agent_drop")

        rec = await AmiRecorder.connect(
            ami_port, "debtor 15550009 routed to agent-agent1, which has no agent"
        )
        await rec.login(secret)
        rec.send(
            "Originate",
            *debtor_fields("15550009", "dlr-lab1-debtor3", 3, agi.port),
            action_id="debtor-3",
        )
        await rec.event("Hangup", timeout=30, Uniqueid="dlr-lab1-debtor3")
        await asyncio.sleep(pause_s)
        await rec.close()
        rec.save(out, "ami_nailed_no_agent")

        rec = await AmiRecorder.connect(
            ami_port, "agent logs in again, alone in the conference, and logs out (AMI Hangup)"
        )
        await rec.login(secret)
        second = f"lab1-agent-{AGENT}-2"
        rec.send("Originate", *agent_login_fields(second), action_id="login-agent1-again")
        join = await rec.event("ConfbridgeJoin", Uniqueid=second)
        await asyncio.sleep(pause_s)
        await rec.action("Hangup", ("Channel", join.get("Channel") or ""), ("Cause", "16"))
        await rec.event("Hangup", Uniqueid=f"{second}-2")
        await asyncio.sleep(pause_s)
        await rec.close()
        rec.save(out, "ami_nailed_agent_logout")


# ---------------------------------------------------------------- transfer to a supervisor

# What `capture_transfer` records, in order (each a connection of its own).
TRANSFER_CAPTURES = (
    "ami_nailed_transfer",
    "ami_nailed_transfer_refused",
    "ami_nailed_transfer_busy",
    "ami_nailed_transfer_supervisor_hangs_up",
)
# The agent's login for the transfers: its own ids, so that it can follow `capture` in the
# same Asterisk run.
TRANSFER_LOGIN_ID = f"lab1-agent-{AGENT}-3"
# A supervisor's phone that is busy: the lab's debtor-sim number ending in 2 (Busy()).
BUSY_PHONE = "Local/15550002@debtor-sim"


async def _debtor_in_conference(
    rec: AmiRecorder, number: str, call_id: str, attempt: int, agi_port: int
) -> None:
    rec.send(
        "Originate", *debtor_fields(number, call_id, attempt, agi_port), action_id=f"d-{call_id}"
    )
    await rec.event("ConfbridgeJoin", timeout=20, Uniqueid=call_id)


async def _transfer(rec: AmiRecorder, call_id: str, to: str) -> None:
    """The dialer's two actions (dialer/agents/transfer.py), each reply awaited."""
    for action, fields in transfer_actions(call_id, to):
        reply = await rec.action(action, *fields)
        assert reply.response == "Success", reply.fields


async def capture_transfer(ami_port: int, secret: str, out: Path, pause_s: float = 1.0) -> None:
    """Record transfers to a supervisor from an agent's conference: the supervisor answers and
    the debtor hangs up; a Redirect after an empty TRANSFER_TO (refused); the supervisor's
    phone is busy (safe-harbour message, then hang-up); the supervisor hangs up.

    Run against the simulator too (tests/test_sim_nailed.py), which must record the same."""
    async with connect_agi() as agi:
        rec = await AmiRecorder.connect(
            ami_port,
            f"agent login; debtor 15550008 in agent-agent1, transferred to {SUPERVISOR_PHONE} "
            "(Setvar TRANSFER_TO + Redirect into dialer-transfer); the debtor hangs up",
        )
        await rec.login(secret)
        rec.send(
            "Originate", *agent_login_fields(TRANSFER_LOGIN_ID), action_id="login-agent1-transfer"
        )
        join = await rec.event("ConfbridgeJoin", Uniqueid=TRANSFER_LOGIN_ID)
        agent_channel = join.get("Channel") or ""
        call_id = "dlr-lab1-debtor4"
        await _debtor_in_conference(rec, "15550008", call_id, 4, agi.port)
        await asyncio.sleep(pause_s)
        await _transfer(rec, call_id, SUPERVISOR_PHONE)
        await rec.event("BridgeEnter", timeout=15, Uniqueid=call_id, BridgeType="basic")
        await asyncio.sleep(pause_s)
        await rec.action("Hangup", ("Channel", f"{call_id}-2"), ("Cause", "16"))
        await rec.event("Hangup", timeout=15, Uniqueid=call_id)
        await asyncio.sleep(pause_s)
        await rec.close()
        rec.save(out, "ami_nailed_transfer")

        rec = await AmiRecorder.connect(
            ami_port,
            "debtor 15550008 in agent-agent1; Setvar TRANSFER_TO empty, Redirect into "
            "dialer-transfer (refused: Hangup(21))",
        )
        await rec.login(secret)
        call_id = "dlr-lab1-debtor5"
        await _debtor_in_conference(rec, "15550008", call_id, 5, agi.port)
        await asyncio.sleep(pause_s)
        setvar = [("Channel", call_id), ("Variable", TRANSFER_VARIABLE), ("Value", "")]
        await rec.action("Setvar", *setvar)
        await rec.action("Redirect", *redirect_fields(call_id))
        await rec.event("Hangup", timeout=15, Uniqueid=call_id)
        await asyncio.sleep(pause_s)
        await rec.close()
        rec.save(out, "ami_nailed_transfer_refused")

        rec = await AmiRecorder.connect(
            ami_port,
            f"debtor 15550008 in agent-agent1, transferred to {BUSY_PHONE}, which is busy: "
            "the safe-harbour message, then hang-up",
        )
        await rec.login(secret)
        call_id = "dlr-lab1-debtor6"
        await _debtor_in_conference(rec, "15550008", call_id, 6, agi.port)
        await asyncio.sleep(pause_s)
        await _transfer(rec, call_id, BUSY_PHONE)
        await rec.event("Hangup", timeout=30, Uniqueid=call_id)
        await asyncio.sleep(pause_s)
        await rec.close()
        rec.save(out, "ami_nailed_transfer_busy")

        rec = await AmiRecorder.connect(
            ami_port,
            f"debtor 15550008 in agent-agent1, transferred to {SUPERVISOR_PHONE}; the "
            "supervisor hangs up (AMI Hangup of its ;2)",
        )
        await rec.login(secret)
        call_id = "dlr-lab1-debtor7"
        await _debtor_in_conference(rec, "15550008", call_id, 7, agi.port)
        await asyncio.sleep(pause_s)
        await _transfer(rec, call_id, SUPERVISOR_PHONE)
        enter = await rec.wait_for(
            lambda m: (
                m.event == "BridgeEnter"
                and m.get("BridgeType") == "basic"
                and m.get("Linkedid") == call_id
                and m.get("Uniqueid") != call_id
            )
        )
        supervisor = (enter.get("Channel") or "").replace(";1", ";2")
        await asyncio.sleep(pause_s)
        await rec.action("Hangup", ("Channel", supervisor), ("Cause", "16"))
        await rec.event("Hangup", timeout=15, Uniqueid=call_id)
        await asyncio.sleep(pause_s)
        await rec.close()
        rec.save(out, "ami_nailed_transfer_supervisor_hangs_up")

        # Log the agent out again, unrecorded: the next capture starts from no agent.
        rec = await AmiRecorder.connect(ami_port, "agent logout")
        await rec.login(secret)
        await rec.action("Hangup", ("Channel", agent_channel), ("Cause", "16"))
        await rec.event("Hangup", Uniqueid=TRANSFER_LOGIN_ID)
        await rec.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.asterisk_capture")
    default = Path(__file__).resolve().parent.parent / "sim" / "traces"
    parser.add_argument("out", nargs="?", type=Path, default=default)
    parser.add_argument("--only", choices=("nailed", "transfer"), help="record one set only")
    args = parser.parse_args(argv)
    out: Path = args.out
    with tempfile.TemporaryDirectory(prefix="capture-") as tmp, AsteriskLab(Path(tmp)) as lab:
        if args.only in (None, "nailed"):
            asyncio.run(capture(lab.ports.ami, lab.ami_secret, out))
        if args.only in (None, "transfer"):
            asyncio.run(capture_transfer(lab.ports.ami, lab.ami_secret, out))
        print(f"captured into {out}; Asterisk log: {lab.messages_log}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
