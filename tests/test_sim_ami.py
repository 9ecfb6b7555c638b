"""AMI sessions and actions of the simulator, checked against the captured Asterisk replies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from dialer.ami.protocol import Banner, Message
from tests.test_sim_helpers import Probe, capture_messages, running_sim

RINGING_NUMBER = "Local/15550003@debtor-sim"  # by-suffix: 3 rings on


def captured_reply(path: Path, action: str, nth: int = 0) -> dict[str, str]:
    """The server's reply to the nth `action` of a capture."""
    messages = capture_messages(path)
    ids = [f["ActionID"] for d, f in messages if d == "C>S" and f.get("Action") == action]
    wanted = ids[nth]
    return next(
        f for d, f in messages if d == "S>C" and f.get("ActionID") == wanted and "Response" in f
    )


def originate(probe: Probe, channel: str, *extra: tuple[str, str], sync: bool = False) -> str:
    overridden = {key for key, _ in extra}
    defaults = [
        ("Context", "dialer-connect"),
        ("Exten", "s"),
        ("Priority", "1"),
        ("Timeout", "30000"),
        ("CallerID", '"Collections" <8005550100>'),
    ]
    fields = [("Channel", channel), *[f for f in defaults if f[0] not in overridden], *extra]
    if not sync:
        fields.append(("Async", "true"))
    return probe.send("Originate", *fields)


async def test_banner_login_ping_command_logoff_as_captured(traces_dir: Path) -> None:
    login_log = traces_dir / "ami_login.log"
    raw = (traces_dir / "raw" / "ami_login.s2c.raw").read_bytes()
    async with running_sim() as sim:
        reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
        banner = await asyncio.wait_for(reader.readline(), 5)
        assert raw.startswith(banner)  # the exact greeting line, CRLF and no blank line
        writer.close()

        probe = await Probe.connect(sim.port)
        login = await probe.login()
        assert login.get("Message") == captured_reply(login_log, "Login")["Message"]
        await probe.event("FullyBooted", Status="Fully Booted")
        await probe.event("SuccessfulAuth", AccountID="dialer")
        ping = await probe.action("Ping")
        assert ping.get("Ping") == captured_reply(login_log, "Ping")["Ping"]
        version = await probe.action("Command", ("Command", "core show version"))
        expected = captured_reply(login_log, "Command")
        assert version.get("Message") == expected["Message"]
        assert (version.get("Output") or "").startswith("Asterisk 20.20.1")
        bye = await probe.action("Logoff")
        assert (bye.response, bye.get("Message")) == ("Goodbye", "Thanks for all the fish.")
        async with asyncio.timeout(5):
            await probe.closed.wait()
        assert isinstance(probe.frames[0], Banner) and probe.frames[0].version == "9.0.0"


async def test_every_response_echoes_action_id_on_its_second_line() -> None:
    async with running_sim() as sim:
        reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
        await reader.readline()
        writer.write(
            b"Action: Login\r\nActionID: abc-1\r\nUsername: dialer\r\nSecret: dialer\r\n\r\n"
        )
        data = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert (
            data
            == b"Response: Success\r\nActionID: abc-1\r\nMessage: Authentication accepted\r\n\r\n"
        )
        writer.close()


async def test_wrong_secret_is_refused_after_a_delay_then_closed(traces_dir: Path) -> None:
    expected = captured_reply(traces_dir / "ami_login.log", "Login", nth=1)
    async with running_sim() as sim:
        probe = await Probe.connect(sim.port)
        started = asyncio.get_running_loop().time()
        reply = await probe.login(secret="wrong")
        assert (reply.response, reply.get("Message")) == (expected["Response"], expected["Message"])
        assert asyncio.get_running_loop().time() - started >= sim.ami.auth_failure_delay
        async with asyncio.timeout(5):
            await probe.closed.wait()


async def test_action_before_login_is_denied_and_the_connection_stays(traces_dir: Path) -> None:
    expected = captured_reply(traces_dir / "ami_login.log", "Ping")
    denied = next(
        f
        for d, f in capture_messages(traces_dir / "ami_login.log")
        if d == "S>C" and f.get("Message") == "Permission denied"
    )
    async with running_sim() as sim:
        probe = await Probe.connect(sim.port)
        reply = await probe.action("Ping")
        assert (reply.response, reply.get("Message")) == (denied["Response"], denied["Message"])
        await probe.login()
        assert (await probe.action("Ping")).get("Ping") == expected["Ping"]
        await probe.close()


