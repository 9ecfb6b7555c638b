"""The nailed-up agent flow driven over AMI with the dialer's own client, the same way against
a real Asterisk (tests/test_asterisk_nailed.py) and the simulator (tests/test_sim_nailed.py).

The Originates carry what the dialer sends: the login as dialer/agents/phones.py builds it,
debtor calls with the dialer's channel variables, the supervisor's with SPY_TARGET/SPY_MODE,
a transfer to a supervisor the Setvar + Redirect of dialer/agents/transfer.py.
A FastAGI `connect` (agi/server.py) answers ROUTE=bridge into the agent's conference.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from agi.server import AgiSession, FastAgiServer
from dialer.agents.transfer import TRANSFER_CONTEXT, TRANSFER_VARIABLE, transfer_actions
from dialer.ami.connection import AmiConnection, LinkState
from dialer.ami.protocol import Message
from dialer.config import AmiConfig, AmiServerConfig, Secret

AGENT = "agent1"
CONFERENCE = f"agent-{AGENT}"
AGENT_PHONE = f"Local/{AGENT}@agents"
LOGIN_ID = f"lab1-agent-{AGENT}-1"
SPY_ID = "lab1-spy-1"
# The lab's supervisor phone: [agents] answers it at once and keeps it on the line.
SUPERVISOR_PHONE = "Local/supervisor1@agents"


def agent_login_fields(call_id: str = LOGIN_ID) -> list[tuple[str, str]]:
    """The login Originate as dialer/agents/phones.py builds it, for the lab agent."""
    return [
        ("Channel", AGENT_PHONE),
        ("Context", "dialer-agent"),
        ("Exten", "s"),
        ("Priority", "1"),
        ("Timeout", "60000"),
        ("CallerID", f'"Dialer" <{AGENT}>'),
        ("Async", "true"),
        ("ChannelId", call_id),
        ("OtherChannelId", f"{call_id}-2"),
        ("Variable", f"AGENT_ID={AGENT}"),
        ("Variable", f"AGENT_CONF={CONFERENCE}"),
        ("Variable", "DIALER_NODE=lab1"),
    ]


def debtor_fields(number: str, call_id: str, attempt: int, agi_port: int) -> list[tuple[str, str]]:
    """A debtor call's Originate with the channel variables the dialer sets."""
    return [
        ("Channel", f"Local/{number}@debtor-sim"),
        ("Context", "dialer-connect"),
        ("Exten", "s"),
        ("Priority", "1"),
        ("Timeout", "30000"),
        ("CallerID", '"Lab Collections" <2125550100>'),
        ("Async", "true"),
        ("ChannelId", call_id),
        ("OtherChannelId", f"{call_id}-2"),
        ("Variable", f"ATTEMPT_ID={attempt}"),
        ("Variable", "CAMPAIGN_ID=1"),
        ("Variable", "LEAD_ID=L001"),
        ("Variable", "USE_AMD=0"),
        ("Variable", "RECORD=1"),
        ("Variable", f"DIALER_AGI=agi://127.0.0.1:{agi_port}"),
        ("Variable", "TALK_SECS=1"),
    ]


def spy_fields(target: str, mode: str, call_id: str = SPY_ID) -> list[tuple[str, str]]:
    """A supervisor's phone (a lab Local/...@agents) originated into dialer-spy."""
    return [
        ("Channel", SUPERVISOR_PHONE),
        ("Context", "dialer-spy"),
        ("Exten", "s"),
        ("Priority", "1"),
        ("Timeout", "60000"),
        ("CallerID", '"Dialer" <supervisor1>'),
        ("Async", "true"),
        ("ChannelId", call_id),
        ("OtherChannelId", f"{call_id}-2"),
        ("Variable", f"SPY_TARGET={target}"),
        ("Variable", f"SPY_MODE={mode}"),
    ]


def redirect_fields(channel: str) -> list[tuple[str, str]]:
    return [("Channel", channel), ("Context", TRANSFER_CONTEXT), ("Exten", "s"), ("Priority", "1")]


