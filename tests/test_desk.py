"""The agent desktop's services: the screen pop, dispositions told to the guard, callbacks."""

from __future__ import annotations

import csv
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from compliance_guard.engine import conversation_key
from compliance_guard.models import AttemptRequest, Flag, FlagScope
from compliance_guard.models import Outcome as ComplianceOutcome
from compliance_guard.rules import load_preset
from compliance_guard.service import Guard, RuleBook
from compliance_guard.store_sql import SqlStore
from dialer.calls.models import AttemptStatus, Outcome
from dialer.desk.callbacks import due_callbacks, mark_callback
from dialer.desk.dispositions import (
    DispositionRequest,
    apply_guard_effects,
    record_disposition,
)
from dialer.desk.errors import ComplianceNotUpdated, DispositionError
from dialer.desk.pop import HISTORY_ATTEMPTS, attempt_owner, build_screen_pop
from dialer.guard_names import guard_request
from dialer.importer import COLUMNS, import_csv
from dialer.store import attempts as repo
from dialer.store.db import Store, open_store
from dialer.store.models import (
    Callback,
    CallbackStatus,
    Debt,
    Disposition,
    DispositionCode,
    Phone,
)

TENANT = "bank"
# Monday 4 May 2026, 10:00 in New York: inside Reg F's 08:00-21:00.
T0 = datetime(2026, 5, 4, 14, 0, tzinfo=UTC)
SCRIPT = "Hello {debtor}, this is {agent} calling for {creditor} about {balance}."


@dataclass
class Desk:
    store: Store
    guard: Guard
    tenant_id: int
    campaign_id: int
    debtor_ids: dict[str, int]  # external id -> row id
    debt_ids: dict[str, int]
    phone_ids: dict[str, int]  # E.164 -> row id (each debtor has their own numbers)

    def attempt(
        self,
        debtor: str,
        phone: str,
        debt: str,
        *,
        agent: str | None = "a1",
        at: datetime = T0,
        outcome: Outcome = Outcome.ANSWERED,
        connected: bool = True,
        ended: bool = True,
        reservation_id: str | None = None,
    ) -> int:
        """An attempt as the engine writes it: the row before the Originate, then its changes."""
        attempt_id = repo.create_attempt(
            self.store,
            repo.NewAttempt(
                tenant_id=self.tenant_id,
                campaign_id=self.campaign_id,
                debtor_id=self.debtor_ids[debtor],
                debt_id=self.debt_ids[debt],
                phone_id=self.phone_ids[phone],
                node_id="n1",
                server="pbx0",
                uniqueid=None,
                dialed_at=at,
                reservation_id=reservation_id,
            ),
        )
        answered = outcome is Outcome.ANSWERED
        repo.update_attempt(
            self.store,
            attempt_id,
            repo.AttemptChange(
                status=AttemptStatus.ENDED if ended else AttemptStatus.CONNECTED,
                outcome=outcome if ended else None,
                answered_at=at + timedelta(seconds=8) if answered else None,
                connected_at=at + timedelta(seconds=9) if answered and connected else None,
                hungup_at=at + timedelta(minutes=3) if ended else None,
                agent_id=agent if answered and connected else None,
            ),
        )
        return attempt_id

    def dispose(
        self,
        attempt_id: int,
        code: DispositionCode,
        *,
        agent: str = "a1",
        now: datetime = T0,
        **kw: Any,
    ) -> int:
        result = record_disposition(
            self.store,
            self.guard,
            TENANT,
            self.tenant_id,
            DispositionRequest(attempt_id=attempt_id, code=code, **kw),
            agent_id=agent,
            now=now,
        )
        return result.disposition_id

    def request(self, debtor: str, phone: str, debt: str) -> AttemptRequest:
        """What the dialer's gate asks the guard before calling this debtor on this phone."""
        candidate = repo.DialCandidate(
            debtor_id=self.debtor_ids[debtor],
            debt_id=self.debt_ids[debt],
            phone_id=self.phone_ids[phone],
            e164=phone,
            phone_type="mobile",
            timezone="America/New_York",
            debtor_external_id=debtor,
        )
        return guard_request(TENANT, self.campaign_id, candidate, None, facts_as_of=None)

    def rows(self, table: Any) -> list[Any]:
        with self.store.begin() as conn:
            return list(conn.execute(sa.select(table)).all())


