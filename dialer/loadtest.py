"""Load harness for `dialer bench engine`: the real engine with ~N calls in flight against a
simulator running in another process, measuring the CPU the dialer process uses."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from pathlib import Path

from dialer.config import (
    AgentConfig,
    AgiConfig,
    AmiConfig,
    AmiServerConfig,
    CampaignConfig,
    Config,
    DialingConfig,
)
from dialer.engine import CampaignEngine
from dialer.gates import UnguardedGate
from dialer.importer import import_csv
from dialer.portfolio import write_sample_portfolio
from dialer.store import attempts as repo
from dialer.store.db import open_store
from pacing.service import make_pacer

# The simulator, in its own process so that its CPU is not counted as the dialer's: mostly live
# answers with 30 s conversations, so ~N calls stay in flight and keep churning.
SIM_PROGRAM = """
import asyncio, sys
from sim.asterisk import AsteriskSim, AmiConfig, PbxConfig
from sim.behaviour import OutcomeMix, SeededDebtors
async def main():
    sim = AsteriskSim(AmiConfig(port=int(sys.argv[1])), PbxConfig(time_scale=1.0, seed=7),
        debtors=SeededDebtors(seed=7, mix=OutcomeMix(human=0.7, machine=0.0, busy=0.1,
        congestion=0.0, unallocated=0.05, rejected=0.0), talk_median_secs=30.0,
        ring_median_secs=3.0, patience_median_secs=30.0))
    await sim.start()
    print("ready", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


async def run_load(*, port: int, calls: int, window_s: float, data_dir: Path) -> dict[str, float]:
    sim = subprocess.Popen(
        [sys.executable, "-c", SIM_PROGRAM, str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert sim.stdout is not None
        line = await asyncio.to_thread(sim.stdout.readline)
        if line.strip() != "ready":
            raise RuntimeError("the simulator process did not start")
        return await _measure(port=port, calls=calls, window_s=window_s, data_dir=data_dir)
    finally:
        sim.terminate()
        sim.wait(timeout=10)


async def _measure(*, port: int, calls: int, window_s: float, data_dir: Path) -> dict[str, float]:
    config = Config(
        data_dir=data_dir,
        node_id="bench",
        ami=AmiConfig(servers=(AmiServerConfig(name="sim", port=port),)),
        agi=AgiConfig(port=0),
        dialing=DialingConfig(use_amd=False, record=True, ring_timeout_s=20),
        campaign=CampaignConfig(name="bench", wrap_up_s=1.0, max_channels=calls),
        agents=tuple(AgentConfig(id=f"a{i}", channel=f"Local/a{i}@agents") for i in range(calls)),
    )
    store = open_store(config.effective_database_url)
    portfolio = data_dir / "portfolio.csv"
    # Enough debtors for the ramp-up and the whole window at ~calls/30 new calls per second.
    write_sample_portfolio(portfolio, debtors=int(calls * (2 + window_s / 20)), seed=3)
    import_csv(store, portfolio, tenant="default")
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
    stop = asyncio.Event()
    runner = asyncio.create_task(engine.run(stop))
    # Ramp up until the target is reached (or 60 s), then measure a window of steady state.
    deadline = time.monotonic() + 60
    while len(engine.live) < calls * 0.9 and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        if runner.done():
            break
    in_flight: list[int] = []
    cpu0, wall0, ended0 = time.process_time(), time.monotonic(), engine.stats.ended
    while time.monotonic() - wall0 < window_s and not runner.done():
        await asyncio.sleep(0.5)
        in_flight.append(len(engine.live))
    cpu = time.process_time() - cpu0
    wall = time.monotonic() - wall0
    ended = engine.stats.ended - ended0
    # Calls still up would take minutes to finish: the measurement is over, so leave them.
    runner.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await runner
    store.close()
    return {
        "load_calls_in_flight_mean": sum(in_flight) / max(1, len(in_flight)),
        "load_calls_ended_per_s": ended / wall,
        "load_dialer_cpu_cores": cpu / wall,
        "load_window_s": wall,
    }
