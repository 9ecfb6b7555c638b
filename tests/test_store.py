"""The store opens, migrates both ways, keeps times in UTC and explains when it cannot connect."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from compliance_guard.store_sql import metadata as compliance_metadata
from dialer.cli import main
from dialer.errors import StoreError
from dialer.store.db import (
    Store,
    current_revision,
    downgrade,
    head_revision,
    open_store,
    upgrade,
)
from dialer.store.models import Base, Tenant

TABLES = {
    "tenants",
    "campaigns",
    "debtors",
    "debts",
    "phones",
    "addresses",
    "agents",
    "call_attempts",
    "dispositions",
    "pacing_snapshots",
    "compliance_ledger",
    "compliance_reservation",
    "compliance_flag",
    "compliance_lock",
}
# People at work (revision 0006)
TABLES_OF_0006 = {
    "users",
    "web_sessions",
    "agent_sessions",
    "agent_state_changes",
    "audit_events",
    "callbacks",
}
TABLES |= TABLES_OF_0006
# Recordings kept as evidence and their job queue (revision 0007)
TABLES_OF_0007 = {"recordings", "recording_jobs"}
TABLES |= TABLES_OF_0007
# Transcripts, their search index and QA (revision 0008). The index is the database's own:
# an FTS5 virtual table (with its shadow tables) on SQLite, a tsvector table on PostgreSQL.
SEARCH_INDEX = "<search index>"
TABLES_OF_0008 = {"transcripts", "transcript_segments", "qa_flags", "qa_scores", SEARCH_INDEX}
TABLES |= TABLES_OF_0008
# Cases (0009) and messages (0010)
TABLES_OF_0009 = {"cases", "case_history", "case_notes", "payments", "promises"}
TABLES_OF_0010 = {"messages", "message_events", "inbound_messages", "debtor_emails"}
TABLES |= TABLES_OF_0009 | TABLES_OF_0010
# Collectors, teams, segments and campaigns' call lists (0012)
TABLES_OF_0012 = {
    "teams",
    "collectors",
    "assignment_rule_sets",
    "segments",
    "campaign_segments",
    "campaign_list",
}
TABLES |= TABLES_OF_0012
# The strategy run's log of actions (0011; its other columns are on cases)
TABLES_OF_0011 = {"case_strategy_actions"}
TABLES |= TABLES_OF_0011
# The reports' daily portfolio snapshot (0014)
TABLES_OF_0014 = {"report_snapshots"}
TABLES |= TABLES_OF_0014
SEARCH_INDEX_TABLES = {
    "sqlite": {f"transcript_fts{s}" for s in ("", "_data", "_idx", "_docsize", "_config")},
    "postgresql": {"transcript_search"},
}


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    opened = open_store(database_url)
    yield opened
    opened.close()


def _tables(store: Store) -> set[str]:
    """The tables of the schema, the search index's (0008, per database) counted as one."""
    found = set(sa.inspect(store.engine).get_table_names()) - {"alembic_version"}
    index = SEARCH_INDEX_TABLES[store.dialect]
    assert found >= index or not found & index, f"search index half there: {found & index}"
    return found - index | ({SEARCH_INDEX} if found >= index else set())


def test_opening_an_empty_database_creates_every_table_at_the_newest_revision(
    store: Store,
) -> None:
    assert _tables(store) == TABLES
    assert current_revision(store.engine) == head_revision()


def test_downgrade_to_base_drops_every_table_and_upgrade_restores_them(store: Store) -> None:
    downgrade(store.engine, "base")
    assert _tables(store) == set()
    assert current_revision(store.engine) is None
    upgrade(store.engine)
    assert _tables(store) == TABLES


def test_downgrade_to_0006_drops_the_tables_of_every_later_revision(store: Store) -> None:
    downgrade(store.engine, "0006")
    assert (
        _tables(store)
        == TABLES
        - TABLES_OF_0007
        - TABLES_OF_0008
        - TABLES_OF_0009
        - TABLES_OF_0010
        - TABLES_OF_0011
        - TABLES_OF_0012
        - TABLES_OF_0014
    )
    upgrade(store.engine)
    assert _tables(store) == TABLES


def _table_of(diff: object) -> str | None:
    """The table an Alembic autogenerate difference is about."""
    if isinstance(diff, list):  # modify_* differences come as lists of tuples
        return _table_of(diff[0]) if diff else None
    assert isinstance(diff, tuple)
    if diff[0] in ("add_table", "remove_table"):
        return str(diff[1].name)
    if diff[0].startswith("modify_"):
        return str(diff[3])
    table = getattr(diff[1], "table", None)
    return None if table is None else str(table.name)


def test_migrations_produce_exactly_the_schema_the_models_describe(store: Store) -> None:
    # Two owners share the database: the product's models and the compliance guard's tables.
    # Each is compared alone; differences about the other owner's tables are expected.
    differences: list[object] = []
    for owner in (Base.metadata, compliance_metadata):
        with store.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            differences += [
                d for d in compare_metadata(context, owner) if _table_of(d) in owner.tables
            ]
    assert differences == []


