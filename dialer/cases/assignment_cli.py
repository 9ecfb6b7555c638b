"""`dialer cases assign|give|collectors|teams`: run the assignment rules (or see what they
would move), give one case to a collector by hand, and keep the collectors and teams."""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from dialer.cases import assignment_service as service
from dialer.cases.assignment import Seniority, load_rules
from dialer.cases.errors import CaseError
from dialer.cases.models import Actor
from dialer.store.db import Store

ACTIONS = ("assign", "give", "collectors", "teams")
SHOWN_MOVES = 50


def _csv(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def add_parsers(sub: Any) -> list[argparse.ArgumentParser]:
    """The subcommands, added to `dialer cases`; returns the parsers (each takes --config)."""
    assign = sub.add_parser(
        "assign",
        help="place cases with teams, collectors and campaigns by the assignment rules",
        description="Apply the tenant's assignment rules (or --rules FILE) to its cases: the "
        "first rule a case meets places it; each move is kept in the case's history. "
        "--dry-run prints what would move and why, and writes nothing.",
    )
    assign.add_argument("--rules", type=Path, default=None, help="rules file (TOML or JSON)")
    assign.add_argument(
        "--save", action="store_true", help="keep --rules as the tenant's rules (import, nightly)"
    )
    assign.add_argument("--dry-run", action="store_true", help="show the moves, change nothing")
    assign.add_argument("--tenant", default=None, help="tenant name (default: campaign.tenant)")
    assign.add_argument("--show", type=int, default=SHOWN_MOVES, metavar="N", help="moves shown")
    assign.add_argument("--json", action="store_true")
    give = sub.add_parser(
        "give",
        help="give one case to a collector by hand; the nightly rules leave it with them",
    )
    give.add_argument("case_id", type=int)
    give.add_argument("agent_id", help="the collector's agent id; 'none': back to the queue")
    give.add_argument("--why", required=True, help="the reason, kept in the case history")
    give.add_argument("--by", default="cli", help="the manager's user name")
    give.add_argument("--no-keep", action="store_true", help="the nightly rules may move it again")
    collectors = sub.add_parser("collectors", help="collectors: add or change, list")
    what = collectors.add_subparsers(dest="collectors_action", required=True, metavar="ACTION")
    add = what.add_parser("add", help="add a collector, or change one (same agent id)")
    add.add_argument("agent_id", help="the agent id the dialer knows them by")
    add.add_argument("--name", default=None)
    add.add_argument("--team", default=None, help="team name (made if new)")
    add.add_argument(
        "--seniority", default=Seniority.JUNIOR.value, choices=[s.value for s in Seniority]
    )
    add.add_argument("--languages", type=_csv, default=["en"], help="e.g. en,zh-CN")
    add.add_argument("--skills", type=_csv, default=[], help="e.g. mortgage,legal")
    add.add_argument("--capacity", type=int, default=200, help="open cases at most")
    add.add_argument("--inactive", action="store_true", help="takes no new cases")
    listing = what.add_parser("list", help="collectors with their open cases")
    listing.add_argument("--json", action="store_true")
    teams = sub.add_parser("teams", help="add a team")
    teams.add_argument("name")
    for p in (give, add, listing, teams):
        p.add_argument("--tenant", default=None, help="tenant name (default: campaign.tenant)")
    return [assign, give, collectors, add, listing, teams]


def run(args: argparse.Namespace, store: Store, tenant_id: int, now: datetime) -> int:
    if args.action == "teams":
        service.add_team(store, tenant_id, args.name, now)
        print(f"team {args.name}")
        return 0
    if args.action == "give":
        agent = None if args.agent_id == "none" else args.agent_id
        keep = not args.no_keep
        service.give_case(
            store, tenant_id, args.case_id, agent, Actor.user(args.by), args.why, now, keep=keep
        )
        where = f"given to {agent}" if agent else "back to the team's queue"
        kept = " (kept there by the nightly assignment)" if agent and keep else ""
        print(f"case {args.case_id}: {where}{kept}")
        return 0
    if args.action == "collectors":
        if args.collectors_action == "add":
            service.save_collector(
                store,
                tenant_id,
                args.agent_id,
                now,
                name=args.name,
                team=args.team,
                seniority=args.seniority,
                languages=args.languages,
                skills=args.skills,
                capacity=args.capacity,
                active=not args.inactive,
            )
            print(f"collector {args.agent_id}")
            return 0
        views = service.list_collectors(store, tenant_id)
        if args.json:
            print(json.dumps([v.__dict__ for v in views]))
            return 0
        for v in views:
            print(
                f"{v.agent_id:<12} {v.team or '-':<12} {v.seniority:<7} "
                f"{','.join(v.languages):<10} {v.open_cases}/{v.capacity} open"
                f"{'' if v.active else ' (inactive)'}"
            )
        return 0
    return _assign(args, store, tenant_id, now)


def _assign(args: argparse.Namespace, store: Store, tenant_id: int, now: datetime) -> int:
    if args.rules is not None:
        rules, source = load_rules(args.rules), str(args.rules)
        if args.save:
            service.save_rules(store, tenant_id, rules, source, Actor.system("cli"), now)
    else:
        if args.save:
            raise CaseError("--save needs --rules FILE")
        saved = service.saved_rules(store, tenant_id)
        if saved is None:
            raise CaseError("the tenant has no saved rules: give --rules FILE (and --save)")
        rules, source = saved, "saved rules"
    report = service.run_assignment(
        store, tenant_id, rules, now, source=source, dry_run=args.dry_run, keep_moves=args.show
    )
    if args.json:
        print(
            json.dumps(
                {
                    "dry_run": report.dry_run,
                    "cases": report.cases,
                    "moved": report.moved,
                    "stayed": report.stayed,
                    "unmatched": report.unmatched,
                    "queued_no_room": report.queued_no_room,
                    "by_rule": dict(report.by_rule),
                    "loads": report.loads,
                    "moves": [
                        {
                            "case": m.case_id,
                            "rule": m.rule,
                            "team": [m.old_team, m.new_team],
                            "collector": [m.old_agent, m.new_agent],
                            "campaign": [m.old_campaign, m.new_campaign],
                            "reasons": list(m.reasons),
                        }
                        for m in report.moves
                    ],
                }
            )
        )
        return 0
    would = "would move" if report.dry_run else "moved"
    for m in report.moves:
        changes = [
            f"{name} {old or '-'} -> {new or '-'}"
            for name, old, new in (
                ("team", m.old_team, m.new_team),
                ("collector", m.old_agent, m.new_agent),
                ("campaign", m.old_campaign, m.new_campaign),
            )
            if old != new
        ]
        print(f"case {m.case_id}: {', '.join(changes)}  [{'; '.join(m.reasons)}]")
    if report.moved > len(report.moves):
        print(f"... and {report.moved - len(report.moves)} more")
    rules_used = ", ".join(f"{k} {v}" for k, v in report.by_rule.items()) or "none"
    print(
        f"{report.cases} cases: {report.moved} {would}, {report.stayed} stay, "
        f"{report.unmatched} matched no rule, {report.queued_no_room} left in a team's queue "
        f"(no collector with room); by rule: {rules_used} ({report.seconds:.1f} s)"
    )
    return 0
