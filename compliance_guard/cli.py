"""`dialer compliance check|verify|replay`: ask the guard from a shell, check and replay the audit log."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from compliance_guard.audit import MemoryAudit, read_entries, verify
from compliance_guard.errors import GuardError, InvalidRequest
from compliance_guard.models import AttemptRequest, Channel, Decision, Outcome, PhoneType
from compliance_guard.rules import PRESETS, RuleSet, load_ruleset, load_ruleset_file

# The engine, zones and guard pull in phonenumbers and holidays; they are imported inside the
# commands so that `dialer --help` and other commands start fast.

CLI_TENANT = "cli"
CLI_PERSON = "person"
CLI_CAMPAIGN = "cli"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="compliance_command", required=True, metavar="ACTION")
    c = sub.add_parser("check", help="would this attempt be allowed? (prints reasons)")
    c.add_argument("--ruleset", required=True, help=f"preset ({', '.join(PRESETS)}) or TOML path")
    c.add_argument("--phone", required=True, help="number in E.164, e.g. +12125551234")
    c.add_argument("--at", required=True, help="moment of the dial, ISO 8601 with offset")
    c.add_argument("--debt-id", action="append", dest="debt_ids", help="debt(s) the call is about")
    c.add_argument("--phone-type", choices=[t.value for t in PhoneType], default="other")
    c.add_argument("--timezone", action="append", dest="timezones", help="explicit IANA zone")
    c.add_argument("--postal-code")
    c.add_argument("--country", help="ISO 3166 alpha-2 of the address")
    c.add_argument("--region", help="state or province code of the address")
    c.add_argument("--channel", choices=[ch.value for ch in Channel], default="call")
    c.add_argument("--third-party", action="store_true", help="calling a contact, not the debtor")
    c.add_argument("--history", type=Path, help="JSON list of prior events of this person")
    c.add_argument("--json", action="store_true", help="print one JSON object")
    v = sub.add_parser("verify", help="check the audit log's hash chain")
    v.add_argument("log", type=Path)
    v.add_argument("--expect-head", help="head hash anchored elsewhere (detects lost tail)")
    v.add_argument("--json", action="store_true")
    r = sub.add_parser("replay", help="re-evaluate every audited decision and compare")
    r.add_argument("log", type=Path)
    r.add_argument("--ruleset-file", action="append", default=[], type=Path,
                   help="custom rule set files the log refers to (presets are built in)")  # fmt: skip
    r.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    try:
        if args.compliance_command == "check":
            return _check(args)
        if args.compliance_command == "verify":
            return _verify(args)
        return _replay(args)
    except GuardError as exc:
        print(f"dialer compliance: error: {exc}", file=sys.stderr)
        return 2


def _parse_at(text: object, where: str) -> datetime:
    if not isinstance(text, str):
        raise InvalidRequest(f"{where}: expected an ISO 8601 time string, got {text!r}")
    try:
        at = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise InvalidRequest(f"{where}: not an ISO 8601 time: {text!r}") from None
    if at.tzinfo is None:
        raise InvalidRequest(f"{where}: {text!r} has no UTC offset")
    return at


def load_history(path: Path) -> list[dict[str, Any]]:
    """Validate the history file; every error names the file and the entry."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidRequest(f"{path}: history file not found") from None
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"{path}: not JSON: {exc.msg} (line {exc.lineno})") from None
    if not isinstance(data, list):
        raise InvalidRequest(f"{path}: expected a JSON list of events")
    events = []
    for i, ev in enumerate(data):
        where = f"{path}[{i}]"
        if not isinstance(ev, dict):
            raise InvalidRequest(f"{where}: expected an object")
        kind = ev.get("kind", "attempt")
        if kind not in ("attempt", "inbound"):
            raise InvalidRequest(f"{where}.kind: expected 'attempt' or 'inbound', got {kind!r}")
        at = _parse_at(ev.get("at"), f"{where}.at")
        debts = ev.get("debt_ids")
        if not isinstance(debts, list) or not debts or not all(isinstance(d, str) for d in debts):
            raise InvalidRequest(f"{where}.debt_ids: expected a non-empty list of strings")
        outcome = ev.get("outcome")
        if outcome is not None:
            try:
                outcome = Outcome(outcome)
            except ValueError:
                names = ", ".join(o.value for o in Outcome)
                raise InvalidRequest(
                    f"{where}.outcome: {outcome!r} is not one of {names}"
                ) from None
        phone = ev.get("phone")
        if kind == "attempt" and not isinstance(phone, str):
            raise InvalidRequest(f"{where}.phone: expected the number dialled")
        phone_type = ev.get("phone_type")
        if phone_type is not None:
            try:
                phone_type = PhoneType(phone_type)
            except ValueError:
                raise InvalidRequest(f"{where}.phone_type: unknown {phone_type!r}") from None
        events.append(
            {"kind": kind, "at": at, "debt_ids": tuple(debts), "phone": phone,
             "outcome": outcome, "phone_type": phone_type}
        )  # fmt: skip
    events.sort(key=lambda e: e["at"])
    return events


