"""The cases tests' world: one database per module, migrated once and emptied before each test
(migrating takes most of a test's time), and the desk's debtors imported into it."""

from __future__ import annotations

import csv
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from compliance_guard.rules import load_preset
from compliance_guard.service import Guard, RuleBook
from compliance_guard.store_sql import SqlStore
from dialer.importer import COLUMNS, import_csv
from dialer.store import attempts as repo
from dialer.store.db import Store, open_store
from tests.conftest import POSTGRES_URL, _need
from tests.test_desk import T0, TENANT, Desk, _row


@contextmanager
def migrated(kind: str, folder: Path) -> Iterator[str]:
    """A database of `kind` (sqlite, postgresql) at the newest revision, dropped afterwards."""
    if kind == "sqlite":
        url = f"sqlite:///{folder / 'dialer.db'}"
        open_store(url).close()
        yield url
        return
    _need(POSTGRES_URL, 5432, "PostgreSQL")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in POSTGRES_URL else "?"
    url = f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    try:
        open_store(url).close()
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def migrated_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A migrated database of each kind, shared by one module's tests (see migrated_store)."""
    with migrated(request.param, tmp_path_factory.mktemp("db")) as url:
        yield url


@pytest.fixture
def migrated_store(migrated_url: str) -> Iterator[Store]:
    """The module's database, emptied for this test and opened."""
    empty(migrated_url)
    opened = open_store(migrated_url)
    yield opened
    opened.close()


def empty(url: str) -> None:
    """Every row of every table gone (the schema and its revision stay)."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                names = conn.execute(
                    sa.text(
                        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
                        " AND tablename <> 'alembic_version'"
                    )
                ).scalars()
                # DELETE of a few rows is ten times quicker than TRUNCATE of forty tables;
                # the replica role skips the foreign-key triggers (the test user is a superuser).
                conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
                for name in list(names):
                    conn.execute(sa.text(f'DELETE FROM "{name}"'))
                return
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            names = conn.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
                " AND name NOT IN ('alembic_version', 'sqlite_sequence')"
                " AND name NOT LIKE 'transcript_fts%'"  # FTS5's own (contentless: no DELETE)
            ).scalars()
            for name in list(names):
                conn.exec_driver_sql(f'DELETE FROM "{name}"')
            if conn.exec_driver_sql(
                "SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'"
            ).first():
                conn.exec_driver_sql("DELETE FROM sqlite_sequence")
    finally:
        engine.dispose()


def open_world(database_url: str, tmp_path: Path) -> Desk:
    """The desk's world (tests/test_desk.py): Ana owes A1 1250.50 and A2 99.999 USD, Wang
    Fang owes B1 300.00, imported a month before T0; one campaign; the guard on Reg F."""
    store = open_store(database_url)
    portfolio = tmp_path / "portfolio.csv"
    with portfolio.open("w", newline="", encoding="utf-8") as fh:
        out = csv.DictWriter(fh, COLUMNS)
        out.writeheader()
        out.writerow(_row("D1", "Ana Núñez", "A1", "1250.50", "(212) 555-0100"))
        out.writerow(_row("D1", "Ana Núñez", "A2", "99.999", "+1 212 555 0101"))
        out.writerow(_row("D2", "王芳", "B1", "300.00", "212-555-0102"))
    assert import_csv(store, portfolio, TENANT, now=T0 - timedelta(days=30)).rejected == 0
    tenant_id = repo.ensure_tenant(store, TENANT)
    campaign_id = repo.ensure_campaign(store, tenant_id, "spring", "predictive")
    with store.begin() as conn:
        ids = {
            table: dict(conn.execute(sa.text(f"SELECT {key}, id FROM {table}")).all())
            for table, key in (
                ("debtors", "external_id"),
                ("debts", "external_id"),
                ("phones", "e164"),
            )
        }
    guard = Guard(
        SqlStore(store.engine), RuleBook({"us-regf": load_preset("us-regf")}, default="us-regf")
    )
    return Desk(store, guard, tenant_id, campaign_id, ids["debtors"], ids["debts"], ids["phones"])
