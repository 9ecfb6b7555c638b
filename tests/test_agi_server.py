"""The FastAGI server and the `connect` script over loopback, against the simulated Asterisk."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from agi.connect import AnsweredCall, ConnectConfig, RouteDecision, make_connect_script
from agi.errors import AgiDeadChannel, AgiInvalidCommand, AgiReplyTimeout, AgiUsageError
from agi.server import AgiScript, AgiSession, ChannelStatus, FastAgiServer, StreamResult
from sim.agi_client import AgiOutcome, run_agi
from tests.test_agi_sim_client import FakeChannel

DIAL = RouteDecision(
    "dial",
    target_channel="Local/agent1@agents",
    target_agent="agent1",
    recording_file="/var/spool/asterisk/monitor/camp7/a42.wav",
)


@dataclass
class FakeRouter:
    """Answers with `decision`, optionally only once `release` is set; records what it was told."""

    decision: RouteDecision = DIAL
    release: asyncio.Event | None = None
    error: Exception | None = None
    asked: asyncio.Event = field(default_factory=asyncio.Event)
    calls: list[AnsweredCall] = field(default_factory=list)
    lost: list[tuple[AnsweredCall, RouteDecision]] = field(default_factory=list)
    cancelled: bool = False

    async def route_answered_call(self, call: AnsweredCall) -> RouteDecision:
        self.calls.append(call)
        self.asked.set()
        try:
            if self.release is not None:
                await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        if self.error is not None:
            raise self.error
        return self.decision

    async def call_lost(self, call: AnsweredCall, decision: RouteDecision) -> None:
        self.lost.append((call, decision))


def recording(script: AgiScript, sessions: list[AgiSession]) -> AgiScript:
    """Wrap a script so the test can watch its session."""

    async def run(session: AgiSession) -> None:
        sessions.append(session)
        await script(session)

    return run


async def call(
    server: FastAgiServer, channel: FakeChannel, path: str = "connect?attempt=a42&campaign=camp7"
) -> AgiOutcome:
    async with asyncio.timeout(5):
        return await run_agi(f"agi://127.0.0.1:{server.port}/{path}", channel)


def connect_server(router: FakeRouter, **options: float) -> FastAgiServer:
    config = ConnectConfig(**options)
    return FastAgiServer({"connect": make_connect_script(router, config)}, port=0)


# ---------------------------------------------------------------- the connect call flow


async def test_answered_call_with_an_agent_ready_is_sent_to_the_agent() -> None:
    router = FakeRouter()
    channel = FakeChannel(variables={"AMDSTATUS": "HUMAN"})
    async with connect_server(router) as server:
        outcome = await call(server, channel)

    assert router.calls == [AnsweredCall("a42", "camp7", channel.uniqueid, channel.name, "HUMAN")]
    assert channel.variables["ROUTE"] == "dial"
    assert channel.variables["TARGET_CHANNEL"] == DIAL.target_channel
    assert channel.variables["TARGET_AGENT"] == DIAL.target_agent
    assert channel.variables["RECORDING_FILE"] == DIAL.recording_file
    assert outcome.status == "SUCCESS"
    assert router.lost == []


async def test_ids_come_from_channel_variables_when_the_url_has_none() -> None:
    router = FakeRouter()
    channel = FakeChannel(variables={"ATTEMPT_ID": "a9", "CAMPAIGN_ID": "c3"})
    async with connect_server(router) as server:
        await call(server, channel, path="connect")
    [answered] = router.calls
    assert (answered.attempt_id, answered.campaign_id, answered.amd_status) == ("a9", "c3", None)
    assert channel.variables["ROUTE"] == "dial"


async def test_without_ids_the_call_is_hung_up_and_the_router_never_asked() -> None:
    router = FakeRouter()
    channel = FakeChannel()
    async with connect_server(router) as server:
        await call(server, channel, path="connect")
    assert router.calls == []
    assert channel.variables["ROUTE"] == "hangup"


async def test_no_agent_in_the_abandon_window_routes_to_the_safe_harbour_message() -> None:
    router = FakeRouter(decision=RouteDecision("abandon"))
    channel = FakeChannel()
    async with connect_server(router) as server:
        outcome = await call(server, channel)
    assert channel.variables["ROUTE"] == "abandon"
    assert "TARGET_CHANNEL" not in channel.variables
    assert outcome.status == "SUCCESS"


async def test_debtor_hanging_up_while_the_router_waits_releases_the_agent() -> None:
    release = asyncio.Event()
    router = FakeRouter(release=release)
    channel = FakeChannel()
    sessions: list[AgiSession] = []
    script = recording(make_connect_script(router), sessions)
    async with FastAgiServer({"connect": script}, port=0) as server:
        agi = asyncio.create_task(call(server, channel))
        async with asyncio.timeout(5):
            await router.asked.wait()
            channel.debtor_hangs_up()
            await sessions[0].wait_for_hangup()  # the HANGUP line reached the dialer
            release.set()
            outcome = await agi

    [answered] = router.calls
    assert router.lost == [(answered, DIAL)]
    assert channel.variables["ROUTE"] == "hangup"
    assert "TARGET_CHANNEL" not in channel.variables
    assert outcome.status == "HANGUP"


async def test_debtor_hanging_up_while_the_decision_is_delivered_releases_the_agent() -> None:
    router = FakeRouter()

    class HangsUpMidDelivery(FakeChannel):
        def set_variable(self, name: str, value: str) -> None:
            super().set_variable(name, value)
            if name == "TARGET_CHANNEL":
                self.debtor_hangs_up()

    channel = HangsUpMidDelivery()
    async with connect_server(router) as server:
        outcome = await call(server, channel)
    [answered] = router.calls
    assert router.lost == [(answered, DIAL)]
    assert outcome.status == "HANGUP"


async def test_debtor_gone_before_routing_never_reserves_an_agent() -> None:
    router = FakeRouter()

    class GoneOnAmdCheck(FakeChannel):
        def get_variable(self, name: str) -> str | None:
            if name == "AMDSTATUS":
                self.debtor_hangs_up()
            return super().get_variable(name)

    channel = GoneOnAmdCheck()
    async with connect_server(router) as server:
        outcome = await call(server, channel)
    assert router.calls == []
    assert [decision.route for _, decision in router.lost] == ["hangup"]
    assert channel.variables["ROUTE"] == "hangup"
    assert outcome.status == "HANGUP"


async def test_a_failing_router_still_gives_the_debtor_the_safe_harbour_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    router = FakeRouter(error=RuntimeError("agent pool unavailable"))
    channel = FakeChannel()
    async with connect_server(router) as server:
        await call(server, channel)
    assert channel.variables["ROUTE"] == "abandon"
    assert "agent pool unavailable" in caplog.text


async def test_a_router_overrunning_the_guard_is_cancelled_and_the_call_abandoned() -> None:
    router = FakeRouter(release=asyncio.Event())  # never released
    channel = FakeChannel()
    async with connect_server(router, route_timeout_s=0.1) as server:
        await call(server, channel)
    assert router.cancelled
    assert channel.variables["ROUTE"] == "abandon"


async def test_a_dial_decision_without_target_is_not_sent_to_asterisk() -> None:
    router = FakeRouter(decision=RouteDecision("dial", target_agent="agent1"))
    channel = FakeChannel()
    async with connect_server(router) as server:
        await call(server, channel)
    assert channel.variables["ROUTE"] == "abandon"
    assert [d.target_agent for _, d in router.lost] == ["agent1"], "the chosen agent is released"


# ---------------------------------------------------------------- the server


async def test_a_script_that_raises_is_logged_with_context_and_the_server_survives(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(session: AgiSession) -> None:
        await session.verbose("about to fail")
        raise RuntimeError("kaput")

    router = FakeRouter()
    server = FastAgiServer({"broken": broken, "connect": make_connect_script(router)}, port=0)
    async with server:
        with caplog.at_level(logging.INFO):
            first = await call(server, FakeChannel(), path="broken")
            second_channel = FakeChannel()
            await call(server, second_channel)
    assert first.status == "SUCCESS", "Asterisk just continues the dialplan"
    failure = next(r for r in caplog.records if r.exc_info and "kaput" in str(r.exc_info[1]))
    assert "broken" in failure.getMessage()
    assert FakeChannel().uniqueid in failure.getMessage()
    assert second_channel.variables["ROUTE"] == "dial"


async def test_an_unknown_script_is_closed_with_a_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with connect_server(FakeRouter()) as server:
        outcome = await call(server, FakeChannel(), path="nosuch?attempt=1")
    assert outcome.commands == 0
    assert outcome.reason is not None and "without sending a command" in outcome.reason
    assert "unknown script 'nosuch'" in caplog.text


async def test_phone_numbers_never_reach_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    channel = FakeChannel(name="Local/15550001@debtor-sim-00000000;1")
    with caplog.at_level(logging.DEBUG):
        async with connect_server(FakeRouter()) as server:
            await call(server, channel)
    assert "debtor-sim" in caplog.text
    assert "15550001" not in caplog.text


async def test_session_commands_raise_typed_errors_on_refusals() -> None:
    seen: dict[str, object] = {}

    async def probe(session: AgiSession) -> None:
        seen["status"] = await session.channel_status()
        seen["beep"] = await session.stream_file("beep", "#")
        seen["missing"] = await session.stream_file("no_such_sound_file")
        seen["no_app"] = await session.exec("NoSuchApplication", "foo")
        seen["full"] = await session.get_full_variable("${CHANNEL}|${CAMPAIGN_ID}")
        with pytest.raises(AgiInvalidCommand):
            await session.command("FOO BAR")
        with pytest.raises(AgiUsageError) as usage:
            await session.command("GET VARIABLE")
        seen["usage"] = usage.value.reply.usage
        await session.hangup()
        with pytest.raises(AgiDeadChannel):
            await session.channel_status()
        seen["hung_up"] = session.hung_up
        seen["after"] = await session.get_variable("CAMPAIGN_ID")

    channel = FakeChannel(variables={"CAMPAIGN_ID": "camp42"}, sounds={"beep": 500})
    async with FastAgiServer({"probe": probe}, port=0) as server:
        outcome = await call(server, channel, path="probe")
    beep, missing = seen["beep"], seen["missing"]
    assert isinstance(beep, StreamResult) and isinstance(missing, StreamResult)
    assert (beep.endpos, beep.failed, beep.digit) == (500 * 8, False, None)
    assert missing.failed
    assert seen["status"] is ChannelStatus.UP
    assert seen["no_app"] == -2
    assert seen["full"] == f"{channel.name}|camp42"
    assert "Example return code" in str(seen["usage"])
    assert seen["hung_up"] is True
    assert seen["after"] == "camp42", "variables stay readable after the hang-up"
    assert channel.hangup_cause == 16
    assert outcome.status == "HANGUP"


async def test_a_missing_reply_times_out_instead_of_hanging(
    caplog: pytest.LogCaptureFixture,
) -> None:
    errors: list[BaseException] = []

    async def ask(session: AgiSession) -> None:
        try:
            await session.get_variable("CAMPAIGN_ID")
        except AgiReplyTimeout as exc:
            errors.append(exc)
            raise

    server = FastAgiServer({"ask": ask}, port=0, reply_timeout_s=0.2)
    async with server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"agi_network: yes\nagi_network_script: ask\nagi_channel: Local/1@x-1;1\n\n")
        async with asyncio.timeout(5):
            assert await reader.readline() == b"GET VARIABLE CAMPAIGN_ID\n"
            assert await reader.read() == b"", "the server gives up and closes the session"
        writer.close()
    assert len(errors) == 1
    assert "GET VARIABLE CAMPAIGN_ID" in str(errors[0])
    assert "script stopped" in caplog.text


async def test_malformed_lines_are_logged_and_the_session_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    values: list[str | None] = []

    async def ask(session: AgiSession) -> None:
        values.append(await session.get_variable("X"))

    async with FastAgiServer({"ask": ask}, port=0) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"agi_network: yes\ngarbage\nagi_network_script: ask\n\n")
        async with asyncio.timeout(5):
            await reader.readline()
            writer.write(b"what is this\n200 result=1 (42)\n")
            assert await reader.read() == b""
        writer.close()
    assert values == ["42"]
    assert "'garbage'" in caplog.text and "'what is this'" in caplog.text


async def test_close_lets_sessions_finish_then_cancels_the_stragglers() -> None:
    started = asyncio.Event()
    finished: list[str] = []

    def stuck(name: str) -> Callable[[AgiSession], Awaitable[None]]:
        async def script(session: AgiSession) -> None:
            started.set()
            try:
                await asyncio.Event().wait()  # an agent that never becomes free
            finally:
                finished.append(name)

        return script

    server = FastAgiServer({"stuck": stuck("stuck")}, port=0, close_grace_s=0.1)
    await server.start()
    agi = asyncio.create_task(call(server, FakeChannel(), path="stuck"))
    async with asyncio.timeout(5):
        await started.wait()
        assert server.active_sessions == 1
        await server.close()
        outcome = await agi
    assert finished == ["stuck"]
    assert server.active_sessions == 0
    assert outcome.status == "SUCCESS", "Asterisk sees the socket closed and goes on"
