"""`dialer bench cases`: re-scoring and assigning synthetic cases, each beside a bare read of
the same rows in the same run (the report and messaging figures have benches of their own)."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from dialer.cases.assignment_bench import bench_assign
from dialer.cases.rescore import bench_score
from dialer.cases.strategy import shipped_score_model
from dialer.store.db import open_store, safe_url


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        action="append",
        default=None,
        help="database to measure on (repeatable; default: a temporary SQLite file); "
        "the benches add tenants of their own",
    )
    parser.add_argument("--cases", type=int, default=100_000, help="synthetic cases per part")
    parser.add_argument(
        "--keep", action="store_true", help="leave the scored cases (faster on a throwaway DB)"
    )


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="dialer-bench-cases-") as tmp:
        for url in args.url or [f"sqlite:///{Path(tmp) / 'bench.db'}"]:
            store = open_store(url)
            try:
                print(safe_url(url))
                score = bench_score(store, shipped_score_model(), args.cases, cleanup=not args.keep)
                ratio = score.score_s / score.baseline_s if score.baseline_s else 0.0
                print(
                    f"  score {score.cases:,} cases: {score.score_s:.1f} s "
                    f"(bare SELECT of them {score.baseline_s:.1f} s, x{ratio:.1f}); "
                    f"bands {score.bands}"
                )
                assign = bench_assign(store, args.cases)
                print(
                    f"  assign {int(assign['cases']):,} cases: first run {assign['first_run_s']} s "
                    f"({int(assign['first_run_moved']):,} moved), nightly re-run "
                    f"{assign['second_run_s']} s, bare read {assign['baseline_read_s']} s"
                )
            finally:
                store.close()
    return 0