def recording_name(attempt: int) -> str:
    return f"nailed-{attempt}.wav"


def bridge_script(bridge: str = CONFERENCE) -> Callable[[AgiSession], Awaitable[None]]:
    """A FastAGI `connect` routing every answered call into the agent's conference."""

    async def connect(session: AgiSession) -> None:
        attempt = int(session.env.params.get("attempt", "0"))
        await session.set_variable("TARGET_AGENT", AGENT)
        await session.set_variable("TARGET_BRIDGE", bridge)
        await session.set_variable("RECORDING_FILE", recording_name(attempt))
        await session.set_variable("ROUTE", "bridge")

    return connect


@asynccontextmanager
async def connect_agi() -> AsyncIterator[FastAgiServer]:
    server = FastAgiServer({"connect": bridge_script()}, port=0, close_grace_s=1.0)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@dataclass
class AmiDriver:
    """The dialer's AMI connection, keeping every event it receives."""

    conn: AmiConnection
    events: list[Message] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def on_event(self, _server: str, msg: Message) -> None:
        self.events.append(msg)
        self.changed.set()

    async def wait_for(self, match: Callable[[Message], bool], timeout: float) -> Message:
        seen = 0
        async with asyncio.timeout(timeout):
            while True:
                for msg in self.events[seen:]:
                    if match(msg):
                        return msg
                seen = len(self.events)
                self.changed.clear()
                await self.changed.wait()

    async def event(self, name: str, timeout: float = 20.0, **fields: str) -> Message:
        return await self.wait_for(
            lambda m: m.event == name and all(m.get(k) == v for k, v in fields.items()), timeout
        )

    async def originate(self, fields: list[tuple[str, str]]) -> str:
        """Send an async Originate; its ActionID (the OriginateResponse carries it)."""
        action_id, reply = self.conn.submit("Originate", fields)
        assert (await reply).message == "Originate successfully queued"
        return action_id

    async def transfer(self, debtor: str, to: str) -> None:
        """Transfer to a supervisor as the dialer does: Setvar TRANSFER_TO, then Redirect into
        dialer-transfer, each reply awaited (an error reply raises before the Redirect)."""
        for action, fields in transfer_actions(debtor, to):
            await self.conn.send(action, fields)

    async def refused_transfer(self, debtor: str) -> None:
        """What `transfer_actions` never builds: a Redirect after an empty TRANSFER_TO."""
        await self.conn.send(
            "Setvar", [("Channel", debtor), ("Variable", TRANSFER_VARIABLE), ("Value", "")]
        )
        await self.conn.send("Redirect", redirect_fields(debtor))

    async def hangup(self, channel: str) -> None:
        """As the dialer hangs a channel up (by name or Uniqueid), cause 16."""
        await self.conn.send("Hangup", [("Channel", channel), ("Cause", "16")])

    def named(self, name: str, **fields: str) -> list[Message]:
        return [
            m
            for m in self.events
            if m.event == name and all(m.get(k) == v for k, v in fields.items())
        ]


@asynccontextmanager
async def ami_driver(port: int, secret: str) -> AsyncIterator[AmiDriver]:
    server = AmiServerConfig(name="lab", port=port, secret=Secret(secret))
    driver: AmiDriver | None = None

    def on_event(name: str, msg: Message) -> None:
        if driver is not None:
            driver.on_event(name, msg)

    def on_state(_name: str, _state: LinkState) -> None:
        return None

    conn = AmiConnection(server, AmiConfig(servers=(server,)), on_event=on_event, on_state=on_state)
    driver = AmiDriver(conn)
    task = asyncio.create_task(conn.run())
    try:
        assert await conn.wait_up(10), "no AMI session"
        yield driver
    finally:
        await conn.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


@dataclass
class NailedRun:
    """What one run of the flow saw: the agent's channel and the debtors' call ids."""

    agent_channel: str
    debtors: list[str]