def _row(
    debtor: str, name: str, debt: str, balance: str, phone: str, **extra: str
) -> dict[str, str]:
    row = {column: "" for column in COLUMNS}
    row.update(
        debtor_id=debtor,
        name=name,
        debt_id=debt,
        principal=balance,
        balance=balance,
        currency="USD",
        days_past_due="45",
        phone=phone,
        phone_type="mobile",
        consent="yes",
        timezone="America/New_York",
        address_line1="1 Main St",
        city="New York",
        region="NY",
        postal_code="10001",
        country="US",
    )
    row.update(extra)
    return row


@pytest.fixture
def desk(database_url: str, tmp_path: Path) -> Iterator[Desk]:
    """Two New York debtors imported from CSV (Ana owes on two accounts), one campaign, and the
    guard on Reg F with its ledger in the same database."""
    store = open_store(database_url)
    portfolio = tmp_path / "portfolio.csv"
    with portfolio.open("w", newline="", encoding="utf-8") as fh:
        out = csv.DictWriter(fh, COLUMNS)
        out.writeheader()
        out.writerow(_row("D1", "Ana Núñez", "A1", "1250.50", "(212) 555-0100"))
        out.writerow(
            _row("D1", "Ana Núñez", "A2", "99.999", "+1 212 555 0101", days_past_due="400")
        )
        out.writerow(_row("D2", "王芳", "B1", "300.00", "212-555-0102"))
    report = import_csv(store, portfolio, TENANT, now=T0 - timedelta(days=30))
    assert not report.rejected
    tenant_id = repo.ensure_tenant(store, TENANT)
    campaign_id = repo.ensure_campaign(store, tenant_id, "spring", "predictive")
    with store.begin() as conn:
        debtors: dict[str, int] = dict(
            conn.execute(sa.text("SELECT external_id, id FROM debtors")).all()
        )
        debts: dict[str, int] = dict(
            conn.execute(sa.text("SELECT external_id, id FROM debts")).all()
        )
        phones: dict[str, int] = dict(conn.execute(sa.text("SELECT e164, id FROM phones")).all())
    guard = Guard(
        SqlStore(store.engine), RuleBook({"us-regf": load_preset("us-regf")}, default="us-regf")
    )
    yield Desk(store, guard, tenant_id, campaign_id, debtors, debts, phones)
    store.close()


def _pop(desk: Desk, attempt_id: int, *, now: datetime = T0, template: str = SCRIPT) -> Any:
    pop = build_screen_pop(
        desk.store,
        desk.tenant_id,
        attempt_id,
        now=now,
        script_template=template,
        agent_name="Li Lei",
        creditor="Acme Bank",
    )
    assert pop is not None
    return pop.to_json()


# ----- the screen pop -----


