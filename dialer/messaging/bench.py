"""`dialer bench messaging`: a batch of SMS planned, put through the compliance guard and sent to
a real local HTTP gateway (in its own process), against the bare POSTs of the same messages."""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from compliance_guard.audit import NullAudit
from compliance_guard.rules import load_preset
from compliance_guard.service import Guard, RuleBook
from compliance_guard.store import ComplianceStore, MemoryStore
from dialer.config import Secret
from dialer.messaging.http_sms import HttpSmsConfig, HttpSmsProvider
from dialer.messaging.models import Channel, Outgoing
from dialer.messaging.service import MessagingService, MessagingSettings
from dialer.messaging.templates import parse_templates
from dialer.store.attempts import ensure_tenant
from dialer.store.db import Store, open_store, safe_url
from dialer.store.models import Address, Debt, Debtor, Phone

GOAL_PER_S = 2000
# 12:00 in Beijing on a Wednesday: inside China's window, so every message is granted.
BENCH_NOW = datetime(2026, 12, 2, 4, 0, tzinfo=UTC)
KEY = "bench-key-not-secret"
TEMPLATE = {
    "templates": {
        "bench": {
            "channel": "sms",
            "zh-CN": {
                "body": "{name}您好，您有{amount}已于{due_date}到期，请通过{payment_link}还款。"
            },
        }
    }
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", type=int, default=100_000, help="messages (one debtor each)")
    parser.add_argument(
        "--database-url",
        default="",
        help="the product database (default: SQLite in a temporary directory)",
    )
    parser.add_argument(
        "--guard",
        choices=("sql", "memory"),
        default="sql",
        help="the guard's ledger: sql (the product database, the default of `dialer`) or memory",
    )
    parser.add_argument("--batch-size", type=int, default=100, help="messages per gateway POST")
    parser.add_argument("--chunk", type=int, default=500, help="messages per guard round trip")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _seed(store: Store, n: int) -> list[int]:
    """n debtors in Shanghai, each with a mobile and one open debt (bulk inserts, not timed)."""
    tenant_id = ensure_tenant(store, "bench-messaging")
    now = BENCH_NOW
    ids: list[int] = []
    step = 5000
    for start in range(0, n, step):
        count = min(step, n - start)
        with store.begin() as conn:
            rows = [
                {
                    "tenant_id": tenant_id,
                    "external_id": f"B-{start + i}",
                    "full_name": f"测试{start + i}",
                    "national_id": None,
                    "timezone": "Asia/Shanghai",
                    "created_at": now,
                }
                for i in range(count)
            ]
            new = list(conn.execute(insert(Debtor).returning(Debtor.id), rows).scalars())
            conn.execute(
                insert(Debt),
                [
                    {
                        "tenant_id": tenant_id,
                        "debtor_id": d,
                        "external_id": f"L-{d}",
                        "principal": Decimal(5000),
                        "balance": Decimal(1000 + d % 4000),
                        "currency": "CNY",
                        "days_past_due": 10 + d % 80,
                        "risk_score": None,
                        "status": "open",
                        "created_at": now,
                    }
                    for d in new
                ],
            )
            conn.execute(
                insert(Phone),
                [
                    {
                        "tenant_id": tenant_id,
                        "debtor_id": d,
                        "e164": f"+86138{d:08d}",
                        "phone_type": "mobile",
                        "source": None,
                        "consent": True,
                        "timezone": None,
                        "do_not_call": False,
                        "created_at": now,
                    }
                    for d in new
                ],
            )
            conn.execute(
                insert(Address),
                [
                    {
                        "tenant_id": tenant_id,
                        "debtor_id": d,
                        "line1": None,
                        "city": "上海",
                        "region": None,
                        "postal_code": "200000",
                        "country": "CN",
                    }
                    for d in new
                ],
            )
            ids += new
    if store.dialect == "postgresql":
        # As the importer does after a large import: planned on stale statistics, every
        # look-up by debtor would scan the whole table.
        with store.begin() as conn:
            conn.exec_driver_sql("ANALYZE debtors, debts, phones, addresses")
    return ids


def _gateway() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "dialer.messaging.gateway_sim", "--key", KEY],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http"):
        proc.kill()
        raise RuntimeError("the gateway did not start")
    return proc, url


def _provider(url: str, batch_size: int) -> HttpSmsProvider:
    return HttpSmsProvider(
        HttpSmsConfig(url=url, api_key=Secret(KEY), sender="10690000", batch_size=batch_size)
    )


