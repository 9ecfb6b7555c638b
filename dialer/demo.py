"""`dialer demo`: a whole campaign against the built-in Asterisk simulator, in about a minute.

The only place where the simulator runs inside the dialer's process: the dialer still talks to
it over real AMI and FastAGI sockets on loopback, exactly as it would to Asterisk.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import secrets
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from time import monotonic
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import holidays

from dialer.config import (
    AgentConfig,
    AgiConfig,
    AmiConfig,
    AmiServerConfig,
    CampaignConfig,
    ComplianceConfig,
    Config,
    DialingConfig,
    MessagingConfig,
    RecordingsConfig,
    Secret,
    WebConfig,
)
from dialer.importer import import_csv
from dialer.portfolio import write_sample_portfolio
from dialer.run import StopSignals, run_campaign
from dialer.store import users
from dialer.store.db import Store, open_store
from dialer.store.models import Role
from dialer.summary import CampaignSummary, print_summary
from recording.archive import Archive
from recording.report import PipelineReport, pipeline_report, report_lines
from sim.asterisk.ami import AmiConfig as SimAmiConfig
from sim.asterisk.ami import AsteriskSim
from sim.asterisk.pbx import PbxConfig
from sim.audio.recorder import CallMix
from sim.behaviour import OutcomeMix, SeededDebtors

if TYPE_CHECKING:
    from recording.worker import PipelineWorker


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debtors", type=int, default=300, help="size of the sample portfolio")
    parser.add_argument("--agents", type=int, default=5, help="simulated agents logged in")
    parser.add_argument(
        "--seed", type=int, default=1, help="seed of the portfolio and the debtors' behaviour"
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        default=None,
        help="simulated seconds per wall second (default 100: a call of 2.5 min takes 1.5 s; "
        "1 with --web)",
    )
    parser.add_argument(
        "--data-dir", type=Path, help="keep the database here (default: a temporary directory)"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON line")
    parser.add_argument("--quiet", action="store_true", help="no live progress on stderr")
    parser.add_argument(
        "--web",
        action="store_true",
        help="serve the pages too: sign in as agent1 (the person at the desktop), supervisor, "
        "manager (cases, strategies, reports) or qa (search and review the recordings); "
        "runs in real time until Ctrl-C unless --time-scale is given",
    )
    parser.add_argument("--port", type=int, default=8080, help="port of the pages (with --web)")
    parser.add_argument(
        "--transcribe",
        choices=TRANSCRIBE_CHOICES,
        default="text",
        help="how recorded calls are transcribed: text (default: the simulator's own script, "
        "instant; the pipeline, search and QA run as for real), pocketsphinx (real English "
        "recognition, one process per core, ~20-90 s of CPU per call: use few --debtors; "
        "Chinese calls still go by text, no Chinese model installs here), off (record only: "
        "the files stay in the spool for `dialer recordings process`)",
    )
    parser.add_argument(
        "--password",
        default=os.environ.get("DIALER_DEMO_PASSWORD", ""),
        help="password of the demo's users agent1, supervisor, manager and qa (with --web; default: "
        "$DIALER_DEMO_PASSWORD, else a random one printed at start)",
    )


TRANSCRIBE_CHOICES = ("text", "pocketsphinx", "off")


def spool_dir(data_dir: Path) -> Path:
    """Where the simulated Asterisk leaves finished recordings for the archive to take in."""
    return data_dir / "spool"


def business_afternoon(today: date | None = None) -> datetime:
    """13:00 in New York on the next working day: inside the legal calling window of every
    US time zone (08:00 in Hawaii), so the demo dials at whatever hour it is run."""
    day = (today or datetime.now(UTC).date()) + timedelta(days=1)
    us_holidays = holidays.country_holidays("US")
    while day.weekday() >= 5 or day in us_holidays:
        day += timedelta(days=1)
    return datetime.combine(day, time(13, 0), tzinfo=ZoneInfo("America/New_York"))


def simulated_clock(start: datetime, time_scale: float) -> Callable[[], datetime]:
    """Wall time as the simulator lives it: `start`, then `time_scale` seconds per real second."""
    origin = monotonic()
    return lambda: (start + timedelta(seconds=(monotonic() - origin) * time_scale)).astimezone(UTC)


def demo_messaging(data_dir: Path) -> Path:
    """A messaging file for the demo's pages: texts and e-mails go to an outbox file in the
    demo's folder (one JSON line each), so a manager can send to a segment with no gateway."""
    outbox = data_dir / "outbox.jsonl"
    path = data_dir / "messaging.toml"
    path.write_text(
        'payment_link = "https://pay.example.com/{debtor}"\n'
        f'[sms]\nprovider = "file"\npath = {json.dumps(str(outbox))}\n'
        f'[email]\nprovider = "file"\npath = {json.dumps(str(outbox))}\n',
        encoding="utf-8",
    )
    return path