def test_pop_shows_the_debtors_accounts_and_last_promise(desk: Desk) -> None:
    earlier = desk.attempt("D1", "+12125550100", "A1", at=T0 - timedelta(days=2), agent="a2")
    desk.dispose(
        earlier,
        DispositionCode.PROMISE_TO_PAY,
        agent="a2",
        now=T0 - timedelta(days=2, minutes=-4),
        promise_amount=Decimal("200"),
        promise_date=date(2026, 5, 8),
        note="pays Friday",
    )
    now_call = desk.attempt("D1", "+12125550101", "A2", ended=False)

    pop = _pop(desk, now_call, now=T0 + timedelta(minutes=1))

    assert set(pop) == {
        "attempt_id",
        "campaign",
        "debtor",
        "phone",
        "accounts",
        "history",
        "promises",
        "compliance_notes",
        "script",
        "strategy",
    }
    assert pop["strategy"] is None  # the strategy run has not reached the case yet
    assert pop["attempt_id"] == now_call
    assert pop["campaign"] == "spring"
    assert pop["debtor"] == {"id": desk.debtor_ids["D1"], "name": "Ana Núñez", "external_id": "D1"}
    assert pop["phone"] == "+12125550101"
    assert pop["accounts"] == [
        {
            "debt_id": desk.debt_ids["A1"],
            "reference": "A1",
            "balance": "1250.50",
            "currency": "USD",
            "days_past_due": 45,
            "status": "open",
        },
        {
            "debt_id": desk.debt_ids["A2"],
            "reference": "A2",
            "balance": "100.00",
            "currency": "USD",
            "days_past_due": 400,
            "status": "open",
        },
    ]
    assert pop["promises"] == [
        {
            "amount": "200.00",
            "currency": "USD",
            "due": "2026-05-08",
            "debt_reference": "A1",
            "agent_id": "a2",
        }
    ]
    # Newest first: the promise, then the call it was made on; the call in progress is not
    # history yet.
    assert [(h["kind"], h["outcome"]) for h in pop["history"]] == [
        ("disposition", "promise_to_pay"),
        ("attempt", "answered"),
    ]
    promise = pop["history"][0]
    assert promise == {
        "at": (T0 - timedelta(days=2, minutes=-4)).isoformat(),
        "kind": "disposition",
        "outcome": "promise_to_pay",
        "agent_id": "a2",
        "note": "pays Friday",
        "promise_amount": "200.00",
        "promise_date": "2026-05-08",
        "payment_amount": None,
    }
    assert pop["history"][1]["agent_id"] == "a2"
    assert pop["history"][1]["at"] == (T0 - timedelta(days=2)).isoformat()


def test_a_promise_whose_date_has_passed_is_history_not_an_open_promise(desk: Desk) -> None:
    earlier = desk.attempt("D2", "+12125550102", "B1", at=T0 - timedelta(days=20))
    desk.dispose(
        earlier,
        DispositionCode.PROMISE_TO_PAY,
        now=T0 - timedelta(days=20),
        promise_amount=Decimal("50"),
        promise_date=(T0 - timedelta(days=3)).date(),
    )
    pop = _pop(desk, desk.attempt("D2", "+12125550102", "B1", ended=False))
    assert pop["promises"] == []
    assert pop["history"][0]["promise_amount"] == "50.00"


def test_pop_is_none_for_an_attempt_of_another_tenant(desk: Desk) -> None:
    attempt_id = desk.attempt("D1", "+12125550100", "A1")
    other = repo.ensure_tenant(desk.store, "other")
    found = build_screen_pop(
        desk.store, other, attempt_id, now=T0, script_template=SCRIPT, agent_name="x"
    )
    assert found is None
    assert attempt_owner(desk.store, other, attempt_id) is None
    assert (
        build_screen_pop(
            desk.store, desk.tenant_id, 10**9, now=T0, script_template=SCRIPT, agent_name="x"
        )
        is None
    )


def test_attempt_owner_names_the_agent_campaign_and_debtor(desk: Desk) -> None:
    attempt_id = desk.attempt("D2", "+12125550102", "B1", agent="a7")
    owner = attempt_owner(desk.store, desk.tenant_id, attempt_id)
    assert owner is not None
    assert (owner.agent_id, owner.campaign_id, owner.debtor_id) == (
        "a7",
        desk.campaign_id,
        desk.debtor_ids["D2"],
    )


def test_script_is_filled_with_debtor_agent_creditor_and_the_calls_balance(desk: Desk) -> None:
    attempt_id = desk.attempt("D1", "+12125550100", "A1", ended=False)
    pop = _pop(desk, attempt_id)
    assert pop["script"] == (
        "Hello Ana Núñez, this is Li Lei calling for Acme Bank about 1250.50 USD."
    )


def test_broken_script_template_shows_the_raw_text(desk: Desk) -> None:
    attempt_id = desk.attempt("D1", "+12125550100", "A1", ended=False)
    for template in (
        "Hello {debtor, you owe {balance}",  # unbalanced brace
        "Hello {debtor} {unknown}",  # a name the desk does not fill
        "Hello {0}",  # positional
        "Hello {debtor.__class__}",  # attribute lookups are not for templates
        "Total: {balance:d}",  # a format the value cannot take
    ):
        assert _pop(desk, attempt_id, template=template)["script"] == template


