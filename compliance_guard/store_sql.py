"""SQL ledger backend (SQLAlchemy 2): PostgreSQL with row locks, SQLite with its write lock."""

from __future__ import annotations

import bisect
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
import psycopg.errors
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from compliance_guard.errors import ReservationClosed, StoreUnavailable, UnknownReservation
from compliance_guard.store import (
    DEFAULT_RETENTION_DAYS,
    NO_FLAGS,
    LedgerCount,
    Observation,
    ReserveCall,
    count_and_pivot,
    grants,
    under_limit,
)

log = logging.getLogger(__name__)
_DAY_US = 86_400_000_000

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

# PostgreSQL: one statement observes the ledgers and flags and, when everything passes, inserts
# the ledger entries and the reservation. Inputs travel as JSON texts (checks: [key, window
# start, limit, record?]; flags: [target, ",blocking,", "required,csv"]): the driver adapts one
# string far faster than arrays. Rows out: (granted, 0, check n, count, pivot, NULL) per check,
# (granted, 1, flag check n, 0, NULL, flags present) per flag check, then (granted, 2, 0, ...).
# The body of compliance_reserve (below), with the function's argument names (p_...).
_RESERVE_QUERY = """
  WITH inp AS (
    SELECT e.i, e.v ->> 0 AS key, (e.v ->> 1)::bigint AS ws, (e.v ->> 2)::int AS lim,
           (e.v ->> 3)::bool AS rec
    FROM json_array_elements(p_checks) WITH ORDINALITY AS e(v, i)
  ), chk AS (
    SELECT inp.i, inp.lim, inp.rec, inp.key,
           (SELECT array_agg(l.at_us ORDER BY l.at_us) FROM compliance_ledger l
            WHERE l.ledger_key = inp.key AND l.at_us >= inp.ws) AS times
    FROM inp
  ), fl AS (
    SELECT e.j, e.v ->> 1 AS blocking, e.v ->> 2 AS required,
           coalesce((SELECT array_agg(x.flag::text ORDER BY x.flag) FROM compliance_flag x
                     WHERE x.target = e.v ->> 0), '{}') AS present
    FROM json_array_elements(p_flags) WITH ORDINALITY AS e(v, j)
  ), ok AS (
    SELECT p_reserve
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
    SELECT chk.key, p_at_us, p_reservation_id FROM chk, ok WHERE ok.granted AND chk.rec
  ), new_reservation AS (
    INSERT INTO compliance_reservation (id, state, created_us, payload)
    SELECT p_reservation_id, 'pending', p_at_us, p_payload FROM ok WHERE ok.granted
  )
  SELECT (SELECT granted FROM ok), 0, chk.i, coalesce(cardinality(chk.times), 0),
         CASE WHEN coalesce(cardinality(chk.times), 0) >= chk.lim
              THEN chk.times[cardinality(chk.times) - chk.lim + 1] END,
         NULL::text[]
  FROM chk
  UNION ALL
  SELECT (SELECT granted FROM ok), 1, fl.j, 0, NULL::bigint, fl.present FROM fl
  UNION ALL
  SELECT granted, 2, 0, 0, NULL::bigint, NULL::text[] FROM ok"""

