"""SQL ledger backend (SQLAlchemy 2): PostgreSQL with row locks, SQLite with its write lock."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from compliance_guard.errors import ReservationClosed, StoreUnavailable, UnknownReservation
from compliance_guard.store import (
    NO_FLAGS,
    LedgerCount,
    Observation,
    ReserveCall,
    count_and_pivot,
    grants,
    under_limit,
)

# The guard's own tables; the product's migrations create them from this object.
metadata = sa.MetaData()

ledger = sa.Table(
    "compliance_ledger",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("ledger_key", sa.String(512), nullable=False),
    sa.Column("at_us", sa.BigInteger, nullable=False),
    sa.Column("member", sa.String(128), nullable=False),
    sa.Index("ix_compliance_ledger_key_at", "ledger_key", "at_us"),
    sa.Index("ix_compliance_ledger_member", "member"),
)

reservation = sa.Table(
    "compliance_reservation",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("created_us", sa.BigInteger, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),  # JSON: ledgers held and what they count
)

flag = sa.Table(
    "compliance_flag",
    metadata,
    sa.Column("target", sa.String(512), primary_key=True),
    sa.Column("flag", sa.String(64), primary_key=True),
    sa.Column("set_us", sa.BigInteger, nullable=False),
)

# One row per ledger key, locked (FOR UPDATE via upsert) for the length of a check-and-reserve,
# so that two nodes reserving against the same ledger are serialised.
lock = sa.Table(
    "compliance_lock",
    metadata,
    sa.Column("lock_key", sa.String(512), primary_key=True),
)

_DB_ERRORS = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.DBAPIError)

# PostgreSQL fast path. A check-and-reserve is two statements in one transaction, sent in one
# pipelined round trip with its BEGIN and COMMIT:
#   1. _PG_LOCK takes the row locks of every ledger involved, in sorted order (no deadlock).
#   2. _PG_RESERVE observes the ledgers and flags and, when everything passes, inserts the
#      ledger entries and the reservation, all in one statement.
# They must stay two statements: under READ COMMITTED each statement takes its snapshot when
# it starts, so the observation must start after the locks are held, or it could miss an
# entry committed by the node that held the lock before us.
_PG_GENERIC = "SET LOCAL plan_cache_mode = force_generic_plan"
_PG_ASYNC_COMMIT = "SET LOCAL synchronous_commit = off"  # only with durable=False
_PG_LOCK = (
    "INSERT INTO compliance_lock (lock_key) "
    "SELECT k FROM json_array_elements_text(%(keys)s::json) WITH ORDINALITY AS t(k, i) ORDER BY i "
    "ON CONFLICT (lock_key) DO UPDATE SET lock_key = excluded.lock_key"
)
# Inputs travel as two JSON texts (checks: [key, window start, limit, record?]; flags:
# [target, ",blocking,", "required,csv"]): the driver adapts one string far faster than arrays.
_PG_RESERVE = """
WITH inp AS (
  SELECT e.i, e.v ->> 0 AS key, (e.v ->> 1)::bigint AS ws, (e.v ->> 2)::int AS lim,
         (e.v ->> 3)::bool AS rec
  FROM json_array_elements(%(checks)s::json) WITH ORDINALITY AS e(v, i)
), chk AS (
  SELECT inp.i, inp.lim, inp.rec, inp.key,
         (SELECT array_agg(l.at_us ORDER BY l.at_us) FROM compliance_ledger l
          WHERE l.ledger_key = inp.key AND l.at_us >= inp.ws) AS times
  FROM inp
), fl AS (
  SELECT e.j, e.v ->> 1 AS blocking, e.v ->> 2 AS required,
         coalesce((SELECT array_agg(x.flag ORDER BY x.flag) FROM compliance_flag x
                   WHERE x.target = e.v ->> 0), '{}') AS present
  FROM json_array_elements(%(flags)s::json) WITH ORDINALITY AS e(v, j)
), ok AS (
  SELECT %(reserve)s::bool
     AND NOT EXISTS (SELECT 1 FROM chk WHERE coalesce(cardinality(chk.times), 0) >= chk.lim)
     AND NOT EXISTS (
       SELECT 1 FROM fl
       WHERE EXISTS (SELECT 1 FROM unnest(fl.present) p
                     WHERE position(',' || p || ',' in fl.blocking) > 0)
          OR EXISTS (SELECT 1 FROM unnest(string_to_array(fl.required, ',')) r
                     WHERE r <> '' AND NOT r = ANY(fl.present))
     ) AS granted
), new_entries AS (
  INSERT INTO compliance_ledger (ledger_key, at_us, member)
  SELECT chk.key, %(at)s::bigint, %(rid)s::text FROM chk, ok WHERE ok.granted AND chk.rec
), new_reservation AS (
  INSERT INTO compliance_reservation (id, state, created_us, payload)
  SELECT %(rid)s::text, 'pending', %(at)s::bigint, %(payload)s::text FROM ok WHERE ok.granted
)
SELECT (SELECT granted FROM ok), 0, chk.i, coalesce(cardinality(chk.times), 0),
       CASE WHEN coalesce(cardinality(chk.times), 0) >= chk.lim
            THEN chk.times[cardinality(chk.times) - chk.lim + 1] END,
       NULL::text[]