def demo_config(
    *, ami_port: int, agents: int, data_dir: Path, time_scale: float, web_port: int | None = None
) -> Config:
    """The demo's settings; with `web_port`, agent1 is a person at the desktop (their phone
    nailed up in the simulator) and the other agents are simulated."""
    first_simulated = 1 if web_port is None else 2
    return Config(
        data_dir=data_dir,
        node_id="demo",
        time_scale=time_scale,
        ami=AmiConfig(
            servers=(AmiServerConfig(name="sim", port=ami_port, secret=Secret("dialer")),)
        ),
        agi=AgiConfig(port=0),
        dialing=DialingConfig(
            channel_template="Local/{number}@debtor-sim",
            use_amd=True,
            record=True,
            recording_dir=str(spool_dir(data_dir)),
        ),
        # A person at the desktop needs real seconds to write the outcome down.
        campaign=CampaignConfig(
            name="demo",
            dial_mode="predictive",
            wrap_up_s=10.0 if web_port is None else 60.0,
            timezone="America/New_York",
        ),
        web=WebConfig(
            enabled=web_port is not None,
            agent_connect="nailed",
            phone_template="Local/{extension}@agents",
            transfer_to="Local/supervisor@agents",
        ),
        # The demo's database is thrown away; in-process ledgers keep its clock-compressed
        # calls free of database waits.
        compliance=ComplianceConfig(backend="memory"),
        messaging=MessagingConfig(
            file=str(demo_messaging(data_dir)) if web_port is not None else ""
        ),
        agents=tuple(
            AgentConfig(id=f"agent{i}", channel=f"Local/agent{i}@agents")
            for i in range(first_simulated, agents + 1)
        ),
    )


def add_demo_users(store: Store, tenant: str, password: str) -> None:
    """agent1 (the person at the desktop), a supervisor, a collection manager and a QA
    reviewer, unless a kept database has them."""
    for username, role, agent_id, name in (
        ("agent1", Role.AGENT, "agent1", "Alex Agent"),
        ("supervisor", Role.SUPERVISOR, None, "Sam Supervisor"),
        ("manager", Role.MANAGER, None, "Mei Manager"),
        ("qa", Role.QA, None, "Quinn Reviewer"),
    ):
        if users.find_user(store, tenant, username) is None:
            users.add_user(
                store, tenant, username, password, role, display_name=name, agent_id=agent_id
            )


async def run_demo(
    *,
    debtors: int,
    agents: int,
    seed: int,
    time_scale: float,
    data_dir: Path,
    show_progress: bool,
    web_port: int | None = None,
    password: str = "",
    password_given: bool = False,
    transcribe: str = "text",
    drain_timeout_s: float | None = None,
    call_audio: CallMix | None = None,
) -> tuple[CampaignSummary, PipelineReport | None]:
    """The campaign, then (unless `transcribe` is off) the recordings' pipeline drained and
    reported. `drain_timeout_s`: how long to wait for it (default: by engine); `call_audio`:
    what the simulated recordings hold (languages, share of scripted violations)."""
    portfolio = data_dir / "portfolio.csv"
    write_sample_portfolio(portfolio, debtors=debtors, seed=seed)
    sim = AsteriskSim(
        SimAmiConfig(port=0, secret="dialer"),
        # The simulator writes each recorded call's audio (two parties, some with scripted
        # violations for QA to find) where the dialer's MixMonitor path says.
        PbxConfig(
            time_scale=time_scale,
            seed=seed,
            recordings_dir=str(spool_dir(data_dir)),
            call_audio=call_audio or CallMix(),
        ),
        # The default mix plus a few network failures, so every outcome class shows up.
        debtors=SeededDebtors(seed=seed, mix=OutcomeMix(out_of_order=0.02)),
    )
    await sim.start()
    config = demo_config(
        ami_port=sim.port,
        agents=agents,
        data_dir=data_dir,
        time_scale=time_scale,
        web_port=web_port,
    )
    store = open_store(config.effective_database_url)
    pipeline = None
    recordings: PipelineReport | None = None
    try:
        if transcribe != "off":
            from recording.worker import start_pipeline

            # Chinese calls go by their script text: no Chinese model can be installed here.
            # Off the loop: the recogniser processes load their models first.
            pipeline = await asyncio.to_thread(
                start_pipeline,
                store,
                demo_recordings(config, transcribe),
                data_dir,
                node_id=config.node_id,
                text_languages=("zh",),
            )
        if web_port is not None:
            add_demo_users(store, config.campaign.tenant, password)
        report = import_csv(
            store, portfolio, tenant=config.campaign.tenant, default_region="US", progress=False
        )
        if show_progress:
            print(
                f"imported {report.imported} rows from a {debtors}-debtor sample portfolio; "
                f"simulator on 127.0.0.1:{sim.port}, {agents} agents, time x{time_scale:g}",
                file=sys.stderr,
            )
        stop = asyncio.Event()
        signals = StopSignals(stop)
        signals.install()
        summary = await run_campaign(
            config,
            store,
            campaign_name="demo",
            stop=stop,
            show_progress=show_progress,
            wallclock=simulated_clock(business_afternoon(), time_scale),
            signals=signals,
            serve_web=web_port is not None,
            web_port=web_port,
            on_web_ready=lambda port: print(
                f"pages on http://127.0.0.1:{port}/ - tenant {config.campaign.tenant}, "
                "users agent1, supervisor, manager and qa"
                + ("" if password_given else f", password {password}"),
                file=sys.stderr,
                flush=True,
            ),
        )
        # Recordings still being written finish before the pipeline is drained.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(30):
                await sim.wait_calls_ended()
        if pipeline is not None:
            wait = drain_timeout_s or (120.0 if transcribe == "text" else 3600.0)
            recordings = await asyncio.to_thread(
                finish_pipeline, pipeline, store, config, wait, show_progress
            )
    finally:
        if pipeline is not None:
            await asyncio.to_thread(pipeline.stop)
        store.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(30):
                await sim.wait_calls_ended()
        await sim.close()
    if show_progress and sys.stderr.isatty():
        print(file=sys.stderr)
    return summary, recordings


