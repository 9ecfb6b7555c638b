"""Cases on worked examples, on SQLite and PostgreSQL: the import opens them, payments are
idempotent and clear balances, promises are kept or broken, statuses follow their table with
who and why, and the timeline tells the whole contact history in order."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dialer.cases import service
from dialer.cases.errors import CaseRefused, PaymentConflict, TransitionRefused
from dialer.cases.models import Actor, CaseStatus, PaymentIn, TimelineKind
from dialer.cases.payments import import_payments
from dialer.cases.promises import run_promises
from dialer.cli import main
from dialer.desk.errors import DispositionError
from dialer.importer import COLUMNS, import_csv
from dialer.store import attempts as repo
from dialer.store.db import downgrade, open_store, upgrade
from dialer.store.models import (
    Case,
    CaseHistory,
    Debt,
    Debtor,
    DebtStatus,
    Disposition,
    DispositionCode,
    Payment,
)
from tests.cases_fixtures import empty, open_world
from tests.test_desk import T0, TENANT, Desk, _row

MANAGER = Actor.user("mei")
DAY = T0.date()  # Monday 4 May 2026


@pytest.fixture
def desk(migrated_url: str, tmp_path: Path) -> Iterator[Desk]:
    empty(migrated_url)
    world = open_world(migrated_url, tmp_path)
    yield world
    world.store.close()


def _case(desk: Desk, debtor: str) -> int:
    found = service.case_of(desk.store, desk.tenant_id, desk.debtor_ids[debtor])
    assert found is not None
    return found


def _balance(desk: Desk, debt: str) -> Decimal:
    with desk.store.begin() as conn:
        return Decimal(
            conn.execute(sa.select(Debt.balance).where(Debt.external_id == debt)).scalar_one()
        )


def _status(desk: Desk, case_id: int) -> str:
    return service.get_case(desk.store, desk.tenant_id, case_id).status


def _pay(
    desk: Desk, case_id: int, payment_id: str, amount: str, now: datetime | None = None, **kw: Any
) -> Any:
    """Post a payment, recorded (unless told) at T0's hour on the day it was paid."""
    paid_on = kw.pop("paid_on", DAY)
    payment = PaymentIn(payment_id, Decimal(amount), paid_on, **kw)
    at = now or datetime.combine(paid_on, T0.timetz())
    return service.post_payment(desk.store, desk.tenant_id, case_id, payment, MANAGER, at)


# ----- opened on import -----


def test_the_import_opens_one_case_per_debtor_and_a_reimport_opens_none(
    desk: Desk, tmp_path: Path
) -> None:
    with desk.store.begin() as conn:
        cases = conn.execute(sa.select(Case.debtor_id, Case.status, Case.opened_by)).all()
    assert sorted(c.debtor_id for c in cases) == sorted(desk.debtor_ids.values())
    assert {(c.status, c.opened_by) for c in cases} == {("new", "system:import")}
    # Ana's case holds both her debts.
    view = service.get_case(desk.store, desk.tenant_id, _case(desk, "D1"))
    assert [d.external_id for d in view.debts] == ["A1", "A2"]
    assert view.balance == {"USD": Decimal("1350.499")}
    # The same file again, plus a new debtor: one new case, none twice.
    again = tmp_path / "again.csv"
    with again.open("w", newline="", encoding="utf-8") as fh:
        out = csv.DictWriter(fh, COLUMNS)
        out.writeheader()
        out.writerow(_row("D1", "Ana Núñez", "A1", "1250.50", "(212) 555-0100"))
        out.writerow(_row("D3", "Bo Chen", "C1", "80.00", "212-555-0103"))
    assert import_csv(desk.store, again, TENANT, now=T0).rejected == 0
    with desk.store.begin() as conn:
        per_debtor = conn.execute(
            sa.select(Case.debtor_id, sa.func.count()).group_by(Case.debtor_id)
        ).all()
    assert len(per_debtor) == 3
    assert {n for _, n in per_debtor} == {1}


# ----- payments -----


def test_a_payment_lowers_the_balance_and_posting_it_again_changes_nothing(desk: Desk) -> None:
    case_id = _case(desk, "D2")  # one debt, B1, 300.00
    first = _pay(desk, case_id, "PAY-1", "120.00", method="card")
    assert first.created and first.balance_after == Decimal("180.00")
    again = _pay(desk, case_id, "PAY-1", "120.00", method="card")
    assert not again.created and again.id == first.id
    assert _balance(desk, "B1") == Decimal("180.00")
    with desk.store.begin() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(Payment)).scalar_one() == 1


