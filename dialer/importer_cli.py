"""`dialer import FILE.csv`: load a debt portfolio into the store and print what happened."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from dialer.config import load_config
from dialer.importer import ImportReport, import_csv
from dialer.store.db import open_store

SHOWN_ERRORS = 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="portfolio CSV (format: see dialer/importer.py)")
    parser.add_argument("--tenant", default=None, help="tenant name (default: campaign.tenant)")
    parser.add_argument("--config", type=Path, default=None, help="TOML config file")
    parser.add_argument(
        "--default-region",
        default="US",
        help="ISO 3166 region for numbers without a country code and rows without country",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--show-errors", type=int, default=SHOWN_ERRORS, metavar="N", help="rejections to list"
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar (default: on a terminal)"
    )


def _summary(report: ImportReport, seconds: float, shown: int) -> str:
    lines = [
        f"{report.path}: {report.rows_read} rows read in {seconds:.1f} s for tenant {report.tenant}",
        f"  imported  {report.imported}"
        f" ({report.debtors_created} debtors, {report.debts_created} debts,"
        f" {report.phones_created} phones new)",
        f"  updated   {report.updated}",
        f"  unchanged {report.unchanged}",
        f"  rejected  {report.rejected}",
    ]
    if report.ignored_columns:
        lines.append(f"  ignored columns: {', '.join(report.ignored_columns)}")
    for error in report.errors[:shown]:
        lines.append(f"    line {error.line}: {error.reason}")
    if report.rejected > min(shown, len(report.errors)):
        lines.append(f"    ... and {report.rejected - min(shown, len(report.errors))} more")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Exit 0 when every row went in, 1 when some rows were rejected."""
    config = load_config(args.config)
    tenant = args.tenant or config.campaign.tenant
    progress = not args.no_progress and not args.json and sys.stderr.isatty()
    store = open_store(config.effective_database_url)
    try:
        started = time.perf_counter()
        report = import_csv(store, args.file, tenant, args.default_region, progress)
        seconds = time.perf_counter() - started
    finally:
        store.close()
    if args.json:
        print(json.dumps({**report.to_dict(args.show_errors), "seconds": round(seconds, 3)}))
    else:
        print(_summary(report, seconds, args.show_errors))
    return 1 if report.rejected else 0
