"""`dialer cases promises|payments|show`: the nightly promise run, the payments file, a case."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from dialer.cases import assignment_cli, score_cli, service
from dialer.cases.errors import CaseError
from dialer.cases.payments import import_payments
from dialer.cases.promises import run_promises
from dialer.config import load_config
from dialer.store.db import Store, open_store
from dialer.store.models import Tenant

SHOWN_ERRORS = 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, help="TOML config file")
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    run = sub.add_parser(
        "promises",
        help="settle promises due before DATE: kept when paid in time, else broken",
        description="Every open promise due before --date is kept (paid in time) or broken "
        "(its case goes to broken_promise). Run daily; running twice changes nothing more.",
    )
    run.add_argument(
        "--date", type=date.fromisoformat, default=None, help="today, YYYY-MM-DD (default: UTC)"
    )
    run.add_argument("--tenant", default=None, help="only this tenant (default: every tenant)")
    run.add_argument("--json", action="store_true")
    pay = sub.add_parser(
        "payments", help="record the payments of a CSV file (format: dialer/cases/payments.py)"
    )
    pay.add_argument("file", type=Path)
    pay.add_argument("--tenant", default=None, help="tenant name (default: campaign.tenant)")
    pay.add_argument("--json", action="store_true")
    pay.add_argument("--show-errors", type=int, default=SHOWN_ERRORS, metavar="N")
    show = sub.add_parser("show", help="a case with its debts, promises, payments and timeline")
    show.add_argument("case_id", type=int)
    show.add_argument("--tenant", default=None, help="tenant name (default: campaign.tenant)")
    show.add_argument("--json", action="store_true")
    for p in (run, pay, show, *assignment_cli.add_parsers(sub), *score_cli.add_parsers(sub)):
        p.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="TOML config file")


def _tenant_id(store: Store, name: str) -> int:
    with store.begin() as conn:
        found = conn.execute(select(Tenant.id).where(Tenant.name == name)).scalar()
    if found is None:
        raise CaseError(f"no tenant {name!r}")
    return int(found)


def _json_default(value: Any) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def run(args: argparse.Namespace) -> int:
    """promises: 0. payments: 0 when every row went in, 1 when some were rejected. show: 0."""
    config = load_config(args.config)
    store = open_store(config.effective_database_url)
    now = datetime.now(UTC)
    try:
        if args.action in score_cli.ACTIONS:
            tenant_id = None if args.tenant is None else _tenant_id(store, args.tenant)
            return score_cli.run(args, store, tenant_id, now)
        if args.action in assignment_cli.ACTIONS:
            ref = _tenant_id(store, args.tenant or config.campaign.tenant)
            return assignment_cli.run(args, store, ref, now)
        if args.action == "promises":
            tenant_id = None if args.tenant is None else _tenant_id(store, args.tenant)
            report = run_promises(store, args.date or now.date(), now, tenant_id=tenant_id)
            if args.json:
                print(json.dumps(asdict(report), default=_json_default))
            else:
                print(
                    f"promises due before {report.today.isoformat()}: {report.checked} checked, "
                    f"{len(report.kept)} kept, {len(report.broken)} broken"
                )
            return 0
        tenant = args.tenant or config.campaign.tenant
        if args.action == "payments":
            result = import_payments(store, args.file, tenant, now=now)
            if args.json:
                print(json.dumps(result.to_dict()))
            else:
                print(
                    f"{result.path}: {result.rows_read} rows for tenant {tenant}: "
                    f"{result.recorded} recorded, {result.duplicates} already known, "
                    f"{result.rejected} rejected, {len(result.cases_paid)} cases paid in full"
                )
                for error in result.errors[: args.show_errors]:
                    print(f"    line {error.line}: {error.reason}")
            return 1 if result.rejected else 0
        view = service.get_case(store, _tenant_id(store, tenant), args.case_id)
        if args.json:
            print(json.dumps(asdict(view), default=_json_default))
            return 0
        owed = ", ".join(f"{v} {c}" for c, v in view.balance.items()) or "nothing"
        print(f"case {view.id}: {view.debtor_name} ({view.debtor_external_id}), {view.status}")
        print(f"  owes {owed}; collector {view.agent_id or '-'}")
        for entry in view.timeline:
            who = f" [{entry.actor}]" if entry.actor else ""
            print(f"  {entry.at:%Y-%m-%d %H:%M} {entry.kind.value:<16} {entry.summary}{who}")
        return 0
    finally:
        store.close()