def test_a_pop_read_ahead_gives_the_script_for_the_agent_who_takes_the_call(desk: Desk) -> None:
    attempt_id = desk.attempt("D2", "+12125550102", "B1", ended=False)
    pop = build_screen_pop(
        desk.store,
        desk.tenant_id,
        attempt_id,
        now=T0,
        script_template="{agent}: {debtor}",
        agent_name="",
    )
    assert pop is not None
    assert pop.script_for("Han Meimei") == "Han Meimei: 王芳"


def test_pop_notes_the_debtors_local_time_and_the_weeks_calls(desk: Desk) -> None:
    desk.attempt("D1", "+12125550100", "A1", at=T0 - timedelta(days=9))  # before the week
    desk.attempt("D1", "+12125550101", "A2", at=T0 - timedelta(days=3), outcome=Outcome.NO_ANSWER)
    desk.attempt("D1", "+12125550100", "A1", at=T0 - timedelta(days=1))
    attempt_id = desk.attempt("D1", "+12125550100", "A1", ended=False)

    notes = _pop(desk, attempt_id)["compliance_notes"]

    assert "Debtor's local time: Mon 10:00 in America/New_York" in notes
    # this call and the two before it this week; this one and yesterday's reached an agent
    assert (
        "3 calls to this debtor in the last 7 days, this one included; 2 reached an agent" in notes
    )
    assert any(n.startswith("Last conversation with an agent 2026-05-03") for n in notes)


def test_pop_notes_what_earlier_dispositions_and_the_portfolio_say(desk: Desk) -> None:
    earlier = desk.attempt("D1", "+12125550101", "A2", at=T0 - timedelta(days=1), agent="a3")
    desk.dispose(earlier, DispositionCode.DISPUTE, agent="a3", now=T0 - timedelta(days=1))
    attempt_id = desk.attempt("D1", "+12125550100", "A1", ended=False)

    notes = _pop(desk, attempt_id)["compliance_notes"]

    assert "Account A2 is disputed: do not collect on it" in notes
    assert "Dispute recorded on 2026-05-03 by agent a3" in notes


def test_pop_is_read_in_three_queries(desk: Desk) -> None:
    for days in range(1, 6):
        earlier = desk.attempt("D1", "+12125550100", "A1", at=T0 - timedelta(days=days))
        desk.dispose(earlier, DispositionCode.REFUSED, now=T0 - timedelta(days=days))
    attempt_id = desk.attempt("D1", "+12125550100", "A1", ended=False)
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    sa.event.listen(desk.store.engine, "before_cursor_execute", count)
    try:
        pop = _pop(desk, attempt_id)
    finally:
        sa.event.remove(desk.store.engine, "before_cursor_execute", count)
    assert len(pop["history"]) == 10
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 3


def test_a_long_history_still_counts_the_week_and_finds_old_promises(desk: Desk) -> None:
    old = desk.attempt("D2", "+12125550102", "B1", at=T0 - timedelta(days=25))
    desk.dispose(
        old,
        DispositionCode.PROMISE_TO_PAY,
        now=T0 - timedelta(days=25),
        promise_amount=Decimal("300"),
        promise_date=date(2026, 5, 30),
    )
    # Then more calls in the last week than the pop reads, still ringing.
    repo.create_attempts(
        desk.store,
        [
            repo.NewAttempt(
                tenant_id=desk.tenant_id,
                campaign_id=desk.campaign_id,
                debtor_id=desk.debtor_ids["D2"],
                debt_id=desk.debt_ids["B1"],
                phone_id=desk.phone_ids["+12125550102"],
                node_id="n1",
                server="pbx0",
                uniqueid=None,
                dialed_at=T0 - timedelta(hours=1 + i),
            )
            for i in range(HISTORY_ATTEMPTS + 5)
        ],
    )
    attempt_id = desk.attempt("D2", "+12125550102", "B1", ended=False)

    pop = _pop(desk, attempt_id)

    assert len(pop["history"]) == HISTORY_ATTEMPTS - 1  # the call in progress is not history
    assert [p["amount"] for p in pop["promises"]] == ["300.00"]
    # the hourly calls and this one; the one 25 days ago is outside the week
    week = f"{HISTORY_ATTEMPTS + 6} calls to this debtor in the last 7 days, this one included"
    assert f"{week}; 1 reached an agent" in pop["compliance_notes"]


