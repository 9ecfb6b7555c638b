"""The providers against real servers: a local HTTP SMS gateway (with its failures) and a real
SMTP server (aiosmtpd); receipts, and the API key kept out of every log line."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import Message as MimeMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from compliance_guard.models import Channel
from dialer.config import Secret
from dialer.messaging.gateway_sim import GatewaySim
from dialer.messaging.http_sms import HttpSmsConfig, HttpSmsProvider
from dialer.messaging.models import MessageStatus, Outgoing
from dialer.messaging.provider import Backoff
from dialer.messaging.service import MessagingService, MessagingSettings, messages_for_debtor
from dialer.messaging.smtp import SmtpConfig, SmtpProvider
from dialer.store.db import Store, open_store
from tests.messaging_fixtures import Clock, seed, sql_guard, templates

KEY = "sk-live-7f3a9c1e5b"
MIDDAY = datetime(2026, 12, 2, 4, 0, tzinfo=UTC)  # 12:00 in Beijing


class Sleeps:
    """The backoff's pauses, recorded instead of slept."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def _sms(
    gateway: GatewaySim, sleeps: Sleeps, *, timeout_s: float = 2.0, batch_size: int = 100
) -> HttpSmsProvider:
    return HttpSmsProvider(
        HttpSmsConfig(
            url=gateway.url,
            api_key=Secret(KEY),
            sender="10690000",
            batch_size=batch_size,
            timeout_s=timeout_s,
            backoff=Backoff(tries=4, base_s=0.5, cap_s=4.0, sleep=sleeps),
        )
    )


@pytest.fixture
def gateway() -> Iterator[GatewaySim]:
    with GatewaySim(KEY) as gw:
        yield gw


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(f"sqlite:///{tmp_path / 'dialer.db'}")
    yield opened
    opened.close()


def _messages(n: int) -> list[Outgoing]:
    return [Outgoing(f"m-{i}", f"+861380013800{i}", f"text {i}") for i in range(1, n + 1)]


# -- the HTTP gateway -------------------------------------------------------------------------
def test_a_gateway_that_fails_with_5xx_twice_gets_the_messages_on_the_third_try(
    gateway: GatewaySim, caplog: pytest.LogCaptureFixture
) -> None:
    gateway.fail_next(503, 502)
    sleeps = Sleeps()
    provider = _sms(gateway, sleeps)
    with caplog.at_level(logging.DEBUG):
        results = provider.send(_messages(3))
    assert [r.ok for r in results] == [True, True, True]
    assert [r.tries for r in results] == [3, 3, 3]
    assert len(gateway.state.delivered) == 3  # each delivered once, not once per try
    # Backoff doubles, each pause jittered within [wait/2, wait].
    assert len(sleeps.waits) == 2
    assert 0.25 <= sleeps.waits[0] <= 0.5 and 0.5 <= sleeps.waits[1] <= 1.0
    assert KEY not in caplog.text


def test_a_gateway_that_hangs_past_the_timeout_is_retried_on_a_fresh_connection(
    gateway: GatewaySim,
) -> None:
    gateway.fail_next(("hang", 0.6))
    sleeps = Sleeps()
    provider = _sms(gateway, sleeps, timeout_s=0.3)
    [result] = provider.send(_messages(1))
    assert result.ok and result.tries == 2
    assert len(sleeps.waits) == 1
    assert gateway.state.delivered[0]["text"] == "text 1"


def test_a_4xx_is_a_permanent_failure_and_is_not_retried(
    gateway: GatewaySim, caplog: pytest.LogCaptureFixture
) -> None:
    sleeps = Sleeps()
    wrong_key = HttpSmsProvider(
        HttpSmsConfig(
            url=gateway.url, api_key=Secret("sk-wrong-000"), backoff=Backoff(sleep=sleeps)
        )
    )
    with caplog.at_level(logging.DEBUG):
        [result] = wrong_key.send(_messages(1))
    assert not result.ok and result.permanent and result.tries == 1
    assert "HTTP 401" in (result.error or "")
    assert sleeps.waits == [] and gateway.state.delivered == []
    assert "sk-wrong-000" not in caplog.text and "sk-wrong-000" not in (result.error or "")


def test_a_gateway_down_for_every_try_fails_the_messages_as_transient(gateway: GatewaySim) -> None:
    gateway.fail_next(500, 500, 500, 500)
    sleeps = Sleeps()
    results = _sms(gateway, sleeps).send(_messages(2))
    assert [(r.ok, r.permanent, r.tries) for r in results] == [(False, False, 4)] * 2
    assert len(sleeps.waits) == 3


def test_a_message_sent_again_after_a_crash_reaches_the_handset_once(gateway: GatewaySim) -> None:
    provider = _sms(gateway, Sleeps())
    first = provider.send(_messages(1))
    again = provider.send(_messages(1))  # same ref: what a resumed run sends
    assert first[0].provider_message_id == again[0].provider_message_id
    assert len(gateway.state.delivered) == 1