def test_opening_twice_leaves_the_schema_and_data_alone(database_url: str) -> None:
    first = open_store(database_url)
    with first.session() as session:
        session.add(Tenant(name="acme", created_at=datetime.now(UTC)))
    first.close()
    second = open_store(database_url)
    with second.session() as session:
        assert session.scalars(sa.select(Tenant.name)).all() == ["acme"]
    second.close()


def test_times_come_back_as_the_same_instant_in_aware_utc(store: Store) -> None:
    shanghai = timezone(timedelta(hours=8))
    written = datetime(2026, 3, 1, 9, 30, 15, 250_000, tzinfo=shanghai)
    with store.session() as session:
        session.add(Tenant(name="bank", created_at=written))
    with store.session() as session:
        read = session.scalars(sa.select(Tenant.created_at)).one()
    assert read.tzinfo is not None
    assert read.utcoffset() == timedelta(0)
    assert read == written
    assert read.hour == 1


def test_a_naive_time_is_refused_rather_than_guessed(store: Store) -> None:
    with pytest.raises(sa.exc.StatementError, match="naive datetime"), store.session() as session:
        session.add(Tenant(name="bank", created_at=datetime(2026, 3, 1, 9, 30)))
        session.flush()


def test_a_failing_session_block_rolls_back_everything_in_it(store: Store) -> None:
    with pytest.raises(RuntimeError), store.session() as session:
        session.add(Tenant(name="ghost", created_at=datetime.now(UTC)))
        session.flush()
        raise RuntimeError("agent closed the page")
    with store.session() as session:
        assert session.scalars(sa.select(Tenant)).all() == []


def test_unreachable_database_gives_a_clear_error_without_the_password() -> None:
    url = "postgresql+psycopg://dialer:hunter2@127.0.0.1:9/collections"
    with pytest.raises(StoreError, match="cannot reach the database") as raised:
        open_store(url)
    assert "hunter2" not in str(raised.value)
    assert "127.0.0.1:9" in str(raised.value)


def test_sqlite_store_creates_its_directory_and_enforces_foreign_keys(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "deeper" / "dialer.db"
    store = open_store(f"sqlite:///{path}")
    try:
        assert path.exists()
        with store.engine.connect() as conn:
            assert conn.execute(sa.text("PRAGMA foreign_keys")).scalar() == 1
            assert conn.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
    finally:
        store.close()


def test_db_command_reports_behind_then_upgrades_then_reports_current(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert main(["db", "current"]) == 1
    assert "behind" in capsys.readouterr().out
    assert main(["db", "upgrade"]) == 0
    assert main(["db", "current"]) == 0
    assert "up to date" in capsys.readouterr().out
    assert main(["db", "downgrade", "base"]) == 0
    assert "base (empty)" in capsys.readouterr().out


def test_db_command_reads_the_database_from_a_config_file_given_after_the_action(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("DIALER_DATA_DIR", raising=False)
    config = tmp_path / "dialer.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n', encoding="utf-8")
    assert main(["db", "upgrade", "--config", str(config)]) == 0
    assert (tmp_path / "data" / "dialer.db").exists()
    assert main(["db", "--config", str(config), "current"]) == 0
    assert "up to date" in capsys.readouterr().out


def test_nodes_starting_together_all_open_the_store_and_migrate_once(database_url: str) -> None:
    failures: list[BaseException] = []

    def start_node() -> None:
        try:
            open_store(database_url).close()
        except StoreError as exc:
            failures.append(exc)

    nodes = [threading.Thread(target=start_node) for _ in range(4)]
    for node in nodes:
        node.start()
    for node in nodes:
        node.join()
    assert failures == []
    store = open_store(database_url)
    try:
        assert current_revision(store.engine) == head_revision()
        assert _tables(store) == TABLES
    finally:
        store.close()


def _reserve_function(engine: sa.Engine) -> tuple[str, str, str] | None:
    """compliance_reserve's arguments, result and source as the server has them."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT pg_get_function_arguments(oid), pg_get_function_result(oid), prosrc "
                "FROM pg_proc WHERE proname = 'compliance_reserve' "
                "AND pronamespace = current_schema()::regnamespace"
            )
        ).first()
    return None if row is None else (row[0], row[1], row[2])


@pytest.mark.postgres
def test_migration_0004_creates_the_reserve_function_the_guard_defines(postgres_url: str) -> None:
    # The migration holds a frozen copy; replacing it by the guard's own must change nothing.
    store = open_store(postgres_url)
    try:
        migrated = _reserve_function(store.engine)
        assert migrated is not None
        compliance_metadata.create_all(store.engine)
        assert _reserve_function(store.engine) == migrated
        downgrade(store.engine, "0003")
        assert _reserve_function(store.engine) is None
        assert (
            _tables(store)
            == TABLES
            - TABLES_OF_0006
            - TABLES_OF_0007
            - TABLES_OF_0008
            - TABLES_OF_0009
            - TABLES_OF_0010
            - TABLES_OF_0011
            - TABLES_OF_0012
            - TABLES_OF_0014
        )
    finally:
        store.close()