async def test_login_with_events_off_gets_no_events() -> None:
    async with running_sim() as sim:
        quiet = await Probe.connect(sim.port)
        await quiet.action("Login", ("Username", "dialer"), ("Secret", "dialer"), ("Events", "off"))
        loud = await Probe.connect(sim.port)
        await loud.login()
        originate(loud, "Local/15550002@debtor-sim")
        await loud.event("OriginateResponse")
        await quiet.action("Ping")
        assert [m for m in quiet.messages if m.event] == []
        on = await quiet.action("Events", ("EventMask", "call,agent"))
        assert on.get("Events") == "On"
        await quiet.close()
        await loud.close()


async def test_unknown_action_gets_an_error_and_a_security_event(traces_dir: Path) -> None:
    expected = captured_reply(traces_dir / "ami_actions.log", "NoSuchAction")
    async with running_sim() as sim:
        probe = await Probe.connect(sim.port)
        await probe.login()
        reply = await probe.action("NoSuchAction")
        assert (reply.response, reply.get("Message")) == (expected["Response"], expected["Message"])
        bad = await probe.event("RequestBadFormat")
        assert bad.get("RequestType") == "Action: NoSuchAction"
        assert (await probe.action("Ping")).response == "Success"  # the session lives on
        await probe.close()


async def test_malformed_action_gets_an_error_and_loses_nothing_else() -> None:
    async with running_sim() as sim:
        probe = await Probe.connect(sim.port)
        await probe.login()
        probe.writer.write(b"Action: Ping\r\nActionID: bad-1\r\nthis is not a header\r\n\r\n")
        probe.writer.write(b"Foo: bar\r\nActionID: bad-2\r\n\r\n")
        assert (await probe.response("bad-1")).response == "Success"  # junk line ignored
        missing = await probe.response("bad-2")
        assert (missing.response, missing.get("Message")) == ("Error", "Missing action in request")
        bad_timeout = await probe.action(
            "Originate", ("Channel", "Local/15550001@debtor-sim"), ("Timeout", "soon")
        )
        assert bad_timeout.response == "Error" and "timeout" in (bad_timeout.get("Message") or "")
        assert (await probe.action("Ping")).response == "Success"
        await probe.close()


async def test_originate_without_channel_is_refused(traces_dir: Path) -> None:
    expected = captured_reply(traces_dir / "ami_actions.log", "Originate", nth=1)
    async with running_sim() as sim:
        probe = await Probe.connect(sim.port)
        await probe.login()
        reply = await probe.action("Originate", ("Context", "dialer-connect"), ("Exten", "s"))
        assert (reply.response, reply.get("Message")) == (expected["Response"], expected["Message"])
        await probe.close()


async def test_originate_to_missing_context_is_queued_then_fails_with_reason_0() -> None:
    async with running_sim() as sim:
        probe = await Probe.connect(sim.port)
        await probe.login()
        aid = originate(probe, "Local/15550001@no-such-context")
        assert (await probe.response(aid)).get("Message") == "Originate successfully queued"
        result = await probe.event("OriginateResponse", ActionID=aid)
        assert (result.get("Response"), result.get("Reason")) == ("Failure", "0")
        assert result.get("Channel") == "Local/15550001@no-such-context"
        assert result.get("Uniqueid") == "<unknown>"
        await probe.close()


async def test_synchronous_originate_replies_after_the_outcome_and_events_follow() -> None:
    async with running_sim() as sim:
        probe = await Probe.connect(sim.port)
        await probe.login()
        aid = originate(probe, "Local/15550202@debtor-sim", sync=True)
        reply = await probe.response(aid)
        assert (reply.response, reply.get("Message")) == ("Error", "Originate failed")
        await probe.event("Hangup", Cause="17")
        names = [m.event or m.response for m in probe.messages]
        assert names.index("Error") < names.index("Newchannel")  # fact 13
        assert "OriginateResponse" not in names
        await probe.close()


def _hangup_of_half_two(prefix: str) -> Callable[[Message], bool]:
    def match(m: Message) -> bool:
        channel = m.get("Channel") or ""
        return m.event == "Hangup" and channel.startswith(prefix) and channel.endswith(";2")

    return match