def test_the_same_payment_id_with_another_amount_is_refused_and_the_first_stands(
    desk: Desk,
) -> None:
    case_id = _case(desk, "D2")
    _pay(desk, case_id, "PAY-1", "120.00")
    with pytest.raises(PaymentConflict) as refused:
        _pay(desk, case_id, "PAY-1", "90.00")
    assert refused.value.field == "payment_id"
    assert "PAY-1" in str(refused.value) and "120.00" in str(refused.value)
    assert "90.00" in str(refused.value)
    assert _balance(desk, "B1") == Decimal("180.00")


def test_a_payment_on_a_case_of_several_debts_must_name_one(desk: Desk) -> None:
    case_id = _case(desk, "D1")
    with pytest.raises(CaseRefused) as refused:
        _pay(desk, case_id, "PAY-9", "10.00")
    assert refused.value.field == "debt_id" and "'A1', 'A2'" in str(refused.value)
    with pytest.raises(CaseRefused, match="not one of case"):
        _pay(desk, case_id, "PAY-9", "10.00", debt="B1")
    with pytest.raises(CaseRefused, match="in USD, the payment in CNY"):
        _pay(desk, case_id, "PAY-9", "10.00", debt="A1", currency="CNY")


def test_a_case_paid_in_full_becomes_paid_and_its_debts_are_not_dialled(desk: Desk) -> None:
    case_id = _case(desk, "D1")  # A1 1250.50 + A2 99.999
    _pay(desk, case_id, "P-A1", "1250.50", debt="A1")
    assert _status(desk, case_id) == "new"
    last = _pay(desk, case_id, "P-A2", "100.00", debt="A2")
    assert last.case_status == "paid" and last.overpaid == Decimal("0.001")
    view = service.get_case(desk.store, desk.tenant_id, case_id)
    assert view.balance == {"USD": Decimal(0)}
    assert {d.status for d in view.debts} == {DebtStatus.SETTLED.value}
    change = view.history[0]
    assert (change.old_value, change.new_value, change.actor) == ("new", "paid", "user:mei")
    assert "P-A2" in change.reason


# ----- the payments file -----


def test_a_bad_payments_row_is_reported_by_line_and_the_others_go_in(
    desk: Desk, tmp_path: Path
) -> None:
    _pay(desk, _case(desk, "D2"), "PAY-1", "120.00")
    path = tmp_path / "payments.csv"
    path.write_bytes(
        b"Payment_ID,debt_id,amount,paid_on,currency,method\n"
        b"F-1,A1,250.50,2026-05-03,USD,transfer\n"  # 2: good
        b"F-2,A1,12.3.4,2026-05-03,,\n"  # 3: bad amount
        b"F-3,ZZ9,10.00,2026-05-03,,\n"  # 4: unknown debt
        b"F-4,A2,10.00,03/05/2026,,\n"  # 5: bad date
        b"F-5,A2,\xff10.00,2026-05-03,,\n"  # 6: not UTF-8
        b"PAY-1,B1,99.00,2026-05-04,,\n"  # 7: the id is known with 120.00
        b"PAY-1,B1,120.00,2026-05-04,,\n"  # 8: a repeat: nothing new
        b"F-6,B1,180.00,2026-05-04,USD,cash\n"  # 9: good, clears D2's case
        b",B1,1.00,2026-05-04,,\n"  # 10: no payment id
    )
    report = import_payments(desk.store, path, TENANT, now=T0)
    reasons = {e.line: e.reason for e in report.errors}
    assert sorted(reasons) == [3, 4, 5, 6, 7, 10]
    assert "12.3.4" in reasons[3]
    assert "ZZ9" in reasons[4]
    assert "03/05/2026" in reasons[5]
    assert "UTF-8" in reasons[6]
    assert "PAY-1" in reasons[7] and "120.00" in reasons[7]
    assert "payment_id is empty" in reasons[10]
    assert (report.recorded, report.duplicates, report.rejected) == (2, 1, 6)
    assert _balance(desk, "A1") == Decimal("1000.00")
    assert _balance(desk, "B1") == Decimal("0")
    assert report.cases_paid == (_case(desk, "D2"),)
    # The file again: every good row is a duplicate now.
    again = import_payments(desk.store, path, TENANT, now=T0)
    assert (again.recorded, again.duplicates) == (0, 3)