def check_decision(args: argparse.Namespace) -> Decision:
    """The decision `check` prints: a fresh in-memory guard fed with the history file."""
    from compliance_guard.service import Guard, RuleBook
    from compliance_guard.store import MemoryStore

    ruleset = load_ruleset(args.ruleset)
    guard = Guard(
        MemoryStore(),
        RuleBook({ruleset.name: ruleset}, default=ruleset.name),
        audit=MemoryAudit(),
        max_facts_age=None,
    )
    at = _parse_at(args.at, "--at")
    request = AttemptRequest(
        tenant=CLI_TENANT,
        person_id=CLI_PERSON,
        debt_ids=tuple(args.debt_ids or ["debt"]),
        phone=args.phone,
        campaign_id=CLI_CAMPAIGN,
        channel=Channel(args.channel),
        phone_type=PhoneType(args.phone_type),
        time_zones=tuple(args.timezones or ()),
        postal_code=args.postal_code,
        country=args.country,
        region=args.region,
        third_party=args.third_party,
    )
    if args.history is not None:
        for ev in load_history(args.history):
            if ev["kind"] == "inbound":
                guard.record_inbound(CLI_TENANT, CLI_PERSON, ev["debt_ids"], ev["at"])
                continue
            same_phone = ev["phone"] == request.phone
            past = AttemptRequest(
                tenant=CLI_TENANT,
                person_id=CLI_PERSON,
                debt_ids=ev["debt_ids"],
                phone=ev["phone"],
                campaign_id=CLI_CAMPAIGN,
                time_zones=request.time_zones if same_phone else (),
                postal_code=request.postal_code,
                country=request.country,
                region=request.region,
            )
            phone_type = ev["phone_type"] or (request.phone_type if same_phone else None)
            guard.record_past_attempt(past, ev["outcome"], ev["at"], phone_type=phone_type)
    return guard.check(request, at)


def check_json(decision: Decision) -> dict[str, Any]:
    """The stable contract of `check --json`."""
    return {
        "allowed": decision.allowed,
        "reasons": [
            {"rule": r.rule, "message": r.message, "citation": r.citation} for r in decision.reasons
        ],
        "next_allowed_at": decision.next_allowed_at.isoformat()
        if decision.next_allowed_at
        else None,
        "zones": list(decision.zones),
    }


def _check(args: argparse.Namespace) -> int:
    decision = check_decision(args)
    if args.json:
        print(json.dumps(check_json(decision)))
    else:
        print("allowed" if decision.allowed else "denied", f"({decision.ruleset})")
        print("zones:", ", ".join(decision.zones) or "none")
        for r in decision.reasons:
            print(f"  - {r.rule}: {r.message}" + (f" [{r.citation}]" if r.citation else ""))
        if decision.next_allowed_at:
            print("next allowed at:", decision.next_allowed_at.isoformat())
    return 0 if decision.allowed else 1