# A single check-and-reserve is one call of this function, sent in autocommit mode, so the call
# is its own transaction: one round trip and one statement for the server (no BEGIN, SET or
# COMMIT of its own), its queries prepared once per connection by PL/pgSQL. Against the same
# work sent as BEGIN, SET LOCAL, lock, query, COMMIT in one pipeline it gave 1.5 times the
# sequential decisions per second through the guard while the disk flushed fast (when the WAL
# flush is slow, both wait on it alike).
#   1. The upsert into compliance_lock takes the row locks of the ledgers, in the order given
#      (the caller sorts them, so two nodes never wait on each other in a cycle).
#   2. RETURN QUERY must be a second statement: under READ COMMITTED a VOLATILE function takes
#      a new snapshot for each statement, so it sees every entry committed by whoever held a
#      lock before us.
# Migration 0004 holds a frozen copy of this text; a new version needs a new migration (and
# tests/test_store.py checks that the two still agree).
PG_RESERVE_FUNCTION = f"""
CREATE OR REPLACE FUNCTION compliance_reserve(
  p_lock_keys json, p_checks json, p_flags json, p_reserve boolean, p_at_us bigint,
  p_reservation_id text, p_payload text, p_async_commit boolean
) RETURNS TABLE (
  r_granted boolean, r_kind integer, r_index bigint, r_count integer, r_pivot_us bigint,
  r_flags text[]
) LANGUAGE plpgsql VOLATILE AS $body$
BEGIN
  IF p_async_commit THEN
    -- SqlStore(durable=False): this transaction's commit does not wait for the WAL flush.
    PERFORM set_config('synchronous_commit', 'off', true);
  END IF;
  IF json_array_length(p_lock_keys) > 0 THEN
    -- DO UPDATE (not DO NOTHING) takes the row lock on an existing row too.
    INSERT INTO compliance_lock (lock_key)
    SELECT k FROM json_array_elements_text(p_lock_keys) WITH ORDINALITY AS t(k, i) ORDER BY i
    ON CONFLICT (lock_key) DO UPDATE SET lock_key = excluded.lock_key;
  END IF;
  RETURN QUERY{_RESERVE_QUERY};
END
$body$
"""
PG_DROP_RESERVE_FUNCTION = (
    "DROP FUNCTION IF EXISTS "
    "compliance_reserve(json, json, json, boolean, bigint, text, text, boolean)"
)


# create_all / drop_all (tests, benchmarks, `create_tables`) handle the function with the tables;
# in the product's database migration 0004 creates it.
@sa.event.listens_for(metadata, "after_create")
def _create_pg_function(_target: sa.MetaData, connection: Connection, **_: Any) -> None:
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(PG_RESERVE_FUNCTION)


@sa.event.listens_for(metadata, "before_drop")
def _drop_pg_function(_target: sa.MetaData, connection: Connection, **_: Any) -> None:
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(PG_DROP_RESERVE_FUNCTION)


_PG_CALL = (
    "SELECT * FROM compliance_reserve(%(lock)s::json, %(checks)s::json, %(flags)s::json, "
    "%(reserve)s::bool, %(at)s::bigint, %(rid)s::text, %(payload)s::text, %(async)s::bool)"
)

_PG_ASYNC_COMMIT = "SET LOCAL synchronous_commit = off"  # only with durable=False
_PG_LOCK = (
    "INSERT INTO compliance_lock (lock_key) "
    "SELECT k FROM json_array_elements_text(%(lock)s::json) WITH ORDINALITY AS t(k, i) ORDER BY i "
    "ON CONFLICT (lock_key) DO UPDATE SET lock_key = excluded.lock_key"
)
# A batch (`_pg_reserve_in_order`) reads and writes whole batches as arrays. It replaced one
# _RESERVE_QUERY statement per call pipelined in one transaction: for 500 messages that held
# half the guard's time in the driver and the server; the batch path took 170 µs a decision
# where that took 350 (messaging bench, 10,000 SMS, loaded 2-core machine).
_PG_ENTRIES = (
    "SELECT ledger_key, at_us FROM compliance_ledger "
    "WHERE ledger_key = ANY(%s::text[]) AND at_us >= %s::bigint"
)
_PG_FLAGS = "SELECT target, flag FROM compliance_flag WHERE target = ANY(%s::text[])"
_PG_WRITE_ENTRIES = (
    "INSERT INTO compliance_ledger (ledger_key, at_us, member) "
    "SELECT * FROM unnest(%s::text[], %s::bigint[], %s::text[])"
)
_PG_WRITE_RESERVATIONS = (
    "INSERT INTO compliance_reservation (id, state, created_us, payload) "
    "SELECT i, 'pending', c, p FROM unnest(%s::text[], %s::bigint[], %s::text[]) AS t(i, c, p)"
)


