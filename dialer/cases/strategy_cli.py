"""`dialer strategy check|explain`: a manager's strategy and score files checked before use, and
one case's score and strategy shown with their reasons."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dialer.cases.config_files import ConfigFileError
from dialer.cases.scoring import CaseFeatures, LogisticModel, PointsModel, load_score_model, score
from dialer.cases.strategy import (
    SHIPPED,
    CaseFacts,
    ContactStep,
    Strategies,
    choose,
    load_strategies,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = sub.add_parser(
        "check",
        help="check a strategies file (and a score file); every error names its key",
    )
    check.add_argument("file", type=Path, nargs="?", default=SHIPPED, help="TOML or JSON")
    check.add_argument("--score", type=Path, default=SHIPPED.with_name("score.toml"))
    check.add_argument("--json", action="store_true")
    explain = sub.add_parser(
        "explain", help="one case's risk score term by term and the strategy it would get"
    )
    explain.add_argument("--strategies", type=Path, default=SHIPPED)
    explain.add_argument("--score", type=Path, default=SHIPPED.with_name("score.toml"))
    explain.add_argument("--days-past-due", type=int, required=True)
    explain.add_argument("--balance", type=float, required=True)
    explain.add_argument("--principal", type=float, default=None)
    explain.add_argument("--broken-promises", type=int, default=0)
    explain.add_argument("--kept-promises", type=int, default=0)
    explain.add_argument("--paid-ratio", type=float, default=0.0)
    explain.add_argument("--days-since-last-contact", type=int, default=None)
    explain.add_argument("--region", default=None)
    explain.add_argument("--json", action="store_true")


def _load(strategies: Path, score_file: Path) -> tuple[Strategies, PointsModel | LogisticModel]:
    return load_strategies(strategies), load_score_model(str(score_file))


def _steps(strategy_steps: list[object]) -> list[str]:
    out = []
    for step in strategy_steps:
        if isinstance(step, ContactStep):
            out.append(f"{step.kind} {step.campaign or step.template}")
        else:
            out.append(getattr(step, "kind", "?"))
    return out


def run(args: argparse.Namespace) -> int:
    try:
        strategies, model = _load(
            args.file if args.action == "check" else args.strategies, args.score
        )
    except ConfigFileError as exc:
        for problem in exc.problems:
            print(f"{exc.source}: {problem}", file=sys.stderr)
        return 2
    if args.action == "check":
        if args.json:
            print(
                json.dumps(
                    {
                        "strategies": {
                            name: _steps(list(s.steps)) for name, s in strategies.strategies.items()
                        },
                        "selection_rules": len(strategies.selection),
                        "default": strategies.default,
                        "score_model": model.name,
                    },
                    ensure_ascii=False,
                )
            )
            return 0
        for name, s in strategies.strategies.items():
            print(f"{name} ({s.title}): " + ", ".join(_steps(list(s.steps))))
        print(f"{len(strategies.selection)} selection rules, default {strategies.default}")
        print(f"score model {model.name} ({model.kind}): ok")
        return 0
    features = CaseFeatures(
        days_past_due=args.days_past_due,
        balance=args.balance,
        principal=args.principal if args.principal is not None else args.balance,
        broken_promises=args.broken_promises,
        kept_promises=args.kept_promises,
        paid_ratio=args.paid_ratio,
        days_since_last_contact=args.days_since_last_contact,
        region=args.region,
    )
    result = score(model, features)
    facts = CaseFacts(
        balance=args.balance,
        days_past_due=args.days_past_due,
        broken_promises=args.broken_promises,
    )
    choice = choose(strategies, facts, result, args.days_since_last_contact is None)
    if args.json:
        print(
            json.dumps(
                {
                    "risk": result.value,
                    "band": result.band.value,
                    "terms": [
                        {"feature": t.feature, "points": t.contribution, "reason": t.reason}
                        for t in result.terms
                    ],
                    "strategy": choice.strategy,
                    "reasons": list(choice.reasons),
                }
            )
        )
        return 0
    print(result.explain())
    print(f"strategy {choice.strategy}: " + "; ".join(choice.reasons))
    return 0