def test_a_batch_through_the_guard_to_the_gateway_with_failures_receipts_and_one_rejection(
    gateway: GatewaySim, store: Store
) -> None:
    seeded = seed(store, count=5)
    gateway.state.reject_numbers.add("+8613800138003")
    gateway.state.undeliverable.add("+8613800138004")
    gateway.fail_next(503)
    provider = _sms(gateway, Sleeps(), batch_size=2)
    guard = sql_guard(store)
    service = MessagingService(
        store,
        guard,
        {Channel.SMS: provider},
        MessagingSettings(tenant="bank", payment_link="https://pay.example.cn/{debtor}"),
        clock=Clock(MIDDAY),
    )
    service.plan(templates()["gentle"], list(seeded.debtors.values()), "b1", language="en")
    report = service.dispatch("b1")
    assert (report.sent, report.failed) == (4, 1)
    assert sorted(m["to"] for m in gateway.state.delivered) == [
        "+8613800138001",
        "+8613800138002",
        "+8613800138004",
        "+8613800138005",
    ]
    assert gateway.state.delivered[0]["text"].startswith(
        "Hi 张1, CNY 1,001.00 was due on 2026-11-02."
    )

    receipts, cursor = provider.poll_receipts("")
    assert service.apply_receipts(receipts) == 4
    assert provider.poll_receipts(cursor)[0] == []  # the cursor moves on

    def status(ext: str) -> str:
        [view] = messages_for_debtor(store, seeded.tenant_id, seeded.debtors[ext])
        return view.status

    assert status("D-1") == MessageStatus.DELIVERED
    assert status("D-3") == MessageStatus.FAILED  # the gateway rejected the number
    assert status("D-4") == MessageStatus.FAILED  # accepted, then not delivered
    [rejected] = messages_for_debtor(store, seeded.tenant_id, seeded.debtors["D-3"])
    assert [kind for _, kind, _ in rejected.events] == ["failed"]
    # The rejected message never left: its reservation was released.
    with store.begin() as conn:
        from sqlalchemy import text

        states = conn.execute(
            text("SELECT state, count(*) FROM compliance_reservation GROUP BY state")
        ).all()
    assert dict(states) == {"pending": 4, "released": 1}


# -- SMTP -------------------------------------------------------------------------------------
class _Inbox:
    def __init__(self, refuse: set[str]) -> None:
        self.mails: list[MimeMessage] = []
        self.refuse = refuse

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        self.mails.append(message_from_bytes(envelope.content))
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as probe:  # bound then closed: free for the next listener
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def smtp_server() -> Iterator[tuple[_Inbox, int]]:
    inbox = _Inbox({"d2@example.com"})
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def test_emails_reach_a_real_smtp_server_and_a_refused_mailbox_fails_for_good(
    smtp_server: tuple[_Inbox, int], store: Store
) -> None:
    inbox, port = smtp_server
    seeded = seed(store, count=3)
    provider = SmtpProvider(
        SmtpConfig(
            host="127.0.0.1",
            port=port,
            sender="collections@bank.example",
            backoff=Backoff(sleep=Sleeps()),
        )
    )
    service = MessagingService(
        store,
        sql_guard(store),
        {Channel.EMAIL: provider},
        MessagingSettings(tenant="bank", payment_link="https://pay.example.cn/{debtor}"),
        clock=Clock(MIDDAY),
    )
    service.plan(templates()["mail"], list(seeded.debtors.values()), "mail-1")
    report = service.dispatch("mail-1")
    assert (report.sent, report.failed) == (2, 1)
    assert sorted(m["To"] for m in inbox.mails) == ["d1@example.com", "d3@example.com"]
    first = next(m for m in inbox.mails if m["To"] == "d1@example.com")
    assert first["Subject"] == "Your balance of CNY 1,001.00"
    assert "https://pay.example.cn/D-1" in first.get_payload(decode=True).decode()  # type: ignore[union-attr]
    [refused] = messages_for_debtor(store, seeded.tenant_id, seeded.debtors["D-2"])
    assert refused.status == MessageStatus.FAILED and "550" in str(refused.events[-1][2])


def test_an_smtp_server_that_is_down_is_retried_then_reported(tmp_path: Path) -> None:
    port = _free_port()  # nobody listens there
    sleeps = Sleeps()
    provider = SmtpProvider(
        SmtpConfig(port=port, timeout_s=1.0, backoff=Backoff(tries=3, sleep=sleeps))
    )
    [result] = provider.send([Outgoing("m-1", "a@example.com", "hello", "hi")])
    assert not result.ok and not result.permanent and result.tries == 3
    assert len(sleeps.waits) == 2
