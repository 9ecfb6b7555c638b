"""`dialer report daily|snapshot`: a day's (week's, month's) report as PDF, PNG, CSV or JSON,
and the nightly portfolio snapshot that roll rates and recovery read."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select

from dialer.config import load_config
from dialer.reports.errors import ReportError
from dialer.reports.models import GroupBy, Period
from dialer.reports.render import FORMATS, render
from dialer.reports.service import daily_report, take_snapshot
from dialer.store.db import Store, open_store
from dialer.store.models import Tenant

BINARY = {"pdf", "png"}


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from exc


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, help="TOML config file")
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    daily = sub.add_parser(
        "daily",
        help="the collection report of a day, week or month",
        description="Contact, right-party, promise, kept-promise, recovery, roll and "
        "abandonment figures with agent performance (README: Reports, for each definition).",
    )
    daily.add_argument(
        "--date", type=_day, default=None, help="a day of the period (default: yesterday)"
    )
    daily.add_argument("--period", choices=[p.value for p in Period], default=Period.DAY.value)
    daily.add_argument("--by", choices=[g.value for g in GroupBy], default=GroupBy.CAMPAIGN.value)
    daily.add_argument("--format", choices=sorted(FORMATS), default="json")
    daily.add_argument(
        "--out", type=Path, default=None, help="file to write (default: stdout for csv/json)"
    )
    snap = sub.add_parser(
        "snapshot",
        help="record every debt's balance, bucket and collector for the day (nightly)",
        description="Run at the end of the day (or just after midnight with --date of "
        "yesterday). Taking a day again replaces it.",
    )
    snap.add_argument("--date", type=_day, default=None, help="today or yesterday (default: today)")
    for p in (daily, snap):
        p.add_argument("--tenant", default=None, help="tenant name (default: campaign.tenant)")
        p.add_argument("--tz", default=None, help="where a day starts (default: campaign.timezone)")
        p.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="TOML config file")


def _tenant_id(store: Store, name: str) -> int:
    with store.begin() as conn:
        found = conn.execute(select(Tenant.id).where(Tenant.name == name)).scalar()
    if found is None:
        raise ReportError(f"--tenant {name!r}: no such tenant")
    return int(found)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError) as exc:
        raise ReportError(f"--tz {name!r}: not a time zone (e.g. Asia/Shanghai)") from exc


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    tz = _zone(args.tz or config.campaign.timezone)
    now = datetime.now(UTC)
    today = now.astimezone(tz).date()
    store = open_store(config.effective_database_url)
    try:
        tenant_id = _tenant_id(store, args.tenant or config.campaign.tenant)
        if args.action == "snapshot":
            result = take_snapshot(store, tenant_id, args.date or today, today=today, now=now)
            print(
                f"snapshot {result.day} of tenant {args.tenant or config.campaign.tenant}: "
                f"{result.debts} debts, {result.owing} owing"
                + (f" (replaced {result.replaced})" if result.replaced else "")
            )
            return 0
        report = daily_report(
            store,
            tenant_id,
            args.date or today - timedelta(days=1),
            period=Period(args.period),
            by=GroupBy(args.by),
            tz=tz,
            now=now,
        )
    finally:
        store.close()
    data = render(report, args.format)
    if args.out is None and args.format in BINARY:
        if sys.stdout.isatty():
            raise ReportError(f"--format {args.format}: give --out FILE (not a terminal)")
        sys.stdout.buffer.write(data)
        return 0
    if args.out is None:
        sys.stdout.write(data.decode())
        return 0
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_bytes(data)
    except OSError as exc:
        raise ReportError(f"--out {args.out}: {exc.strerror or exc}") from exc
    print(f"{args.out}: {args.format} report, {report.span.start}..{report.span.end}")
    return 0
