"""`dialer bench engine`: AMI events parsed, dispatched and applied per second; CPU under load.

Part 1 replays the real Asterisk captures in a loop, through (a) a plain `bytes.split` +
`partition` reference, (b) panoramisk's own message parser, (c) our codec alone and (d) the
dialer's whole receive path: codec, ActionID routing, call lookup and the call state machine.
Part 2 runs the engine against the simulator (in a separate process) with about 1,000 calls in
flight and reports the CPU the dialer process used, in cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dialer.ami.client import ActionIds, AmiClientCore, EventReceived
from dialer.ami.protocol import Message, parse_frames
from dialer.ami.traces import bundled_traces_dir
from dialer.calls.state import Call, Ended
from dialer.calls.table import CallTable


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--traces",
        type=Path,
        default=Path(os.environ.get("DIALER_TRACES_DIR", bundled_traces_dir())),
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="time per parser measurement")
    parser.add_argument("--calls", type=int, default=1000, help="calls in flight for the CPU part")
    parser.add_argument("--load-seconds", type=float, default=20.0, help="length of the CPU window")
    parser.add_argument("--skip-load", action="store_true", help="only the replay part")
    parser.add_argument("--json", action="store_true")


@dataclass(frozen=True)
class Capture:
    name: str
    server_bytes: bytes
    originates: tuple[tuple[str, str, str | None], ...]  # (ActionID, dial string, ChannelId)


def load_captures(traces: Path) -> list[Capture]:
    captures = []
    for s2c in sorted((traces / "raw").glob("ami_originate_*.s2c.raw")):
        name = s2c.name.removesuffix(".s2c.raw")
        c2s = s2c.with_name(f"{name}.c2s.raw")
        frames, _ = parse_frames(c2s.read_bytes())
        originates = tuple(
            (f.action_id or "", f.get("Channel") or "", f.get("ChannelId"))
            for f in frames
            if isinstance(f, Message) and f.action == "Originate"
        )
        captures.append(Capture(name, s2c.read_bytes(), originates))
    if not captures:
        raise SystemExit(f"no captures found under {traces}/raw (set --traces)")
    return captures


def _measure(seconds: float, one_pass: Callable[[], int]) -> float:
    """Messages per second of `one_pass` (which returns how many messages it handled)."""
    one_pass()  # warm-up
    handled = 0
    start = time.process_time()
    while (elapsed := time.process_time() - start) < seconds:
        handled += one_pass()
    return handled / elapsed


def _reference_split(data: bytes) -> int:
    count = 0
    for block in data.split(b"\r\n\r\n"):
        if block:
            fields = {}
            for line in block.split(b"\r\n"):
                key, _, value = line.partition(b": ")
                fields[key] = value
            count += 1
    return count


def _panoramisk_parse(data: bytes) -> int:
    from panoramisk.message import Message as PanoramiskMessage

    count = 0
    for block in data.decode("utf-8", "ignore").split("\r\n\r\n"):
        if PanoramiskMessage.from_line(block.strip()) is not None:
            count += 1
    return count


def _ours_parse(data: bytes) -> int:
    return len(parse_frames(data)[0])


def _ours_full(captures: list[Capture]) -> int:
    """The dialer's receive path, end to end, for every call of every capture."""
    handled = 0
    for capture in captures:
        core = AmiClientCore(ActionIds("bench"))
        table = CallTable()
        for n, (action_id, dial_string, channel_id) in enumerate(capture.originates):
            call = Call(n, channel_id or "", "bench", 0.0, originate_action_id=action_id)
            table.add(call, None if channel_id else dial_string)
        now = 0.0
        for item in core.receive_data(capture.server_bytes):
            handled += 1
            if isinstance(item, EventReceived):
                now += 0.001
                result = table.dispatch(item.message, now)
                if result is not None:
                    call, effects = result
                    if any(isinstance(e, Ended) for e in effects):
                        table.remove(call)
    return handled


def replay_figures(traces: Path, seconds: float) -> dict[str, float]:
    captures = load_captures(traces)
    stream = b"".join(c.server_bytes for c in captures)
    figures = {
        "reference_split_msgs_per_s": _measure(seconds, lambda: _reference_split(stream)),
        "panoramisk_parse_msgs_per_s": _measure(seconds, lambda: _panoramisk_parse(stream)),
        "ours_parse_msgs_per_s": _measure(seconds, lambda: _ours_parse(stream)),
        "ours_parse_dispatch_apply_msgs_per_s": _measure(seconds, lambda: _ours_full(captures)),
    }
    base = figures["panoramisk_parse_msgs_per_s"]
    figures["ours_full_vs_panoramisk_parse"] = (
        figures["ours_parse_dispatch_apply_msgs_per_s"] / base
    )
    figures["ours_parse_vs_panoramisk_parse"] = figures["ours_parse_msgs_per_s"] / base
    return figures


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def load_figures(calls: int, window_s: float) -> dict[str, float]:
    """CPU of the dialer process with ~`calls` calls in flight against a simulator process."""
    from dialer.loadtest import run_load

    with tempfile.TemporaryDirectory() as tmp:
        return asyncio.run(
            run_load(port=_free_port(), calls=calls, window_s=window_s, data_dir=Path(tmp))
        )


def run(args: argparse.Namespace) -> int:
    figures = replay_figures(args.traces, args.seconds)
    if not args.skip_load:
        figures.update(load_figures(args.calls, args.load_seconds))
    if args.json:
        print(json.dumps({k: round(v, 3) for k, v in figures.items()}, sort_keys=True))
        return 0
    print("AMI receive path on the real Asterisk 20.20.1 captures, replayed in a loop (one core):")
    for key, value in figures.items():
        unit = "x" if "_vs_" in key else ""
        print(f"  {key:<42} {value:>12,.2f}{unit}")
    return 0