async def test_failures_carry_asterisk_reason_codes_and_causes() -> None:
    """busy 5/17, congestion 8/34, unallocated 0/1, far-end no-answer 0/19; ;1 says cause 0."""
    expected = {"2": ("5", "17"), "5": ("8", "34"), "0": ("0", "1"), "6": ("0", "19")}
    async with running_sim(time_scale=200) as sim:
        probe = await Probe.connect(sim.port)
        await probe.login()
        ids = {d: originate(probe, f"Local/1555000{d}@debtor-sim") for d in expected}
        for digit, (reason, cause) in expected.items():
            result = await probe.event("OriginateResponse", ActionID=ids[digit])
            assert (result.get("Response"), result.get("Reason")) == ("Failure", reason), digit
            hangup = await probe.wait_for(_hangup_of_half_two(f"Local/1555000{digit}@"))
            assert hangup.get("Cause") == cause, digit
        ones = [
            m.get("Cause")
            for m in probe.messages
            if m.event == "Hangup" and (m.get("Channel") or "").endswith(";1")
        ]
        assert ones.count("0") == 2  # busy and congestion: the ;1 half says "Unknown"
        await probe.close()


async def test_originate_timeout_is_scaled_and_gives_reason_3_without_dialend() -> None:
    async with running_sim(time_scale=1000) as sim:
        probe = await Probe.connect(sim.port)
        await probe.login()
        loop = asyncio.get_running_loop()
        started = loop.time()
        aid = originate(probe, RINGING_NUMBER, ("Timeout", "60000"))
        result = await probe.event("OriginateResponse", ActionID=aid)
        assert result.get("Reason") == "3"
        assert 0.05 <= loop.time() - started < 2.0  # 60 simulated seconds in ~60 ms
        await probe.event("Hangup", Cause="19")
        assert not [m for m in probe.messages if m.event == "DialEnd"]
        await probe.close()


async def test_hanging_up_a_ringing_call_gives_reason_0_and_dialend_noanswer() -> None:
    async with running_sim() as sim:
        probe = await Probe.connect(sim.port)
        await probe.login()
        aid = originate(probe, RINGING_NUMBER, ("ChannelId", "call-9"))
        ringing = await probe.event("DialState", DialStatus="RINGING")
        channel = ringing.get("DestChannel") or ""
        reply = await probe.action("Hangup", ("Channel", channel), ("Cause", "16"))
        assert reply.get("Message") == "Channel Hungup"
        result = await probe.event("OriginateResponse", ActionID=aid)
        assert (result.get("Response"), result.get("Reason")) == ("Failure", "0")
        assert result.get("Uniqueid") == "call-9"
        await probe.event("DialEnd", DialStatus="NOANSWER")
        await probe.event("Hangup", Channel=channel, Cause="16")
        missing = await probe.action("Hangup", ("Channel", channel))
        assert (missing.response, missing.get("Message")) == ("Error", "No such channel")
        await probe.close()


async def test_hangup_by_regex_lists_what_it_hung_up() -> None:
    async with running_sim() as sim:
        probe = await Probe.connect(sim.port)
        await probe.login()
        originate(probe, RINGING_NUMBER)
        await probe.event("DialState", DialStatus="RINGING")
        reply = await probe.action("Hangup", ("Channel", "/^Local/15550003@debtor-sim-.*;1$/"))
        assert reply.get("EventList") == "start"
        done = await probe.event("ChannelsHungupListComplete", ActionID=reply.action_id or "")
        assert done.get("ListItems") == "1"
        await probe.event("OriginateResponse", Reason="0")
        await probe.close()


async def _live_call(probe: Probe, agi_port: int) -> Message:
    """Originate a long call that FastAGI routes to agent1; return the second BridgeEnter."""
    originate(
        probe,
        "Local/15550008@debtor-sim",
        ("ChannelId", "live-1"),
        ("Variable", "RECORD=0"),
        ("Variable", f"DIALER_AGI=agi://127.0.0.1:{agi_port}"),
    )
    return await probe.event("BridgeEnter", BridgeNumChannels="2")