FROM chk
UNION ALL
SELECT (SELECT granted FROM ok), 1, fl.j, 0, NULL::bigint, fl.present FROM fl
UNION ALL
SELECT granted, 2, 0, 0, NULL::bigint, NULL::text[] FROM ok
"""


class SqlStore:
    """Ledger in the product's database. Tables must exist (migration or `create_tables`)."""

    def __init__(self, engine: Engine | str, *, durable: bool = True) -> None:
        """`durable=False` (PostgreSQL only) commits reservations with `synchronous_commit=off`:
        the commit no longer waits for the WAL flush (20 to 40 % of a decision on the
        development machine). The risk: if the database server crashes (not merely the dialer), the last
        few hundred milliseconds of granted reservations are lost although the dialer was told
        they were granted, so the attempts they stood for stop counting and a cap or a
        conversation period can be exceeded. Keep the default unless that risk is accepted in
        writing by whoever answers for compliance.
        """
        self.engine = sa.create_engine(engine) if isinstance(engine, str) else engine
        self._owns_engine = isinstance(engine, str)
        self._dialect = self.engine.dialect.name
        self._durable = durable

    def create_tables(self) -> None:
        metadata.create_all(self.engine)

    def _insert(self, table: sa.Table) -> Any:
        if self._dialect == "postgresql":
            return postgresql.insert(table)
        if self._dialect == "sqlite":
            return sqlite.insert(table)
        return sa.insert(table)

    def _lock(self, conn: Connection, keys: Sequence[str]) -> None:
        if not keys:
            return
        stmt = self._insert(lock).values([{"lock_key": k} for k in sorted(set(keys))])
        if self._dialect in ("postgresql", "sqlite"):
            # DO UPDATE (not DO NOTHING) takes the row lock on an existing row too; sorted
            # order means two nodes never wait on each other in a cycle.
            stmt = stmt.on_conflict_do_update(
                index_elements=[lock.c.lock_key], set_={"lock_key": stmt.excluded.lock_key}
            )
        conn.execute(stmt)

    def _observe(
        self, conn: Connection, call: ReserveCall
    ) -> tuple[list[LedgerCount], list[frozenset[str]]]:
        """Ledger entries in every window and the flags on every target, in one round trip."""
        times: dict[str, list[int]] = {c.key: [] for c in call.checks}
        present: dict[str, set[str]] = {f.target: set() for f in call.flag_checks}
        parts = []
        if call.checks:
            cond = sa.or_(
                *[
                    sa.and_(ledger.c.ledger_key == c.key, ledger.c.at_us >= c.window_start_us)
                    for c in call.checks
                ]
            )
            parts.append(
                sa.select(
                    ledger.c.ledger_key.label("k"),
                    ledger.c.at_us.label("t"),
                    sa.cast(sa.null(), sa.String).label("f"),
                ).where(cond)
            )
        if call.flag_checks:
            parts.append(
                sa.select(
                    flag.c.target.label("k"),
                    sa.cast(sa.null(), sa.BigInteger).label("t"),
                    flag.c.flag.label("f"),
                ).where(flag.c.target.in_(list(present)))
            )
        if parts:
            query = parts[0] if len(parts) == 1 else sa.union_all(*parts)
            for key, at, name in conn.execute(query):
                if name is None:
                    times[key].append(at)
                else:
                    present[key].add(name)
        counts = []
        for c in call.checks:
            window = sorted(t for t in times[c.key] if t >= c.window_start_us)
            counts.append(count_and_pivot(window, c.limit))
        return counts, [frozenset(present[f.target]) for f in call.flag_checks]

    def _reserve(self, conn: Connection, call: ReserveCall) -> Observation:
        if call.reservation is not None:
            self._lock(conn, [c.key for c in call.checks])
        counts, flags = self._observe(conn, call)
        ok = grants(call, counts, flags)
        if ok and call.reservation is not None:
            r = call.reservation
            held = {c.key: sorted(c.counts) for c in call.checks if c.record}
            payload = {"keys": held, "conv": list(r.conversation_keys)}
            new_reservation = sa.insert(reservation).values(
                id=r.reservation_id,
                state="pending",
                created_us=r.at_us,
                payload=json.dumps(payload),
            )
            rows = [{"ledger_key": k, "at_us": r.at_us, "member": r.reservation_id} for k in held]
            if rows and self._dialect == "postgresql":
                # One round trip: the reservation rides along as a data-modifying CTE.
                conn.execute(sa.insert(ledger).values(rows).add_cte(new_reservation.cte("nr")))
            else:
                if rows:
                    conn.execute(sa.insert(ledger), rows)
                conn.execute(new_reservation)
        return Observation(tuple(counts), tuple(flags), ok)

    def reserve(self, call: ReserveCall) -> Observation:
        if self._dialect == "postgresql":
            return self._pg_reserve([call])[0]
        try:
            with self.engine.begin() as conn:
                return self._reserve(conn, call)
        except _DB_ERRORS as exc:
            raise StoreUnavailable(f"{self._dialect}: {type(exc).__name__}") from exc

    def reserve_many(self, calls: Sequence[ReserveCall]) -> list[Observation]:
        """PostgreSQL: the whole batch in one transaction and one round trip, decided in order
        (each call sees the entries of the calls before it); its ledgers stay locked only while
        the server runs the batch. SQLite: one transaction each."""
        if not calls:
            return []
        if self._dialect == "postgresql":
            return self._pg_reserve(calls)
        return [self.reserve(c) for c in calls]

    def _pg_reserve(self, calls: Sequence[ReserveCall]) -> list[Observation]:
        lock_keys = sorted({c.key for call in calls if call.reservation for c in call.checks})
        try:
            raw = self.engine.raw_connection()
        except (*_DB_ERRORS, psycopg.Error) as exc:
            raise StoreUnavailable(f"{self._dialect}: {type(exc).__name__}") from exc
        done = False
        try:
            pg: Any = raw.driver_connection
            cursors = []
            # An explicit transaction even on an autocommit engine: the locks must be held
            # until the reservation is committed.
            with pg.pipeline(), pg.transaction():
                # Left alone, the planner plans every call afresh for its values; the generic
                # plan is as good here and saves that planning (SET LOCAL ends with the commit).
                pg.execute(_PG_GENERIC)
                if not self._durable:
                    pg.execute(_PG_ASYNC_COMMIT)
                if lock_keys:
                    pg.execute(_PG_LOCK, {"keys": json.dumps(lock_keys, ensure_ascii=False)})
                for call in calls:
                    cursors.append(pg.execute(_PG_RESERVE, _pg_params(call)))
            out = [
                _pg_observation(call, cur.fetchall())
                for call, cur in zip(calls, cursors, strict=True)
            ]
            done = True
        except psycopg.Error as exc:
            raise StoreUnavailable(f"{self._dialect}: {type(exc).__name__}") from exc
        finally:
            if done:
                raw.close()  # back to the pool
            else:
                _pg_discard(raw)
        return out

    def _held(self, conn: Connection, reservation_id: str) -> tuple[str, dict[str, Any]] | None:
        q = sa.select(reservation.c.state, reservation.c.payload).where(
            reservation.c.id == reservation_id
        )
        if self._dialect == "postgresql":
            q = q.with_for_update()
        row = conn.execute(q).first()
        if row is None:
            return None
        return str(row[0]), json.loads(row[1])

    def release(self, reservation_id: str) -> bool:
        try:
            with self.engine.begin() as conn:
                if self._dialect == "sqlite":
                    self._lock(conn, [f"reservation|{reservation_id}"])
                held = self._held(conn, reservation_id)
                if held is None or held[0] != "pending":
                    return False
                conn.execute(
                    sa.delete(ledger).where(
                        ledger.c.member == reservation_id,
                        ledger.c.ledger_key.in_(list(held[1]["keys"])),
                    )
                )
                conn.execute(
                    sa.update(reservation)
                    .where(reservation.c.id == reservation_id)
                    .values(state="released")
                )
                return True
        except _DB_ERRORS as exc:
            raise StoreUnavailable(f"{self._dialect}: {type(exc).__name__}") from exc

    def record_outcome(self, reservation_id: str, outcome: str, at_us: int) -> None:
        try:
            with self.engine.begin() as conn:
                if self._dialect == "sqlite":
                    self._lock(conn, [f"reservation|{reservation_id}"])
                held = self._held(conn, reservation_id)
                if held is None:
                    raise UnknownReservation(f"no reservation {reservation_id!r}")
                state, payload = held
                if state != "pending":
                    raise ReservationClosed(f"reservation {reservation_id!r} is {state}")
                drop = [k for k, counted in payload["keys"].items() if outcome not in counted]
                if drop:
                    conn.execute(
                        sa.delete(ledger).where(
                            ledger.c.member == reservation_id, ledger.c.ledger_key.in_(drop)
                        )
                    )
                if outcome == "conversation" and payload["conv"]:
                    conn.execute(
                        sa.insert(ledger),
                        [
                            {"ledger_key": k, "at_us": at_us, "member": reservation_id}
                            for k in payload["conv"]
                        ],
                    )
                conn.execute(
                    sa.update(reservation)
                    .where(reservation.c.id == reservation_id)
                    .values(state=outcome)
                )
        except _DB_ERRORS as exc:
            raise StoreUnavailable(f"{self._dialect}: {type(exc).__name__}") from exc

    def append(self, entries: Sequence[tuple[str, int, str]]) -> None:
        if not entries:
            return
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    sa.insert(ledger),
                    [{"ledger_key": k, "at_us": t, "member": m} for k, t, m in entries],
                )
        except _DB_ERRORS as exc:
            raise StoreUnavailable(f"{self._dialect}: {type(exc).__name__}") from exc

    def set_flag(self, target: str, flag_name: str, at_us: int) -> None:
        try:
            with self.engine.begin() as conn:
                stmt = self._insert(flag).values(target=target, flag=flag_name, set_us=at_us)
                if self._dialect in ("postgresql", "sqlite"):
                    stmt = stmt.on_conflict_do_nothing()
                conn.execute(stmt)
        except _DB_ERRORS as exc:
            raise StoreUnavailable(f"{self._dialect}: {type(exc).__name__}") from exc

    def clear_flag(self, target: str, flag_name: str) -> bool:
        try:
            with self.engine.begin() as conn:
                result = conn.execute(
                    sa.delete(flag).where(flag.c.target == target, flag.c.flag == flag_name)
                )
                return bool(result.rowcount)
        except _DB_ERRORS as exc:
            raise StoreUnavailable(f"{self._dialect}: {type(exc).__name__}") from exc

    def flags(self, target: str) -> frozenset[str]:
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(sa.select(flag.c.flag).where(flag.c.target == target))
                return frozenset(r[0] for r in rows)
        except _DB_ERRORS as exc:
            raise StoreUnavailable(f"{self._dialect}: {type(exc).__name__}") from exc

    def entries(self, key: str) -> list[int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(ledger.c.at_us).where(ledger.c.ledger_key == key).order_by(ledger.c.at_us)
            )
            return [r[0] for r in rows]

    def ledger_keys(self) -> list[str]:
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(sa.select(ledger.c.ledger_key).distinct())]

    def prune(self, before_us: int) -> int:
        """Forget ledger entries older than any rule looks back; call it daily."""
        with self.engine.begin() as conn:
            n = conn.execute(sa.delete(ledger).where(ledger.c.at_us < before_us)).rowcount
            conn.execute(sa.delete(reservation).where(reservation.c.created_us < before_us))
            return int(n)

    def close(self) -> None:
        if self._owns_engine:
            self.engine.dispose()


