"""`dialer bench asterisk`: call setups per second and calls held through a real Asterisk's
PJSIP trunk to the SIPp carrier, with the CPU each of the three spends.

A throwaway Asterisk (asterisk-conf/ as shipped, sim/lab.py) dials through its `trunk` to SIPp
(sim/sip/carrier.xml), whose long-call numbers answer and stay on; the dialer runs the real
campaign engine in this process (progressive pacing, one lab agent per call, no AMD, no
recording), capped at `--cps` Originates a second. Each step offers a rate and measures what
was reached: setups per second (answered calls over the ramp), calls held at once, and the CPU
of the dialer, Asterisk and SIPp (from /proc), so the report says which saturates first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from dialer.config import (
    AgentConfig,
    AgiConfig,
    AmiConfig,
    AmiServerConfig,
    CampaignConfig,
    Config,
    DialingConfig,
    Secret,
)
from dialer.engine import CampaignEngine
from dialer.gates import UnguardedGate
from dialer.importer import import_csv
from dialer.portfolio import write_numbers_portfolio
from dialer.store import attempts as repo
from dialer.store.db import open_store
from pacing.service import make_pacer

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--calls", type=int, default=300, help="calls to hold at once")
    parser.add_argument(
        "--cps",
        type=float,
        nargs="+",
        default=[10.0, 20.0, 40.0],
        help="offered call setups per second, one step each",
    )
    parser.add_argument("--hold-s", type=float, default=20.0, help="how long to hold the calls")
    parser.add_argument("--json", action="store_true")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@dataclass(frozen=True)
class Step:
    offered_cps: float
    setups_per_s: float  # calls answered and bridged per second, first one to last
    held: int  # most calls up at once
    ramp_s: float
    # CPU seconds per wall second while the calls were being set up (the ramp), then while
    # they were only held
    dialer_cores: float
    asterisk_cores: float
    sipp_cores: float
    dialer_cores_holding: float
    asterisk_cores_holding: float
    sipp_cores_holding: float
    dialer_cpu_ms_per_call: float
    ami_events_per_call: float
    failed: int


def _long_call_numbers(calls: int) -> list[str]:
    """Numbers the carrier answers and keeps on for two minutes (last digit 8)."""
    return [f"+1212{5550000 + i * 10 + 8:07d}" for i in range(calls)]


async def _step(cps: float, calls: int, hold_s: float, root: Path) -> Step:
    from sim.lab import AsteriskLab
    from sim.sip.carrier import SippCarrier

    lab = AsteriskLab(root / "asterisk")
    lab.write_config()
    carrier = SippCarrier(port=lab.ports.carrier, max_seconds=int(hold_s * 4 + 180))
    carrier.start()
    lab.start()
    store = open_store(f"sqlite:///{root / 'dialer.db'}")
    try:
        write_numbers_portfolio(root / "portfolio.csv", _long_call_numbers(calls))
        import_csv(store, root / "portfolio.csv", tenant="default", progress=False)
        config = Config(
            data_dir=root,
            node_id="bench",
            ami=AmiConfig(
                servers=(
                    AmiServerConfig(name="lab", port=lab.ports.ami, secret=Secret(lab.ami_secret)),
                )
            ),
            agi=AgiConfig(port=0),
            dialing=DialingConfig(
                channel_template="PJSIP/{number}@trunk",
                use_amd=False,
                record=False,
                ring_timeout_s=20,
                max_originates_per_s=cps,
            ),
            campaign=CampaignConfig(name="bench", wrap_up_s=1.0, max_channels=calls),
            agents=tuple(
                AgentConfig(id=f"a{i}", channel=f"Local/a{i}@agents") for i in range(calls)
            ),
        )
        tenant_id = repo.ensure_tenant(store, "default")
        campaign_id = repo.ensure_campaign(store, tenant_id, "bench", "progressive")
        engine = CampaignEngine(
            config,
            store,
            tenant_id=tenant_id,
            campaign_id=campaign_id,
            pacer=make_pacer("progressive"),
            gate=UnguardedGate(),
        )
        asterisk_pid = lab.pid or 0
        sipp_pid = carrier.pid or 0
        events0 = engine.stats.ami_events

        def cpu_now() -> tuple[float, float, float]:
            return time.process_time(), process_cpu_s(asterisk_pid), process_cpu_s(sipp_pid)

        cpu0 = cpu_now()
        cpu_ramp: tuple[float, float, float] | None = None
        stop = asyncio.Event()
        runner = asyncio.create_task(engine.run(stop))
        wall0 = time.monotonic()
        held = 0
        first_up: float | None = None
        ramp_end: float | None = None
        deadline = wall0 + calls / cps * 3 + 60
        while time.monotonic() < deadline and not runner.done():
            await asyncio.sleep(0.2)
            up = engine.snapshot().connected
            held = max(held, up)
            if first_up is None and up > 0:
                first_up = time.monotonic()
            if ramp_end is None and (
                up >= calls * 0.98
                or (
                    engine.stats.originates_sent >= calls
                    and time.monotonic() - wall0 > calls / cps + 30
                )
            ):
                ramp_end = time.monotonic()
                cpu_ramp = cpu_now()
            if ramp_end is not None and time.monotonic() - ramp_end >= hold_s:
                break
        end = time.monotonic()
        cpu_end = cpu_now()
        cpu_ramp = cpu_ramp or cpu_end
        ramp = (ramp_end or end) - wall0
        hold = max(1e-9, end - (ramp_end or end))
        # From the first call up to the last: the rate calls were set up end to end.
        setup_window = (ramp_end or time.monotonic()) - (first_up or wall0)
        ramping = [b - a for a, b in zip(cpu0, cpu_ramp, strict=True)]
        holding = [b - a for a, b in zip(cpu_ramp, cpu_end, strict=True)]
        answered = engine.stats.originates_sent - engine.stats.originate_errors
        failed = sum(v for k, v in engine.stats.outcomes.items() if k != "answered")
        stop.set()
        engine.hang_up_all()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(60):
                await runner
        if not runner.done():
            runner.cancel()
        placed = max(1, engine.stats.originates_sent)
        return Step(
            offered_cps=cps,
            setups_per_s=held / setup_window if setup_window > 0 else 0.0,
            held=held,
            ramp_s=ramp,
            dialer_cores=ramping[0] / ramp,
            asterisk_cores=ramping[1] / ramp,
            sipp_cores=ramping[2] / ramp,
            dialer_cores_holding=holding[0] / hold,
            asterisk_cores_holding=holding[1] / hold,
            sipp_cores_holding=holding[2] / hold,
            dialer_cpu_ms_per_call=ramping[0] * 1000 / placed,
            ami_events_per_call=(engine.stats.ami_events - events0) / placed,
            failed=failed + (placed - answered - failed if placed > answered + failed else 0),
        )
    finally:
        store.close()
        lab.stop()
        carrier.stop()
        carrier.cleanup()


def run(args: argparse.Namespace) -> int:
    from sim.lab import asterisk_available
    from sim.sip.carrier import sipp_available

    missing = asterisk_available() or sipp_available()
    if missing:
        raise SystemExit(f"dialer bench asterisk needs a real Asterisk and SIPp: {missing}")
    steps = []
    for cps in args.cps:
        with tempfile.TemporaryDirectory(prefix="bench-asterisk-") as tmp:
            steps.append(asyncio.run(_step(cps, args.calls, args.hold_s, Path(tmp))))
    if args.json:
        print(json.dumps([replace(s).__dict__ for s in steps]))
        return 0
    print(
        f"{args.calls} calls through Asterisk's PJSIP trunk to SIPp (no AMD, no recording; "
        "cores = CPU seconds per wall second over the step)"
    )
    print(
        f"{'offered/s':>9} {'setups/s':>9} {'held':>5} {'ramp s':>7} "
        f"{'cores while setting up: dialer':>31} {'asterisk':>9} {'sipp':>6} "
        f"{'while holding: dialer':>22} {'asterisk':>9} {'sipp':>6} "
        f"{'dialer ms/call':>15} {'events/call':>12} {'failed':>7}"
    )
    for s in steps:
        print(
            f"{s.offered_cps:>9.1f} {s.setups_per_s:>9.1f} {s.held:>5} {s.ramp_s:>7.1f} "
            f"{s.dialer_cores:>31.2f} {s.asterisk_cores:>9.2f} {s.sipp_cores:>6.2f} "
            f"{s.dialer_cores_holding:>22.2f} {s.asterisk_cores_holding:>9.2f} "
            f"{s.sipp_cores_holding:>6.2f} {s.dialer_cpu_ms_per_call:>15.2f} "
            f"{s.ami_events_per_call:>12.1f} {s.failed:>7}"
        )
    return 0