class SqlStore:
    """Ledger in the product's database. Its tables (and on PostgreSQL its function
    compliance_reserve) must exist: migrations 0003 and 0004, or `create_tables`."""

    def __init__(
        self,
        engine: Engine | str,
        *,
        durable: bool = True,
        retention_days: int = DEFAULT_RETENTION_DAYS,
    ) -> None:
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
        self.retention_days = retention_days
        self._next_prune_us = 0  # the first reservation prunes, then once a day

    def create_tables(self) -> None:
        metadata.create_all(self.engine)

    def _insert(self, table: sa.Table) -> Any:
        if self._dialect == "postgresql":
            return postgresql.insert(table)
        if self._dialect == "sqlite":
            return sqlite.insert(table)
        return sa.insert(table)

    def _lock(self, conn: Connection, keys: Sequence[str]) -> None:
        for part in _parts(sorted(set(keys))):
            stmt = self._insert(lock).values([{"lock_key": k} for k in part])
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
            observation = self._pg_reserve_one(call)
        else:
            try:
                with self.engine.begin() as conn:
                    observation = self._reserve(conn, call)
            except _DB_ERRORS as exc:
                raise StoreUnavailable(f"{self._dialect}: {type(exc).__name__}") from exc
        self._prune_daily([call])
        return observation

    def reserve_many(self, calls: Sequence[ReserveCall]) -> list[Observation]:
        """The whole batch in one transaction, decided in order (each call sees the entries of
        the calls before it): one read of every ledger and flag the batch looks at, decided
        here, then one write of everything granted (`_reserve_in_order`). On PostgreSQL that
        is two round trips, the batch's ledgers locked from the first to the commit; a batch
        of one is a single compliance_reserve call, as `reserve` makes."""
        if not calls:
            return []
        if self._dialect == "postgresql":
            if len(calls) == 1:
                observations = [self._pg_reserve_one(calls[0])]
            else:
                observations = self._pg_reserve_in_order(calls)
        else:
            try:
                with self.engine.begin() as conn:
                    observations = self._reserve_in_order(conn, calls)
            except _DB_ERRORS as exc:
                raise StoreUnavailable(f"{self._dialect}: {type(exc).__name__}") from exc
        self._prune_daily(calls)
        return observations

    def _reserve_in_order(
        self, conn: Connection, calls: Sequence[ReserveCall]
    ) -> list[Observation]:
        """`_reserve` for each call in turn, with set-based reads and writes (SQLite).

        The same steps in one transaction, so the same answers: the ledgers of every reserving
        call are locked first (the first write takes SQLite's write lock, so nothing changes
        under us until the commit), every entry and flag the batch can see is read once, each
        call is decided on that plus the entries granted to the calls before it
        (`decide_in_order`), and what was granted is written with one statement per table.
        One transaction per call cost a commit and three or four statements per decision.
        """
        self._lock(conn, [c.key for call in calls if call.reservation for c in call.checks])
        keys, targets, since = batch_reads(calls)
        entries: list[tuple[str, int]] = []
        flags: list[tuple[str, str]] = []
        for part in _parts(keys):
            entries += [
                (key, at)
                for key, at in conn.execute(
                    sa.select(ledger.c.ledger_key, ledger.c.at_us).where(
                        ledger.c.ledger_key.in_(part), ledger.c.at_us >= since
                    )
                )
            ]
        for part in _parts(targets):
            flags += [
                (target, name)
                for target, name in conn.execute(
                    sa.select(flag.c.target, flag.c.flag).where(flag.c.target.in_(part))
                )
            ]
        observations, new_entries, new_reservations = decide_in_order(calls, entries, flags)
        if new_entries:
            conn.execute(
                sa.insert(ledger),
                [{"ledger_key": k, "at_us": t, "member": m} for k, t, m in new_entries],
            )
        if new_reservations:
            conn.execute(
                sa.insert(reservation),
                [
                    {"id": i, "state": "pending", "created_us": t, "payload": p}
                    for i, t, p in new_reservations
                ],
            )
        return observations

    def _prune_daily(self, calls: Sequence[ReserveCall]) -> None:
        """Once a day (by the reservations' own clock), forget what no rule looks back to."""
        now_us = max((c.reservation.at_us for c in calls if c.reservation), default=0)
        if now_us < self._next_prune_us:
            return
        self._next_prune_us = now_us + _DAY_US
        try:
            removed = self.prune(now_us - self.retention_days * _DAY_US)
        except _DB_ERRORS as exc:
            # The reservation stands; the next day's prune takes what this one left.
            log.warning("compliance ledger prune failed: %s", type(exc).__name__)
            return
        log.info(
            "compliance ledger: %d entries older than %d days pruned", removed, self.retention_days
        )

    def _pg_reserve_in_order(self, calls: Sequence[ReserveCall]) -> list[Observation]:
        """`_reserve_in_order` on PostgreSQL, in one explicit transaction: lock the batch's
        ledgers (sorted), read their entries and the flags (each statement a fresh snapshot,
        so it sees whatever the lock holders before us committed), decide here, write what
        was granted as arrays, commit. Two round trips for the batch, four statements."""
        lock_keys = sorted({c.key for call in calls if call.reservation for c in call.checks})
        keys, targets, since = batch_reads(calls)
        # An explicit transaction: the locks must be held until the batch is written.
        with self._pg_connection() as pg, pg.transaction():
            with pg.pipeline():
                if not self._durable:
                    pg.execute(_PG_ASYNC_COMMIT)
                if lock_keys:
                    pg.execute(_PG_LOCK, {"lock": json.dumps(lock_keys, ensure_ascii=False)})
                read_entries = pg.execute(_PG_ENTRIES, (keys, since))
                read_flags = pg.execute(_PG_FLAGS, (targets,))
            observations, entries, reservations = decide_in_order(
                calls, read_entries.fetchall(), read_flags.fetchall()
            )
            with pg.pipeline():
                if entries:
                    pg.execute(_PG_WRITE_ENTRIES, _columns(entries))
                if reservations:
                    pg.execute(_PG_WRITE_RESERVATIONS, _columns(reservations))
        return observations

    def _pg_reserve_one(self, call: ReserveCall) -> Observation:
        """One compliance_reserve call in autocommit: the server commits the statement (and
        releases its locks) when it ends, with no BEGIN or COMMIT to send."""
        keys = sorted({c.key for c in call.checks}) if call.reservation else []
        params = _pg_params(call)
        params["lock"] = json.dumps(keys, ensure_ascii=False)
        params["async"] = not self._durable
        with self._pg_connection() as pg:
            return _pg_observation(call, pg.execute(_PG_CALL, params).fetchall())

    @contextmanager
    def _pg_connection(self) -> Iterator[Any]:
        """A pooled psycopg connection in autocommit mode, handed back to the pool as it was
        found, or thrown away when broken; database errors come out as StoreUnavailable."""
        try:
            raw = self.engine.raw_connection()
        except (*_DB_ERRORS, psycopg.Error) as exc:
            raise StoreUnavailable(f"{self._dialect}: {type(exc).__name__}") from exc
        pg: Any = raw.driver_connection
        was_autocommit = pg.autocommit
        done = False
        try:
            pg.autocommit = True
            yield pg
            pg.autocommit = was_autocommit
            done = True
        except psycopg.errors.UndefinedFunction as exc:
            raise StoreUnavailable(
                f"{self._dialect}: compliance_reserve() is missing; "
                "run `dialer db upgrade` (migration 0004)"
            ) from exc
        except psycopg.Error as exc:
            raise StoreUnavailable(f"{self._dialect}: {type(exc).__name__}") from exc
        finally:
            if done:
                raw.close()  # back to the pool
            else:
                _pg_discard(raw, was_autocommit)

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
        """Forget ledger entries and reservations from before `before_us`, and the lock rows of
        ledgers left empty; returns how many entries went. Reservations do it once a day.

        Deleting a lock row is safe even while another node reserves: it waits for that
        node's lock, and the next reservation on that ledger makes the row again.
        """
        with self.engine.begin() as conn:
            n = conn.execute(sa.delete(ledger).where(ledger.c.at_us < before_us)).rowcount
            conn.execute(sa.delete(reservation).where(reservation.c.created_us < before_us))
            still_used = sa.select(ledger.c.ledger_key).where(
                ledger.c.ledger_key == lock.c.lock_key
            )
            conn.execute(sa.delete(lock).where(~still_used.exists()))
            return int(n)

    def close(self) -> None:
        if self._owns_engine:
            self.engine.dispose()


