"""The nightly re-score: every open case's features read in batches with set-based SQL, scored
by the pure model, written back in bulk (COPY and one UPDATE on PostgreSQL, executemany on
SQLite) with the terms that explain each score; and `bench_score` for `dialer bench cases`."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, select, update

from dialer.cases.facts import batches, load_features
from dialer.cases.scoring import LogisticModel, PointsModel, RiskBand, Scorer
from dialer.store.attempts import ensure_tenant
from dialer.store.db import Store
from dialer.store.models import Case, Debt, Debtor

log = logging.getLogger(__name__)

BATCH = 10_000

# (case id, value, band, terms as JSON)
ScoreRow = tuple[int, float, str, str]


@dataclass
class RescoreReport:
    model: str
    scored: int = 0
    bands: dict[str, int] = field(default_factory=lambda: {b.value: 0 for b in RiskBand})
    seconds: float = 0.0


def write_scores(conn: Connection, rows: Sequence[ScoreRow], model: str, now: datetime) -> None:
    """Store each case's score, band and terms; `scored_at` and the model name are the run's."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        # One COPY into a scratch table and one UPDATE ... FROM: a round trip per batch instead
        # of one per case.
        conn.exec_driver_sql(
            "CREATE TEMP TABLE IF NOT EXISTS case_scores_in (id integer PRIMARY KEY,"
            " risk_score double precision, risk_band text, risk_terms text)"
            " ON COMMIT DELETE ROWS"
        )
        raw: Any = conn.connection.driver_connection
        with (
            raw.cursor() as cur,
            cur.copy(
                "COPY case_scores_in (id, risk_score, risk_band, risk_terms) FROM STDIN"
            ) as copy,
        ):
            for row in rows:
                copy.write_row(row)
        conn.exec_driver_sql(
            "UPDATE cases SET risk_score = s.risk_score, risk_band = s.risk_band,"
            " risk_terms = s.risk_terms, scored_at = %(now)s, score_model = %(model)s"
            " FROM case_scores_in s WHERE cases.id = s.id",
            {"now": now, "model": model},
        )
        return
    conn.execute(
        update(Case)
        .where(Case.id == bindparam("case_id"))
        .values(
            risk_score=bindparam("value"),
            risk_band=bindparam("band"),
            risk_terms=bindparam("terms"),
            scored_at=now,
            score_model=model,
        ),
        [{"case_id": i, "value": v, "band": b, "terms": t} for i, v, b, t in rows],
    )


def rescore(
    store: Store,
    model: PointsModel | LogisticModel,
    *,
    today: date,
    now: datetime,
    tenant_id: int | None = None,
    batch: int = BATCH,
    progress: Callable[[int], None] | None = None,
) -> RescoreReport:
    """Score every open case of the tenant (every tenant: None) as of `today`. Running it twice
    writes the same scores again; nothing else changes. On PostgreSQL a batch's scores are
    written on a second connection while the next batch is read and scored, so the server's
    work and ours overlap (two transactions per batch; a batch is written whole or not)."""
    started = time.perf_counter()
    report = RescoreReport(model.name)
    scorer = Scorer(model)
    with store.begin() as conn:
        ranges = list(batches(conn, tenant_id, batch, open_only=True))

    def write(rows: list[ScoreRow]) -> None:
        with store.begin() as conn:
            write_scores(conn, rows, model.name, now)

    overlap = store.dialect == "postgresql"
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rescore-write") as writer:
        pending: Future[None] | None = None
        for lo, hi in ranges:
            with store.begin() as conn:
                cases = load_features(
                    conn, lo, hi, today=today, now=now, tenant_id=tenant_id, open_only=True
                )
            rows: list[ScoreRow] = []
            bands = report.bands
            for case_id, features in cases:
                value, band, terms = scorer.value_json(features)
                bands[band.value] += 1
                rows.append((case_id, value, band.value, terms))
            report.scored += len(rows)
            if pending is not None:
                pending.result()  # one batch in flight at most; its error stops the run
            if overlap:
                pending = writer.submit(write, rows)
            else:
                write(rows)
            if progress is not None:
                progress(len(rows))
        if pending is not None:
            pending.result()
    report.seconds = time.perf_counter() - started
    log.info(
        "= rescored %d cases with %s in %.1f s: %s",
        report.scored,
        model.name,
        report.seconds,
        report.bands,
    )
    return report