async def log_in(ami: AmiDriver, timeout: float = 20.0) -> str:
    """The login Originate; returns the agent's channel once it is in its conference."""
    action_id = await ami.originate(agent_login_fields())
    answered = await ami.event("OriginateResponse", timeout, ActionID=action_id)
    assert answered.get("Response") == "Success", answered.fields
    join = await ami.event("ConfbridgeJoin", timeout, Uniqueid=LOGIN_ID, Conference=CONFERENCE)
    return join.get("Channel") or ""


async def run_nailed_flow(
    ami: AmiDriver,
    agi_port: int,
    numbers: list[str],
    *,
    hold_s: float,
    timeout: float = 30.0,
) -> NailedRun:
    """Log the agent in, bridge each debtor in turn (the first hangs up on its own, the others'
    far ends after `hold_s`), then a supervisor whispers to the agent and hangs up."""
    agent_channel = await log_in(ami, timeout)
    debtors: list[str] = []
    for attempt, number in enumerate(numbers, 1):
        call_id = f"dlr-lab1-{attempt}"
        debtors.append(call_id)
        await ami.originate(debtor_fields(number, call_id, attempt, agi_port))
        await ami.event("ConfbridgeJoin", timeout, Uniqueid=call_id)
        if attempt > 1:
            await asyncio.sleep(hold_s)
            # The debtor puts the phone down: the far end (;2) of its Local pair goes.
            await ami.hangup(f"{call_id}-2")
        await ami.event("Hangup", timeout, Uniqueid=call_id)
    action_id = await ami.originate(spy_fields(agent_channel, "whisper"))
    answered = await ami.event("OriginateResponse", timeout, ActionID=action_id)
    assert answered.get("Response") == "Success", answered.fields
    await ami.event("ChanSpyStart", timeout, SpyerUniqueid=SPY_ID)
    await ami.hangup(SPY_ID)
    await ami.event("Hangup", timeout, Uniqueid=SPY_ID)
    return NailedRun(agent_channel, debtors)


def base_name(channel: str) -> str:
    """`Local/agent1@agents-00000000;1` -> `Local/agent1@agents-00000000` (one Local pair)."""
    return channel.partition(";")[0]


def assert_nailed_run(ami: AmiDriver, run: NailedRun) -> None:
    """What the engine relies on, as a real Asterisk shows it (sim/traces/ami_nailed_*.log)."""
    agent = run.agent_channel
    # One login, one agent channel for the whole run: debtors never ring the agent's phone.
    pairs = {
        base_name(m.get("Channel") or "")
        for m in ami.named("Newchannel")
        if (m.get("Channel") or "").startswith(f"{AGENT_PHONE}-")
    }
    assert pairs == {base_name(agent)}, pairs
    assert agent.endswith(";1") and base_name(agent).startswith(f"{AGENT_PHONE}-")
    # The agent's join carries its ids: Uniqueid = the login's ChannelId, AGENT_ID shown.
    (join,) = ami.named("ConfbridgeJoin", Uniqueid=LOGIN_ID)
    assert join.get("Channel") == agent and join.get("Linkedid") == LOGIN_ID
    assert join.get("ChanVariable") == f"AGENT_ID={AGENT}"
    for call_id in run.debtors:
        (debtor_join,) = ami.named("ConfbridgeJoin", Uniqueid=call_id)
        assert debtor_join.get("Conference") == CONFERENCE
        assert debtor_join.get("Linkedid") == call_id
        # The agent, ConfBridge's announcer, the debtor: the agent was there to talk.
        assert debtor_join.get("BridgeNumChannels") == "3"
        assert ami.named("ConfbridgeLeave", Uniqueid=call_id, Conference=CONFERENCE)
        recording = ami.named("VarSet", Uniqueid=call_id, Variable="MIXMONITOR_FILENAME")
        assert recording and recording[0].get("Value", "").endswith(".wav"), call_id
        assert ami.named("MixMonitorStart", Uniqueid=call_id)
        assert [
            m.get("Value") for m in ami.named("VarSet", Uniqueid=call_id, Variable="ROUTE")
        ] == ["bridge"]
    # The agent stayed: no leave, no hangup, the conference never ended between debtors.
    assert ami.named("ConfbridgeLeave", Uniqueid=LOGIN_ID) == []
    assert ami.named("Hangup", Uniqueid=LOGIN_ID) == []
    assert len(ami.named("ConfbridgeStart", Conference=CONFERENCE)) == 1
    assert ami.named("ConfbridgeEnd", Conference=CONFERENCE) == []
    # The supervisor's whisper reached the agent's channel.
    (spy,) = ami.named("ChanSpyStart", SpyerUniqueid=SPY_ID)
    assert spy.get("SpyeeChannel") == agent and spy.get("SpyeeUniqueid") == LOGIN_ID
    assert ami.named("ChanSpyStop", SpyerUniqueid=SPY_ID)


