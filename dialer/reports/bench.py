"""The daily report over many call attempts, against a bare scan of the same rows.

`bench_report` fills an empty store with a synthetic tenant in the database itself
(INSERT ... SELECT over generate_series on PostgreSQL, a recursive CTE on SQLite: no rows
travel through Python), takes the two snapshots, then times the report and, as the same run's
baseline, a bare COUNT(*) of the period's attempts and a COUNT(*) of the whole table.
Figures, never pass/fail.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, select, text
from sqlalchemy.exc import SQLAlchemyError

from dialer.reports.models import GroupBy, Period, span_of
from dialer.reports.service import daily_report, take_snapshot, window_of
from dialer.store.db import Store, open_store, safe_url
from dialer.store.models import CallAttempt

DAY = date(2026, 3, 10)
COLLECTORS = 50
TEAMS = 5
CAMPAIGNS = 4
# The planner's statistics are brought up to date after the load (only ours: ANALYZE alone
# would read every schema of a shared PostgreSQL).
ANALYSED = (
    "call_attempts",
    "dispositions",
    "qa_scores",
    "payments",
    "promises",
    "cases",
    "debts",
    "report_snapshots",
)


@dataclass(frozen=True)
class ReportBench:
    dialect: str
    attempts: int
    debtors: int
    build_s: float
    report_s: float
    count_period_s: float  # baseline: COUNT(*) of the period's attempts
    count_table_s: float  # baseline: COUNT(*) of the table
    report_attempts: int  # what the report counted (must equal the rows made)

    def lines(self) -> list[str]:
        return [
            f"{self.dialect}: {self.attempts:,} attempts, {self.debtors:,} debtors "
            f"(built in {self.build_s:.1f} s)",
            f"  daily report           {self.report_s:7.2f} s  "
            f"({self.report_s / max(self.count_period_s, 1e-9):.1f}x the period's COUNT(*))",
            f"  baseline COUNT(*) of the period's attempts {self.count_period_s:7.2f} s",
            f"  baseline COUNT(*) of the table             {self.count_table_s:7.2f} s",
        ]


def _series(dialect: str, n: int) -> str:
    """A row source of x = 0 .. n-1."""
    if dialect == "postgresql":
        return f"generate_series(0::bigint, {n - 1}) AS g(x)"
    return f"(WITH RECURSIVE s(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM s WHERE x < {n - 1}) SELECT x FROM s) AS g"


def _at(dialect: str, start: datetime, seconds: str) -> str:
    """SQL for `start` + `seconds` (an SQL expression) as the store keeps a UTC instant."""
    if dialect == "postgresql":
        return f"(TIMESTAMPTZ '{start.isoformat()}' + ({seconds}) * INTERVAL '1 second')"
    base = start.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    # SQLAlchemy's SQLite format, so comparisons with bound datetimes hold as text.
    return f"(datetime('{base}', '+' || ({seconds}) || ' seconds') || '.000000')"


def _exec(conn: Connection, sql: str, **params: Any) -> None:
    conn.execute(text(sql), params)


def build(store: Store, n_attempts: int, *, day: date = DAY, days: int = 1) -> tuple[int, int]:
    """A tenant whose `n_attempts` attempts fall on `days` days from `day` (UTC); returns
    (tenant id, debtors)."""
    d = store.dialect
    debtors = max(1000, n_attempts // 20)
    start = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
    t0 = "'2026-01-01 00:00:00.000000'" if d == "sqlite" else "TIMESTAMPTZ '2026-01-01Z'"
    span_s = 86400 * days
    with store.begin() as conn:
        tenant = conn.execute(
            text(f"INSERT INTO tenants (name, created_at) VALUES ('bench', {t0}) RETURNING id")
        ).scalar_one()
        for i in range(TEAMS):
            _exec(
                conn,
                f"INSERT INTO teams (tenant_id, name, created_at) VALUES (:t, :n, {t0})",
                t=tenant,
                n=f"team{i}",
            )
        team0 = conn.execute(
            text("SELECT min(id) FROM teams WHERE tenant_id = :t"), {"t": tenant}
        ).scalar_one()
        for i in range(CAMPAIGNS):
            _exec(
                conn,
                "INSERT INTO campaigns (tenant_id, name, dial_mode, status, settings, created_at) "
                f"VALUES (:t, :n, 'predictive', 'active', '{{}}', {t0})",
                t=tenant,
                n=f"campaign{i}",
            )
        camp0 = conn.execute(
            text("SELECT min(id) FROM campaigns WHERE tenant_id = :t"), {"t": tenant}
        ).scalar_one()
        _exec(
            conn,
            "INSERT INTO debtors (tenant_id, external_id, full_name, created_at) "
            f"SELECT :t, 'B' || x, 'Debtor ' || x, {t0} FROM {_series(d, debtors)}",
            t=tenant,
        )
        deb0 = conn.execute(
            text("SELECT min(id) FROM debtors WHERE tenant_id = :t"), {"t": tenant}
        ).scalar_one()
        _exec(
            conn,
            "INSERT INTO phones (tenant_id, debtor_id, e164, phone_type, consent, do_not_call, created_at) "
            f"SELECT :t, :d0 + x, '+86138' || (10000000 + x), 'mobile', false, false, {t0} "
            f"FROM {_series(d, debtors)}",
            t=tenant,
            d0=deb0,
        )
        ph0 = conn.execute(
            text("SELECT min(id) FROM phones WHERE tenant_id = :t"), {"t": tenant}
        ).scalar_one()
        _exec(
            conn,
            "INSERT INTO debts (tenant_id, debtor_id, external_id, principal, balance, currency, "
            "days_past_due, status, created_at) "
            f"SELECT :t, :d0 + x, 'L' || x, 1000 + x % 9000, 1000 + x % 9000, 'CNY', x % 200, "
            f"'open', {t0} FROM {_series(d, debtors)}",
            t=tenant,
            d0=deb0,
        )
        _exec(
            conn,
            "INSERT INTO cases (tenant_id, debtor_id, status, agent_id, team_id, opened_by, "
            "created_at, status_changed_at) "
            f"SELECT :t, :d0 + x, 'in_progress', 'agent' || (x % {COLLECTORS}), "
            f":team0 + (x % {COLLECTORS}) % {TEAMS}, 'bench', {t0}, {t0} FROM {_series(d, debtors)}",
            t=tenant,
            d0=deb0,
            team0=team0,
        )
    took = take_snapshot(store, tenant, day - timedelta(days=1), today=day, now=start)
    assert took.debts == debtors
    with store.begin() as conn:
        if d == "postgresql":
            # The rows are made consistent here; skipping the foreign-key triggers (a
            # superuser's right: without it the load is just slower) makes a 10M-row load
            # minutes shorter.
            with contextlib.suppress(SQLAlchemyError), conn.begin_nested():
                _exec(conn, "SET LOCAL session_replication_role = replica")
        dialed = _at(d, start, f"(x * {span_s}) / {n_attempts}")
        # x % 10: 0-3 a live answer, 4 a machine, 5-7 no answer, 8 busy, 9 failed; a live
        # answer of x % 37 == 0 abandoned, the others talk 30..329 s with one of 200 agents.
        outcome = (
            "CASE WHEN x % 10 < 4 THEN 'answered' WHEN x % 10 = 4 THEN 'machine' "
            "WHEN x % 10 < 8 THEN 'no_answer' WHEN x % 10 = 8 THEN 'busy' ELSE 'failed' END"
        )
        live = "(x % 10 < 4)"
        talks = f"({live} AND x % 37 <> 0)"
        _exec(
            conn,
            "INSERT INTO call_attempts (tenant_id, campaign_id, debtor_id, phone_id, status, "
            "outcome, abandoned, dialed_at, answered_at, connected_at, hungup_at, server, "
            "node_id, agent_id) "
            f"SELECT :t, :c0 + x % {CAMPAIGNS}, :d0 + x % {debtors}, :p0 + x % {debtors}, "
            f"'ended', {outcome}, ({live} AND x % 37 = 0), {dialed}, "
            f"CASE WHEN x % 10 < 5 THEN {_at(d, start, f'(x * {span_s}) / {n_attempts} + 5')} END, "
            f"CASE WHEN {talks} THEN {_at(d, start, f'(x * {span_s}) / {n_attempts} + 6')} END, "
            f"CASE WHEN {talks} THEN {_at(d, start, f'(x * {span_s}) / {n_attempts} + 36 + x % 300')} END, "
            f"'ast1', 'bench', CASE WHEN {talks} THEN 'agent' || (x % 200) END "
            f"FROM {_series(d, n_attempts)}",
            t=tenant,
            c0=camp0,
            d0=deb0,
            p0=ph0,
        )
        # A disposition for each call an agent took: 30 % promises, 30 % other right-party
        # codes, 40 % not the debtor.
        code = (
            "CASE WHEN id % 10 < 3 THEN 'promise_to_pay' WHEN id % 10 < 5 THEN 'callback' "
            "WHEN id % 10 = 5 THEN 'refused' WHEN id % 10 < 8 THEN 'wrong_party' "
            "WHEN id % 10 = 8 THEN 'no_contact' ELSE 'other' END"
        )
        _exec(
            conn,
            "INSERT INTO dispositions (tenant_id, attempt_id, agent_id, code, promise_amount, "
            "promise_date, created_at) "
            f"SELECT tenant_id, id, agent_id, {code}, "
            "CASE WHEN id % 10 < 3 THEN 100 + id % 900 END, "
            f"CASE WHEN id % 10 < 3 THEN :due END, hungup_at "
            "FROM call_attempts WHERE tenant_id = :t AND connected_at IS NOT NULL",
            t=tenant,
            due=day + timedelta(days=7),
        )
        _exec(
            conn,
            "INSERT INTO qa_scores (attempt_id, tenant_id, score, flags, scored_at) "
            f"SELECT id, tenant_id, 60 + id % 41, id % 3, {t0} FROM call_attempts "
            "WHERE tenant_id = :t AND connected_at IS NOT NULL AND id % 3 = 0",
            t=tenant,
        )
        _exec(
            conn,
            "INSERT INTO payments (tenant_id, case_id, debt_id, external_id, amount, currency, "
            "paid_on, source, recorded_by, created_at) "
            f"SELECT c.tenant_id, c.id, b.id, 'PAY' || b.id, 100 + b.id % 500, 'CNY', :day, "
            f"'csv', 'bench', {t0} FROM cases c JOIN debts b ON b.debtor_id = c.debtor_id "
            "WHERE c.tenant_id = :t AND c.id % 10 = 0",
            t=tenant,
            day=day,
        )
        _exec(
            conn,
            "INSERT INTO promises (tenant_id, case_id, amount, currency, promised_on, due_date, "
            "status, created_by, created_at) "
            f"SELECT tenant_id, id, 500, 'CNY', :on, :day, "
            f"CASE WHEN id % 40 = 0 THEN 'kept' ELSE 'broken' END, 'bench', {t0} "
            "FROM cases WHERE tenant_id = :t AND id % 20 = 0",
            t=tenant,
            on=day - timedelta(days=7),
            day=day,
        )
        _exec(
            conn,
            "UPDATE debts SET days_past_due = days_past_due + 1 WHERE tenant_id = :t",
            t=tenant,
        )
    take_snapshot(store, tenant, day, today=day, now=start + timedelta(hours=23))
    with store.begin() as conn:
        for table in ANALYSED:
            conn.execute(text(f"ANALYZE {table}"))
    return int(tenant), debtors


def _timed(call: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


def bench_report(
    store: Store,
    n_attempts: int,
    *,
    by: GroupBy = GroupBy.CAMPAIGN,
    period: Period = Period.DAY,
    day: date = DAY,
) -> ReportBench:
    """Fill the (empty) store with `n_attempts` attempts on `day` and time the report of it."""
    build_s, (tenant, debtors) = _timed(lambda: build(store, n_attempts, day=day))
    w = window_of(tenant, span_of(day, period), UTC)
    a = CallAttempt
    period_count = select(func.count()).where(
        a.tenant_id == tenant, a.dialed_at >= w.start, a.dialed_at < w.end
    )

    def count(query: Any) -> int:
        with store.begin() as conn:
            return int(conn.execute(query).scalar_one())

    count_period_s, counted = _timed(lambda: count(period_count))
    count_table_s, _ = _timed(lambda: count(select(func.count()).select_from(a)))
    report_s, report = _timed(
        lambda: daily_report(store, tenant, day, period=period, by=by, tz=UTC)
    )
    assert counted == n_attempts, (counted, n_attempts)
    return ReportBench(
        dialect=store.dialect,
        attempts=n_attempts,
        debtors=debtors,
        build_s=build_s,
        report_s=report_s,
        count_period_s=count_period_s,
        count_table_s=count_table_s,
        report_attempts=report.totals.counts.attempts,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        action="append",
        default=None,
        help="an EMPTY database to fill and measure (repeatable; default: a temporary SQLite)",
    )
    parser.add_argument("--attempts", type=int, default=1_000_000)
    parser.add_argument("--by", choices=[g.value for g in GroupBy], default="campaign")


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="dialer-bench-report-") as tmp:
        for url in args.url or [f"sqlite:///{Path(tmp) / 'bench.db'}"]:
            store = open_store(url)
            try:
                print(f"{safe_url(url)}")
                result = bench_report(store, args.attempts, by=GroupBy(args.by))
                print("\n".join(result.lines()))
            finally:
                store.close()
    return 0
