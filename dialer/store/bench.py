"""`dialer bench store`: import and attempt-writing speed, as ratios to baselines of the same run.

Figures, never pass/fail. Baselines: for the import, reading and checking the same CSV without
touching the database; for attempt rows, a bare Core INSERT in its own transaction.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import insert

from dialer.calls.models import AttemptStatus, Outcome
from dialer.importer import RowParser, import_csv
from dialer.portfolio import write_sample_portfolio
from dialer.store.attempts import (
    AttemptChange,
    NewAttempt,
    create_attempt,
    create_attempts,
    ensure_campaign,
    ensure_tenant,
    next_candidates,
    update_attempt,
    update_attempts,
)
from dialer.store.db import Store, open_store, safe_url
from dialer.store.models import CallAttempt

BATCH = 20  # rows per commit in the batched measurements: a busy tick's worth


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        action="append",
        default=None,
        help="database URL to measure (repeatable; default: a temporary SQLite file)",
    )
    parser.add_argument("--debtors", type=int, default=53_000, help="~1.9 CSV rows per debtor")
    parser.add_argument("--attempts", type=int, default=300, help="attempt rows to write")
    parser.add_argument("--seed", type=int, default=1)


def _parse_only(path: Path) -> float:
    """Seconds to read and check every row with the importer's parser, without a database."""
    import csv

    started = time.perf_counter()
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        parser = RowParser(next(reader), "US")
        for line, cells in enumerate(reader, start=2):
            parser.parse(cells, line)
    return time.perf_counter() - started


def _timed_attempts(store: Store, count: int) -> tuple[float, float, float, float, float]:
    """Seconds for `count` bare inserts, `count` create_attempt and call lifecycles, one commit
    each, then the same rows and lifecycles in batches of BATCH per commit."""
    tenant_id = ensure_tenant(store, "bench")
    campaign_id = ensure_campaign(store, tenant_id, "bench", "predictive")
    candidates = next_candidates(store, campaign_id, 1, max_attempts_per_phone=10**9)
    if not candidates:
        raise SystemExit("no dialable phone in the benchmark portfolio")
    who = candidates[0]
    now = datetime.now(UTC)
    row = {
        "tenant_id": tenant_id,
        "campaign_id": campaign_id,
        "debtor_id": who.debtor_id,
        "debt_id": who.debt_id,
        "phone_id": who.phone_id,
        "status": AttemptStatus.ENDED.value,
        "abandoned": False,
        "dialed_at": now,
        "server": "asterisk1",
        "node_id": "bench",
    }
    started = time.perf_counter()
    for _ in range(count):
        with store.begin() as conn:
            conn.execute(insert(CallAttempt), row)
    bare = time.perf_counter() - started
    new = NewAttempt(
        tenant_id,
        campaign_id,
        who.debtor_id,
        who.debt_id,
        who.phone_id,
        "bench",
        "asterisk1",
        None,
        now,
    )
    started = time.perf_counter()
    ids = [create_attempt(store, new) for _ in range(count)]
    created = time.perf_counter() - started
    started = time.perf_counter()
    for attempt_id in ids:
        update_attempt(store, attempt_id, AttemptChange(uniqueid="1714831200.1", reason=4))
        update_attempt(
            store,
            attempt_id,
            AttemptChange(status=AttemptStatus.ENDED, outcome=Outcome.BUSY, hungup_at=now),
        )
    updated = time.perf_counter() - started
    # What the dialer does under load: a tick's new rows in one commit, the call events that
    # queued meanwhile in one commit (batches of BATCH here).
    started = time.perf_counter()
    ids = []
    for i in range(0, count, BATCH):
        ids += create_attempts(store, [new] * min(BATCH, count - i))
    created_batched = time.perf_counter() - started
    started = time.perf_counter()
    ended = AttemptChange(status=AttemptStatus.ENDED, outcome=Outcome.BUSY, hungup_at=now)
    for i in range(0, count, BATCH):
        chunk = ids[i : i + BATCH]
        update_attempts(store, [(a, AttemptChange(reason=4)) for a in chunk])
        update_attempts(store, [(a, ended) for a in chunk])
    updated_batched = time.perf_counter() - started
    return bare, created, updated, created_batched, updated_batched


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="dialer-bench-") as tmp:
        csv_path = Path(tmp) / "portfolio.csv"
        write_sample_portfolio(csv_path, args.debtors, args.seed)
        with csv_path.open(encoding="utf-8") as handle:
            rows = sum(1 for _ in handle) - 1
        urls = args.url or [f"sqlite:///{Path(tmp) / 'bench.db'}"]
        parse_s = _parse_only(csv_path)
        print(f"portfolio: {args.debtors} debtors, {rows} rows")
        print(f"baseline: read and check only      {parse_s:7.2f} s  {rows / parse_s:9.0f} rows/s")
        for url in urls:
            store = open_store(url)
            try:
                print(f"{safe_url(url)}")
                started = time.perf_counter()
                first = import_csv(store, csv_path, "bench-import", "US", False)
                load_s = time.perf_counter() - started
                started = time.perf_counter()
                import_csv(store, csv_path, "bench-import", "US", False)
                again_s = time.perf_counter() - started
                print(
                    f"  import (new rows)      {load_s:7.2f} s  {rows / load_s:9.0f} rows/s"
                    f"  x{load_s / parse_s:.2f} of baseline  ({first.rejected} rejected)"
                )
                print(
                    f"  re-import (unchanged)  {again_s:7.2f} s  {rows / again_s:9.0f} rows/s"
                    f"  x{again_s / parse_s:.2f} of baseline"
                )
                tenant_id = ensure_tenant(store, "bench-import")
                campaign_id = ensure_campaign(store, tenant_id, "hopper", "predictive")
                started = time.perf_counter()
                next_candidates(store, campaign_id, 100)
                print(f"  next_candidates(100)   {(time.perf_counter() - started) * 1000:7.1f} ms")
                import_csv(store, csv_path, "bench", "US", False)
                bare, created, updated, created_b, updated_b = _timed_attempts(store, args.attempts)
                n = args.attempts
                print(f"  bare INSERT baseline   {n / bare:9.0f} rows/s")
                print(
                    f"  create_attempt         {n / created:9.0f} rows/s"
                    f"  x{created / bare:.2f} of baseline"
                )
                print(
                    f"  update_attempt         {2 * n / updated:9.0f} rows/s"
                    f"  x{updated / (2 * bare):.2f} of baseline"
                )
                print(
                    f"  create_attempts ({BATCH})  {n / created_b:9.0f} rows/s"
                    f"  x{created_b / bare:.2f} of baseline"
                )
                print(
                    f"  update_attempts ({BATCH})  {2 * n / updated_b:9.0f} rows/s"
                    f"  x{updated_b / (2 * bare):.2f} of baseline"
                )
            finally:
                store.close()
    return 0
