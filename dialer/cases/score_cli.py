"""`dialer cases score`: the nightly re-score of every open case, with counts per band."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date, datetime
from pathlib import Path

from dialer.cases.config_files import ConfigFileError
from dialer.cases.rescore import rescore
from dialer.cases.scoring import load_score_model
from dialer.cases.strategy import SHIPPED
from dialer.store.db import Store

ACTIONS = ("score",)


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> list[argparse.ArgumentParser]:
    score = sub.add_parser(
        "score",
        help="re-score every open case (run nightly): risk, band and the terms that explain it",
    )
    score.add_argument(
        "--date", type=date.fromisoformat, default=None, help="today, YYYY-MM-DD (default: UTC)"
    )
    score.add_argument("--tenant", default=None, help="only this tenant (default: every tenant)")
    score.add_argument("--score", type=Path, default=SHIPPED.with_name("score.toml"))
    score.add_argument("--json", action="store_true")
    return [score]


def run(args: argparse.Namespace, store: Store, tenant_id: int | None, now: datetime) -> int:
    try:
        model = load_score_model(str(args.score))
    except ConfigFileError as exc:
        for problem in exc.problems:
            print(f"{exc.source}: {problem}", file=sys.stderr)
        return 2
    report = rescore(store, model, today=args.date or now.date(), now=now, tenant_id=tenant_id)
    if args.json:
        print(
            json.dumps(
                {
                    "model": report.model,
                    "scored": report.scored,
                    "bands": report.bands,
                    "seconds": round(report.seconds, 3),
                }
            )
        )
        return 0
    bands = ", ".join(f"{n} {band}" for band, n in report.bands.items())
    print(
        f"{report.scored} open cases scored with {report.model} in {report.seconds:.1f} s: {bands}"
    )
    return 0
