"""Messaging in the collection case, on SQLite and PostgreSQL: e-mail addresses come in with
the portfolio, and the case timeline shows every SMS and e-mail with its fate and every reply."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from compliance_guard.models import Channel
from dialer.cases import service as cases
from dialer.cases.models import TimelineKind
from dialer.importer import COLUMNS, import_csv
from dialer.messaging.file_provider import FileProvider
from dialer.messaging.service import MessagingService, MessagingSettings
from dialer.messaging.tables import DebtorEmail
from dialer.store.db import Store, open_store
from dialer.store.models import Debtor
from tests.messaging_fixtures import Clock, sql_guard, templates

# 22:30 in Beijing on Wednesday 2 December 2026, 08:00 the next morning, and 10:00.
LATE_EVENING = datetime(2026, 12, 2, 14, 30, tzinfo=UTC)
NEXT_MORNING = datetime(2026, 12, 3, 0, 0, tzinfo=UTC)
TEN_AM = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)
HEADER = ",".join((*COLUMNS, "email"))


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    opened = open_store(database_url)
    yield opened
    opened.close()


def _row(debtor_id: str, email: str, mobile: str = "13800138001") -> str:
    cells = {name: "" for name in COLUMNS}
    cells.update(
        debtor_id=debtor_id,
        name=f"王{debtor_id}",
        debt_id=f"L-{debtor_id}",
        principal="2000.00",
        balance="1200.00",
        currency="CNY",
        days_past_due="30",
        phone=mobile,
        phone_type="mobile",
        consent="yes",
        city="上海",
        postal_code="200000",
        country="CN",
    )
    return ",".join([*(cells[name] for name in COLUMNS), email])


def _portfolio(tmp_path: Path, *rows: str, name: str = "portfolio.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join((HEADER, *rows)) + "\n", encoding="utf-8")
    return path


def _emails(store: Store) -> dict[str, list[str]]:
    with store.begin() as conn:
        found = conn.execute(
            sa.select(Debtor.external_id, DebtorEmail.address)
            .join(Debtor, Debtor.id == DebtorEmail.debtor_id)
            .order_by(Debtor.external_id, DebtorEmail.id)
        ).all()
    out: dict[str, list[str]] = {}
    for ext, address in found:
        out.setdefault(ext, []).append(address)
    return out


def test_a_bad_email_address_rejects_its_row_by_line_and_column_and_the_rest_go_in(
    store: Store, tmp_path: Path
) -> None:
    path = _portfolio(
        tmp_path,
        _row("C-1", "Wang.Li@Example.CN"),  # line 2
        _row("C-2", "wang at example.cn", mobile="13800138002"),  # line 3
        _row("C-3", "", mobile="13800138003"),  # line 4: no address, nothing stored
        _row("C-4", "c4@mail.example.com", mobile="13800138004"),  # line 5
    )
    report = import_csv(store, path, "bank", "CN")

    [error] = report.errors
    assert error.line == 3 and "email" in error.reason
    assert "wang at" not in error.reason  # personal data: only a hint of it is shown
    assert (report.imported, report.rejected) == (3, 1)
    # The domain is kept in lower case (it is case-insensitive); the mailbox as written.
    assert _emails(store) == {"C-1": ["Wang.Li@example.cn"], "C-4": ["c4@mail.example.com"]}


def test_a_reimport_keeps_each_address_once_and_adds_a_new_one(
    store: Store, tmp_path: Path
) -> None:
    import_csv(store, _portfolio(tmp_path, _row("C-1", "li@example.cn")), "bank", "CN")
    import_csv(store, _portfolio(tmp_path, _row("C-1", "li@example.cn")), "bank", "CN")
    assert _emails(store) == {"C-1": ["li@example.cn"]}
    newer = _portfolio(tmp_path, _row("C-1", "li@work.example.cn"), name="newer.csv")
    import_csv(store, newer, "bank", "CN")
    assert _emails(store) == {"C-1": ["li@example.cn", "li@work.example.cn"]}


def test_the_case_timeline_shows_the_messages_with_their_fate_and_the_reply(
    store: Store, tmp_path: Path
) -> None:
    import_csv(store, _portfolio(tmp_path, _row("C-1", "li@example.cn")), "bank", "CN")
    with store.begin() as conn:
        debtor_id, tenant_id = conn.execute(
            sa.select(Debtor.id, Debtor.tenant_id).where(Debtor.external_id == "C-1")
        ).one()
    outbox = tmp_path / "outbox.jsonl"
    clock = Clock(LATE_EVENING)
    messaging = MessagingService(
        store,
        sql_guard(store),
        {
            Channel.SMS: FileProvider(Channel.SMS, outbox),
            Channel.EMAIL: FileProvider(Channel.EMAIL, outbox),
        },
        MessagingSettings(tenant="bank", payment_link="https://pay.example.cn/{debtor}"),
        clock=clock,
    )
    # At 22:30 the text is held back until 08:00; the e-mail (imported address) goes at 10:00.
    messaging.plan(templates()["gentle"], [debtor_id], "sms-1")
    assert messaging.dispatch("sms-1").scheduled == 1
    clock.now = NEXT_MORNING
    assert messaging.dispatch("sms-1").sent == 1
    clock.now = TEN_AM
    messaging.plan(templates()["mail"], [debtor_id], "mail-1")
    assert messaging.dispatch("mail-1").sent == 1
    clock.now = TEN_AM.replace(minute=5)
    assert messaging.handle_inbound("+8613800138001", "退订").opted_out

    case_id = cases.case_of(store, tenant_id, debtor_id)
    assert case_id is not None
    timeline = cases.get_case(store, tenant_id, case_id).timeline
    messages = [e for e in timeline if e.kind is TimelineKind.MESSAGE]
    assert [(e.at, e.summary.split(":")[0]) for e in messages] == [
        (NEXT_MORNING, "sms sent"),  # shown when it went, not when it was planned
        (TEN_AM, "email sent"),
        (TEN_AM.replace(minute=5), "sms reply, opted out"),
    ]
    sms, mail, reply = messages
    assert "王C-1您好" in sms.summary and "1,200.00" in str(sms.data["body"])
    events = sms.data["events"]
    assert isinstance(events, list)
    assert [e["kind"] for e in events] == ["scheduled", "sent"]
    assert sms.data["recipient"] == "+8613800138001"
    assert mail.data["recipient"] == "li@example.cn" and mail.data["subject"]
    assert reply.data == {
        "channel": "sms",
        "direction": "in",
        "action": "opt_out",
        "sender": "+8613800138001",
        "body": "退订",
    }
    # A page asking for the newest two gets the e-mail and the reply.
    newest = cases.get_case(store, tenant_id, case_id, timeline_limit=2).timeline
    assert [e.ref.split(":")[0] for e in newest] == ["message", "inbound"]