def _pg_params(call: ReserveCall) -> dict[str, Any]:
    checks, r = call.checks, call.reservation
    payload = ""
    if r is not None:
        held = {c.key: sorted(c.counts) for c in checks if c.record}
        payload = json.dumps({"keys": held, "conv": list(r.conversation_keys)})
    return {
        "checks": json.dumps(
            [[c.key, c.window_start_us, c.limit, c.record] for c in checks], ensure_ascii=False
        ),
        "flags": json.dumps(
            [
                [f.target, f",{','.join(f.blocking)},", ",".join(f.required)]
                for f in call.flag_checks
            ],
            ensure_ascii=False,
        ),
        "reserve": r is not None,
        "at": r.at_us if r else 0,
        "rid": r.reservation_id if r else "",
        "payload": payload,
    }


def _pg_observation(call: ReserveCall, rows: Sequence[Any]) -> Observation:
    counts: list[LedgerCount] = [under_limit(0)] * len(call.checks)
    flags: list[frozenset[str]] = [NO_FLAGS] * len(call.flag_checks)
    granted = False
    for ok, kind, i, count, pivot, present in rows:
        granted = bool(ok)
        if kind == 0:
            counts[i - 1] = under_limit(count) if pivot is None else LedgerCount(count, pivot)
        elif kind == 1 and present:
            flags[i - 1] = frozenset(present)
    return Observation(tuple(counts), tuple(flags), granted)


def _pg_discard(raw: Any) -> None:
    """After a failure: roll back, and drop a broken connection instead of pooling it."""
    try:
        if raw.driver_connection.broken:
            raw.invalidate()
        else:
            raw.rollback()
    except Exception:  # unusable either way
        raw.invalidate()
    finally:
        raw.close()
