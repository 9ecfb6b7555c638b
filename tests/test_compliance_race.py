"""Several OS processes reserve for the same few debtors at once: no cap is ever exceeded."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from compliance_guard.bench import run_race
from compliance_guard.store_sql import metadata

# The suite keeps to about half a minute on two shared cores; `dialer bench compliance --race 100000`
# runs the full-size race (figures in compliance_guard/README.md).
REDIS_RESERVATIONS = 16_000
POSTGRES_RESERVATIONS = 3_000
PROCESSES = 4


@pytest.mark.slow
@pytest.mark.redis
def test_processes_racing_on_redis_never_breach_a_cap(redis_url: str, redis_prefix: str) -> None:
    result = run_race("redis", redis_url, redis_prefix, REDIS_RESERVATIONS, PROCESSES)
    assert result["reservations"] == REDIS_RESERVATIONS
    assert 200 < result["granted"] < REDIS_RESERVATIONS  # the caps did bite, and often
    assert result["breaches"] == []


@pytest.mark.slow
@pytest.mark.postgres
def test_processes_racing_on_postgresql_never_breach_a_cap(postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url)
    metadata.create_all(engine)
    engine.dispose()
    result = run_race("postgresql", postgres_url, "", POSTGRES_RESERVATIONS, PROCESSES)
    assert result["reservations"] == POSTGRES_RESERVATIONS
    assert 50 < result["granted"] < POSTGRES_RESERVATIONS
    assert result["breaches"] == []


@pytest.mark.slow
@pytest.mark.postgres
def test_processes_racing_in_batches_on_postgresql_never_breach_a_cap(postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url)
    metadata.create_all(engine)
    engine.dispose()
    result = run_race("postgresql", postgres_url, "", POSTGRES_RESERVATIONS, PROCESSES, batch=10)
    assert result["reservations"] == POSTGRES_RESERVATIONS
    assert 50 < result["granted"] < POSTGRES_RESERVATIONS
    assert result["breaches"] == []


@pytest.mark.slow
@pytest.mark.redis
def test_processes_racing_in_pipelines_on_redis_never_breach_a_cap(
    redis_url: str, redis_prefix: str
) -> None:
    result = run_race(
        "redis", redis_url, redis_prefix, REDIS_RESERVATIONS // 2, PROCESSES, batch=10
    )
    assert result["reservations"] == REDIS_RESERVATIONS // 2
    assert 200 < result["granted"] < REDIS_RESERVATIONS // 2
    assert result["breaches"] == []


def test_breach_counter_would_notice_a_fourth_call_in_a_day() -> None:
    from compliance_guard.bench import cap_breaches

    day = 86_400_000_000
    granted = [(day * 10 + i, "p1", "d1", f"+1800555000{i}", "no_answer") for i in range(4)]
    assert len(cap_breaches(granted)) == 1
    assert cap_breaches(granted[:3]) == []
    same_phone = [(day * 10 + i * 3_600_000_000, "p1", "d1", "+18005550000", "network_failure")
                  for i in range(5)]  # fmt: skip
    assert len(cap_breaches(same_phone)) == 1
