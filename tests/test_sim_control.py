"""Fault injection and stats: the Python control API, the JSON-lines port and `dialer sim`."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from dialer.ami.protocol import Banner, FrameError
from sim import cli
from sim.control import ControlServer
from tests.test_sim_helpers import Probe, running_sim


async def _ringing_call(probe: Probe) -> str:
    probe.send(
        "Originate",
        ("Channel", "Local/15550003@debtor-sim"),
        ("Context", "dialer-connect"),
        ("Exten", "s"),
        ("Async", "true"),
    )
    ringing = await probe.event("DialState", DialStatus="RINGING")
    return ringing.get("DestChannel") or ""


async def test_drop_closes_every_connection_and_calls_survive() -> None:
    async with running_sim() as sim:
        a, b = await Probe.connect(sim.port), await Probe.connect(sim.port)
        await a.login()
        await b.login()
        await _ringing_call(a)
        assert sim.drop_connections(reset=True) == 2
        async with asyncio.timeout(5):
            await a.closed.wait()
            await b.closed.wait()
        assert sim.stats()["calls_in_flight"] == 1  # Asterisk keeps its calls when AMI drops
        again = await Probe.connect(sim.port)
        await again.login()
        listing = await again.action("CoreShowChannels")
        await again.event(
            "CoreShowChannelsComplete", ActionID=listing.action_id or "", ListItems="2"
        )
        await again.close()


async def test_a_malformed_frame_arrives_and_the_session_lives_on() -> None:
    async with running_sim() as sim:
        probe = await Probe.connect(sim.port)
        await probe.login()
        assert sim.send_garbage() == 1
        async with asyncio.timeout(5):
            while not any(isinstance(f, FrameError) for f in probe.frames):
                await probe.action("Ping")
        assert (await probe.action("Ping")).response == "Success"
        await probe.close()


async def test_a_truncated_frame_is_followed_by_a_dropped_link() -> None:
    async with running_sim() as sim:
        probe = await Probe.connect(sim.port)
        await probe.login()
        sim.send_garbage(truncated=True)
        async with asyncio.timeout(5):
            await probe.closed.wait()
        assert probe._parser.pending.startswith(b"Event: Hangup")


async def test_response_delay_holds_every_reply() -> None:
    async with running_sim() as sim:
        probe = await Probe.connect(sim.port)
        await probe.login()
        sim.response_delay = 0.2
        loop = asyncio.get_running_loop()
        started = loop.time()
        await probe.action("Ping")
        assert loop.time() - started >= 0.2
        await probe.close()


async def test_restart_drops_connections_forgets_channels_and_resets_counters() -> None:
    async with running_sim() as sim:
        probe = await Probe.connect(sim.port)
        await probe.login()
        await _ringing_call(probe)
        await _ringing_call(probe)
        await sim.restart()
        async with asyncio.timeout(5):
            await probe.closed.wait()
            await sim.wait_calls_ended()
        assert sim.stats()["channels"] == 0
        fresh = await Probe.connect(sim.port)
        await fresh.login()
        assert isinstance(fresh.frames[0], Banner)
        channel = await _ringing_call(fresh)
        assert channel == "Local/15550003@debtor-sim-00000000;1"  # counter back to zero
        await fresh.close()


async def _ask(port: int, *requests: dict[str, Any] | bytes) -> list[dict[str, Any]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    replies = []
    for request in requests:
        line = request if isinstance(request, bytes) else json.dumps(request).encode()
        writer.write(line + b"\n")
        replies.append(json.loads(await asyncio.wait_for(reader.readline(), 5)))
    writer.close()
    return replies


async def test_control_port_speaks_json_lines_and_survives_bad_requests() -> None:
    async with running_sim() as sim:
        control = ControlServer(sim)
        await control.start()
        probe = await Probe.connect(sim.port)
        await probe.login()
        await _ringing_call(probe)
        stats, bad_json, unknown, bad_arg, delay, drop = await _ask(
            control.port,
            {"cmd": "stats"},
            b"{not json",
            {"cmd": "explode"},
            {"cmd": "delay", "seconds": "lots"},
            {"cmd": "delay", "seconds": 0},
            {"cmd": "drop"},
        )
        assert stats["ok"] and stats["stats"]["calls_in_flight"] == 1
        assert stats["stats"]["originates"] == 1
        assert not bad_json["ok"] and "JSON" in bad_json["error"]
        assert not unknown["ok"] and "explode" in unknown["error"]
        assert not bad_arg["ok"] and "seconds" in bad_arg["error"]
        assert delay == {"ok": True, "delay": 0.0}
        assert drop == {"ok": True, "dropped": 1}
        async with asyncio.timeout(5):
            await probe.closed.wait()
        (restart,) = await _ask(control.port, {"cmd": "restart"})
        (idle,) = await _ask(control.port, {"cmd": "wait_idle", "timeout": 5})
        assert restart["ok"] and idle["ok"]
        await control.close()


async def test_dialer_sim_command_serves_ami_and_control() -> None:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(
        ["--port", "0", "--control-port", "0", "--time-scale", "60", "--debtors", "by-suffix"]
    )
    sim = cli.build(args)
    assert sim.pbx.clock.time_scale == 60
    ready = asyncio.Event()
    task = asyncio.create_task(cli.serve(args, ready))
    async with asyncio.timeout(5):
        await ready.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()


def test_dialer_sim_mix_option_is_checked() -> None:
    assert cli.parse_mix("human=0.5,busy=0.2").busy == 0.2
    for bad in ("humans=0.5", "busy=lots", "human=0.9,machine=0.5"):
        try:
            cli.parse_mix(bad)
        except ValueError as exc:
            assert "mix" in str(exc) or "sum" in str(exc)
        else:
            raise AssertionError(f"{bad!r} was accepted")
