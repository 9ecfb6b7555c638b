"""One contract, every backend: memory, SQL (SQLite and PostgreSQL) and Redis answer alike."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa

from compliance_guard.errors import ReservationClosed, UnknownReservation
from compliance_guard.models import Flag, FlagScope, Outcome
from compliance_guard.rules import RuleSet, parse_ruleset
from compliance_guard.store import ComplianceStore, MemoryStore
from compliance_guard.store_redis import RedisStore
from compliance_guard.store_sql import SqlStore, flag, lock, metadata
from tests.compliance_cases.helpers import NY_HOME, guard, ny, request


class StoreContract:
    def test_eighth_attempt_in_seven_days_is_denied_with_when(self, store: ComplianceStore) -> None:
        g = guard("us-regf", store)
        for day in range(7):
            d = g.check_and_reserve(request(), ny(2026, 3, 2 + day, 10, 0))
            assert d.allowed
            g.record_outcome(d.reservation_id or "", Outcome.BUSY, ny(2026, 3, 2 + day, 10, 1))
        d = g.check_and_reserve(request(), ny(2026, 3, 8, 19, 0))
        assert [r.rule for r in d.reasons] == ["regf-7-in-7"]
        assert d.next_allowed_at == ny(2026, 3, 9, 8, 0)

    def test_outcome_a_rule_does_not_count_frees_the_place(self, store: ComplianceStore) -> None:
        g = guard("us-regf", store)
        held = [g.check_and_reserve(request(), ny(2026, 3, 2, 9, i)) for i in range(7)]
        assert all(d.allowed for d in held)
        assert not g.check_and_reserve(request(), ny(2026, 3, 2, 10, 0)).allowed
        g.record_outcome(held[3].reservation_id or "", Outcome.NETWORK_FAILURE, ny(2026, 3, 2, 10))
        assert g.check_and_reserve(request(), ny(2026, 3, 2, 10, 1)).allowed

    def test_release_is_idempotent_and_closes_the_reservation(self, store: ComplianceStore) -> None:
        g = guard("us-regf", store)
        d = g.check_and_reserve(request(), ny(2026, 3, 2, 9, 0))
        rid = d.reservation_id or ""
        assert g.release(rid, ny(2026, 3, 2, 9, 1))
        assert not g.release(rid, ny(2026, 3, 2, 9, 2))
        with pytest.raises(ReservationClosed):
            g.record_outcome(rid, Outcome.CONVERSATION, ny(2026, 3, 2, 9, 3))
        with pytest.raises(UnknownReservation):
            g.record_outcome("never-issued", Outcome.BUSY, ny(2026, 3, 2, 9, 3))

    def test_conversation_and_inbound_start_the_period(self, store: ComplianceStore) -> None:
        g = guard("us-regf", store)
        d = g.check_and_reserve(request(debt_ids=("d1", "d2")), ny(2026, 3, 2, 9, 0))
        g.record_outcome(d.reservation_id or "", Outcome.CONVERSATION, ny(2026, 3, 2, 9, 5))
        g.record_inbound("bank", "p1", ["d3"], ny(2026, 3, 2, 12, 0))
        for debt in ("d1", "d2", "d3"):
            blocked = g.check_and_reserve(request(debt_ids=(debt,)), ny(2026, 3, 8, 20, 0))
            assert [r.rule for r in blocked.reasons] == ["regf-conversation-period"], debt
            assert blocked.next_allowed_at == ny(2026, 3, 9, 8, 0)
        assert g.check_and_reserve(request(debt_ids=("d4",)), ny(2026, 3, 8, 20, 0)).allowed

    def test_flag_set_on_one_node_is_honoured_by_another(self, store: ComplianceStore) -> None:
        node_a, node_b = guard("us-regf", store, prefix="a"), guard("us-regf", store, prefix="b")
        node_a.set_flag("bank", Flag.DO_NOT_CALL, FlagScope.PHONE, NY_HOME, ny(2026, 3, 2, 9))
        d = node_b.check_and_reserve(request(phone=NY_HOME), ny(2026, 3, 2, 9, 0, 1))
        assert [r.rule for r in d.reasons] == ["flag:do_not_call"] and d.next_allowed_at is None
        assert node_b.clear_flag("bank", Flag.DO_NOT_CALL, FlagScope.PHONE, NY_HOME, ny(2026, 3, 2))
        assert node_a.check_and_reserve(request(phone=NY_HOME), ny(2026, 3, 2, 9, 1)).allowed

    def test_a_batch_respects_the_cap_inside_itself(self, store: ComplianceStore) -> None:
        g = guard("us-regf", store)
        decisions = g.check_and_reserve_many([request()] * 9, ny(2026, 3, 2, 10, 0))
        assert [d.allowed for d in decisions] == [True] * 7 + [False] * 2

    def test_shared_cap_counts_across_tenants(self, store: ComplianceStore) -> None:
        a, b = guard("cn", store, prefix="a"), guard("cn", store, prefix="b")
        cn = {"phone": "+8613800138000"}
        from tests.compliance_cases.helpers import sh

        for i in range(3):
            d = a.check_and_reserve(request(tenant="a", **cn), sh(2026, 3, 2, 9, i))
            a.record_outcome(d.reservation_id or "", Outcome.CONVERSATION, sh(2026, 3, 2, 9, i))
        assert not b.check_and_reserve(request(tenant="b", **cn), sh(2026, 3, 2, 10)).allowed
        later = sh(2026, 3, 2, 10) + timedelta(days=1)
        assert b.check_and_reserve(request(tenant="b", **cn), later).allowed


class TestMemoryStore(StoreContract):
    @pytest.fixture
    def store(self) -> ComplianceStore:
        return MemoryStore()


class TestSqlStore(StoreContract):
    @pytest.fixture
    def store(self, database_url: str) -> Iterator[ComplianceStore]:
        engine = sa.create_engine(database_url)
        metadata.create_all(engine)
        yield SqlStore(engine)
        engine.dispose()


class TestSqlStoreNonDurable(StoreContract):
    """`durable=False` changes when the commit reaches the disk, never what is decided."""

    @pytest.fixture
    def store(self, postgres_url: str) -> Iterator[ComplianceStore]:
        engine = sa.create_engine(postgres_url)
        metadata.create_all(engine)
        yield SqlStore(engine, durable=False)
        engine.dispose()


class TestSqlStoreOnAutocommitEngine(StoreContract):
    """An autocommit engine gives the same answers: the store opens its own transaction."""

    @pytest.fixture
    def store(self, postgres_url: str) -> Iterator[ComplianceStore]:
        engine = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
        metadata.create_all(engine)
        yield SqlStore(engine)
        engine.dispose()


class TestRedisStore(StoreContract):
    @pytest.fixture
    def store(self, redis_url: str, redis_prefix: str) -> Iterator[ComplianceStore]:
        s = RedisStore(redis_url, prefix=redis_prefix)
        yield s
        s.close()


@pytest.mark.postgres
def test_postgres_store_hands_its_connection_back_in_the_commit_mode_it_found(
    postgres_url: str,
) -> None:
    # The store switches its pooled connection to autocommit for compliance_reserve; the next
    # user of that connection must still get transactions that roll back.
    engine = sa.create_engine(postgres_url, pool_size=1, max_overflow=0)
    metadata.create_all(engine)
    store = SqlStore(engine)
    g = guard("us-regf", store)
    try:
        assert g.check_and_reserve(request(), ny(2026, 3, 2, 9, 0)).allowed
        with engine.connect() as conn:
            conn.execute(sa.insert(flag).values(target="t", flag="f", set_us=1))
            conn.rollback()
        assert store.flags("t") == frozenset()
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_non_durable_reservations_skip_only_the_wait_for_the_flush(postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url)
    metadata.create_all(engine)
    call = "SELECT count(*) FROM compliance_reserve('[\"k\"]', '[]', '[]', false, 0, '', '', {})"
    try:
        for async_commit, expected in (("true", "off"), ("false", "on")):
            with engine.begin() as conn:
                conn.exec_driver_sql(call.format(async_commit))
                setting = conn.exec_driver_sql("SHOW synchronous_commit").scalar()
            assert setting == expected
    finally:
        engine.dispose()


def _quarterly_ruleset() -> RuleSet:
    """A custom rule set whose cap looks back 90 days: further than the default retention."""
    return parse_ruleset(
        {
            "name": "quarterly",
            "version": "1",
            "extends": "us-regf",
            "caps": [
                {
                    "id": "q-10-in-90",
                    "citation": "house policy",
                    "message": "10 calls about this debt within 90 days",
                    "scope": "person_debt",
                    "limit": 10,
                    "window_days": 90,
                    "channels": ["call"],
                }
            ],
        },
        "quarterly.toml",
    )


def test_guard_refuses_a_ledger_that_forgets_sooner_than_its_rules_look_back() -> None:
    quarterly = _quarterly_ruleset()
    assert quarterly.lookback_days == 91
    with pytest.raises(ValueError, match=r"looks back 91 days but the ledger keeps 40"):
        guard(quarterly, MemoryStore())
    assert (
        guard(quarterly, MemoryStore(retention_days=91))
        .check_and_reserve(request(), ny(2026, 3, 2, 10, 0))
        .allowed
    )


def test_sql_ledger_forgets_entries_past_its_retention_once_a_day(database_url: str) -> None:
    engine = sa.create_engine(database_url)
    metadata.create_all(engine)
    store = SqlStore(engine)
    try:
        g = guard("us-regf", store)
        assert g.check_and_reserve(request(person_id="p-old"), ny(2026, 1, 5, 10, 0)).allowed
        old_keys = set(store.ledger_keys())
        later = ny(2026, 1, 5, 10, 0) + timedelta(days=store.retention_days + 5)
        assert g.check_and_reserve(request(person_id="p-new"), later).allowed
        keys = store.ledger_keys()
        assert old_keys and not old_keys & set(keys), "entries past the retention survived"
        with engine.connect() as conn:
            locks = conn.execute(sa.select(sa.func.count()).select_from(lock)).scalar_one()
        assert locks == len(keys)  # the lock rows of emptied ledgers went with them
    finally:
        engine.dispose()