# ----- dispositions -----


def test_agent_cannot_disposition_another_agents_call(desk: Desk) -> None:
    attempt_id = desk.attempt("D1", "+12125550100", "A1", agent="a1")
    with pytest.raises(DispositionError) as refused:
        desk.dispose(attempt_id, DispositionCode.REFUSED, agent="a2")
    assert refused.value.field == "attempt_id"
    assert desk.rows(Disposition) == []


def test_a_call_of_another_tenant_or_none_at_all_is_not_the_agents(desk: Desk) -> None:
    attempt_id = desk.attempt("D1", "+12125550100", "A1", agent="a1")
    other = repo.ensure_tenant(desk.store, "other")
    for tenant_id, attempt in ((other, attempt_id), (desk.tenant_id, 10**9)):
        with pytest.raises(DispositionError) as refused:
            record_disposition(
                desk.store,
                desk.guard,
                TENANT,
                tenant_id,
                DispositionRequest(attempt_id=attempt, code=DispositionCode.REFUSED),
                agent_id="a1",
                now=T0,
            )
        assert refused.value.field == "attempt_id"
        assert "not one of your calls" in str(refused.value)


def test_a_second_disposition_of_the_same_call_is_refused(desk: Desk) -> None:
    attempt_id = desk.attempt("D1", "+12125550100", "A1")
    desk.dispose(attempt_id, DispositionCode.REFUSED, note="hung up on me")
    with pytest.raises(DispositionError) as refused:
        desk.dispose(attempt_id, DispositionCode.OTHER)
    assert refused.value.field == "attempt_id"
    assert "already recorded" in str(refused.value)
    assert [(d.code, d.note) for d in desk.rows(Disposition)] == [("refused", "hung up on me")]


def test_two_dispositions_racing_for_one_call_record_exactly_one(desk: Desk) -> None:
    attempt_id = desk.attempt("D1", "+12125550100", "A1")
    outcomes: list[str] = []
    start = threading.Barrier(4)

    def submit() -> None:
        start.wait()
        try:
            desk.dispose(attempt_id, DispositionCode.REFUSED)
            outcomes.append("saved")
        except DispositionError as exc:
            outcomes.append(exc.field)

    threads = [threading.Thread(target=submit) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["attempt_id", "attempt_id", "attempt_id", "saved"]
    assert len(desk.rows(Disposition)) == 1


def test_a_promise_to_pay_needs_an_amount_above_zero_and_a_date_within_90_days(desk: Desk) -> None:
    attempt_id = desk.attempt("D1", "+12125550100", "A1")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"promise_date": date(2026, 5, 8)}, "promise_amount"),
        ({"promise_amount": Decimal("0"), "promise_date": date(2026, 5, 8)}, "promise_amount"),
        ({"promise_amount": Decimal("10")}, "promise_date"),
        ({"promise_amount": Decimal("10"), "promise_date": date(2026, 5, 3)}, "promise_date"),
        ({"promise_amount": Decimal("10"), "promise_date": date(2026, 8, 3)}, "promise_date"),
    ]
    for fields, field in cases:
        with pytest.raises(DispositionError) as refused:
            desk.dispose(attempt_id, DispositionCode.PROMISE_TO_PAY, **fields)
        assert refused.value.field == field, fields
    # today and the 90th day are both fine (the debtor's dates: 4 May in New York)
    desk.dispose(
        attempt_id,
        DispositionCode.PROMISE_TO_PAY,
        promise_amount=Decimal("10"),
        promise_date=date(2026, 8, 2),
    )
    assert [(d.promise_amount, d.promise_date) for d in desk.rows(Disposition)] == [
        (Decimal("10"), date(2026, 8, 2))
    ]