@contextmanager
def _database(url: str, tmp: Path) -> Iterator[str]:
    """SQLite in `tmp`, or a throwaway schema of the PostgreSQL database at `url` (dropped
    after), so the bench never writes into a schema someone uses."""
    if not url:
        yield f"sqlite:///{tmp / 'bench.db'}"
        return
    if not url.startswith("postgresql"):
        yield url
        return
    import sqlalchemy as sa

    schema = f"bench_messaging_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in url else "?"
    try:
        yield f"{url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def run(args: argparse.Namespace) -> int:
    n = args.n
    with (
        tempfile.TemporaryDirectory(prefix="dialer-bench-msg-") as tmp,
        _database(args.database_url, Path(tmp)) as url,
    ):
        store = open_store(url)
        proc, gateway_url = _gateway()
        try:
            t0 = time.perf_counter()
            debtor_ids = _seed(store, n)
            seed_s = time.perf_counter() - t0

            # Baseline: the same number of messages, bare POSTs to the same gateway: no
            # template, no guard, no database.
            bare = _provider(gateway_url, args.batch_size)
            outgoing = [
                Outgoing(f"bare-{i}", f"+86139{i:08d}", f"测试{i}您好，您有1,000.00元已到期。")
                for i in range(n)
            ]
            gc.collect()
            t0, c0 = time.perf_counter(), time.process_time()
            results = bare.send(outgoing)
            bare_s, bare_cpu = time.perf_counter() - t0, time.process_time() - c0
            bare.close()
            assert all(r.ok for r in results)
            del outgoing, results

            rs = load_preset("cn")
            backend: ComplianceStore
            if args.guard == "memory":
                backend = MemoryStore()
            else:
                from compliance_guard.store_sql import SqlStore

                backend = SqlStore(store.engine)
            guard = Guard(backend, RuleBook({rs.name: rs}, default=rs.name), audit=NullAudit())
            provider = _provider(gateway_url, args.batch_size)
            service = MessagingService(
                store,
                guard,
                {Channel.SMS: provider},
                MessagingSettings(
                    tenant="bench-messaging",
                    payment_link="https://pay.example.cn/{debtor}",
                    chunk=args.chunk,
                ),
                clock=lambda: BENCH_NOW,
            )
            template = parse_templates(TEMPLATE, "bench")["bench"]
            gc.collect()
            t0, c0 = time.perf_counter(), time.process_time()
            plan, _ = service.plan(template, debtor_ids, "bench-1")
            plan_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            report = service.dispatch("bench-1")
            dispatch_s = time.perf_counter() - t0
            # The sender's own CPU: on a shared machine wall time also counts the other
            # processes' turns; the CPU figure is what this code costs.
            guarded_cpu = time.process_time() - c0
            provider.close()
            t0 = time.perf_counter()
            again = service.dispatch("bench-1")  # a re-run: nothing left to send
            rerun_s = time.perf_counter() - t0
        finally:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(10)
            store.close()
    total_s = plan_s + dispatch_s
    figures: dict[str, Any] = {
        "n": n,
        "database": safe_url(url).split("?")[0],
        "guard_ledger": args.guard,
        "batch_size": args.batch_size,
        "seed_s": round(seed_s, 2),
        "baseline_bare_posts_per_s": round(n / bare_s),
        "planned": plan.created,
        "sent": report.sent,
        "not_sent": n - report.sent,
        "plan_per_s": round(n / plan_s),
        "dispatch_per_s": round(n / dispatch_s),
        "through_guard_per_s": round(n / total_s),
        "ratio_to_baseline": round(bare_s / total_s, 3),
        "baseline_per_cpu_s": round(n / bare_cpu),
        "through_guard_per_cpu_s": round(n / guarded_cpu),
        "goal_per_s": GOAL_PER_S,
        "rerun_sent": again.sent,
        "rerun_s": round(rerun_s, 3),
        "cpus": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(figures))
        return 0
    print(
        f"messaging bench: {n} SMS, {figures['database']}, guard ledger {args.guard}, "
        f"{args.batch_size} per POST (seeding {seed_s:.1f} s, not timed)"
    )
    print(f"  baseline: bare POSTs to the gateway   {n / bare_s:9.0f} msg/s")
    print(f"  plan (render + store)                 {n / plan_s:9.0f} msg/s")
    print(f"  dispatch (guard + send + record)      {n / dispatch_s:9.0f} msg/s")
    verdict = "met" if n / total_s >= GOAL_PER_S else "MISSED"
    print(
        f"  through the guard, end to end         {n / total_s:9.0f} msg/s  "
        f"x{bare_s / total_s:.2f} of baseline  (goal {GOAL_PER_S}/s: {verdict})"
    )
    print(
        f"  per CPU-second of the sender: baseline {n / bare_cpu:.0f} msg/s, through the guard "
        f"{n / guarded_cpu:.0f} msg/s (wall {total_s:.1f} s, CPU {guarded_cpu:.1f} s)"
    )
    print(
        f"  sent {report.sent}, not sent {n - report.sent}; re-run sent {again.sent} in {rerun_s:.2f} s"
    )
    return 0
