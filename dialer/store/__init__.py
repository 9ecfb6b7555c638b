"""Persistent store: SQLAlchemy models, Alembic migrations, repositories."""