def demo_recordings(config: Config, transcribe: str) -> RecordingsConfig:
    """The demo's pipeline: the text route, or pocketsphinx with one process per core."""
    engine = "script" if transcribe == "text" else "pocketsphinx"
    return dataclasses.replace(config.recordings, engine=engine, processes=0, poll_s=0.5)


def finish_pipeline(
    pipeline: PipelineWorker, store: Store, config: Config, timeout_s: float, progress: bool
) -> PipelineReport:
    """Wait (a bar on stderr) until every recording is through, then report on them all."""
    from tqdm import tqdm

    from dialer.store import attempts as repo

    with tqdm(
        desc="recordings: archive, transcribe, check",
        unit="call",
        disable=not progress,
        file=sys.stderr,
    ) as bar:
        seen = {"done": 0}

        def show(left: int) -> None:
            done = pipeline.transcribed + len(pipeline.failed)
            bar.total = done + left
            bar.update(done - seen["done"])
            seen["done"] = done

        drained = pipeline.drain(timeout_s, show)
    if not drained:
        print(
            f"dialer demo: the recordings were not all through in {timeout_s:.0f} s; the rest "
            "stay queued (`dialer recordings process` finishes them)",
            file=sys.stderr,
        )
    tenant_id = repo.ensure_tenant(store, config.campaign.tenant)
    return pipeline_report(
        store, tenant_id, Archive(config.recordings.archive_root(config.data_dir))
    )


def run(args: argparse.Namespace) -> int:
    if (
        args.debtors < 1
        or args.agents < 1
        or (args.time_scale is not None and args.time_scale <= 0)
    ):
        print(
            "dialer demo: --debtors and --agents must be at least 1, --time-scale above 0",
            file=sys.stderr,
        )
        return 2

    # People at the pages live in real time.
    time_scale = args.time_scale if args.time_scale is not None else 1.0 if args.web else 100.0
    password = args.password or secrets.token_urlsafe(9)

    def go(data_dir: Path) -> tuple[CampaignSummary, PipelineReport | None]:
        return asyncio.run(
            run_demo(
                debtors=args.debtors,
                agents=args.agents,
                seed=args.seed,
                time_scale=time_scale,
                data_dir=data_dir,
                show_progress=not args.quiet,
                web_port=args.port if args.web else None,
                password=password,
                password_given=bool(args.password),
                transcribe=args.transcribe,
            )
        )

    if args.data_dir is not None:
        args.data_dir.mkdir(parents=True, exist_ok=True)
        summary, report = go(args.data_dir)
        hint = f"DIALER_DATA_DIR={args.data_dir} dialer qa search"
    else:
        with tempfile.TemporaryDirectory(prefix="dialer-demo-") as tmp:
            summary, report = go(Path(tmp))
        hint = "(with --data-dir DIR to keep them) DIALER_DATA_DIR=DIR dialer qa search"
    if args.json:
        # Still one JSON object on the last line: the campaign's, with the recordings' added.
        combined = json.loads(summary.to_json())
        combined["recordings"] = report.as_dict() if report is not None else None
        print(json.dumps(combined, sort_keys=True, ensure_ascii=False))
        return 0
    print_summary(dataclasses.replace(summary), False)
    if report is not None:
        for line in report_lines(report, hint):
            print(line)
    return 0
