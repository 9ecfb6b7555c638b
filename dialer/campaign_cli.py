"""`dialer campaign show|set`: read a campaign's figures and change its pacing while it runs."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from dialer.config import load_config
from dialer.store import attempts as repo
from dialer.store import campaigns
from dialer.store.db import open_store
from pacing.models import DialMode


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"{text}: must be a fraction between 0 and 1, e.g. 0.02")
    return value


def _ratio(text: str) -> float:
    value = float(text)
    if value < 1.0:
        raise argparse.ArgumentTypeError(f"{text}: a dial ratio below 1 would idle agents")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = sub.add_parser("show", help="overrides and totals of a campaign")
    change = sub.add_parser(
        "set", help="change pacing live (the running dialer applies it on its next tick)"
    )
    for p in (show, change):
        p.add_argument("campaign", help="campaign name")
        p.add_argument("--tenant", help="tenant name when several tenants use the campaign name")
        p.add_argument("--config", type=Path, help="TOML config file")
        p.add_argument("--json", action="store_true")
    change.add_argument("--target-abandon", type=_rate, help="target abandonment rate, e.g. 0.02")
    change.add_argument(
        "--max-ratio", type=_ratio, help="maximum calls in flight per working agent"
    )
    change.add_argument("--mode", choices=[m.value for m in DialMode], help="dial mode")
    pause = change.add_mutually_exclusive_group()
    pause.add_argument("--pause", action="store_true", help="stop placing new calls")
    pause.add_argument("--resume", action="store_true", help="place calls again")


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    store = open_store(config.effective_database_url)
    try:
        tenant_id = repo.ensure_tenant(store, args.tenant) if args.tenant else None
        ref = campaigns.find_campaign(store, args.campaign, tenant_id)
        if ref is None:
            print(f"dialer campaign: no campaign named {args.campaign!r}", file=sys.stderr)
            return 2
        if args.action == "set":
            changes: dict[str, Any] = {
                "target_abandon_rate": args.target_abandon,
                "max_dial_ratio": args.max_ratio,
                "dial_mode": args.mode,
                "paused": True if args.pause else False if args.resume else None,
            }
            if all(v is None for v in changes.values()):
                print("dialer campaign set: nothing to change (see --help)", file=sys.stderr)
                return 2
            overrides = campaigns.set_pacing_overrides(store, ref.id, changes)
        else:
            overrides = campaigns.pacing_overrides(store, ref.id)
        totals = repo.campaign_totals(store, ref.id)
    finally:
        store.close()
    report = {
        "campaign": ref.name,
        "dial_mode": overrides.dial_mode or ref.dial_mode,
        "overrides": dataclasses.asdict(overrides),
        "attempts": totals.attempts,
        "answered": totals.answered,
        "connected": totals.connected,
        "abandoned": totals.abandoned,
        "abandon_rate": round(totals.abandoned / totals.answered, 4) if totals.answered else 0.0,
    }
    if args.json:
        print(json.dumps(report, sort_keys=True))
    else:
        for key, value in report.items():
            print(f"{key:<14} {value}")
    return 0