# ----- promises -----


def test_a_promise_paid_by_its_date_is_kept(desk: Desk) -> None:
    case_id = _case(desk, "D2")
    promise_id = service.make_promise(
        desk.store, desk.tenant_id, case_id, Decimal("50"), DAY + timedelta(days=3), MANAGER, T0
    )
    assert _status(desk, case_id) == "promise_to_pay"
    _pay(desk, case_id, "K-1", "20.00", paid_on=DAY + timedelta(days=1))
    assert _status(desk, case_id) == "promise_to_pay"  # 20 of 50 so far
    _pay(desk, case_id, "K-2", "30.00", paid_on=DAY + timedelta(days=3))
    view = service.get_case(desk.store, desk.tenant_id, case_id)
    assert view.status == "in_progress"
    assert [(p.id, p.status) for p in view.promises] == [(promise_id, "kept")]
    assert f"promise {promise_id} kept" in view.history[0].reason
    # Kept promises are not broken by the run.
    report = run_promises(desk.store, DAY + timedelta(days=10), T0, tenant_id=desk.tenant_id)
    assert report.broken == ()


def test_a_broken_promise_escalates_the_case(desk: Desk) -> None:
    case_id = _case(desk, "D2")
    due = DAY + timedelta(days=2)
    promise_id = service.make_promise(
        desk.store, desk.tenant_id, case_id, Decimal("100"), due, MANAGER, T0
    )
    # Paid too late and too little: 40 on the due date, 60 the day after.
    _pay(desk, case_id, "L-1", "40.00", paid_on=due)
    _pay(desk, case_id, "L-2", "60.00", paid_on=due + timedelta(days=1))
    # On the due date it still stands.
    assert run_promises(desk.store, due, T0).checked == 0
    assert _status(desk, case_id) == "promise_to_pay"
    report = run_promises(desk.store, due + timedelta(days=1), T0 + timedelta(days=3))
    assert report.broken == (promise_id,) and report.kept == ()
    view = service.get_case(desk.store, desk.tenant_id, case_id)
    assert view.status == "broken_promise"
    change = view.history[0]
    assert change.actor == "system:promises"
    assert "100" in change.reason and "40" in change.reason and due.isoformat() in change.reason
    # Running it again changes nothing.
    assert run_promises(desk.store, due + timedelta(days=1), T0).checked == 0
    assert len(service.get_case(desk.store, desk.tenant_id, case_id).history) == 2


