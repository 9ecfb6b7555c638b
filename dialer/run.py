"""`dialer run`: one campaign over the imported debtors against real Asterisk servers."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from dialer.config import Config, load_config
from dialer.engine import AttemptGate, CampaignEngine
from dialer.gates import ComplianceGate, build_guard
from dialer.store import attempts as repo
from dialer.store import campaigns
from dialer.store.db import Store, open_store
from dialer.summary import (
    CampaignSummary,
    mark_run_start,
    print_summary,
    progress_line,
    summarize,
)
from pacing.errors import SnapshotError
from pacing.models import PacingSettings
from pacing.service import make_pacer

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML config file (see README)")
    parser.add_argument("--campaign", help="campaign name (default: [campaign].name)")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON line")
    parser.add_argument("--quiet", action="store_true", help="no live progress on stderr")


async def run_campaign(
    config: Config,
    store: Store,
    *,
    campaign_name: str,
    stop: asyncio.Event,
    show_progress: bool,
    gate: AttemptGate | None = None,
    wallclock: Callable[[], datetime] | None = None,
    signals: StopSignals | None = None,
    serve_web: bool = False,
    web_port: int | None = None,
    on_web_ready: Callable[[int], None] | None = None,
) -> CampaignSummary:
    """Run one campaign to the end (list exhausted) or until `stop` is set; summarise it.

    Without `gate`, every attempt passes the compliance guard configured in `config`. With
    `serve_web`, the pages are served from this loop while the campaign runs."""
    tenant_id = repo.ensure_tenant(store, config.campaign.tenant)
    campaign_id = repo.ensure_campaign(store, tenant_id, campaign_name, config.campaign.dial_mode)
    pacer = make_pacer(
        config.campaign.dial_mode,
        PacingSettings(
            abandon_after_s=config.campaign.abandon_after_s,
            target_abandon_rate=config.campaign.target_abandon_rate,
            max_dial_ratio=config.campaign.max_dial_ratio,
        ),
    )
    snapshot = campaigns.load_pacing_snapshot(store, campaign_id)
    if snapshot is not None:
        try:
            pacer.restore(snapshot)
            log.info("= campaign %s: pacing statistics restored from the last run", campaign_name)
        except SnapshotError as exc:
            log.warning(
                "x campaign %s: pacing snapshot ignored (%s); starting cold", campaign_name, exc
            )
    guard = gate.guard if isinstance(gate, ComplianceGate) else None
    if gate is None:
        guard = build_guard(config, store)
        gate = ComplianceGate(guard, store, tenant=config.campaign.tenant, campaign_id=campaign_id)
    engine = CampaignEngine(
        config,
        store,
        tenant_id=tenant_id,
        campaign_id=campaign_id,
        pacer=pacer,
        gate=gate,
        wallclock=wallclock or (lambda: datetime.now(UTC)),
        campaign_name=campaign_name,
    )
    if signals is not None:
        signals.engine = engine
    # What is loaded by now (libraries, numbering plans, rule sets, restored statistics) lives
    # as long as the process: keep the cyclic garbage collector from rescanning it all the time.
    gc.collect()
    gc.freeze()
    # The summary tells this run's attempts from earlier runs' by where the attempt ids stand now.
    start = mark_run_start(store, campaign_id, config.node_id)
    async with contextlib.AsyncExitStack() as stack:
        if serve_web:
            from dialer.web.wiring import pages  # the web stack only where pages are served

            port = await stack.enter_async_context(
                pages(engine, config, guard or build_guard(config, store), port=web_port, stop=stop)
            )
            # The web stack loaded since the freeze above: keep the collector off it too (a
            # full collection with hundreds of pages open stops the loop for ~100 ms).
            gc.collect()
            gc.freeze()
            if on_web_ready is not None:
                on_web_ready(port)
        await engine.run(stop, progress_line if show_progress else None)
    return summarize(engine, campaign_name, start)


class StopSignals:
    """Ctrl-C / SIGTERM: the first stops dialling and lets the calls in progress end (saying how
    many it waits for); the second hangs them up, and the run ends as soon as they are gone."""

    def __init__(self, stop: asyncio.Event, out: TextIO = sys.stderr) -> None:
        self.stop = stop
        self.out = out
        self.engine: CampaignEngine | None = None
        self.received = 0

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.signalled)

    def signalled(self) -> None:
        self.received += 1
        in_progress = len(self.engine.live) if self.engine is not None else 0
        if self.received == 1:
            self.stop.set()
            print(
                f"stopping: no new calls; waiting for {in_progress} call(s) in progress to end "
                "(send the signal again to hang them up)",
                file=self.out,
                flush=True,
            )
        else:
            asked = self.engine.hang_up_all() if self.engine is not None else 0
            print(f"hanging up {asked} call(s) in progress", file=self.out, flush=True)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    store = open_store(config.effective_database_url)

    async def main() -> CampaignSummary:
        stop = asyncio.Event()
        signals = StopSignals(stop)
        signals.install()
        return await run_campaign(
            config,
            store,
            campaign_name=args.campaign or config.campaign.name,
            stop=stop,
            show_progress=not args.quiet,
            signals=signals,
            serve_web=config.web.enabled,
            on_web_ready=lambda port: print(
                f"pages on http://{config.web.host}:{port}/", file=sys.stderr, flush=True
            ),
        )

    pipeline = None
    if config.recordings.enabled and config.dialing.record:
        from recording.worker import start_pipeline  # numpy, the recogniser pool: only here

        # Each finished call's recording is archived, transcribed and checked as the campaign
        # goes, in threads and recogniser processes beside the loop (recording/worker.py).
        pipeline = start_pipeline(store, config.recordings, config.data_dir, node_id=config.node_id)
    try:
        summary = asyncio.run(main())
    finally:
        if pipeline is not None:
            # Unfinished recording jobs stay queued: the next run (or `dialer recordings
            # process`) takes them.
            pipeline.stop()
        store.close()
    print_summary(summary, args.json)
    return 0
