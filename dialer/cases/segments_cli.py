"""`dialer segments add|list|show|load|refresh|detach`: saved filters over cases, and the
campaigns' call lists loaded from them."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from dialer.cases import segments as seg
from dialer.cases.cli import _tenant_id
from dialer.cases.config_files import ConfigFileError, load_document
from dialer.cases.models import Actor
from dialer.config import load_config
from dialer.store.db import open_store

CLI = Actor.system("cli")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = sub.add_parser("add", help="save a segment (or replace its filter)")
    add.add_argument("name")
    given = add.add_mutually_exclusive_group(required=True)
    given.add_argument("--filter", help='the filter as JSON, e.g. {"queued_for": "spring"}')
    given.add_argument("--file", type=Path, help="the filter in a TOML or JSON file")
    add.add_argument("--description", default="")
    listing = sub.add_parser("list", help="the tenant's segments")
    show = sub.add_parser("show", help="a segment's filter, how many cases and a sample")
    show.add_argument("name")
    show.add_argument("--sample", type=int, default=10, metavar="N")
    load = sub.add_parser(
        "load",
        help="load a campaign's call list from a segment (it then dials only those cases)",
    )
    load.add_argument("campaign")
    load.add_argument("segment")
    refresh = sub.add_parser(
        "refresh", help="reload every campaign's list from its segment (after the nightly run)"
    )
    detach = sub.add_parser("detach", help="the campaign dials the whole portfolio again")
    detach.add_argument("campaign")
    for p in (add, listing, show, load, refresh, detach):
        p.add_argument("--tenant", default=None, help="tenant name (default: campaign.tenant)")
        p.add_argument("--config", type=Path, default=None, help="TOML config file")
        p.add_argument("--json", action="store_true")


def _filter_document(args: argparse.Namespace) -> Mapping[str, object]:
    if args.file is not None:
        return load_document(args.file)
    try:
        data = json.loads(args.filter)
    except json.JSONDecodeError as exc:
        raise ConfigFileError("--filter", [f"not JSON: {exc.msg} at {exc.pos}"]) from None
    if not isinstance(data, dict):
        raise ConfigFileError("--filter", ["(top level): expected an object"])
    return data


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    store = open_store(config.effective_database_url)
    now = datetime.now(UTC)
    try:
        tenant = _tenant_id(store, args.tenant or config.campaign.tenant)
        if args.action == "add":
            view = seg.save_segment(
                store,
                tenant,
                args.name,
                _filter_document(args),
                CLI,
                now,
                description=args.description,
            )
            print(f"segment {view.name}: {json.dumps(view.filter, ensure_ascii=False)}")
        elif args.action == "list":
            for view in seg.list_segments(store, tenant):
                print(f"{view.name:<20} {json.dumps(view.filter, ensure_ascii=False)}")
        elif args.action == "show":
            view = seg.get_segment(store, tenant, args.name)
            shown = seg.preview(
                store, tenant, seg.filter_from_mapping(view.filter, view.name), args.sample
            )
            if args.json:
                print(json.dumps({"filter": view.filter, "count": shown.count,
                                  "sample": [s.__dict__ for s in shown.sample]}))  # fmt: skip
                return 0
            print(f"segment {view.name}: {json.dumps(view.filter, ensure_ascii=False)}")
            print(f"  {shown.count} cases")
            for s in shown.sample:
                print(
                    f"  case {s.case_id}: {s.debtor_name} ({s.debtor_external_id}), {s.status},"
                    f" collector {s.agent_id or '-'}"
                )
        elif args.action == "load":
            n = seg.load_campaign_list(store, tenant, args.campaign, args.segment, CLI, now)
            print(f"{args.campaign}: {n} cases on its call list from segment {args.segment}")
        elif args.action == "refresh":
            for campaign, n in seg.refresh_campaign_lists(store, tenant, CLI, now).items():
                print(f"{campaign}: {n} cases on its call list")
        else:
            seg.detach_campaign(store, tenant, args.campaign)
            print(f"{args.campaign}: dials the whole portfolio")
        return 0
    finally:
        store.close()