# ---------------------------------------------------------------- transfer to a supervisor


@dataclass
class TransferRun:
    """A debtor transferred to the supervisor's phone, then one whose transfer was refused."""

    agent_channel: str
    transferred: str  # call id of the debtor put through to the supervisor
    refused: str  # call id of the debtor redirected with an empty TRANSFER_TO
    supervisor_channel: str  # the supervisor's ;1 half, in the bridge with the debtor
    # time.monotonic() when the debtor's recording started, the Redirect was answered and the
    # debtor's channel was gone: how much of the call the recording must cover.
    recording_at: float = 0.0
    redirected_at: float = 0.0
    ended_at: float = 0.0


async def run_transfer_flow(
    ami: AmiDriver, agi_port: int, *, hold_s: float, timeout: float = 30.0
) -> TransferRun:
    """Log the agent in; a long-call debtor (last digit 8) joins the conference and the agent
    transfers them to the supervisor's phone; they talk `hold_s`, then the debtor hangs up.
    A second debtor's transfer arrives without TRANSFER_TO and is refused."""
    agent_channel = await log_in(ami, timeout)
    transferred, refused = "dlr-lab1-transfer", "dlr-lab1-refused"
    await ami.originate(debtor_fields("12125550108", transferred, 1, agi_port))
    await ami.event("MixMonitorStart", timeout, Uniqueid=transferred)
    recording_at = time.monotonic()
    await ami.event("ConfbridgeJoin", timeout, Uniqueid=transferred)
    await ami.transfer(transferred, SUPERVISOR_PHONE)
    redirected_at = time.monotonic()
    bridged = await ami.event("BridgeEnter", timeout, Uniqueid=transferred, BridgeType="basic")
    bridge = bridged.get("BridgeUniqueid") or ""
    supervisor = await ami.wait_for(
        lambda m: (
            m.event == "BridgeEnter"
            and m.get("BridgeUniqueid") == bridge
            and m.get("Uniqueid") != transferred
        ),
        timeout,
    )
    # The agent is free again (wrap-up aside): the next debtor is dialled meanwhile.
    await ami.originate(debtor_fields("12125550108", refused, 2, agi_port))
    await asyncio.sleep(hold_s)
    # The debtor puts the phone down: the far end (;2) of its Local pair goes.
    await ami.hangup(f"{transferred}-2")
    await ami.event("Hangup", timeout, Uniqueid=transferred)
    ended_at = time.monotonic()
    await ami.event("ConfbridgeJoin", timeout, Uniqueid=refused)
    await ami.refused_transfer(refused)
    await ami.event("Hangup", timeout, Uniqueid=refused)
    await ami.event("Hangup", timeout, Uniqueid=f"{refused}-2")
    return TransferRun(
        agent_channel,
        transferred,
        refused,
        supervisor.get("Channel") or "",
        recording_at,
        redirected_at,
        ended_at,
    )


