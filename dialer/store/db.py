"""Opening the database: engine settings per dialect, schema upgrade to head, sessions."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from dialer.errors import StoreError

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Several dialer nodes may start at once against one PostgreSQL; only one may migrate at a time.
_MIGRATION_LOCK_KEY = 0x6469616C  # "dial"
SQLITE_BUSY_TIMEOUT_MS = 10_000


class Store:
    """The database as the rest of the dialer sees it: an engine and short transactions."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A Session that commits when the block ends and rolls back if it raises."""
        with self._sessions.begin() as session:
            yield session

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A Core connection inside one transaction, for fast statements without ORM objects."""
        with self.engine.begin() as conn:
            yield conn

    def close(self) -> None:
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Store({self.engine.url!r})"  # SQLAlchemy masks the password


def safe_url(url: str) -> str:
    """The URL with its password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


def error_reason(exc: BaseException) -> str:
    """The driver's own first line, without SQLAlchemy's statement dump and background link."""
    text_ = str(getattr(exc, "orig", None) or exc).strip()
    return text_.splitlines()[0] if text_ else type(exc).__name__


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the web pages read while the engine writes; foreign keys are off by default.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    # NORMAL is crash-safe under WAL (only power loss can drop the last commits) and spares an
    # fsync per attempt row.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_store_engine(url: str) -> Engine:
    """An engine configured for the dialect, without touching the database yet."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"invalid database URL {safe_url(url)!r}: {exc}") from exc
    kwargs: dict[str, Any] = {"future": True}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            try:
                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the directory for {database}: {exc}") from exc
    elif parsed.get_backend_name() == "postgresql":
        kwargs["pool_pre_ping"] = True
        if "connect_timeout" not in parsed.query:
            kwargs["connect_args"] = {"connect_timeout": 5}
    try:
        engine = create_engine(parsed, **kwargs)
    except (ArgumentError, ImportError) as exc:
        raise StoreError(f"cannot use database URL {safe_url(url)!r}: {exc}") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _alembic_config(connection: Connection) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


# Alembic runs env.py through a module-global context proxy, so two threads of one process must
# not migrate at once; other processes are kept out by the database locks taken below.
_ALEMBIC_LOCK = threading.Lock()


def _migrate(engine: Engine, action: str, revision: str) -> None:
    with _ALEMBIC_LOCK, engine.begin() as conn:
        # Several processes (dialer nodes, the web server) may start together: the first to get
        # the lock migrates, the others wait and then find nothing left to do.
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
        elif conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock, waiting up to busy_timeout
        config = _alembic_config(conn)
        if action == "upgrade":
            command.upgrade(config, revision)
        else:
            command.downgrade(config, revision)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema up to `revision` (all pending migrations by default)."""
    try:
        _migrate(engine, "upgrade", revision)
    except SQLAlchemyError as exc:
        raise StoreError(
            f"schema upgrade of {safe_url(str(engine.url))} failed: {error_reason(exc)}"
        ) from exc


def downgrade(engine: Engine, revision: str) -> None:
    """Take the schema back to `revision` ("base" drops every table)."""
    try:
        _migrate(engine, "downgrade", revision)
    except SQLAlchemyError as exc:
        raise StoreError(
            f"schema downgrade of {safe_url(str(engine.url))} failed: {error_reason(exc)}"
        ) from exc


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, None for an empty database."""
    try:
        with engine.connect() as conn:
            rev: str | None = MigrationContext.configure(conn).get_current_revision()
            return rev
    except SQLAlchemyError as exc:
        raise StoreError(
            f"cannot read the schema revision of {safe_url(str(engine.url))}: {error_reason(exc)}"
        ) from exc


def head_revision() -> str | None:
    """The newest revision shipped with this version of the dialer."""
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(config).get_current_head()


def open_store(url: str, *, migrate: bool = True) -> Store:
    """Connect, upgrade the schema to head (unless `migrate` is False) and return the Store."""
    engine = create_store_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        engine.dispose()
        raise StoreError(
            f"cannot reach the database at {safe_url(url)}: {error_reason(exc)}"
        ) from exc
    if migrate:
        try:
            upgrade(engine)
        except StoreError:
            engine.dispose()
            raise
    log.info("= store open at %s (schema %s)", safe_url(url), head_revision())
    return Store(engine)
