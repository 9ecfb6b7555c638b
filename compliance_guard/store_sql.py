"""SQL ledger backend (SQLAlchemy 2): PostgreSQL with row locks, SQLite with its write lock."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from compliance_guard.errors import ReservationClosed, StoreUnavailable, UnknownReservation
from compliance_guard.store import LedgerCount, Observation, ReserveCall, count_and_pivot, grants

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


class SqlStore:
    """Ledger in the product's database. Tables must exist (migration or `create_tables`)."""

    def __init__(self, engine: Engine | str) -> None:
        self.engine = sa.create_engine(engine) if isinstance(engine, str) else engine
        self._owns_engine = isinstance(engine, str)
        self._dialect = self.engine.dialect.name

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
        try:
            with self.engine.begin() as conn:
                return self._reserve(conn, call)
        except _DB_ERRORS as exc:
            raise StoreUnavailable(f"{self._dialect}: {type(exc).__name__}") from exc

    def reserve_many(self, calls: Sequence[ReserveCall]) -> list[Observation]:
        # One transaction each: a lock held for a whole batch would stall other nodes.
        return [self.reserve(c) for c in calls]

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