def assert_transfer_run(ami: AmiDriver, run: TransferRun) -> None:
    """What the dialer relies on after a transfer, as Asterisk 20.20.1 shows it
    (sim/traces/ami_nailed_transfer*.log)."""
    call = run.transferred
    # The debtor left the agent's conference. ConfBridge says CONFBRIDGE_RESULT=HANGUP for a
    # Redirect too: it is no sign that the debtor hung up.
    assert len(ami.named("ConfbridgeLeave", Uniqueid=call, Conference=CONFERENCE)) == 1
    results = ami.named("VarSet", Uniqueid=call, Variable="CONFBRIDGE_RESULT")
    assert [m.get("Value") for m in results] == ["HANGUP"]
    (setvar,) = ami.named("VarSet", Uniqueid=call, Variable=TRANSFER_VARIABLE)
    assert setvar.get("Value") == SUPERVISOR_PHONE
    # ...and was bridged to the supervisor's phone: [dialer-transfer] dialled it, it answered.
    (begin,) = ami.named("DialBegin", Uniqueid=call)
    assert begin.get("DialString") == SUPERVISOR_PHONE.removeprefix("Local/")
    assert begin.get("DestChannel") == run.supervisor_channel
    assert run.supervisor_channel.startswith(f"{SUPERVISOR_PHONE}-")
    assert run.supervisor_channel.endswith(";1")
    assert [m.get("DialStatus") for m in ami.named("DialEnd", Uniqueid=call)] == ["ANSWER"]
    (enter,) = ami.named("BridgeEnter", Uniqueid=call, BridgeType="basic")
    peers = ami.named("BridgeEnter", BridgeUniqueid=enter.get("BridgeUniqueid") or "")
    assert {m.get("Channel") for m in peers} == {run.supervisor_channel, enter.get("Channel")}
    # Every event of the call, the supervisor's legs included, carries the debtor's Linkedid:
    # the dialer's call table keeps following the call.
    # (OriginateResponse names the Uniqueid but has no Linkedid.)
    mine = [m for m in ami.events if m.get("Uniqueid") == call and m.event != "OriginateResponse"]
    assert len(mine) > 20 and {m.get("Linkedid") for m in mine} == {call}
    supervisor = base_name(run.supervisor_channel)
    legs = [m for m in ami.events if base_name(m.get("Channel") or "") == supervisor]
    assert legs and {m.get("Linkedid") for m in legs} == {call}
    assert {m.get("Channel") for m in ami.named("Newchannel", Linkedid=call)} == {
        *(m.get("Channel") for m in ami.named("Newchannel", Uniqueid=call)),
        *(m.get("Channel") for m in ami.named("Newchannel", Uniqueid=f"{call}-2")),
        f"{supervisor};1",
        f"{supervisor};2",
    }
    # The recording was never stopped: MixMonitor follows the channel out of the conference.
    assert len(ami.named("MixMonitorStart", Uniqueid=call)) == 1
    assert ami.named("MixMonitorStop") == []
    # The debtor hung up: both legs of the supervisor's phone went with the call.
    assert [m.get("Cause") for m in ami.named("Hangup", Uniqueid=call)] == ["16"]
    for half in (";1", ";2"):
        assert [m.get("Cause") for m in ami.named("Hangup", Channel=f"{supervisor}{half}")] == [
            "16"
        ]
    # The refused transfer: out of the conference, never dialled, hung up with cause 21.
    refused = run.refused
    assert len(ami.named("ConfbridgeLeave", Uniqueid=refused, Conference=CONFERENCE)) == 1
    assert ami.named("DialBegin", Uniqueid=refused) == []
    assert [m.get("Cause") for m in ami.named("Hangup", Uniqueid=refused)] == ["21"]
    assert [m.get("Cause") for m in ami.named("Hangup", Uniqueid=f"{refused}-2")] == ["21"]
    # The agent's phone stayed nailed up in its conference all along, in wrap-up.
    assert ami.named("ConfbridgeLeave", Uniqueid=LOGIN_ID) == []
    assert ami.named("Hangup", Uniqueid=LOGIN_ID) == []
    assert ami.named("ConfbridgeEnd", Conference=CONFERENCE) == []
    assert len(ami.named("ConfbridgeJoin", Uniqueid=LOGIN_ID, Conference=CONFERENCE)) == 1
