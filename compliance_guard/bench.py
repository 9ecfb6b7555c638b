"""`dialer bench compliance`: check-and-reserve throughput and p99 per backend, and a race mode."""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import random
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from compliance_guard.audit import AuditSink, JsonlAudit, NullAudit
from compliance_guard.models import AttemptRequest, Outcome, PhoneType
from compliance_guard.rules import RuleSet, load_preset, parse_ruleset
from compliance_guard.service import Guard, RuleBook
from compliance_guard.store import ComplianceStore, MemoryStore

DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
# A Monday 10:00 in New York: inside Reg F hours, so the measured path is the granting one.
BENCH_NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
# The workload cycles through this many debtors, each with a number of its own.
DEBTORS = 5000
TARGETS = {
    "memory": 50_000,
    "memory-prepared": 50_000,
    "redis": 5_000,
    "redis-pipelined": 5_000,
    "postgresql": 1_000,
    "postgresql-batched": 1_000,
    "postgresql-nondurable": 1_000,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", type=int, default=20_000, help="reservations per backend")
    parser.add_argument(
        "--backends",
        default="memory,memory-prepared,redis,redis-pipelined,postgresql,postgresql-batched",
        help="comma-separated: memory (cold: each number classified on first sight, inside the "
        "timed loop), memory-prepared (the debtors prepared first with Guard.prepare, as a "
        "dialer does when it loads its hopper; that cost is printed apart), redis, "
        "redis-pipelined, postgresql, postgresql-batched "
        "(check_and_reserve_many, --batch per transaction), postgresql-nondurable "
        "(synchronous_commit=off: never the default, not counted toward the target)",
    )
    parser.add_argument("--redis-url", default=DEFAULT_REDIS)
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    parser.add_argument(
        "--batch", type=int, default=100, help="batch size (redis-pipelined, postgresql-batched)"
    )
    parser.add_argument(
        "--audit",
        action="store_true",
        help="include the audit chain (a JsonlAudit file in a temporary directory)",
    )
    parser.add_argument(
        "--race",
        type=int,
        default=0,
        metavar="N",
        help="instead: N reservations raced by processes",
    )
    parser.add_argument(
        "--warm",
        action="store_true",
        help="prepare every backend's debtors first (Guard.prepare: numbers classified, "
        "templates built, nothing read or reserved): the figures are then those of debtors "
        "already seen",
    )
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _requests(n: int) -> list[AttemptRequest]:
    return [
        AttemptRequest(
            tenant="bench",
            person_id=f"p{i % DEBTORS}",
            debt_ids=(f"d{i % DEBTORS}",),
            phone=f"+1212555{i % DEBTORS:04d}",
            campaign_id="bench",
            phone_type=PhoneType.MOBILE,
        )
        for i in range(n)
    ]


@dataclass(frozen=True)
class Figures:
    backend: str
    n: int
    per_second: float
    p50_us: float
    p99_us: float
    floor_per_second: float  # the bare round trip / lock of this backend, same run
    target: int
    prepare_us: float | None = None  # Guard.prepare per debtor, before timing (not counted)

    def as_dict(self) -> dict[str, Any]:
        out = {
            "backend": self.backend,
            "n": self.n,
            "per_second": round(self.per_second),
            "p50_us": round(self.p50_us, 1),
            "p99_us": round(self.p99_us, 1),
            "floor_per_second": round(self.floor_per_second),
            "ratio_to_floor": round(self.per_second / self.floor_per_second, 3),
            "ratio_to_target": round(self.per_second / self.target, 2),
        }
        if self.prepare_us is not None:
            out["prepare_us_per_debtor"] = round(self.prepare_us, 1)
        return out


def _measure(
    name: str, n: int, one: Callable[[int], None], floor: Callable[[], None], batch: int = 1
) -> Figures:
    # Floor first: the cheapest possible atomic step on this backend, for the ratio.
    floor_n = max(1000, n // 4)
    t0 = time.perf_counter()
    for _ in range(floor_n):
        floor()
    floor_rate = floor_n / (time.perf_counter() - t0)
    # Collect what setting up left (the workload, prepared debtors) so the timed loop pays only
    # for the garbage collections its own decisions cause.
    gc.collect()
    gc.freeze()  # as `dialer run` does once started: what is loaded is never rescanned
    lat: list[float] = []
    t0 = time.perf_counter()
    for i in range(0, n, batch):
        s = time.perf_counter_ns()
        one(i)
        lat.append((time.perf_counter_ns() - s) / 1000)
    total = time.perf_counter() - t0
    q = statistics.quantiles(lat, n=100) if len(lat) >= 2 else [lat[0]] * 99
    return Figures(name, n, n / total, q[49], q[98], floor_rate, TARGETS.get(name, 1))


def _guard(store: ComplianceStore, ruleset: RuleSet, audit: bool) -> Guard:
    sink: AuditSink = NullAudit()
    if audit:
        # The production sink: one hash-chained line per decision, flushed to the OS.
        sink = JsonlAudit(Path(tempfile.mkdtemp(prefix="bench-audit-")) / "audit.jsonl")
    return Guard(store, RuleBook({ruleset.name: ruleset}, default=ruleset.name), audit=sink)


def bench_backend(name: str, args: argparse.Namespace) -> Figures:
    ruleset = load_preset("us-regf")
    reqs = _requests(args.n)
    now = BENCH_NOW
    _start_up(ruleset, now)
    if name in ("memory", "memory-prepared"):
        guard = _guard(MemoryStore(), ruleset, args.audit)
        lock = threading.Lock()
        counter: dict[str, int] = {}

        def floor() -> None:
            with lock:
                counter["k"] = counter.get("k", 0) + 1

        prepared = _warm(guard, reqs, args, always=name == "memory-prepared")
        fig = _measure(name, args.n, lambda i: _one(guard, reqs[i], now), floor)
        return replace(fig, prepare_us=prepared)
    if name in ("redis", "redis-pipelined"):
        import redis

        from compliance_guard.store_redis import RedisStore

        prefix = f"bench:{uuid.uuid4().hex[:8]}:"
        client = redis.Redis.from_url(args.redis_url)
        store = RedisStore(client, prefix=prefix)
        guard = _guard(store, ruleset, args.audit)
        try:
            _warm(guard, reqs, args)
            if name == "redis":
                return _measure(
                    name, args.n, lambda i: _one(guard, reqs[i], now),
                    lambda: _discard(client.incr(f"{prefix}floor")),
                )  # fmt: skip
            batch = args.batch

            def pipelined_floor() -> None:
                pipe = client.pipeline(transaction=False)
                for _ in range(batch):
                    pipe.incr(f"{prefix}floor")
                pipe.execute()

            fig = _measure(
                name, args.n, lambda i: _many(guard, reqs[i : i + batch], now),
                pipelined_floor, batch,
            )  # fmt: skip
            # the floor ran batches: express it per operation
            return Figures(fig.backend, fig.n, fig.per_second, fig.p50_us, fig.p99_us,
                           fig.floor_per_second * batch, fig.target)  # fmt: skip
        finally:
            keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
            for i in range(0, len(keys), 1000):
                client.delete(*keys[i : i + 1000])
            client.close()
    if name in ("postgresql", "postgresql-batched", "postgresql-nondurable"):
        import sqlalchemy as sa

        from compliance_guard.store_sql import SqlStore, metadata

        schema = f"bench_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(args.postgres_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        sep = "&" if "?" in args.postgres_url else "?"
        engine = sa.create_engine(f"{args.postgres_url}{sep}options=-csearch_path%3D{schema}")
        try:
            metadata.create_all(engine)
            sql_store = SqlStore(engine, durable=name != "postgresql-nondurable")
            guard = _guard(sql_store, ruleset, args.audit)
            _warm(guard, reqs, args)

            with engine.begin() as c:
                c.execute(sa.text("CREATE TABLE bench_floor (at_us bigint NOT NULL)"))

            def floor() -> None:
                # The cheapest durable write: one row, one commit waiting for the WAL flush. On
                # the development machine it swings between ~6,000/s and ~300/s for minutes at
                # a time; decisions follow it, so read the ratio, not the rate alone.
                with engine.begin() as c:
                    c.execute(sa.text("INSERT INTO bench_floor VALUES (1)"))

            if name == "postgresql-batched":
                batch = args.batch
                fig = _measure(
                    name, args.n, lambda i: _many(guard, reqs[i : i + batch], now), floor, batch
                )
                # Latencies are per batch; the floor stays one durable commit of one row.
                return fig
            return _measure(name, args.n, lambda i: _one(guard, reqs[i], now), floor)
        finally:
            engine.dispose()
            with admin.connect() as c:
                c.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()
    raise SystemExit(f"unknown backend {name!r}")


def _start_up(ruleset: RuleSet, now: datetime) -> None:
    """What a process pays once, not per decision: `phonenumbers` loads its metadata and zone
    prefixes on the first number it sees, `holidays` its calendars. One decision on a number
    outside the workload, with a guard of its own, so no figure counts it."""
    guard = _guard(MemoryStore(), ruleset, audit=False)
    guard.check(AttemptRequest("start-up", "p", ("d",), "+13125550100", "start-up"), now)


def _warm(
    guard: Guard, reqs: Sequence[AttemptRequest], args: Any, always: bool = False
) -> float | None:
    """With --warm (or `always`): prepare the workload's debtors; µs per debtor, else None."""
    if not (args.warm or always):
        return None
    debtors = reqs[:DEBTORS]
    t0 = time.perf_counter()
    guard.prepare(debtors)
    return (time.perf_counter() - t0) / len(debtors) * 1e6


def _one(guard: Guard, req: AttemptRequest, now: datetime) -> None:
    if not guard.check_and_reserve(req, now).allowed:
        raise RuntimeError("bench request denied; the workload is meant to be granted")


def _many(guard: Guard, reqs: Sequence[AttemptRequest], now: datetime) -> None:
    if not all(d.allowed for d in guard.check_and_reserve_many(reqs, now)):
        raise RuntimeError("bench request denied; the workload is meant to be granted")


# ---- race mode: several OS processes, the same few debts ----------------------------------

RACE_RULES: dict[str, Any] = {
    "name": "race",
    "version": "1",
    "ring_seconds": 0,
    "windows": [{"id": "open", "citation": "race", "hours": {"all": "00:00-24:00"}}],
    "caps": [
        {"id": "debt-3-per-day", "citation": "race", "scope": "person_debt", "limit": 3,
         "window_days": 1, "counts": ["no_answer", "busy", "conversation"]},
        {"id": "phone-4-per-24h", "citation": "race", "scope": "phone", "limit": 4,
         "window_days": 1, "calendar_days": False,
         "counts": ["no_answer", "busy", "conversation", "network_failure"]},
    ],
}  # fmt: skip
RACE_START = datetime(2026, 3, 2, tzinfo=UTC)
RACE_STEP = timedelta(seconds=300)  # virtual time per attempt in each process


def race_ruleset() -> RuleSet:
    return parse_ruleset(RACE_RULES, "race rules")


@dataclass(frozen=True)
class RaceSpec:
    backend: str  # "redis" or "postgresql"
    url: str
    prefix: str
    worker: int
    attempts: int
    persons: int
    seed: int
    batch: int = 1  # >1: check_and_reserve_many on this many attempts at once


def race_worker(spec: RaceSpec) -> list[tuple[int, str, str, str, str]]:
    """Reserve as fast as possible; return granted attempts as (at_us, person, debt, phone, fate)."""
    if spec.backend == "redis":
        from compliance_guard.store_redis import RedisStore

        store: ComplianceStore = RedisStore(spec.url, prefix=spec.prefix)
    else:
        from compliance_guard.store_sql import SqlStore

        store = SqlStore(spec.url)
    guard = Guard(
        store,
        RuleBook({"race": race_ruleset()}, default="race"),
        audit=NullAudit(),
        new_id=lambda: uuid.uuid4().hex,
    )
    rnd = random.Random(spec.seed)
    granted: list[tuple[int, str, str, str, str]] = []
    for first in range(0, spec.attempts, spec.batch):
        now = RACE_START + RACE_STEP * first
        reqs = []
        for _ in range(min(spec.batch, spec.attempts - first)):
            person = f"p{rnd.randrange(spec.persons)}"
            phone = f"+1800555{rnd.randrange(spec.persons * 2):04d}"
            reqs.append(
                AttemptRequest(
                    tenant="race",
                    person_id=person,
                    debt_ids=("d1",),
                    phone=phone,
                    campaign_id="race",
                    time_zones=("UTC",),
                )
            )
        if spec.batch == 1:
            decisions = [guard.check_and_reserve(reqs[0], now)]
        else:
            decisions = guard.check_and_reserve_many(reqs, now)
        for req, d in zip(reqs, decisions, strict=True):
            if not d.allowed:
                continue
            rid = d.reservation_id or ""
            fate = rnd.choice(["release", "release", "machine", "no_answer", "busy", "pending"])
            if fate == "release":
                guard.release(rid, now)
            elif fate != "pending":
                guard.record_outcome(rid, Outcome(fate), now)
            us = int((now - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1_000_000)
            granted.append((us, req.person_id, "d1", req.phone, fate))
    store.close()
    return granted


def cap_breaches(granted: Sequence[tuple[int, str, str, str, str]]) -> list[str]:
    """Recount the caps from what the workers were granted (independently of any ledger)."""
    day_counts = {"no_answer", "busy", "conversation", "pending"}
    phone_counts = day_counts | {"network_failure"}
    breaches = []
    by_debt: dict[tuple[str, str, int], int] = {}
    by_phone: dict[str, list[int]] = {}
    for at, person, debt, phone, fate in granted:
        if fate in day_counts:
            key = (person, debt, at // 86_400_000_000)
            by_debt[key] = by_debt.get(key, 0) + 1
        if fate in phone_counts:
            by_phone.setdefault(phone, []).append(at)
    breaches += [f"{k}: {n} > 3" for k, n in by_debt.items() if n > 3]
    for phone, times in by_phone.items():
        times.sort()
        lo = 0
        for hi, t in enumerate(times):
            while times[lo] <= t - 86_400_000_000:
                lo += 1
            if hi - lo + 1 > 4:
                breaches.append(f"{phone}: {hi - lo + 1} in 24h ending {t}")
    return breaches


def run_race(
    backend: str,
    url: str,
    prefix: str,
    total: int,
    processes: int,
    persons: int = 12,
    batch: int = 1,
) -> dict[str, Any]:
    per = total // processes
    specs = [
        RaceSpec(backend, url, prefix, w, per, persons, 1000 + w, batch) for w in range(processes)
    ]
    t0 = time.perf_counter()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(processes) as pool:
        results = pool.map(race_worker, specs)
    elapsed = time.perf_counter() - t0
    granted = [g for r in results for g in r]
    return {
        "backend": backend,
        "processes": processes,
        "reservations": per * processes,
        "granted": len(granted),
        "seconds": round(elapsed, 1),
        "breaches": cap_breaches(granted),
    }


def run(args: argparse.Namespace) -> int:
    if args.race:
        out = []
        for backend in [b for b in args.backends.split(",") if b in ("redis", "postgresql")]:
            if backend == "redis":
                out.append(_race_redis(args))
            else:
                out.append(_race_postgres(args))
        if args.json:
            print(json.dumps({"race": out}))
        else:
            for r in out:
                print(
                    f"race {r['backend']:<11} {r['processes']} processes  "
                    f"{r['reservations']:>7} reservations  {r['granted']:>6} granted  "
                    f"{r['seconds']:>6}s  breaches: {len(r['breaches'])}"
                )
        return 0 if all(not r["breaches"] for r in out) else 1
    figures = [bench_backend(b, args) for b in args.backends.split(",") if b]
    if args.json:
        print(json.dumps({"compliance": [f.as_dict() for f in figures]}))
    else:
        print(f"{'backend':<22}{'n':>8}{'per s':>10}{'p50 µs':>10}{'p99 µs':>10}"
              f"{'floor/s':>10}{'÷floor':>8}{'÷target':>9}")  # fmt: skip
        for f in figures:
            d = f.as_dict()
            print(
                f"{f.backend:<22}{f.n:>8}{d['per_second']:>10}{d['p50_us']:>10}{d['p99_us']:>10}"
                f"{d['floor_per_second']:>10}{d['ratio_to_floor']:>8}{d['ratio_to_target']:>9}"
            )
        for f in figures:
            if f.prepare_us is not None:
                print(
                    f"{f.backend}: Guard.prepare took {f.prepare_us:.1f} µs per debtor "
                    f"({min(f.n, DEBTORS)} debtors) before timing, not counted above"
                )
    return 0


def _race_redis(args: argparse.Namespace) -> dict[str, Any]:
    import redis

    prefix = f"race:{uuid.uuid4().hex[:8]}:"
    try:
        return run_race("redis", args.redis_url, prefix, args.race, args.processes)
    finally:
        client = redis.Redis.from_url(args.redis_url)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for i in range(0, len(keys), 1000):
            client.delete(*keys[i : i + 1000])
        client.close()


def _race_postgres(args: argparse.Namespace) -> dict[str, Any]:
    import sqlalchemy as sa

    from compliance_guard.store_sql import metadata

    schema = f"race_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(args.postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in args.postgres_url else "?"
    url = f"{args.postgres_url}{sep}options=-csearch_path%3D{schema}"
    try:
        engine = sa.create_engine(url)
        metadata.create_all(engine)
        engine.dispose()
        return run_race("postgresql", url, "", args.race, args.processes)
    finally:
        with admin.connect() as c:
            c.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _discard(_: object) -> None:
    """Adapts a floor operation's reply away."""
