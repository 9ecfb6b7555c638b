"""`bench_assign`: assigning N synthetic cases on a store, against a same-run baseline (reading
the same facts in the same batches and deciding nothing)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from sqlalchemy import func, select, text

from dialer.cases import assignment_service as service
from dialer.cases.assignment import SHIPPED, Seniority, load_rules
from dialer.store import attempts as repo
from dialer.store.db import Store
from dialer.store.models import Case

TENANT = "bench-assign"
# (team, collectors, share of them senior, languages); capacities are sized to the cases.
STAFF = (
    ("recoveries", 200, 0.5, ["en"]),
    ("mandarin", 40, 0.25, ["zh-CN", "en"]),
    ("general", 160, 0.25, ["en"]),
)


def _series(dialect: str) -> str:
    """Rows x = :a .. :b, in the database's own way."""
    if dialect == "postgresql":
        return "SELECT generate_series(CAST(:a AS integer), CAST(:b AS integer)) AS x"
    return (
        "WITH RECURSIVE g(x) AS (SELECT :a UNION ALL SELECT x + 1 FROM g WHERE x < :b)"
        " SELECT x FROM g"
    )


def build_cases(store: Store, tenant_id: int, cases: int, now: datetime) -> int:
    """Top the tenant up to `cases` debtors, each with one debt, an address and a case, their
    facts spread by arithmetic on the number (days past due 0..364, balances 50..20049, risk
    0..999, three products, one in ten in China). Returns how many were made."""
    with store.begin() as conn:
        have = int(
            conn.execute(
                select(func.count()).select_from(Case).where(Case.tenant_id == tenant_id)
            ).scalar_one()
        )
        if have >= cases:
            return 0
        series = _series(conn.dialect.name)
        first = have + 1
        args = {"t": tenant_id, "a": first, "b": cases, "now": now}
        conn.execute(
            text(
                "INSERT INTO debtors (tenant_id, external_id, full_name, created_at)"
                f" SELECT :t, 'B' || x, 'Bench ' || x, :now FROM ({series}) s"
            ),
            args,
        )
        # The new debtors, by their number.
        rows = (
            "SELECT id, CAST(substr(external_id, 2) AS bigint) AS n FROM debtors"
            " WHERE tenant_id = :t AND created_at = :now"
        )
        conn.execute(
            text(
                "INSERT INTO debts (tenant_id, debtor_id, external_id, principal, balance,"
                " currency, days_past_due, risk_score, status, product, created_at)"
                " SELECT :t, d.id, 'B' || d.n || '-1', (d.n * 7919) % 20000 + 50,"
                " (d.n * 7919) % 20000 + 50, 'USD', (d.n * 37) % 365, (d.n * 131) % 1000,"
                " 'open', CASE d.n % 3 WHEN 0 THEN 'card' WHEN 1 THEN 'auto' ELSE 'loan' END,"
                f" :now FROM ({rows}) d"
            ),
            args,
        )
        conn.execute(
            text(
                "INSERT INTO addresses (tenant_id, debtor_id, region, country)"
                " SELECT :t, d.id, CASE WHEN d.n % 10 = 0 THEN 'Beijing' ELSE 'R' || (d.n % 50)"
                " END, CASE WHEN d.n % 10 = 0 THEN 'CN' ELSE 'US' END"
                f" FROM ({rows}) d"
            ),
            args,
        )
        conn.execute(
            text(
                "INSERT INTO cases (tenant_id, debtor_id, status, opened_by, created_at,"
                " status_changed_at) SELECT :t, d.id, 'new', 'system:bench', :now, :now"
                f" FROM ({rows}) d ORDER BY d.id"
            ),
            args,
        )
        if conn.dialect.name == "postgresql":
            conn.execute(text("ANALYZE debtors, debts, addresses, cases"))
    return cases - have


def _staff(store: Store, tenant_id: int, cases: int, now: datetime) -> None:
    total = sum(n for _team, n, _s, _l in STAFF)
    # Twice the average: the rules send more cases to some teams than to others.
    capacity = 2 * cases // total + 1
    for team, n, senior_share, languages in STAFF:
        seniors = int(n * senior_share)
        for i in range(n):
            service.save_collector(
                store,
                tenant_id,
                f"{team[:3]}{i:03d}",
                now,
                team=team,
                seniority=(Seniority.SENIOR if i < seniors else Seniority.JUNIOR).value,
                languages=languages,
                capacity=capacity,
            )
    for team in ("early",):
        service.add_team(store, tenant_id, team, now)
    repo.ensure_campaign(store, tenant_id, "early-reminders", "predictive")


def _read_only(store: Store, tenant_id: int, batch: int) -> int:
    """The baseline: the run's own reads, batch by batch, with no decision and no write."""
    rules = load_rules(SHIPPED)
    with store.begin() as conn:
        teams = service._teams(conn, tenant_id)
    after, seen = 0, 0
    while True:
        with store.begin() as conn:
            facts = service._facts(conn, tenant_id, after, batch, rules, teams, None)
        if not facts:
            return seen
        seen += len(facts)
        after = facts[-1][0].case_id


def bench_assign(
    store: Store, cases: int, *, now: datetime | None = None, batch: int = service.BATCH
) -> dict[str, float]:
    """Figures (seconds, cases/s) of assigning `cases` synthetic cases with the shipped rules:
    the first run (every case moves, with history), a second (nothing moves) and the baseline
    read. The cases are made first (not timed) in tenant `bench-assign`; a later call reuses
    them, and its first run is then a re-run."""
    now = now or datetime.now(UTC)
    tenant_id = repo.ensure_tenant(store, TENANT)
    started = time.perf_counter()
    made = build_cases(store, tenant_id, cases, now)
    _staff(store, tenant_id, cases, now)
    built = time.perf_counter() - started
    rules = load_rules(SHIPPED)

    started = time.perf_counter()
    read = _read_only(store, tenant_id, batch)
    baseline = time.perf_counter() - started
    first = service.run_assignment(store, tenant_id, rules, now, batch=batch, keep_moves=0)
    second = service.run_assignment(store, tenant_id, rules, now, batch=batch, keep_moves=0)
    return {
        "cases": float(read),
        "cases_made": float(made),
        "build_s": round(built, 2),
        "baseline_read_s": round(baseline, 2),
        "first_run_s": round(first.seconds, 2),
        "first_run_moved": float(first.moved),
        "first_run_cases_per_s": round(read / first.seconds) if first.seconds else 0.0,
        "second_run_s": round(second.seconds, 2),
        "second_run_moved": float(second.moved),
        "queued_no_room": float(first.queued_no_room),
    }