def test_a_promise_for_today_late_in_the_debtors_evening_is_today_not_yesterday(
    desk: Desk,
) -> None:
    # 23:30 on 4 May in New York is already 5 May in UTC.
    late = datetime(2026, 5, 5, 3, 30, tzinfo=UTC)
    attempt_id = desk.attempt("D2", "+12125550102", "B1", at=late - timedelta(minutes=5))
    desk.dispose(
        attempt_id,
        DispositionCode.PROMISE_TO_PAY,
        now=late,
        promise_amount=Decimal("20"),
        promise_date=date(2026, 5, 4),
    )


def test_a_partial_payment_needs_the_amount_paid(desk: Desk) -> None:
    attempt_id = desk.attempt("D1", "+12125550100", "A1")
    for amount in (None, Decimal("-5")):
        with pytest.raises(DispositionError) as refused:
            desk.dispose(attempt_id, DispositionCode.PARTIAL_PAYMENT, payment_amount=amount)
        assert refused.value.field == "payment_amount"
    desk.dispose(
        attempt_id,
        DispositionCode.PARTIAL_PAYMENT,
        now=T0 + timedelta(minutes=4),
        payment_amount=Decimal("75.25"),
    )
    pop = _pop(
        desk, desk.attempt("D1", "+12125550100", "A1", ended=False, at=T0 + timedelta(hours=1))
    )
    assert pop["history"][0]["payment_amount"] == "75.25"


def test_do_not_call_disposition_makes_the_guard_refuse_the_debtor(desk: Desk) -> None:
    before = desk.guard.check(desk.request("D1", "+12125550101", "A2"), T0 + timedelta(hours=1))
    assert before.allowed
    attempt_id = desk.attempt("D1", "+12125550100", "A1")

    desk.dispose(attempt_id, DispositionCode.DO_NOT_CALL, note="stop calling me")

    # On either of the debtor's numbers, about either debt.
    for phone, debt in (("+12125550100", "A1"), ("+12125550101", "A2")):
        decision = desk.guard.check(desk.request("D1", phone, debt), T0 + timedelta(days=2))
        assert not decision.allowed
        assert [r.rule for r in decision.reasons] == ["flag:do_not_call"]
        assert decision.next_allowed_at is None
    # The other debtor is not affected.
    assert desk.guard.check(
        desk.request("D2", "+12125550102", "B1"), T0 + timedelta(hours=1)
    ).allowed
    # And the hopper skips the debtor's numbers from now on.
    dnc = {p.e164: p.do_not_call for p in desk.rows(Phone)}
    assert dnc == {"+12125550100": True, "+12125550101": True, "+12125550102": False}
    assert desk.guard.flags(TENANT, FlagScope.PERSON, str(desk.debtor_ids["D1"])) == {
        Flag.DO_NOT_CALL.value
    }


def test_deceased_disposition_makes_the_guard_refuse_the_debtor(desk: Desk) -> None:
    attempt_id = desk.attempt("D2", "+12125550102", "B1")
    desk.dispose(attempt_id, DispositionCode.DECEASED, note="his widow answered")
    decision = desk.guard.check(desk.request("D2", "+12125550102", "B1"), T0 + timedelta(days=1))
    assert [r.rule for r in decision.reasons] == ["flag:deceased"]


def test_dispute_disposition_stops_calls_about_that_debt_only(desk: Desk) -> None:
    attempt_id = desk.attempt("D1", "+12125550100", "A1")
    desk.dispose(attempt_id, DispositionCode.DISPUTE, note="says A1 was paid in 2024")

    later = T0 + timedelta(days=8)  # past the conversation period
    disputed = desk.guard.check(desk.request("D1", "+12125550100", "A1"), later)
    assert [r.rule for r in disputed.reasons] == ["flag:dispute"]
    assert desk.guard.check(desk.request("D1", "+12125550100", "A2"), later).allowed
    status = {d.external_id: d.status for d in desk.rows(Debt)}
    assert status == {"A1": "disputed", "A2": "open", "B1": "open"}