@pytest.fixture
async def agi_port() -> AsyncIterator[int]:
    async def connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (await reader.readline()).strip():
            pass
        for command in (
            'SET VARIABLE ROUTE "dial"',
            "SET VARIABLE TARGET_CHANNEL Local/agent7@agents",
        ):
            writer.write(command.encode() + b"\n")
            await reader.readline()
        writer.close()

    server = await asyncio.start_server(connect, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()


async def test_core_show_channels_during_a_live_call(traces_dir: Path, agi_port: int) -> None:
    captured_item = next(
        f
        for d, f in capture_messages(traces_dir / "ami_actions.log")
        if f.get("Event") == "CoreShowChannel"
    )
    async with running_sim(time_scale=20) as sim:
        probe = await Probe.connect(sim.port)
        await probe.login()
        idle = await probe.action("CoreShowChannels")
        await probe.event("CoreShowChannelsComplete", ActionID=idle.action_id or "", ListItems="0")
        await _live_call(probe, agi_port)
        reply = await probe.action("CoreShowChannels")
        assert (reply.get("EventList"), reply.get("Message")) == ("start", "Channels will follow")
        done = await probe.event("CoreShowChannelsComplete", ActionID=reply.action_id or "")
        items = [m for m in probe.messages if m.event == "CoreShowChannel"]
        assert done.get("ListItems") == str(len(items)) == "4"
        assert all(list(m.fields) == list(captured_item) for m in items)
        debtor = next(m for m in items if m.get("Uniqueid") == "live-1")
        assert debtor.get("BridgeId") and debtor.get("Application") == "Dial"
        assert {m.get("Linkedid") for m in items} == {"live-1"}

        status = await probe.action("Status", ("Channel", debtor.get("Channel") or ""))
        assert status.get("EventList") == "start"
        await probe.event("StatusComplete", ActionID=status.action_id or "", ListItems="1")
        await probe.close()


async def test_getvar_setvar_mixmonitor_and_hangup_of_a_bridged_call(agi_port: int) -> None:
    async with running_sim(time_scale=20) as sim:
        probe = await Probe.connect(sim.port)
        await probe.login()
        bridged = await _live_call(probe, agi_port)
        channel = bridged.get("Channel") or ""
        got = await probe.action("Getvar", ("Channel", channel), ("Variable", "ROUTE"))
        assert (got.get("Variable"), got.get("Value")) == ("ROUTE", "dial")
        done = await probe.action(
            "Setvar", ("Channel", channel), ("Variable", "DISPO"), ("Value", "PTP")
        )
        assert done.get("Message") == "Variable Set"
        assert (await probe.action("Getvar", ("Channel", channel), ("Variable", "DISPO"))).get(
            "Value"
        ) == "PTP"
        mix = await probe.action("MixMonitor", ("Channel", channel), ("File", "/tmp/x.wav"))
        assert mix.response == "Success" and mix.get("Message") is None  # fact 26
        await probe.event("MixMonitorStart", Channel=channel)
        await probe.action("StopMixMonitor", ("Channel", channel))
        await probe.event("MixMonitorStop", Channel=channel)

        hung = await probe.action("Hangup", ("Channel", channel))
        assert hung.get("Message") == "Channel Hungup"
        async with asyncio.timeout(5):
            await sim.wait_calls_ended()
        await probe.action("Ping")
        assert [m.get("BridgeNumChannels") for m in probe.messages if m.event == "BridgeLeave"] == [
            "1",
            "0",
        ]
        assert len([m for m in probe.messages if m.event == "BridgeDestroy"]) == 1
        hangups = [m for m in probe.messages if m.event == "Hangup"]
        assert len(hangups) == 4 and {m.get("Cause") for m in hangups} == {"16"}
        await probe.close()


async def test_abandon_route_plays_the_safe_harbour_message_then_hangs_up() -> None:
    async def abandon(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (await reader.readline()).strip():
            pass
        writer.write(b'SET VARIABLE ROUTE "abandon"\n')
        await reader.readline()
        writer.close()

    server = await asyncio.start_server(abandon, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with running_sim(time_scale=100) as sim:
        probe = await Probe.connect(sim.port)
        await probe.login()
        originate(
            probe, "Local/15550001@debtor-sim", ("Variable", f"DIALER_AGI=agi://127.0.0.1:{port}")
        )
        await probe.event("Newexten", Application="Playback", AppData="dialer/safe-harbour")
        await probe.event("Hangup", Cause="16")
        assert not [m for m in probe.messages if m.event == "DialBegin" and m.get("Channel")]
        await probe.close()
    server.close()


async def test_without_a_reachable_fastagi_server_agistatus_is_failure_and_the_call_ends() -> None:
    async with running_sim(time_scale=100) as sim:
        probe = await Probe.connect(sim.port)
        await probe.login()
        originate(probe, "Local/15550001@debtor-sim", ("Variable", "DIALER_AGI=agi://127.0.0.1:1"))
        status = await probe.event("VarSet", Variable="AGISTATUS")
        assert status.get("Value") == "FAILURE"
        async with asyncio.timeout(5):
            await sim.wait_calls_ended()
        assert sim.stats()["by_outcome"] == {"agi_failed": 1}
        await probe.close()


async def test_a_fast_failure_can_be_reported_before_the_next_originate_is_answered() -> None:
    """Fact 19: in a burst, a busy's OriginateResponse precedes a later Originate's Response."""
    async with running_sim() as sim:
        probe = await Probe.connect(sim.port)
        await probe.login()
        busy = originate(probe, "Local/15550102@debtor-sim")
        later = originate(probe, RINGING_NUMBER)
        await probe.response(later)
        order = [(m.event or m.response, m.action_id) for m in probe.messages]
        assert order.index(("OriginateResponse", busy)) < order.index(("Success", later))
        await probe.close()


async def test_a_trunk_dial_string_makes_one_pjsip_channel() -> None:
    async with running_sim(time_scale=200) as sim:
        probe = await Probe.connect(sim.port)
        await probe.login()
        aid = originate(probe, "PJSIP/15550002@trunk", ("ChannelId", "t-1"))
        result = await probe.event("OriginateResponse", ActionID=aid)
        # As a real Asterisk 20 does through a PJSIP trunk refused with 486 (measured in
        # tests/test_asterisk_sip.py): Reason 0, not the 5 a Local pair gives; cause 17.
        assert (result.get("Reason"), result.get("Uniqueid")) == ("0", "t-1")
        new = [m for m in probe.messages if m.event == "Newchannel"]
        assert [m.get("Channel") for m in new] == ["PJSIP/trunk-00000000"]
        dial = await probe.event("DialBegin")
        assert dial.get("DialString") == "15550002@trunk"
        hangup = await probe.event("Hangup", Channel="PJSIP/trunk-00000000")
        assert hangup.get("Cause") == "17"
        await probe.close()


async def test_cosmetic_events_only_in_verbose_mode() -> None:
    for verbose in (False, True):
        async with running_sim(verbose=verbose) as sim:
            probe = await Probe.connect(sim.port)
            await probe.login()
            originate(probe, "Local/15550002@debtor-sim")
            await probe.event("Hangup", Cause="17")
            await probe.action("Ping")
            names = {m.event for m in probe.messages}
            cosmetic = {"NewCallerid", "NewConnectedLine", "DeviceStateChange"}
            assert (cosmetic <= names) is verbose, names
            await probe.close()


async def test_redirect_out_of_the_agent_bridge_hangs_up_the_agent(agi_port: int) -> None:
    async with running_sim(time_scale=20) as sim:
        probe = await Probe.connect(sim.port)
        await probe.login()
        bridged = await _live_call(probe, agi_port)
        channel = bridged.get("Channel") or ""
        reply = await probe.action(
            "Redirect", ("Channel", channel), ("Context", "dialer-hold"), ("Exten", "hold")
        )
        assert reply.get("Message") == "Redirect successful"
        await probe.event("BridgeDestroy")
        agent_gone = await probe.wait_for(
            lambda m: m.event == "Hangup" and "agent7@agents" in (m.get("Channel") or "")
        )
        assert agent_gone.get("Cause") == "16"
        listing = await probe.action("CoreShowChannels")
        done = await probe.event("CoreShowChannelsComplete", ActionID=listing.action_id or "")
        assert done.get("ListItems") == "2"  # the debtor's two halves wait in dialer-hold
        items = [m for m in probe.messages if m.event == "CoreShowChannel"]
        assert {m.get("Context") for m in items if m.get("Channel") == channel} == {"dialer-hold"}
        await probe.close()


async def test_event_mask_limits_events_to_the_asked_classes() -> None:
    async with running_sim() as sim:
        probe = await Probe.connect(sim.port)
        await probe.action(
            "Login", ("Username", "dialer"), ("Secret", "dialer"), ("Events", "call")
        )
        originate(probe, "Local/15550002@debtor-sim", ("Variable", "LEAD_ID=L2"))
        await probe.event("Hangup", Cause="17")
        await probe.action("Ping")
        privileges = {m.get("Privilege") for m in probe.messages if m.event}
        assert privileges == {"call,all"}  # no dialplan (VarSet, Newexten), no security
        off = await probe.action("Events", ("EventMask", "off"))
        assert off.get("Events") == "Off"
        await probe.close()