def _verify(args: argparse.Namespace) -> int:
    count, head, problems = verify(args.log, args.expect_head)
    if args.json:
        print(
            json.dumps(
                {
                    "entries": count,
                    "head": head,
                    "intact": not problems,
                    "problems": [
                        {"line": p.line, "seq": p.seq, "message": p.message} for p in problems
                    ],
                }
            )
        )
    else:
        for p in problems:
            print(f"{args.log}:{p.line}: seq {p.seq}: {p.message}")
        print(f"{count} entries, head {head}: {'intact' if not problems else 'TAMPERED'}")
    return 0 if not problems else 1


def replay_entry(body: Mapping[str, Any], rulesets: Mapping[str, RuleSet]) -> str | None:
    """Re-evaluate one audited decision; None when it matches, else what differs."""
    from compliance_guard.engine import EngineCache, decide, make_plan
    from compliance_guard.service import decision_to_dict, request_from_dict
    from compliance_guard.store import LedgerCount, Observation
    from compliance_guard.zones import ZoneResolution, is_known_zone

    request = request_from_dict(body["request"])
    at = datetime.fromisoformat(body["at"])
    name = body.get("ruleset")
    if name is None:
        return None  # denied before any rule set applied (ruleset-missing); nothing to re-run
    ruleset = rulesets.get(name)
    if ruleset is None:
        try:
            ruleset = load_ruleset(name)
        except GuardError:
            return f"rule set {name!r} not available (pass --ruleset-file)"
    if ruleset.digest != body.get("ruleset_hash"):
        return f"rule set {name!r} has changed since (hash {ruleset.digest[:12]} != recorded)"
    recorded_zones = tuple(body.get("zones") or ())
    unknown = tuple(z for z in request.time_zones if not is_known_zone(z))
    resolution = ZoneResolution(recorded_zones, (), unknown)
    cals = EngineCache()
    max_age_s = body.get("max_facts_age_s")
    max_age = timedelta(seconds=max_age_s) if max_age_s is not None else None
    plan = make_plan(ruleset, request, at, resolution, cals, max_age)
    obs_d = body.get("observation")
    obs = None
    if obs_d is not None:
        obs = Observation(
            tuple(LedgerCount(c, p) for c, p in obs_d["counts"]),
            tuple(frozenset(f) for f in obs_d["flags"]),
            bool(obs_d["reserved"]),
        )
    rid = body["decision"].get("reservation_id")
    again = decision_to_dict(decide(plan, obs, rid, cals, body.get("failure")))
    recorded = dict(body["decision"])
    if again != recorded:
        return f"recorded {json.dumps(recorded)} but now {json.dumps(again)}"
    return None


def _replay(args: argparse.Namespace) -> int:
    rulesets = {rs.name: rs for rs in (load_ruleset_file(p) for p in args.ruleset_file)}
    total = 0
    mismatches: list[dict[str, Any]] = []
    for entry in read_entries(args.log):
        body = entry["body"]
        if body.get("kind") != "decision":
            continue
        total += 1
        try:
            problem = replay_entry(body, rulesets)
        except (GuardError, KeyError, TypeError, ValueError) as exc:
            problem = f"cannot replay: {exc!r}"
        if problem is not None:
            mismatches.append({"line": entry["_line"], "seq": entry["seq"], "problem": problem})
    if args.json:
        print(json.dumps({"decisions": total, "mismatches": mismatches}))
    else:
        for m in mismatches:
            print(f"{args.log}:{m['line']}: seq {m['seq']}: {m['problem']}")
        print(f"{total} decisions replayed, {len(mismatches)} differ")
    return 0 if not mismatches else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dialer compliance")
    add_arguments(parser)
    return run(parser.parse_args(argv))
