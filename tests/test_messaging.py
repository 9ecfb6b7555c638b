"""Messaging through the compliance guard, on SQLite and PostgreSQL: templates, scheduling of
denied messages, opt-outs, idempotent batches, the debtor's message log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from compliance_guard.models import AttemptRequest, Channel, Flag, FlagScope
from dialer.messaging.errors import TemplateError
from dialer.messaging.file_provider import FileProvider
from dialer.messaging.models import MessageStatus
from dialer.messaging.optout import is_opt_out
from dialer.messaging.service import MessagingService, MessagingSettings, messages_for_debtor
from dialer.messaging.templates import load_templates, parse_templates
from dialer.store.db import Store, open_store
from tests.messaging_fixtures import TEMPLATES_TOML, Clock, seed, sql_guard, templates

# 22:30 in Beijing on Wednesday 2 December 2026, and 08:00 the next morning.
LATE_EVENING = datetime(2026, 12, 2, 14, 30, tzinfo=UTC)
NEXT_MORNING = datetime(2026, 12, 3, 0, 0, tzinfo=UTC)
MIDDAY = datetime(2026, 12, 2, 4, 0, tzinfo=UTC)  # 12:00 in Beijing


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    opened = open_store(database_url)
    yield opened
    opened.close()


def _outbox(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _service(store: Store, clock: Clock, outbox: Path) -> MessagingService:
    providers = {
        Channel.SMS: FileProvider(Channel.SMS, outbox),
        Channel.EMAIL: FileProvider(Channel.EMAIL, outbox),
    }
    settings = MessagingSettings(tenant="bank", payment_link="https://pay.example.cn/{debtor}")
    return MessagingService(store, sql_guard(store), providers, settings, clock=clock)


# -- templates --------------------------------------------------------------------------------
def test_an_unknown_placeholder_is_refused_on_load_naming_it_and_where(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(
        '[templates.gentle]\nchannel = "sms"\n[templates.gentle.en]\n'
        'body = "Hi {name}, pay {amout} now"\n',
        encoding="utf-8",
    )
    with pytest.raises(TemplateError) as caught:
        load_templates(path)
    message = str(caught.value)
    assert "{amout}" in message
    assert "templates.gentle.en.body" in message
    assert str(path) in message


def test_an_email_template_without_a_subject_and_an_unknown_language_are_refused() -> None:
    no_subject = {"templates": {"m": {"channel": "email", "en": {"body": "Hi {name}"}}}}
    with pytest.raises(TemplateError, match=r"templates\.m\.en\.subject"):
        parse_templates(no_subject, "x.toml")
    french = {"templates": {"m": {"channel": "sms", "fr": {"body": "Bonjour {name}"}}}}
    with pytest.raises(TemplateError, match=r"templates\.m\.fr: unknown language"):
        parse_templates(french, "x.toml")


def test_a_preview_shows_the_personalised_chinese_text_and_the_guards_answer(
    store: Store, tmp_path: Path
) -> None:
    seeded = seed(store)
    service = _service(store, Clock(MIDDAY), tmp_path / "out.jsonl")
    preview = service.preview(templates()["gentle"], seeded.debtors["D-1"])
    assert preview.rendered.language == "zh-CN"  # the debtor's address is in China
    assert preview.rendered.body == (
        "张1您好，您有1,001.00元已于2026年11月2日到期，请通过https://pay.example.cn/D-1还款。"
    )
    assert preview.recipient == "+8613800138001"
    assert preview.decision.allowed
    assert preview.decision.reservation_id is None  # a preview reserves nothing
    assert _outbox(tmp_path / "out.jsonl") == []


# -- the guard ------------------------------------------------------------------------------
def test_a_message_denied_at_half_past_ten_in_beijing_goes_the_next_morning(
    store: Store, tmp_path: Path
) -> None:
    seeded = seed(store, count=1)
    clock = Clock(LATE_EVENING)
    outbox = tmp_path / "out.jsonl"
    service = _service(store, clock, outbox)
    service.plan(templates()["gentle"], [seeded.debtors["D-1"]], "reminder-1")

    first = service.dispatch("reminder-1")
    assert (first.sent, first.scheduled) == (0, 1)
    assert _outbox(outbox) == []
    [logged] = messages_for_debtor(store, seeded.tenant_id, seeded.debtors["D-1"])
    assert logged.status == MessageStatus.SCHEDULED
    assert logged.decision is not None and not logged.decision["allowed"]
    assert logged.decision["reasons"][0]["rule"] == "cn-no-night-collection"
    assert datetime.fromisoformat(logged.decision["next_allowed_at"]) == NEXT_MORNING

    clock.now = datetime(2026, 12, 2, 23, 59, tzinfo=UTC)  # 07:59: still not due
    assert service.dispatch().sent == 0
    clock.now = NEXT_MORNING
    assert service.dispatch().sent == 1
    [sent] = _outbox(outbox)
    assert sent["to"] == "+8613800138001"
    assert "张1您好" in sent["body"]
    [logged] = messages_for_debtor(store, seeded.tenant_id, seeded.debtors["D-1"])
    assert logged.status == MessageStatus.SENT
    assert [kind for _, kind, _ in logged.events] == ["scheduled", "sent"]


def test_stop_and_tuiding_replies_opt_the_number_out_of_sms_at_once(
    store: Store, tmp_path: Path
) -> None:
    seeded = seed(store, count=2)
    outbox = tmp_path / "out.jsonl"
    service = _service(store, Clock(MIDDAY), outbox)
    first = service.handle_inbound("+8613800138001", "退订")
    second = service.handle_inbound("+8613800138002", " Stop! ")
    for result, debtor in ((first, "D-1"), (second, "D-2")):
        assert result.opted_out
        assert result.flags == (Flag.OPT_OUT_SMS.value,)
        # China's rules tie 退订 to texts: calls to the number stay under their own rules.
        assert result.channels_refused == (Channel.SMS,)
        assert result.debtor_ids == (seeded.debtors[debtor],)

    service.plan(templates()["gentle"], list(seeded.debtors.values()), "after-stop")
    report = service.dispatch("after-stop")
    assert (report.sent, report.blocked) == (0, 2)
    assert _outbox(outbox) == []
    # E-mail to the same debtors still goes: the opt-out was from texts.
    service.plan(templates()["mail"], list(seeded.debtors.values()), "mail-after-stop")
    assert service.dispatch("mail-after-stop").sent == 2
    timeline = messages_for_debtor(store, seeded.tenant_id, seeded.debtors["D-1"])
    assert [(v.direction, v.channel, v.status) for v in timeline] == [
        ("in", "sms", "opt_out"),
        ("out", "sms", "blocked"),
        ("out", "email", "sent"),
    ]


def test_under_us_rules_stop_also_refuses_calls_to_that_number(store: Store) -> None:
    seed(store, count=1, country="US")
    guard = sql_guard(store, "us-regf")
    settings = MessagingSettings(tenant="bank")
    service = MessagingService(store, guard, {}, settings, clock=Clock(MIDDAY))
    result = service.handle_inbound("+12125551001", "STOP")
    assert result.channels_refused == (Channel.CALL, Channel.SMS)
    assert set(guard.flags("bank", FlagScope.PHONE, "+12125551001")) == {
        Flag.OPT_OUT_SMS.value,
        Flag.CONSENT_REVOKED.value,
    }
    call = AttemptRequest(
        "bank", "1", ("1",), "+12125551001", "c-1", time_zones=("America/New_York",)
    )
    decision = guard.check(call, datetime(2026, 12, 2, 16, 0, tzinfo=UTC))
    assert not decision.allowed
    assert "consent_revoked" in " ".join(r.rule + r.message for r in decision.reasons)


@pytest.mark.parametrize(
    ("reply", "opts_out"),
    [
        ("STOP", True),
        ("stop all", True),
        ("ＳＴＯＰ", True),
        ("Unsubscribe.", True),
        ("TD", True),
        ("退订谢谢", True),
        ("请不要再发短信了", True),
        ("I will pay on Friday", False),
        ("Please don't stop calling my lawyer", False),
        ("好的，明天还款", False),
    ],
)
def test_which_replies_are_opt_outs(reply: str, opts_out: bool) -> None:
    assert is_opt_out(reply) is opts_out


# -- batches ----------------------------------------------------------------------------------
def test_a_batch_run_twice_sends_each_message_once(store: Store, tmp_path: Path) -> None:
    seeded = seed(store, count=3)
    outbox = tmp_path / "out.jsonl"
    service = _service(store, Clock(MIDDAY), outbox)
    ids = list(seeded.debtors.values())
    plan, _ = service.plan(templates()["gentle"], ids, "december")
    assert plan.created == 3
    assert service.dispatch("december").sent == 3
    again, _ = service.plan(templates()["gentle"], ids, "december")
    assert (again.created, again.existing) == (0, 3)
    assert service.dispatch("december").sent == 0
    assert sorted(m["to"] for m in _outbox(outbox)) == [
        "+8613800138001",
        "+8613800138002",
        "+8613800138003",
    ]


def test_a_run_interrupted_mid_send_resumes_without_sending_an_email_twice(
    store: Store, tmp_path: Path
) -> None:
    seeded = seed(store, count=2)
    outbox = tmp_path / "out.jsonl"

    class CrashingProvider(FileProvider):
        def send(self, messages):  # type: ignore[no-untyped-def]
            super().send(messages)  # handed over ...
            raise KeyboardInterrupt  # ... and the process dies before recording it

    clock = Clock(MIDDAY)
    settings = MessagingSettings(tenant="bank")
    crashing = MessagingService(
        store,
        sql_guard(store),
        {Channel.EMAIL: CrashingProvider(Channel.EMAIL, outbox)},
        settings,
        clock=clock,
    )
    crashing.plan(templates()["mail"], list(seeded.debtors.values()), "mail-1")
    with pytest.raises(KeyboardInterrupt):
        crashing.dispatch("mail-1")
    assert len(_outbox(outbox)) == 2

    resumed = _service(store, clock, outbox)
    report = resumed.dispatch("mail-1")
    assert (report.sent, report.unknown) == (0, 2)
    assert len(_outbox(outbox)) == 2  # nothing went twice
    [view] = messages_for_debtor(store, seeded.tenant_id, seeded.debtors["D-1"])
    assert view.status == MessageStatus.UNKNOWN


def test_a_dry_run_writes_and_sends_nothing_and_shows_the_guards_answers(
    store: Store, tmp_path: Path
) -> None:
    seeded = seed(store, count=2)
    outbox = tmp_path / "out.jsonl"
    service = _service(store, Clock(LATE_EVENING), outbox)
    report, previews = service.plan(
        templates()["gentle"], list(seeded.debtors.values()), "dry", dry_run=True
    )
    assert report.created == 0
    assert [p.decision.allowed for p in previews] == [False, False]
    assert service.dispatch("dry").scheduled == 0  # nothing was stored
    assert messages_for_debtor(store, seeded.tenant_id, seeded.debtors["D-1"]) == []


def test_debtors_without_a_mobile_or_an_open_debt_are_skipped_with_the_reason(
    store: Store, tmp_path: Path
) -> None:
    from sqlalchemy import update

    from dialer.store.models import Debt, Phone

    seeded = seed(store, count=3)
    with store.begin() as conn:
        conn.execute(
            update(Phone).where(Phone.debtor_id == seeded.debtors["D-1"]).values(phone_type="home")
        )
        conn.execute(update(Debt).where(Debt.debtor_id == seeded.debtors["D-2"]).values(balance=0))
    service = _service(store, Clock(MIDDAY), tmp_path / "out.jsonl")
    report, _ = service.plan(templates()["gentle"], list(seeded.debtors.values()), "skips")
    assert report.created == 1
    assert {(s.debtor_id, s.reason) for s in report.skipped} == {
        (seeded.debtors["D-1"], "no mobile number"),
        (seeded.debtors["D-2"], "no open debt"),
    }


def test_templates_in_the_fixture_are_valid() -> None:
    assert set(parse_templates(TEMPLATES_TOML, "x")) == {"gentle", "mail"}


def test_the_shipped_example_templates_and_settings_load() -> None:
    from dialer.messaging.config import build_providers, load_messaging_file

    folder = Path(__file__).resolve().parent.parent / "dialer" / "messaging"
    shipped = load_templates(folder / "templates.example.toml")
    assert {t.channel for t in shipped.values()} == {Channel.SMS, Channel.EMAIL}
    assert all(set(t.variants) == {"zh-CN", "en"} for t in shipped.values())
    settings = load_messaging_file(
        folder / "messaging.example.toml", env={"DIALER_SMS_API_KEY": "sk-from-env"}
    )
    assert settings.templates == folder / "templates.example.toml"
    assert settings.sms is not None and settings.sms.secret.reveal() == "sk-from-env"
    assert "sk-from-env" not in repr(settings)
    assert set(build_providers(settings)) == {Channel.SMS, Channel.EMAIL}


def test_a_number_marked_do_not_call_after_planning_is_not_texted(
    store: Store, tmp_path: Path
) -> None:
    from sqlalchemy import update

    from dialer.store.models import Phone

    seeded = seed(store, count=1)
    clock = Clock(LATE_EVENING)
    outbox = tmp_path / "out.jsonl"
    service = _service(store, clock, outbox)
    service.plan(templates()["gentle"], [seeded.debtors["D-1"]], "r")
    assert service.dispatch("r").scheduled == 1
    with store.begin() as conn:  # an agent marks the number overnight
        conn.execute(update(Phone).values(do_not_call=True))
    clock.now = NEXT_MORNING
    assert service.dispatch("r").blocked == 1
    assert _outbox(outbox) == []
    [view] = messages_for_debtor(store, seeded.tenant_id, seeded.debtors["D-1"])
    assert view.status == MessageStatus.BLOCKED
    assert "do-not-call" in view.events[-1][2]["why"]


def test_migration_0010_creates_exactly_the_messaging_tables_the_models_describe(
    store: Store,
) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from dialer.messaging import tables
    from dialer.store.models import Base

    ours = {
        t.__tablename__
        for t in (tables.Message, tables.MessageEvent, tables.InboundMessage, tables.DebtorEmail)
    }
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = [
            d
            for d in compare_metadata(context, Base.metadata)
            if any(name in repr(d) for name in ours)
        ]
    assert differences == []


def test_a_channel_without_a_provider_is_refused_before_anything_is_reserved(
    store: Store, tmp_path: Path
) -> None:
    from dialer.messaging.errors import MessagingError

    seeded = seed(store, count=1)
    service = MessagingService(
        store, sql_guard(store), {}, MessagingSettings(tenant="bank"), clock=Clock(MIDDAY)
    )
    service.plan(templates()["mail"], [seeded.debtors["D-1"]], "m")
    with pytest.raises(MessagingError, match="no provider configured for email"):
        service.dispatch("m")
    [view] = messages_for_debtor(store, seeded.tenant_id, seeded.debtors["D-1"])
    assert view.status == MessageStatus.PLANNED  # still to send once a provider is set up
