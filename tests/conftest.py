"""Shared fixtures: real SQLite and PostgreSQL databases, real Redis, trace files."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from sim.lab import AsteriskLab, LabUnsupported, asterisk_available

# migrated_url / migrated_store: one migrated database per module, emptied per test.
pytest_plugins = ("tests.cases_fixtures",)

REPO = Path(__file__).resolve().parent.parent
# The real Asterisk 20.20.1 captures ship with the simulator they specify (sim/traces);
# DIALER_TRACES_DIR points the tests at another set, e.g. fresh captures from a newer Asterisk.
TRACES = Path(os.environ.get("DIALER_TRACES_DIR", REPO / "sim" / "traces"))

POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# CI sets this so that a missing service fails the run instead of skipping tests silently.
REQUIRE_SERVICES = os.environ.get("DIALER_REQUIRE_SERVICES") == "1"


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 1
        ):
            return True
    except OSError:
        return False


def _need(url: str, port: int, what: str) -> None:
    if _reachable(url, port):
        return
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} at {url} is not reachable and DIALER_REQUIRE_SERVICES=1")
    pytest.skip(f"{what} is not running at {url}")


@pytest.fixture
def traces_dir() -> Path:
    if not TRACES.is_dir():
        pytest.fail(f"Asterisk traces not found at {TRACES} (DIALER_TRACES_DIR)")
    return TRACES


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh, empty schema dropped after the test."""
    _need(POSTGRES_URL, 5432, "PostgreSQL")
    import sqlalchemy as sa

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every store test runs on both databases the product supports."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'dialer.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def redis_url() -> str:
    _need(REDIS_URL, 6379, "Redis")
    return REDIS_URL


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A unique key prefix; every key under it is deleted after the test."""
    import redis

    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def asterisk_lab(tmp_path: Path) -> Iterator[Callable[..., AsteriskLab]]:
    """Starts real Asterisk instances configured from asterisk-conf/ as shipped (see sim/lab.py);
    every one started is stopped after the test. Skips (or, with DIALER_REQUIRE_SERVICES=1,
    fails) when no Asterisk is installed."""
    reason = asterisk_available()
    if reason is not None:
        if REQUIRE_SERVICES:
            pytest.fail(f"{reason} and DIALER_REQUIRE_SERVICES=1")
        pytest.skip(reason)
    started: list[AsteriskLab] = []

    def start(name: str = "asterisk", **kwargs: Any) -> AsteriskLab:
        lab = AsteriskLab(tmp_path / name, **kwargs)
        try:
            lab.start()
        except LabUnsupported as exc:
            # An installed build this CPU cannot execute is as good as none; say so loudly.
            pytest.skip(str(exc))
        started.append(lab)
        return lab

    yield start
    for lab in started:
        lab.stop()