def batch_reads(calls: Sequence[ReserveCall]) -> tuple[list[str], list[str], int]:
    """What a batch must read: its ledger keys, its flag targets, and the oldest window start
    (entries before it are in no window of the batch)."""
    keys = sorted({c.key for call in calls for c in call.checks})
    targets = sorted({f.target for call in calls for f in call.flag_checks})
    since = min((c.window_start_us for call in calls for c in call.checks), default=0)
    return keys, targets, since


def decide_in_order(
    calls: Sequence[ReserveCall],
    entries: Iterable[tuple[str, int]],
    flags: Iterable[tuple[str, str]],
) -> tuple[list[Observation], list[tuple[str, int, str]], list[tuple[str, int, str]]]:
    """Each call decided as `_reserve` would, in order, on the ledger `entries` (key, time)
    and `flags` (target, flag) read for the batch under its locks, each call also counting
    the entries granted to the calls before it. Returns the observations, the ledger entries
    to write (key, time, member) and the reservations to write (id, time, JSON payload)."""
    times: dict[str, list[int]] = {}
    for key, at in entries:
        times.setdefault(key, []).append(at)
    for found in times.values():
        found.sort()
    present: dict[str, set[str]] = {}
    for target, name in flags:
        present.setdefault(target, set()).add(name)
    observations: list[Observation] = []
    new_entries: list[tuple[str, int, str]] = []
    new_reservations: list[tuple[str, int, str]] = []
    for call in calls:
        counts = []
        for c in call.checks:
            window = times.get(c.key, [])
            start = bisect.bisect_left(window, c.window_start_us)
            counts.append(count_and_pivot(window[start:], c.limit))
        seen = [frozenset(present.get(f.target, NO_FLAGS)) for f in call.flag_checks]
        ok = grants(call, counts, seen)
        r = call.reservation
        if ok and r is not None:
            held = {c.key: sorted(c.counts) for c in call.checks if c.record}
            for key in held:
                bisect.insort(times.setdefault(key, []), r.at_us)
                new_entries.append((key, r.at_us, r.reservation_id))
            payload = json.dumps({"keys": held, "conv": list(r.conversation_keys)})
            new_reservations.append((r.reservation_id, r.at_us, payload))
        observations.append(Observation(tuple(counts), tuple(seen), ok))
    return observations, new_entries, new_reservations


def _columns(rows: Sequence[tuple[str, int, str]]) -> list[list[Any]]:
    """Rows as three column arrays (for unnest)."""
    return [[r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]]


def _parts(values: Sequence[str], size: int = 500) -> Iterator[Sequence[str]]:
    """Slices for IN (...) lists, well under every driver's limit of bound parameters."""
    for i in range(0, len(values), size):
        yield values[i : i + size]


def _pg_params(call: ReserveCall) -> dict[str, Any]:
    """The arguments of compliance_reserve but the lock keys and the commit mode."""
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


def _pg_discard(raw: Any, autocommit: bool) -> None:
    """After a failure: roll back and restore the commit mode, or drop a broken connection
    instead of pooling it."""
    try:
        pg = raw.driver_connection
        if pg.broken:
            raw.invalidate()
        else:
            pg.rollback()
            pg.autocommit = autocommit
    except Exception:  # unusable either way
        raw.invalidate()
    finally:
        raw.close()