# ----- the benchmark ------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoreBench:
    cases: int
    build_s: float
    baseline_s: float  # a bare SELECT of the same rows
    score_s: float
    bands: dict[str, int]

    @property
    def per_second(self) -> float:
        return self.cases / self.score_s if self.score_s else 0.0


def _build(store: Store, tenant_id: int, count: int, now: datetime) -> None:
    """`count` debtors, each with one debt and one case, spread over the model's bins."""
    chunk = 20_000
    for start in range(0, count, chunk):
        size = min(chunk, count - start)
        with store.begin() as conn:
            ids = list(
                conn.execute(
                    insert(Debtor).returning(Debtor.id, sort_by_parameter_order=True),
                    [
                        {
                            "tenant_id": tenant_id,
                            "external_id": f"B{start + n}",
                            "full_name": f"Debtor {start + n}",
                            "national_id": None,
                            "timezone": None,
                            "created_at": now,
                        }
                        for n in range(size)
                    ],
                ).scalars()
            )
            conn.execute(
                insert(Debt),
                [
                    {
                        "tenant_id": tenant_id,
                        "debtor_id": i,
                        "external_id": f"L{i}",
                        "principal": Decimal(10_000),
                        "balance": Decimal(100 + (i * 37) % 9_900),
                        "currency": "CNY",
                        "days_past_due": (i * 13) % 240,
                        "risk_score": None,
                        "status": "open",
                        "created_at": now,
                    }
                    for i in ids
                ],
            )
            conn.execute(
                insert(Case),
                [
                    {
                        "tenant_id": tenant_id,
                        "debtor_id": i,
                        "status": "new",
                        "opened_by": "system:bench",
                        "created_at": now,
                        "status_changed_at": now,
                        "strategy_finished": False,
                    }
                    for i in ids
                ],
            )
    if store.dialect == "postgresql":
        with store.begin() as conn:
            conn.exec_driver_sql("ANALYZE debtors")
            conn.exec_driver_sql("ANALYZE debts")
            conn.exec_driver_sql("ANALYZE cases")


def _bare_select(store: Store, tenant_id: int, batch: int) -> int:
    """The same cases read in the same batches, with nothing joined: what reading alone costs."""
    seen = 0
    with store.begin() as conn:
        ranges = list(batches(conn, tenant_id, batch, open_only=True))
    for lo, hi in ranges:
        with store.begin() as conn:
            seen += len(
                conn.execute(
                    select(Case.id, Case.debtor_id, Case.status).where(
                        Case.id.between(lo, hi), Case.tenant_id == tenant_id
                    )
                ).all()
            )
    return seen


def bench_score(
    store: Store,
    model: PointsModel | LogisticModel,
    cases: int,
    *,
    tenant: str = "bench-score",
    batch: int = BATCH,
    cleanup: bool = True,
) -> ScoreBench:
    """Build `cases` synthetic cases on `store` (a tenant of their own), time a bare SELECT of
    them as the baseline, then time re-scoring them. With `cleanup` the tenant's rows are
    removed afterwards (minutes at a million on PostgreSQL: every row passes ~20 foreign-key
    checks); leave it off on a throwaway database."""
    now = datetime.now(UTC)
    tenant_id = ensure_tenant(store, tenant)
    t0 = time.perf_counter()
    _build(store, tenant_id, cases, now)
    build_s = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        seen = _bare_select(store, tenant_id, batch)
        baseline_s = time.perf_counter() - t0
        assert seen == cases, f"built {cases} cases, read back {seen}"
        report = rescore(store, model, today=now.date(), now=now, tenant_id=tenant_id, batch=batch)
    finally:
        if cleanup:
            _remove(store, tenant_id)
    return ScoreBench(cases, build_s, baseline_s, report.seconds, dict(report.bands))


def _remove(store: Store, tenant_id: int) -> None:
    with store.begin() as conn:
        conn.execute(delete(Case).where(Case.tenant_id == tenant_id))
        conn.execute(delete(Debt).where(Debt.tenant_id == tenant_id))
        conn.execute(delete(Debtor).where(Debtor.tenant_id == tenant_id))