def test_wrong_party_disposition_books_the_call_as_wrong_party_not_a_conversation(
    desk: Desk,
) -> None:
    request = desk.request("D2", "+12125550102", "B1")
    granted = desk.guard.check_and_reserve(request, T0)
    assert granted.reservation_id is not None
    # The agent writes the disposition before the dialer has booked the call's outcome.
    attempt_id = desk.attempt(
        "D2", "+12125550102", "B1", ended=False, reservation_id=granted.reservation_id
    )
    desk.dispose(attempt_id, DispositionCode.WRONG_PARTY, note="a stranger's number")

    key = conversation_key(TENANT, request.person_id, request.debt_ids[0])
    assert desk.guard.store.entries(key) == []  # no conversation period started
    # Still counted as a placed call, so the next one about the debt is allowed tomorrow.
    assert desk.guard.check(request, T0 + timedelta(days=1)).allowed


def test_wrong_party_after_the_dialer_booked_a_conversation_keeps_the_conversation(
    desk: Desk,
) -> None:
    request = desk.request("D2", "+12125550102", "B1")
    granted = desk.guard.check_and_reserve(request, T0)
    assert granted.reservation_id is not None
    attempt_id = desk.attempt("D2", "+12125550102", "B1", reservation_id=granted.reservation_id)
    desk.guard.record_outcome(granted.reservation_id, ComplianceOutcome.CONVERSATION, T0)

    desk.dispose(attempt_id, DispositionCode.WRONG_PARTY)

    assert len(desk.rows(Disposition)) == 1
    refused = desk.guard.check(request, T0 + timedelta(days=1))
    assert [r.rule for r in refused.reasons] == ["regf-conversation-period"]


def test_a_guard_out_of_reach_leaves_the_disposition_saved_and_its_effects_to_apply_again(
    desk: Desk, tmp_path: Path
) -> None:
    # A ledger whose tables are missing fails every write, as one out of reach does.
    broken = Guard(
        SqlStore(f"sqlite:///{tmp_path / 'no-ledger.db'}"),
        RuleBook({"us-regf": load_preset("us-regf")}, default="us-regf"),
    )
    attempt_id = desk.attempt("D2", "+12125550102", "B1")
    with pytest.raises(ComplianceNotUpdated) as failed:
        record_disposition(
            desk.store,
            broken,
            TENANT,
            desk.tenant_id,
            DispositionRequest(attempt_id=attempt_id, code=DispositionCode.DO_NOT_CALL),
            agent_id="a1",
            now=T0,
        )
    [saved] = desk.rows(Disposition)
    assert failed.value.disposition_id == saved.id

    apply_guard_effects(desk.guard, TENANT, failed.value.effects, T0)

    decision = desk.guard.check(desk.request("D2", "+12125550102", "B1"), T0 + timedelta(hours=1))
    assert [r.rule for r in decision.reasons] == ["flag:do_not_call"]


# ----- callbacks -----


def test_callback_outside_the_calling_window_is_refused_with_the_guards_reason(
    desk: Desk,
) -> None:
    attempt_id = desk.attempt("D1", "+12125550100", "A1")
    late = datetime(2026, 5, 5, 3, 30, tzinfo=UTC)  # 23:30 in New York

    with pytest.raises(DispositionError) as refused:
        desk.dispose(attempt_id, DispositionCode.CALLBACK, callback_at=late)

    error = refused.value
    assert error.field == "callback_at"
    assert "outside 08:00-21:00 at the consumer's location" in error.message
    assert "Mon 2026-05-04 23:30 in America/New_York" in error.message
    assert error.next_allowed_at == datetime(2026, 5, 5, 12, 0, tzinfo=UTC)  # 08:00 there
    assert desk.rows(Disposition) == []
    assert desk.rows(Callback) == []


