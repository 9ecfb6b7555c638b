"""How a dispatch writes, on SQLite and PostgreSQL alike: every column and event of each fate
(scheduled, sent, failed, blocked), chunk after chunk; a chunk whose recording fails stops the
run before the next chunk is reserved; progress is told once a chunk is recorded."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select, update

from compliance_guard.models import Channel
from compliance_guard.store_sql import reservation
from dialer.config import Secret
from dialer.messaging.gateway_sim import GatewaySim
from dialer.messaging.http_sms import HttpSmsConfig, HttpSmsProvider
from dialer.messaging.models import MessageStatus, Outgoing, SendResult
from dialer.messaging.provider import Backoff
from dialer.messaging.service import (
    DispatchReport,
    MessagingService,
    MessagingSettings,
    _Changes,
    messages_for_debtor,
)
from dialer.messaging.tables import Message, MessageEvent
from dialer.store.db import Store, open_store
from dialer.store.models import Phone
from tests.messaging_fixtures import Clock, seed, sql_guard, templates

KEY = "gw-test-key"
LATE_EVENING = datetime(2026, 12, 2, 14, 30, tzinfo=UTC)  # 22:30 in Beijing
NEXT_MORNING = datetime(2026, 12, 3, 0, 0, tzinfo=UTC)  # 08:00 in Beijing
MIDDAY = datetime(2026, 12, 2, 4, 0, tzinfo=UTC)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    opened = open_store(database_url)
    yield opened
    opened.close()


@pytest.fixture
def gateway() -> Iterator[GatewaySim]:
    with GatewaySim(KEY) as gw:
        yield gw


def _sms(gateway: GatewaySim) -> HttpSmsProvider:
    return HttpSmsProvider(
        HttpSmsConfig(
            url=gateway.url,
            api_key=Secret(KEY),
            sender="10690000",
            batch_size=100,
            backoff=Backoff(tries=1, sleep=lambda _s: None),
        )
    )


def _service(store: Store, provider: Any, clock: Clock, *, chunk: int = 2) -> MessagingService:
    return MessagingService(
        store,
        sql_guard(store),
        {Channel.SMS: provider},
        MessagingSettings(
            tenant="bank", payment_link="https://pay.example.cn/{debtor}", chunk=chunk
        ),
        clock=clock,
    )


def _row(store: Store, debtor_id: int) -> Any:
    with store.begin() as conn:
        return conn.execute(select(Message).where(Message.debtor_id == debtor_id)).one()


def _events(store: Store, message_id: int) -> list[tuple[datetime, str, dict[str, Any]]]:
    with store.begin() as conn:
        rows = conn.execute(
            select(MessageEvent.at, MessageEvent.kind, MessageEvent.detail)
            .where(MessageEvent.message_id == message_id)
            .order_by(MessageEvent.id)
        ).all()
    return [(r.at, r.kind, r.detail) for r in rows]


def _reservations(store: Store) -> dict[str, int]:
    with store.begin() as conn:
        rows = conn.execute(
            select(reservation.c.state, func.count()).group_by(reservation.c.state)
        ).all()
    return {str(state): int(n) for state, n in rows}


def test_every_fate_is_written_column_by_column_with_its_event(
    store: Store, gateway: GatewaySim
) -> None:
    seeded = seed(store, count=4)
    d = seeded.debtors
    clock = Clock(LATE_EVENING)
    service = _service(store, _sms(gateway), clock)
    service.plan(templates()["gentle"], list(d.values()), "b", language="en")

    night = service.dispatch("b")
    assert (night.scheduled, night.sent) == (4, 0)
    first = _row(store, d["D-1"])
    assert first.status == MessageStatus.SCHEDULED
    assert first.not_before == NEXT_MORNING
    assert first.updated_at == LATE_EVENING
    assert first.reservation_id is None and first.error is None
    assert first.decision["allowed"] is False
    assert first.decision["reasons"][0]["rule"] == "cn-no-night-collection"
    assert datetime.fromisoformat(first.decision["next_allowed_at"]) == NEXT_MORNING
    # The guard's decision is kept as it was given, keys in their order.
    assert list(first.decision) == [
        "allowed",
        "reservation_id",
        "reasons",
        "next_allowed_at",
        "zones",
        "ruleset",
        "ruleset_hash",
    ]
    assert _events(store, first.id) == [(LATE_EVENING, "scheduled", first.decision)]

    with store.begin() as conn:  # overnight: D-2's number is marked do-not-call
        conn.execute(update(Phone).where(Phone.debtor_id == d["D-2"]).values(do_not_call=True))
    gateway.state.reject_numbers.add("+8613800138003")
    clock.now = NEXT_MORNING
    morning = service.dispatch("b")
    assert (morning.sent, morning.blocked, morning.failed) == (2, 1, 1)

    ids = {m["to"]: m["id"] for m in gateway.state.delivered}
    for ext, number in (("D-1", "+8613800138001"), ("D-4", "+8613800138004")):
        sent = _row(store, d[ext])
        assert sent.status == MessageStatus.SENT
        assert (sent.provider, sent.provider_message_id) == ("http-sms", ids[number])
        assert (sent.sent_at, sent.updated_at, sent.tries) == (NEXT_MORNING, NEXT_MORNING, 1)
        assert sent.not_before is None and sent.error is None
        assert sent.decision["allowed"] is True
        assert sent.reservation_id == sent.decision["reservation_id"]
        assert [e[1:] for e in _events(store, sent.id)][1:] == [
            ("sent", {"provider": "http-sms", "tries": 1})
        ]
        assert _events(store, sent.id)[-1][0] == NEXT_MORNING

    blocked = _row(store, d["D-2"])
    assert blocked.status == MessageStatus.BLOCKED
    assert blocked.error is not None and "do-not-call" in blocked.error
    assert blocked.provider is None and blocked.sent_at is None
    assert _events(store, blocked.id)[-1][1:] == ("blocked", {"why": blocked.error})

    failed = _row(store, d["D-3"])
    assert failed.status == MessageStatus.FAILED
    assert (failed.provider, failed.error, failed.tries) == ("http-sms", "invalid number", 1)
    assert failed.sent_at is None and failed.provider_message_id is None
    assert _events(store, failed.id)[-1][1:] == (
        "failed",
        {"provider": "http-sms", "error": "invalid number", "permanent": True, "tries": 1},
    )
    # The rejected message never left: its reservation was released, the sent ones hold.
    assert _reservations(store) == {"pending": 2, "released": 1}


def test_text_and_json_values_come_back_as_written(store: Store) -> None:
    """Quotes, Chinese, JSON null and key order survive the write (on PostgreSQL the values
    travel inside a JSON text)."""
    seeded = seed(store, count=1)
    clock = Clock(MIDDAY)
    service = _service(store, _NeverCalled(), clock)
    service.plan(templates()["gentle"], [seeded.debtors["D-1"]], "t")
    row = _row(store, seeded.debtors["D-1"])
    changes = _Changes(MIDDAY)
    decision = {"z": 1, "a": None, "原因": ["夜间", 'say "no"'], "n": 1.5}
    changes.settle(
        row.id,
        MessageStatus.BLOCKED,
        {"why": "号码已停用 \\ 'x'"},
        decision=decision,
        error='号码已停用 "x"',
        not_before=None,
        tries=3,
    )
    service._write(changes)
    again = _row(store, seeded.debtors["D-1"])
    assert again.decision == decision and list(again.decision) == ["z", "a", "原因", "n"]
    assert (again.error, again.tries, again.not_before) == ('号码已停用 "x"', 3, None)
    assert (again.status, again.updated_at) == (MessageStatus.BLOCKED, MIDDAY)
    assert again.body == row.body and again.recipient == row.recipient  # untouched
    assert _events(store, row.id) == [(MIDDAY, "blocked", {"why": "号码已停用 \\ 'x'"})]


class _NeverCalled:
    name = "never"
    channel = Channel.SMS

    def send(self, messages: Sequence[Outgoing]) -> list[SendResult]:
        raise AssertionError("nothing is to be sent")

    def close(self) -> None:
        return None


class _RecordingFails(HttpSmsProvider):
    """Hands the first batch to the gateway, then gives an answer that cannot be recorded
    (one result short): the run must stop there."""

    def send(self, messages: Sequence[Outgoing]) -> list[SendResult]:
        return super().send(messages)[:-1]


def test_a_chunk_that_cannot_be_recorded_stops_the_run_before_the_next_is_reserved(
    store: Store, gateway: GatewaySim
) -> None:
    seeded = seed(store, count=5)
    clock = Clock(MIDDAY)
    broken = _service(store, _RecordingFails(_sms(gateway).config), clock)
    broken.plan(templates()["gentle"], list(seeded.debtors.values()), "c")
    with pytest.raises(ValueError):
        broken.dispatch("c")
    # The first chunk (D-1, D-2) left and stays "sending"; nothing after it was reserved.
    assert sorted(m["to"] for m in gateway.state.delivered) == [
        "+8613800138001",
        "+8613800138002",
    ]
    assert _reservations(store) == {"pending": 2}
    statuses = [
        messages_for_debtor(store, seeded.tenant_id, seeded.debtors[f"D-{i}"])[0].status
        for i in range(1, 6)
    ]
    assert statuses == ["sending", "sending", "planned", "planned", "planned"]

    # The next run sends the first two again under the same refs (the gateway delivers them
    # once) on their reservations, and the rest once each.
    report = _service(store, _sms(gateway), clock).dispatch("c")
    assert report.sent == 5
    assert len(gateway.state.delivered) == 5
    assert _reservations(store) == {"pending": 5}


def test_progress_is_told_each_chunk_once_it_is_recorded(store: Store, gateway: GatewaySim) -> None:
    seeded = seed(store, count=5)
    service = _service(store, _sms(gateway), Clock(MIDDAY))
    service.plan(templates()["gentle"], list(seeded.debtors.values()), "p")
    told: list[tuple[int, int, int]] = []

    def progress(n: int, chunk: DispatchReport) -> None:
        with store.begin() as conn:
            recorded = conn.execute(
                select(func.count()).where(Message.status == MessageStatus.SENT.value)
            ).scalar_one()
        told.append((n, recorded, chunk.sent))

    assert service.dispatch("p", progress=progress).sent == 5
    # Each chunk's messages are recorded when it is told, and none of the next chunk's yet;
    # the chunk's own report says what became of them.
    assert told == [(2, 2, 2), (2, 4, 2), (1, 5, 1)]
