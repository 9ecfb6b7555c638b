"""`dialer qa`: find calls by what was said, review a call's QA flags, each rule's precision.

    dialer qa search "QUERY" [--campaign NAME] [--agent ID] [--since DATE] [--until DATE]
                             [--party agent|debtor|mixed] [--outcome O] [--flagged|--unflagged]
                             [--limit 50] [--offset 0] [--json]
    dialer qa review CALL_ID [--flag ID --right|--wrong] [--user NAME] [--json]
    dialer qa check CALL_ID [--rules us-collections|cn-collections|FILE.toml] [--json]
    dialer qa queue [--limit 50] [--json]
    dialer qa precision [--json]

Every action takes --tenant (default: the config's [campaign] tenant) and --config.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import select

from dialer.config import load_config
from dialer.store.campaigns import find_campaign
from dialer.store.db import Store, open_store
from dialer.store.models import Party, QaVerdict, Tenant
from recording import qa
from recording.search import search
from recording.transcripts import load_transcripts


def _when(text: str) -> datetime:
    """An ISO date (midnight UTC) or date-time (UTC unless it names its offset)."""
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"{text}: expected 2026-11-30 or 2026-11-30T09:00+08:00"
        ) from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    find = sub.add_parser("search", help="calls whose transcripts say QUERY, with the second")
    find.add_argument("query", help='words, "an exact phrase", 中文 (a single 字 is a prefix)')
    find.add_argument("--campaign", help="campaign name")
    find.add_argument("--agent", help="agent id")
    find.add_argument("--since", type=_when, help="dialled at or after (date or date-time)")
    find.add_argument("--until", type=_when, help="dialled before")
    find.add_argument("--party", choices=[p.value for p in Party])
    find.add_argument("--outcome", help="call outcome, e.g. answered")
    flagged = find.add_mutually_exclusive_group()
    flagged.add_argument("--flagged", action="store_true", help="only calls with QA flags")
    flagged.add_argument("--unflagged", action="store_true", help="only calls without")
    find.add_argument("--limit", type=int, default=50)
    find.add_argument("--offset", type=int, default=0)
    show = sub.add_parser("review", help="a call's QA flags and transcript; mark a flag")
    show.add_argument("call_id", type=int, help="the call's attempt id")
    show.add_argument("--flag", type=int, help="flag id to mark")
    verdict = show.add_mutually_exclusive_group()
    verdict.add_argument("--right", action="store_true", help="the rule was right to fire")
    verdict.add_argument("--wrong", action="store_true", help="a false alarm")
    show.add_argument("--user", default=None, help="who reviews (default: the login name)")
    check = sub.add_parser("check", help="score a stored call against a QA rule set now")
    check.add_argument("call_id", type=int)
    check.add_argument(
        "--rules",
        default="us-collections",
        help=f"preset ({', '.join(qa.list_presets())}) or a TOML file",
    )
    queue = sub.add_parser("queue", help="scored calls, those with flags first")
    queue.add_argument("--limit", type=int, default=50)
    queue.add_argument("--offset", type=int, default=0)
    sub.add_parser("precision", help="per rule: flags judged right and wrong, precision")
    for p in sub.choices.values():
        p.add_argument("--tenant", help="tenant name (default: the config's)")
        p.add_argument("--config", type=Path, help="TOML config file")
        p.add_argument("--json", action="store_true")


def _tenant_id(store: Store, name: str) -> int | None:
    with store.begin() as conn:
        found = conn.execute(select(Tenant.id).where(Tenant.name == name)).scalar()
    return None if found is None else int(found)


def _fail(message: str) -> int:
    print(f"dialer qa: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    store = open_store(config.effective_database_url)
    try:
        tenant = args.tenant or config.campaign.tenant
        tenant_id = _tenant_id(store, tenant)
        if tenant_id is None:
            return _fail(f"no tenant {tenant!r}")
        handler = {
            "search": _search,
            "review": _review,
            "check": _check,
            "queue": _queue,
            "precision": _precision,
        }[args.action]
        try:
            return handler(store, tenant_id, args)
        except qa.QaRulesError as exc:
            return _fail(str(exc))
    finally:
        store.close()


def _search(store: Store, tenant_id: int, args: argparse.Namespace) -> int:
    campaign_id = None
    if args.campaign:
        ref = find_campaign(store, args.campaign, tenant_id)
        if ref is None:
            return _fail(f"no campaign {args.campaign!r}")
        campaign_id = ref.id
    hits = search(
        store,
        tenant_id,
        args.query,
        campaign_id=campaign_id,
        agent_id=args.agent,
        since=args.since,
        until=args.until,
        outcome=args.outcome,
        party=args.party,
        flagged=True if args.flagged else False if args.unflagged else None,
        limit=args.limit,
        offset=args.offset,
    )
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "call_id": h.attempt_id,
                        "party": h.party.value,
                        "second": round(h.start_s, 2),
                        "snippet": h.snippet,
                        "rank": round(h.rank, 4),
                    }
                    for h in hits
                ],
                ensure_ascii=False,
            )
        )
        return 0
    if not hits:
        print("no calls say that")
        return 0
    for h in hits:
        print(f"call {h.attempt_id:>8}  {h.party.value:<6} {_clock(h.start_s)}  {h.snippet}")
    return 0


def _clock(seconds: float) -> str:
    m, s = divmod(max(seconds, 0.0), 60)
    return f"{int(m):>3}:{s:04.1f}"


def _review(store: Store, tenant_id: int, args: argparse.Namespace) -> int:
    if args.flag is not None or args.right or args.wrong:
        if args.flag is None or not (args.right or args.wrong):
            return _fail("mark a flag with --flag ID and --right or --wrong")
        known = {f.id for f in qa.flags_of(store, tenant_id, args.call_id)}
        if args.flag not in known:
            return _fail(f"call {args.call_id} has no flag {args.flag}")
        qa.review(
            store,
            args.flag,
            QaVerdict.RIGHT if args.right else QaVerdict.WRONG,
            args.user or getpass.getuser(),
            tenant_id=tenant_id,
        )
    flags = qa.flags_of(store, tenant_id, args.call_id)
    transcripts = load_transcripts(store, args.call_id, tenant_id=tenant_id)
    if not transcripts and not flags:
        return _fail(f"call {args.call_id} has no transcript and no QA flags")
    lines = sorted(
        ((s.start_s, t.party.value, s.text) for t in transcripts for s in t.segments),
        key=lambda line: line[0],
    )
    if args.json:
        print(
            json.dumps(
                {
                    "call_id": args.call_id,
                    "flags": [f.as_json() for f in flags],
                    "lines": [{"second": s, "party": p, "text": x} for s, p, x in lines],
                },
                ensure_ascii=False,
            )
        )
        return 0
    print(f"call {args.call_id}: {len(flags)} QA flag(s)")
    for f in flags:
        verdict = f"  [{f.verdict.value} by {f.reviewed_by}]" if f.verdict else ""
        party = f.party.value if f.party else "call"
        print(
            f"  flag {f.id:>6}  {_clock(f.at_s)}  {f.kind.value:<9} {f.rule_id:<24} {party:<6} {f.snippet}{verdict}"
        )
    print("transcript:")
    for second, party, line in lines:
        print(f"  {_clock(second)}  {party:<6} {line}")
    return 0


def _check(store: Store, tenant_id: int, args: argparse.Namespace) -> int:
    rules = qa.load_rules(args.rules)
    if not load_transcripts(store, args.call_id, tenant_id=tenant_id):
        return _fail(f"call {args.call_id} has no transcript")
    result = qa.check_call(store, tenant_id, args.call_id, rules)
    flags = qa.flags_of(store, tenant_id, args.call_id)
    if args.json:
        print(
            json.dumps(
                {
                    "call_id": args.call_id,
                    "score": result.score,
                    "flags": [f.as_json() for f in flags],
                },
                ensure_ascii=False,
            )
        )
    else:
        print(f"call {args.call_id}: score {result.score:g} ({rules.name}), {len(flags)} flag(s)")
        for f in flags:
            print(f"  flag {f.id:>6}  {_clock(f.at_s)}  {f.rule_id:<24} {f.snippet}")
    return 0


def _queue(store: Store, tenant_id: int, args: argparse.Namespace) -> int:
    calls = qa.review_queue(store, tenant_id, limit=args.limit, offset=args.offset)
    if args.json:
        print(
            json.dumps(
                [{"call_id": c.attempt_id, "score": c.score, "flags": c.flags} for c in calls]
            )
        )
    else:
        for c in calls:
            print(f"call {c.attempt_id:>8}  score {c.score:>5g}  flags {c.flags}")
    return 0


def _precision(store: Store, tenant_id: int, args: argparse.Namespace) -> int:
    table = qa.rule_precision(store, tenant_id)
    if args.json:
        print(
            json.dumps(
                {r: {"right": a, "wrong": b, "precision": p} for r, (a, b, p) in table.items()}
            )
        )
        return 0
    if not table:
        print("no QA flags yet")
        return 0
    print(f"{'rule':<28} {'right':>6} {'wrong':>6} {'precision':>10}")
    for rule_id, (right, wrong, precision) in table.items():
        shown = "-" if precision is None else f"{precision:.0%}"
        print(f"{rule_id:<28} {right:>6} {wrong:>6} {shown:>10}")
    return 0