def test_the_promise_command_settles_promises_due_before_the_date(
    desk: Desk, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    case_id = _case(desk, "D2")
    service.make_promise(desk.store, desk.tenant_id, case_id, Decimal("5"), DAY, MANAGER, T0)
    monkeypatch.setenv("DATABASE_URL", desk.store.engine.url.render_as_string(False))
    day_after = (DAY + timedelta(days=1)).isoformat()
    assert main(["cases", "promises", "--date", day_after]) == 0
    assert "1 checked, 0 kept, 1 broken" in capsys.readouterr().out
    assert _status(desk, case_id) == "broken_promise"


def test_a_promise_out_of_range_or_on_a_closed_case_is_refused(desk: Desk) -> None:
    case_id = _case(desk, "D2")
    with pytest.raises(CaseRefused) as late:
        service.make_promise(
            desk.store, desk.tenant_id, case_id, Decimal("5"), DAY + timedelta(days=91), MANAGER, T0
        )
    assert late.value.field == "due_date"
    service.change_status(
        desk.store, desk.tenant_id, case_id, CaseStatus.LEGAL, MANAGER, "sent to counsel", T0
    )
    with pytest.raises(CaseRefused, match="is legal: no promise"):
        service.make_promise(desk.store, desk.tenant_id, case_id, Decimal("5"), DAY, MANAGER, T0)


# ----- status with who and why -----


def test_status_changes_follow_the_table_and_keep_who_and_why(desk: Desk) -> None:
    case_id = _case(desk, "D2")
    change = service.change_status
    change(desk.store, desk.tenant_id, case_id, CaseStatus.IN_PROGRESS, MANAGER, "worked", T0)
    change(
        desk.store,
        desk.tenant_id,
        case_id,
        CaseStatus.SETTLED,
        MANAGER,
        "agreed 200 in full",
        T0 + timedelta(hours=1),
    )
    # A settled debt is not dialled any more.
    with desk.store.begin() as conn:
        assert conn.execute(sa.select(Debt.status).where(Debt.external_id == "B1")).scalar() == (
            "settled"
        )
    with pytest.raises(TransitionRefused) as refused:
        change(desk.store, desk.tenant_id, case_id, CaseStatus.IN_PROGRESS, MANAGER, "x", T0)
    assert "from settled to in_progress" in str(refused.value)
    assert "(from settled: closed)" in str(refused.value)
    with pytest.raises(CaseRefused, match="set by payments"):
        change(desk.store, desk.tenant_id, case_id, CaseStatus.PAID, MANAGER, "x", T0)
    with pytest.raises(CaseRefused, match="say why"):
        change(desk.store, desk.tenant_id, case_id, CaseStatus.CLOSED, MANAGER, "  ", T0)
    with desk.store.begin() as conn:
        rows = conn.execute(
            sa.select(CaseHistory.old_value, CaseHistory.new_value, CaseHistory.actor)
            .where(CaseHistory.case_id == case_id)
            .order_by(CaseHistory.id)
        ).all()
    assert [tuple(r) for r in rows] == [
        ("new", "in_progress", "user:mei"),
        ("in_progress", "settled", "user:mei"),
    ]


# ----- from the agent's desk -----


def test_a_promise_to_pay_disposition_puts_a_promise_on_the_case(desk: Desk) -> None:
    attempt = desk.attempt("D1", "+12125550100", "A1")
    desk.dispose(
        attempt,
        DispositionCode.PROMISE_TO_PAY,
        promise_amount=Decimal("200"),
        promise_date=DAY + timedelta(days=5),
    )
    view = service.get_case(desk.store, desk.tenant_id, _case(desk, "D1"))
    assert view.status == "promise_to_pay"
    (promise,) = view.promises
    assert (promise.amount, promise.due_date, promise.currency) == (
        Decimal("200"),
        DAY + timedelta(days=5),
        "USD",
    )
    assert promise.created_by == "agent:a1" and promise.disposition_id is not None
    # On a case with legal the agent is told, on the form, and nothing is stored.
    other = _case(desk, "D2")
    service.change_status(
        desk.store, desk.tenant_id, other, CaseStatus.LEGAL, MANAGER, "counsel", T0
    )
    attempt = desk.attempt("D2", "+12125550102", "B1")
    with pytest.raises(DispositionError) as refused:
        desk.dispose(
            attempt,
            DispositionCode.PROMISE_TO_PAY,
            promise_amount=Decimal("20"),
            promise_date=DAY + timedelta(days=1),
        )
    assert refused.value.field == "code" and "legal" in str(refused.value)
    assert [r.attempt_id for r in desk.rows(Disposition)] == [attempt - 1]


def test_any_other_disposition_puts_a_new_case_in_progress(desk: Desk) -> None:
    case_id = _case(desk, "D2")
    desk.dispose(desk.attempt("D2", "+12125550102", "B1"), DispositionCode.REFUSED)
    view = service.get_case(desk.store, desk.tenant_id, case_id)
    assert view.status == "in_progress"
    assert view.history[0].actor == "agent:a1" and "refused" in view.history[0].reason
    # A deceased debtor's case is closed, and their debts with it (the hopper skips them).
    desk.dispose(desk.attempt("D1", "+12125550100", "A1"), DispositionCode.DECEASED)
    ana = service.get_case(desk.store, desk.tenant_id, _case(desk, "D1"))
    assert ana.status == "closed" and "debtor deceased" in ana.history[0].reason
    assert {d.status for d in ana.debts} == {DebtStatus.CLOSED.value}


# ----- the timeline -----


def test_the_timeline_tells_calls_notes_promises_payments_and_changes_in_order(
    desk: Desk,
) -> None:
    case_id = _case(desk, "D2")
    hour = timedelta(hours=1)
    first = desk.attempt("D2", "+12125550102", "B1", at=T0)
    desk.dispose(
        first,
        DispositionCode.PROMISE_TO_PAY,
        now=T0 + hour,
        promise_amount=Decimal("300"),
        promise_date=DAY + timedelta(days=2),
    )
    service.add_note(
        desk.store, desk.tenant_id, case_id, "asked for a receipt", MANAGER, T0 + 2 * hour
    )
    _pay(desk, case_id, "T-1", "300.00", now=T0 + 3 * hour)
    service.post_payment(
        desk.store,
        desk.tenant_id,
        case_id,
        PaymentIn("T-1", Decimal("300.00"), DAY),
        MANAGER,
        T0 + 3 * hour,
    )
    later = desk.attempt("D2", "+12125550102", "B1", at=T0 + 4 * hour, agent="a2")
    with desk.store.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO recordings (tenant_id, attempt_id, campaign_id, source_path, status,"
                " recorded_at, duration_s) VALUES (:t, :a, :c, '/spool/x.wav', 'archived', :at, 170)"
            ),
            {"t": desk.tenant_id, "a": later, "c": desk.campaign_id, "at": T0 + 4 * hour},
        )
    view = service.get_case(desk.store, desk.tenant_id, case_id)
    got = [(e.kind, e.summary) for e in view.timeline]
    assert [k for k, _ in got] == [
        TimelineKind.CALL,  # T0: the call
        TimelineKind.PROMISE,  # +1h: its disposition's promise
        TimelineKind.STATUS,  # new -> promise_to_pay
        TimelineKind.NOTE,  # +2h
        TimelineKind.PAYMENT,  # +3h: 300 paid
        TimelineKind.PROMISE_RESOLVED,  # kept
        TimelineKind.STATUS,  # promise_to_pay -> paid
        TimelineKind.CALL,  # +4h: a2's call, recorded
    ]
    assert got[0][1] == "call: answered, promise_to_pay"
    assert got[5][1].endswith("kept")
    assert "-> paid" in got[6][1]
    recorded = view.timeline[-1]
    assert recorded.data["recording_status"] == "archived" and recorded.data["recording_s"] == 170
    assert recorded.actor == "agent:a2" and recorded.data["talk_s"] == 171.0
    # The newest entries when the page asks for fewer.
    newest = service.get_case(desk.store, desk.tenant_id, case_id, timeline_limit=2).timeline
    assert [e.kind for e in newest] == [TimelineKind.STATUS, TimelineKind.CALL]