def test_a_callback_needs_a_future_time_with_its_zone(desk: Desk) -> None:
    attempt_id = desk.attempt("D1", "+12125550100", "A1")
    for at in (None, T0 - timedelta(minutes=1), T0.replace(tzinfo=None) + timedelta(hours=2)):
        with pytest.raises(DispositionError) as refused:
            desk.dispose(attempt_id, DispositionCode.CALLBACK, callback_at=at)
        assert refused.value.field == "callback_at"
    with pytest.raises(DispositionError) as refused:
        desk.dispose(attempt_id, DispositionCode.DO_NOT_CALL, callback_at=T0 + timedelta(hours=2))
    assert refused.value.field == "callback_at"


def test_a_callback_is_scheduled_and_comes_due_for_the_same_agent(desk: Desk) -> None:
    attempt_id = desk.attempt("D1", "+12125550101", "A2", agent="a1")
    at = T0 + timedelta(hours=4)  # 14:00 in New York
    result = record_disposition(
        desk.store,
        desk.guard,
        TENANT,
        desk.tenant_id,
        DispositionRequest(
            attempt_id=attempt_id,
            code=DispositionCode.CALLBACK,
            callback_at=at,
            callback_same_agent=True,
            note="at lunch, call after 2",
        ),
        agent_id="a1",
        now=T0,
    )
    assert result.callback_id is not None

    assert (
        due_callbacks(desk.store, desk.tenant_id, desk.campaign_id, at - timedelta(seconds=1), 10)
        == []
    )
    [due] = due_callbacks(desk.store, desk.tenant_id, desk.campaign_id, at, 10)
    assert due.id == result.callback_id
    assert due.disposition_id == result.disposition_id
    assert (due.debtor_id, due.debt_id, due.phone_id, due.e164) == (
        desk.debtor_ids["D1"],
        desk.debt_ids["A2"],
        desk.phone_ids["+12125550101"],
        "+12125550101",
    )
    assert due.agent_id == "a1"
    assert due.due_at == at
    assert due.candidate().timezone == "America/New_York"

    redial = desk.attempt("D1", "+12125550101", "A2", at=at, ended=False)
    mark_callback(desk.store, due.id, CallbackStatus.DIALLED, attempt_id=redial)
    assert due_callbacks(desk.store, desk.tenant_id, desk.campaign_id, at, 10) == []
    [row] = desk.rows(Callback)
    assert (row.status, row.attempt_id) == ("dialled", redial)


def test_any_code_with_a_callback_time_schedules_one_for_any_agent(desk: Desk) -> None:
    attempt_id = desk.attempt("D2", "+12125550102", "B1")
    desk.dispose(
        attempt_id,
        DispositionCode.WRONG_PARTY,
        note="his daughter: back at 6 pm",
        callback_at=T0 + timedelta(hours=8),
    )
    [due] = due_callbacks(desk.store, desk.tenant_id, desk.campaign_id, T0 + timedelta(days=1), 10)
    assert due.agent_id is None


def test_due_callbacks_come_longest_overdue_first_within_the_limit(desk: Desk) -> None:
    for hours, (debtor, phone, debt) in zip(
        (5, 3, 4),
        (("D1", "+12125550100", "A1"), ("D1", "+12125550101", "A2"), ("D2", "+12125550102", "B1")),
        strict=True,
    ):
        attempt_id = desk.attempt(debtor, phone, debt)
        desk.dispose(attempt_id, DispositionCode.CALLBACK, callback_at=T0 + timedelta(hours=hours))
    due = due_callbacks(desk.store, desk.tenant_id, desk.campaign_id, T0 + timedelta(days=1), 2)
    assert [d.due_at for d in due] == [T0 + timedelta(hours=3), T0 + timedelta(hours=4)]
    other = repo.ensure_tenant(desk.store, "other")
    assert due_callbacks(desk.store, other, desk.campaign_id, T0 + timedelta(days=1), 10) == []


def test_marking_an_unknown_callback_is_an_error(desk: Desk) -> None:
    from dialer.errors import StoreError

    with pytest.raises(StoreError, match="does not exist"):
        mark_callback(desk.store, 10**9, CallbackStatus.DONE)
