"""The `dialer` command: one entry point whose subcommands live in the package that owns them."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import Protocol

import dialer
import dialer.errors

# command name -> (module, help). Each module offers add_arguments(parser) and run(args) -> int.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("dialer.demo", "run a short campaign against the built-in Asterisk simulator"),
    "run": ("dialer.run", "run a campaign against real Asterisk servers until the list is done"),
    "import": ("dialer.importer_cli", "import debtors, debts and phones from a CSV file"),
    "db": ("dialer.store.cli", "database maintenance (migrations)"),
    "sim": ("sim.cli", "run the Asterisk simulator standalone (AMI on TCP)"),
    "doctor": ("dialer.doctor", "check the environment: database, AMI, Redis, ASR models"),
    "campaign": ("dialer.campaign_cli", "inspect and change campaigns while they run"),
    "users": ("dialer.users_cli", "users of the pages: add, list, change password, disable"),
    "asterisk": ("dialer.asterisk_check", "check an Asterisk config folder against the dialer's"),
    "compliance": (
        "compliance_guard.cli",
        "check calls against rules, verify and replay the audit",
    ),
    "recordings": ("recording.cli", "archive call recordings as evidence, verify, apply retention"),
    "qa": ("recording.qa_cli", "search call transcripts, review QA flags, rule precision"),
    "asr": ("asr.cli", "offline speech recognition of recordings (vosk, pocketsphinx)"),
    "messages": ("dialer.messaging.cli", "SMS and e-mail via the guard: preview, send, receipts"),
    "cases": (
        "dialer.cases.cli",
        "cases: promises, payments, timeline, scores, assignment to collectors and teams",
    ),
    "segments": (
        "dialer.cases.segments_cli",
        "segments (saved filters over cases) and the campaign call lists loaded from them",
    ),
    "strategy": (
        "dialer.cases.strategy_cli",
        "strategies: check files, explain a case, the day's run, a manager's override",
    ),
    "report": ("dialer.reports.cli", "collection reports (PDF, PNG, CSV, JSON), nightly snapshot"),
}

# `dialer bench NAME`: name -> (module, help)
BENCHES: dict[str, tuple[str, str]] = {
    "engine": ("dialer.bench", "AMI events parsed+applied per second; CPU with calls in flight"),
    "pacing": ("sim.bench_pacing", "pacing algorithms over simulated days"),
    "compliance": ("compliance_guard.bench", "check-and-reserve throughput and latency"),
    "store": ("dialer.store.bench", "import throughput and attempt writes vs bare baselines"),
    "web": ("dialer.bench_web", "screen pops to 500 agents' pages; CPU of 50 supervisors' feeds"),
    "asterisk": (
        "dialer.bench_asterisk",
        "call setups/s and calls held through a real Asterisk's PJSIP trunk to SIPp",
    ),
    "asr": ("asr.bench", "real-time factor per engine and process count; WER on core sounds"),
    "search": ("recording.bench_search", "transcript search p50/p95, English and Chinese"),
    "pipeline": ("recording.bench_lag", "hang-up to searchable transcript, 50 calls at once"),
    "cases": ("dialer.cases.bench", "re-score and assign synthetic cases vs a bare read"),
    "report": ("dialer.reports.bench", "the daily report over N call attempts vs COUNT(*)"),
    "messaging": (
        "dialer.messaging.bench",
        "100,000 SMS through the guard to a local HTTP gateway",
    ),
}


class CommandModule(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


def _load(module_name: str) -> CommandModule | None:
    try:
        module: CommandModule = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None  # command not built yet in this checkout
        raise
    return module


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dialer", description="Predictive dialer and collection platform for Asterisk."
    )
    parser.add_argument("--version", action="version", version=f"dialer {dialer.__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = _load(module_name)
        if module is None:
            continue
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(handler=module.run)
    bench = sub.add_parser("bench", help="benchmarks (print figures, never pass/fail)")
    bench_sub = bench.add_subparsers(dest="bench", required=True, metavar="BENCH")
    for name, (module_name, help_text) in BENCHES.items():
        module = _load(module_name)
        if module is None:
            continue
        p = bench_sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(handler=module.run)
    return parser


def configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    try:
        code: int = args.handler(args)
    except KeyboardInterrupt:
        return 130
    except dialer.errors.DialerError as exc:
        print(f"dialer: error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