def test_debtors_stored_before_cases_existed_get_theirs_on_upgrade(database_url: str) -> None:
    store = open_store(database_url)
    try:
        downgrade(store.engine, "0008")
        tenant_id = repo.ensure_tenant(store, TENANT)
        with store.begin() as conn:
            for ext in ("OLD-1", "OLD-2"):
                conn.execute(
                    sa.insert(Debtor).values(
                        tenant_id=tenant_id, external_id=ext, full_name=ext, created_at=T0
                    )
                )
        upgrade(store.engine)
        with store.begin() as conn:
            opened = conn.execute(
                sa.select(Debtor.external_id, Case.status, Case.opened_by, Case.created_at)
                .join(Case, Case.debtor_id == Debtor.id)
                .order_by(Debtor.external_id)
            ).all()
        assert [tuple(r) for r in opened] == [
            ("OLD-1", "new", "system:migration", T0),
            ("OLD-2", "new", "system:migration", T0),
        ]
    finally:
        store.close()


def test_the_cases_command_reads_a_payments_file_and_shows_the_case(
    desk: Desk,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", desk.store.engine.url.render_as_string(False))
    path = tmp_path / "payments.csv"
    path.write_text(
        "payment_id,debt_id,amount,paid_on\nC-1,B1,300.00,2026-05-04\nC-2,B1,x,2026-05-04\n",
        encoding="utf-8",
    )
    assert main(["cases", "payments", str(path), "--tenant", TENANT]) == 1
    out = capsys.readouterr().out
    assert "1 recorded, 0 already known, 1 rejected, 1 cases paid in full" in out
    assert "line 3: amount 'x' is not an amount" in out
    case_id = _case(desk, "D2")
    assert main(["cases", "show", str(case_id), "--tenant", TENANT]) == 0
    shown = capsys.readouterr().out
    assert f"case {case_id}: 王芳 (D2), paid" in shown
    assert "payment C-1: 300 USD [system:payments-file:payments.csv]" in shown
