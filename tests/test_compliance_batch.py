"""A batch put to the SQL ledger (SQLite and PostgreSQL) is decided exactly as the same requests
made one by one: the set-based `reserve_many` against the memory ledger's one-at-a-time answers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from compliance_guard.models import Channel, Flag, FlagScope, Outcome
from compliance_guard.service import decision_to_dict
from compliance_guard.store import MemoryStore
from compliance_guard.store_sql import SqlStore, metadata
from tests.compliance_cases.helpers import NY_HOME, NY_MOBILE, NY_WORK, guard, ny, request

PHONES = (NY_MOBILE, NY_HOME, NY_WORK)
OUTCOMES = (None, Outcome.BUSY, Outcome.NO_ANSWER, Outcome.CONVERSATION)

# One attempt: person, phone, debt, channel, and the outcome reported if granted (None: none).
# Two people and mostly one debt, so that batches often reach the seven-in-seven cap (a
# debt's) inside them.
attempts = st.tuples(
    st.integers(0, 1),
    st.integers(0, 2),
    st.sampled_from((0, 0, 0, 1)),
    st.sampled_from((Channel.CALL, Channel.SMS)),
    st.sampled_from(OUTCOMES),
)


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    created = sa.create_engine(database_url)
    metadata.create_all(created)
    yield created
    created.dispose()


def _empty(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    batches=st.lists(st.lists(attempts, min_size=8, max_size=20), min_size=1, max_size=3),
    do_not_call=st.sets(st.integers(0, 2), max_size=2),
    cease=st.sets(st.integers(0, 1), max_size=1),
)
def test_a_batch_is_decided_as_the_same_requests_one_by_one(
    engine: sa.Engine,
    batches: list[list[tuple[int, int, int, Channel, Outcome | None]]],
    do_not_call: set[int],
    cease: set[int],
) -> None:
    _empty(engine)
    batched = guard("us-regf", SqlStore(engine))
    one_by_one = guard("us-regf", MemoryStore())
    start = ny(2026, 3, 2, 9, 0)
    for g in (batched, one_by_one):
        for p in do_not_call:
            g.set_flag("bank", Flag.DO_NOT_CALL, FlagScope.PHONE, PHONES[p], start)
        for person in cease:
            g.set_flag("bank", Flag.CEASE_COMMUNICATION, FlagScope.PERSON, f"p{person}", start)
    for day, batch in enumerate(batches):
        # A day apart, so the seven-in-seven caps and conversation periods carry over.
        now = start + timedelta(days=day)
        requests = [
            request(person_id=f"p{p}", phone=PHONES[ph], debt_ids=(f"d{d}",), channel=channel)
            for p, ph, d, channel, _ in batch
        ]
        got = batched.check_and_reserve_many(requests, now)
        expected = [one_by_one.check_and_reserve(r, now) for r in requests]
        assert [decision_to_dict(d) for d in got] == [decision_to_dict(d) for d in expected]
        event(
            "denied by a cap"
            if any(r.rule == "regf-7-in-7" for d in got for r in d.reasons)
            else "no cap reached"
        )
        for (*_, outcome), decision in zip(batch, got, strict=True):
            if decision.allowed and outcome is not None:
                for g in (batched, one_by_one):
                    g.record_outcome(decision.reservation_id or "", outcome, now)
