"""Alembic migrations of the dialer store, run by dialer.store.db."""
