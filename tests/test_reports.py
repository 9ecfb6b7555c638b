"""Collection reports equal the figures worked out by hand on a small fixed portfolio.

The portfolio (tenant "bank", call center in Shanghai, report day Tuesday 2026-03-10):

debtor  debt  currency  opening 03-09 (balance, dpd)  closing 03-10       case collector / team
  1     D1    CNY       1300, 20  (1-30)              1000, 21 (1-30)     a1 / Alpha
  2     D2    CNY       2000, 45  (31-60)             2000, 61 (61-90)    a1 / Alpha
  3     D3    CNY        200, 0   (current)              0, 0  (paid)     a2 / -
  4     D4    CNY       3000, 100 (91-120)            3000, 101 (91-120)  -  / -
  5     D5    USD        100, 10  (1-30)               100, 11 (1-30)     a2 / -

Attempts (Shanghai time; campaign; outcome; agent, talk; dispositions):
  A1 03-10 10:00 early debtor1 answered   a1 180 s  promise_to_pay 300
  A2 03-10 11:00 early debtor1 no_answer
  A3 03-10 12:00 early debtor2 answered   a2  60 s  wrong_party
  A4 03-10 13:00 early debtor2 answered, abandoned (no agent)
  A5 03-10 23:30 early debtor3 answered   a2 120 s  callback + refused (one attempt: one RPC)
  A6 03-10 09:00 late  debtor4 machine
  A7 03-10 09:30 late  debtor4 answered   a1 300 s  promise_to_pay 1000
  A8 03-11 00:10 late  debtor3 answered   a1  60 s  promise_to_pay 50     (the next day)
  A9 03-09 23:59:30 early debtor1, answered 03-10 00:00:10, abandoned   (dialled the day before)
  and one attempt of another tenant on 03-10 (never counted).
QA scores: A1 80, A7 100, A3 70, A8 10.
Promises due 03-10: P1 case1 kept (A1's), P2 case4 broken (A7's), P3 case2 cancelled,
  P4 case3 kept (no call); P5 case1 due 03-12 still open.
Payments: 300 CNY on D1 and 200 CNY on D3 on 03-10, 100 USD on D5 on 03-10, 400 CNY on D2 on
  03-12.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from dialer.reports import render
from dialer.reports.errors import ReportError, SnapshotRefused
from dialer.reports.models import GroupBy, Period, Report
from dialer.reports.service import daily_report, take_snapshot
from dialer.store.db import Store, open_store
from dialer.store.models import (
    CallAttempt,
    Campaign,
    Case,
    Debt,
    Debtor,
    Disposition,
    Payment,
    Phone,
    Promise,
    QaScore,
    Team,
    Tenant,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 3, 10)
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def sh(month_day: str, clock: str) -> datetime:
    """A Shanghai wall-clock time in March 2026."""
    return datetime.fromisoformat(f"2026-03-{month_day}T{clock}").replace(tzinfo=SHANGHAI)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    opened = open_store(database_url)
    yield opened
    opened.close()


class Portfolio:
    """Ids of the fixed portfolio's rows."""

    def __init__(self) -> None:
        self.tenant = 0
        self.campaigns: dict[str, int] = {}
        self.team = 0
        self.debts: dict[str, int] = {}
        self.cases: dict[int, int] = {}
        self.attempts: dict[str, int] = {}


def _attempt(
    p: Portfolio,
    debtor: int,
    campaign: str,
    dialed: datetime,
    outcome: str,
    *,
    agent: str | None = None,
    talk_s: int = 0,
    answered: datetime | None = None,
    abandoned: bool = False,
    tenant: int | None = None,
    phone: int,
    debtor_id: int,
) -> CallAttempt:
    live = outcome == "answered"
    answered_at = answered or (dialed + timedelta(seconds=5) if live else None)
    connected = answered_at if agent else None
    return CallAttempt(
        tenant_id=tenant or p.tenant,
        campaign_id=p.campaigns[campaign],
        debtor_id=debtor_id,
        phone_id=phone,
        status="ended",
        outcome=outcome,
        abandoned=abandoned,
        dialed_at=dialed,
        answered_at=answered_at if outcome in ("answered", "machine") else None,
        connected_at=connected,
        hungup_at=(connected + timedelta(seconds=talk_s)) if connected else None,
        server="ast1",
        node_id="n1",
        agent_id=agent,
    )


def seed(store: Store) -> Portfolio:
    p = Portfolio()
    with store.session() as s:
        bank, other = Tenant(name="bank", created_at=T0), Tenant(name="other", created_at=T0)
        s.add_all([bank, other])
        s.flush()
        p.tenant = bank.id
        for name, tenant in (("early", bank), ("late", bank), ("theirs", other)):
            c = Campaign(tenant_id=tenant.id, name=name, dial_mode="progressive", created_at=T0)
            s.add(c)
            s.flush()
            p.campaigns[name] = c.id
        team = Team(tenant_id=bank.id, name="Alpha", created_at=T0)
        s.add(team)
        s.flush()
        p.team = team.id
        debtors: dict[int, Debtor] = {}
        phones: dict[int, Phone] = {}
        owner = {1: ("a1", team.id), 2: ("a1", team.id), 3: ("a2", None), 4: (None, None)}
        owner[5] = ("a2", None)
        opening = {1: (1300, 20), 2: (2000, 45), 3: (200, 0), 4: (3000, 100), 5: (100, 10)}
        for n in range(1, 7):
            tenant_id = bank.id if n <= 5 else other.id
            d = Debtor(tenant_id=tenant_id, external_id=f"P{n}", full_name=f"P {n}", created_at=T0)
            s.add(d)
            s.flush()
            debtors[n] = d
            ph = Phone(
                tenant_id=tenant_id,
                debtor_id=d.id,
                e164=f"+8613800000{n:03d}",
                phone_type="mobile",
                created_at=T0,
            )
            s.add(ph)
            s.flush()
            phones[n] = ph
            if n > 5:
                continue
            balance, dpd = opening[n]
            debt = Debt(
                tenant_id=bank.id,
                debtor_id=d.id,
                external_id=f"D{n}",
                principal=Decimal(balance),
                balance=Decimal(balance),
                currency="USD" if n == 5 else "CNY",
                days_past_due=dpd,
                created_at=T0,
            )
            case = Case(
                tenant_id=bank.id,
                debtor_id=d.id,
                status="in_progress",
                agent_id=owner[n][0],
                team_id=owner[n][1],
                opened_by="test",
                created_at=T0,
                status_changed_at=T0,
            )
            s.add_all([debt, case])
            s.flush()
            p.debts[f"D{n}"] = debt.id
            p.cases[n] = case.id

        def call(
            name: str, n: int, campaign: str, dialed: datetime, outcome: str, **kw: Any
        ) -> None:
            a = _attempt(
                p, n, campaign, dialed, outcome, phone=phones[n].id, debtor_id=debtors[n].id, **kw
            )
            s.add(a)
            s.flush()
            p.attempts[name] = a.id

        call("A1", 1, "early", sh("10", "10:00:00"), "answered", agent="a1", talk_s=180)
        call("A2", 1, "early", sh("10", "11:00:00"), "no_answer")
        call("A3", 2, "early", sh("10", "12:00:00"), "answered", agent="a2", talk_s=60)
        call("A4", 2, "early", sh("10", "13:00:00"), "answered", abandoned=True)
        call("A5", 3, "early", sh("10", "23:30:00"), "answered", agent="a2", talk_s=120)
        call("A6", 4, "late", sh("10", "09:00:00"), "machine")
        call("A7", 4, "late", sh("10", "09:30:00"), "answered", agent="a1", talk_s=300)
        call("A8", 3, "late", sh("11", "00:10:00"), "answered", agent="a1", talk_s=60)
        call(
            "A9",
            1,
            "early",
            sh("09", "23:59:30"),
            "answered",
            answered=sh("10", "00:00:10"),
            abandoned=True,
        )
        call(
            "X1",
            6,
            "theirs",
            sh("10", "10:00:00"),
            "answered",
            agent="z",
            talk_s=999,
            tenant=other.id,
        )

        def dispose(attempt: str, agent: str, code: str, amount: int | None = None) -> int:
            disp = Disposition(
                tenant_id=bank.id,
                attempt_id=p.attempts[attempt],
                agent_id=agent,
                code=code,
                promise_amount=None if amount is None else Decimal(amount),
                promise_date=date(2026, 3, 10) if amount else None,
                created_at=sh("10", "23:59:00") if attempt != "A8" else sh("11", "00:20:00"),
            )
            s.add(disp)
            s.flush()
            return disp.id

        ptp1 = dispose("A1", "a1", "promise_to_pay", 300)
        dispose("A3", "a2", "wrong_party")
        dispose("A5", "a2", "callback")
        dispose("A5", "a2", "refused")
        ptp7 = dispose("A7", "a1", "promise_to_pay", 1000)
        dispose("A8", "a1", "promise_to_pay", 50)
        for attempt, score in (("A1", 80), ("A7", 100), ("A3", 70), ("A8", 10)):
            s.add(
                QaScore(
                    attempt_id=p.attempts[attempt],
                    tenant_id=bank.id,
                    score=score,
                    flags=0,
                    scored_at=T0,
                )
            )

        def promise(case_n: int, due: date, status: str, disposition: int | None) -> None:
            s.add(
                Promise(
                    tenant_id=bank.id,
                    case_id=p.cases[case_n],
                    amount=Decimal(100),
                    currency="CNY",
                    promised_on=date(2026, 3, 1),
                    due_date=due,
                    status=status,
                    disposition_id=disposition,
                    created_by="test",
                    created_at=T0,
                )
            )

        promise(1, DAY, "kept", ptp1)
        promise(4, DAY, "broken", ptp7)
        promise(2, DAY, "cancelled", None)
        promise(3, DAY, "kept", None)
        promise(1, date(2026, 3, 12), "open", None)
        for ext, n, amount, currency, paid in (
            ("pay1", 1, 300, "CNY", DAY),
            ("pay2", 3, 200, "CNY", DAY),
            ("pay3", 5, 100, "USD", DAY),
            ("pay4", 2, 400, "CNY", date(2026, 3, 12)),
        ):
            s.add(
                Payment(
                    tenant_id=bank.id,
                    case_id=p.cases[n],
                    debt_id=p.debts[f"D{n}"],
                    external_id=ext,
                    amount=Decimal(amount),
                    currency=currency,
                    paid_on=paid,
                    source="csv",
                    recorded_by="test",
                    created_at=T0,
                )
            )
    return p


def snapshots(store: Store, p: Portfolio) -> None:
    """The opening (03-09, the debts as seeded) and closing (03-10) snapshots."""
    took = take_snapshot(store, p.tenant, date(2026, 3, 9), today=DAY, now=sh("09", "23:55:00"))
    assert (took.debts, took.owing) == (5, 5)
    closing = {"D1": (1000, 21), "D2": (2000, 61), "D3": (0, 0), "D4": (3000, 101), "D5": (100, 11)}
    with store.begin() as conn:
        for ext, (balance, dpd) in closing.items():
            conn.execute(
                update(Debt)
                .where(Debt.id == p.debts[ext])
                .values(balance=Decimal(balance), days_past_due=dpd)
            )
    took = take_snapshot(store, p.tenant, DAY, today=DAY, now=sh("10", "23:55:00"))
    assert (took.debts, took.owing) == (5, 4)


@pytest.fixture
def portfolio(store: Store) -> Portfolio:
    p = seed(store)
    snapshots(store, p)
    return p


def report(store: Store, p: Portfolio, **kw: Any) -> Report:
    return daily_report(store, p.tenant, DAY, tz=SHANGHAI, now=sh("11", "06:00:00"), **kw)


def row(r: Report, label: str) -> dict[str, Any]:
    [found] = [x for x in r.as_json()["rows"] if x["label"] == label]
    return dict(found)


def test_daily_report_by_campaign_equals_the_hand_computed_figures(
    store: Store, portfolio: Portfolio
) -> None:
    r = report(store, portfolio)
    data = r.as_json()
    assert (data["start"], data["end"], data["currency"]) == ("2026-03-10", "2026-03-10", "CNY")
    early = row(r, "early")
    # A1..A5 (A9 was dialled the day before; A8 the day after)
    assert early["attempts"] == 5
    assert early["contacts"] == 4 and early["contact_rate"] == pytest.approx(4 / 5)
    assert early["right_party_contacts"] == 2  # A1 promise, A5 callback+refused (once)
    assert early["right_party_contact_rate"] == pytest.approx(2 / 5)
    assert early["promises"] == 1 and early["promise_rate"] == pytest.approx(1 / 2)
    assert early["promised_amount"] == "300.00"
    # answered on the day: A1, A3, A4, A5 and A9 (answered after midnight); abandoned A4, A9
    assert (early["live_answers"], early["abandoned"]) == (5, 2)
    assert early["abandon_rate"] == pytest.approx(2 / 5)
    assert early["talk_seconds"] == pytest.approx(360)
    assert (early["promises_due"], early["promises_kept"]) == (1, 1)
    assert early["kept_promise_rate"] == 1.0
    # a payment belongs to no campaign: money and the portfolio only in the totals
    assert early["collected"] is None and early["recovery_rate"] is None
    late = row(r, "late")
    assert (late["attempts"], late["contacts"], late["right_party_contacts"]) == (2, 1, 1)
    assert (late["promises"], late["promised_amount"], late["promise_rate"]) == (1, "1000.00", 1.0)
    assert (late["live_answers"], late["abandoned"], late["abandon_rate"]) == (1, 0, 0.0)
    assert late["kept_promise_rate"] == 0.0  # P2 broken
    none = row(r, "(no campaign)")  # P4, kept, taken on the page rather than on a call
    assert (none["attempts"], none["promises_due"], none["kept_promise_rate"]) == (0, 1, 1.0)
    assert none["contact_rate"] is None
    t = data["totals"]
    assert (t["attempts"], t["contacts"], t["right_party_contacts"], t["promises"]) == (7, 5, 3, 2)
    assert t["contact_rate"] == pytest.approx(5 / 7)
    assert t["right_party_contact_rate"] == pytest.approx(3 / 7)
    assert t["promise_rate"] == pytest.approx(2 / 3)
    assert t["promised_amount"] == "1300.00"
    assert t["abandon_rate"] == pytest.approx(2 / 6)
    assert t["talk_seconds"] == pytest.approx(660)
    assert t["kept_promise_rate"] == pytest.approx(2 / 3)
    assert t["collected"] == "500.00"  # 300 + 200 CNY; the USD payment is noted, not added
    assert any("100.00 USD" in n for n in data["notes"])
    # assigned: every CNY debt owing at the opening 1300+2000+200+3000; recovered 300+200
    assert (t["assigned"], t["recovered"]) == ("6500.00", "500.00")
    assert t["recovery_rate"] == pytest.approx(500 / 6500)
    # of four CNY debts owing at the opening, D2 rolled 31-60 -> 61-90
    assert (t["owing_at_opening"], t["rolled_forward"]) == (4, 1)
    assert t["roll_forward_rate"] == pytest.approx(0.25)


def test_agent_performance_counts_calls_talk_promises_money_and_qa(
    store: Store, portfolio: Portfolio
) -> None:
    agents = {a["agent_id"]: a for a in report(store, portfolio).as_json()["agents"]}
    assert set(agents) == {"a1", "a2"}  # the other tenant's agent z never shows
    a1, a2 = agents["a1"], agents["a2"]
    assert (a1["calls"], a1["talk_seconds"], a1["promises"]) == (2, 480, 2)
    assert (a1["promised_amount"], a1["collected"]) == ("1300.00", "300.00")
    assert (a1["qa_score"], a1["qa_scored_calls"]) == (90.0, 2)  # A1 80, A7 100 (A8 next day)
    assert (a2["calls"], a2["talk_seconds"], a2["promises"]) == (2, 180, 0)
    assert (a2["collected"], a2["qa_score"]) == ("200.00", 70.0)


def test_by_collector_rates_follow_the_cases_collector(store: Store, portfolio: Portfolio) -> None:
    r = report(store, portfolio, by=GroupBy.COLLECTOR)
    a1, a2, none = row(r, "a1"), row(r, "a2"), row(r, "(no collector)")
    assert (a1["attempts"], a1["contacts"], a1["right_party_contacts"]) == (4, 3, 1)
    assert (a2["attempts"], a2["contacts"], a2["right_party_contacts"]) == (1, 1, 1)
    assert (none["attempts"], none["contacts"], none["promises"]) == (2, 1, 1)
    assert (a1["kept_promise_rate"], a2["kept_promise_rate"], none["kept_promise_rate"]) == (
        1.0,
        1.0,
        0.0,
    )
    assert (a1["collected"], a2["collected"], none["collected"]) == ("300.00", "200.00", "0.00")
    assert (a1["assigned"], a1["recovered"]) == ("3300.00", "300.00")
    assert a1["recovery_rate"] == pytest.approx(300 / 3300)
    assert (a2["assigned"], a2["recovery_rate"]) == ("200.00", 1.0)
    assert (none["assigned"], none["recovery_rate"]) == ("3000.00", 0.0)
    assert (a1["roll_forward_rate"], a2["roll_forward_rate"]) == (0.5, 0.0)


def test_by_team_groups_by_the_cases_team(store: Store, portfolio: Portfolio) -> None:
    r = report(store, portfolio, by=GroupBy.TEAM)
    alpha, none = row(r, "Alpha"), row(r, "(no team)")
    assert (alpha["attempts"], none["attempts"]) == (4, 3)
    assert (alpha["assigned"], alpha["recovered"]) == ("3300.00", "300.00")
    assert (none["assigned"], none["recovered"]) == ("3200.00", "200.00")
    assert r.as_json()["totals"]["attempts"] == 7


def test_roll_matrix_moves_each_debt_between_its_opening_and_closing_buckets(
    store: Store, portfolio: Portfolio
) -> None:
    roll = report(store, portfolio).as_json()["roll"]
    assert (roll["opening"], roll["closing"]) == ("2026-03-09", "2026-03-10")
    cells = {(c["from"], c["to"]): (c["debts"], c["balance"]) for c in roll["matrix"]}
    assert cells == {
        ("current", "paid"): (1, "200.00"),
        ("1-30", "1-30"): (1, "1300.00"),
        ("31-60", "61-90"): (1, "2000.00"),
        ("91-120", "91-120"): (1, "3000.00"),
    }
    assert roll["roll_forward"] == {"current": 0.0, "1-30": 0.0, "31-60": 1.0, "91-120": 0.0}


def test_a_week_counts_each_day_on_the_call_centers_clock(
    store: Store, portfolio: Portfolio
) -> None:
    data = report(store, portfolio, period=Period.WEEK).as_json()
    assert (data["start"], data["end"]) == ("2026-03-09", "2026-03-15")
    days = {d["date"]: d for d in data["days"]}
    assert len(days) == 7
    assert (days["2026-03-09"]["attempts"], days["2026-03-09"]["contacts"]) == (1, 1)  # A9
    assert (days["2026-03-10"]["attempts"], days["2026-03-10"]["promises"]) == (7, 2)
    assert (days["2026-03-11"]["attempts"], days["2026-03-11"]["promises"]) == (1, 1)  # A8
    assert (days["2026-03-10"]["collected"], days["2026-03-12"]["collected"]) == (
        "500.00",
        "400.00",
    )
    assert days["2026-03-13"]["contact_rate"] is None
    t = data["totals"]
    assert (t["attempts"], t["promises"], t["collected"]) == (9, 3, "900.00")
    # the opening snapshot (03-08) was never taken: said, not guessed
    assert t["assigned"] is None and t["recovery_rate"] is None and data["roll"] is None
    assert any("no snapshot of 2026-03-08" in n for n in data["notes"])


def test_a_month_runs_from_its_first_to_its_last_day(store: Store, portfolio: Portfolio) -> None:
    data = report(store, portfolio, period=Period.MONTH).as_json()
    assert (data["start"], data["end"], len(data["days"])) == ("2026-03-01", "2026-03-31", 31)
    assert data["totals"]["attempts"] == 9


def test_a_snapshot_taken_twice_replaces_the_first(store: Store, portfolio: Portfolio) -> None:
    again = take_snapshot(store, portfolio.tenant, DAY, today=DAY, now=sh("10", "23:59:00"))
    assert (again.debts, again.owing, again.replaced) == (5, 4, 5)
    assert report(store, portfolio).as_json()["totals"]["roll_forward_rate"] == 0.25


def test_a_snapshot_of_a_day_the_store_cannot_know_is_refused(
    store: Store, portfolio: Portfolio
) -> None:
    with pytest.raises(SnapshotRefused, match="only today's or yesterday's"):
        take_snapshot(
            store, portfolio.tenant, date(2026, 3, 8), today=DAY, now=sh("10", "12:00:00")
        )
    with pytest.raises(SnapshotRefused, match="a day to come"):
        take_snapshot(
            store, portfolio.tenant, date(2026, 3, 11), today=DAY, now=sh("10", "12:00:00")
        )


def test_an_unknown_tenant_is_named_in_the_error(store: Store) -> None:
    with pytest.raises(ReportError, match="no tenant with id 999"):
        daily_report(store, 999, DAY)


def test_csv_export_reads_back_to_the_same_figures(store: Store, portfolio: Portfolio) -> None:
    r = report(store, portfolio)
    rows = list(csv.DictReader(io.StringIO(render.to_csv(r))))
    by_label = {x["label"]: x for x in rows}
    assert set(by_label) == {"early", "late", "(no campaign)", "All"}
    assert by_label["All"]["attempts"] == "7"
    assert float(by_label["early"]["contact_rate"]) == pytest.approx(0.8)
    assert by_label["All"]["collected"] == "500.00"
    assert by_label["early"]["collected"] == ""


def test_json_export_round_trips(store: Store, portfolio: Portfolio) -> None:
    r = report(store, portfolio, by=GroupBy.COLLECTOR)
    text = render.to_json(r)
    assert json.loads(text) == json.loads(json.dumps(r.as_json()))
    assert json.loads(text)["definitions"]["recovery_rate"].startswith("payments dated")


def _png_size_and_ink(path: Path) -> tuple[tuple[int, int], float]:
    import matplotlib.image

    pixels = matplotlib.image.imread(str(path))
    ink = float((pixels[..., :3].mean(axis=2) < 0.9).mean())
    return (pixels.shape[1], pixels.shape[0]), ink


def test_png_report_is_an_a4_page_with_a_table_and_charts(
    store: Store, portfolio: Portfolio, tmp_path: Path
) -> None:
    out = tmp_path / "report.png"
    out.write_bytes(render.to_png(report(store, portfolio, period=Period.WEEK)))
    (width, height), ink = _png_size_and_ink(out)
    assert height > width > 1000  # portrait A4 at 150 dpi: 1240 x 1754
    assert 0.01 < ink < 0.5  # not blank, not a black page


def test_pdf_report_parses_with_its_pages(
    store: Store, portfolio: Portfolio, tmp_path: Path
) -> None:
    pdf = render.to_pdf(report(store, portfolio, by=GroupBy.COLLECTOR))
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    assert render.pdf_page_count(pdf) == 2  # figures and charts; agents and roll rates


def _dialer(
    *args: str, env: dict[str, str], timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dialer.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.mark.slow
def test_report_command_on_a_demo_store_agrees_with_the_demo_summary(tmp_path: Path) -> None:
    from dialer.demo import business_afternoon

    data = tmp_path / "demo"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{data / 'dialer.db'}"}
    env.pop("DIALER_DATA_DIR", None)
    demo = _dialer(
        "demo",
        "--debtors",
        "40",
        "--agents",
        "4",
        "--time-scale",
        "300",
        "--data-dir",
        str(data),
        "--json",
        "--quiet",
        "--transcribe",
        "off",
        env=env,
    )
    assert demo.returncode == 0, demo.stderr
    summary = json.loads(demo.stdout.strip().splitlines()[-1])
    day = business_afternoon().date().isoformat()  # the demo's simulated calling day
    where = ["--tenant", "default", "--tz", "America/New_York"]
    snap = _dialer("report", "snapshot", *where, env=env)
    assert snap.returncode == 0, snap.stderr
    demo_store = open_store(env["DATABASE_URL"])
    with demo_store.session() as s:
        debts = s.scalars(select(Debt)).all()
    demo_store.close()
    owing = [d for d in debts if d.balance > 0 and d.status not in ("settled", "closed")]
    assert f"{len(debts)} debts, {len(owing)} owing" in snap.stdout
    got = _dialer("report", "daily", "--date", day, "--format", "json", *where, env=env)
    assert got.returncode == 0, got.stderr
    totals = json.loads(got.stdout)["totals"]
    assert totals["attempts"] == summary["attempts"] > 0
    assert totals["contacts"] == summary["answered"]
    assert totals["abandoned"] == summary["abandoned"]
    pdf = tmp_path / "out" / "report.pdf"
    made = _dialer(
        "report",
        "daily",
        "--date",
        day,
        "--format",
        "pdf",
        "--out",
        str(pdf),
        "--by",
        "collector",
        *where,
        env=env,
    )
    assert made.returncode == 0, made.stderr
    assert render.pdf_page_count(pdf.read_bytes()) == 2
    bad = _dialer("report", "daily", "--tenant", "nobody", env=env)
    assert bad.returncode == 2 and "--tenant 'nobody': no such tenant" in bad.stderr


def test_migration_0014_creates_exactly_what_the_snapshot_model_describes(store: Store) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from dialer.reports.tables import ReportSnapshot
    from dialer.store.models import Base

    ours = (ReportSnapshot.__tablename__, "ix_call_attempts_tenant_id_dialed_at")
    ours += ("ix_dispositions_tenant_id_created_at", "ix_payments_tenant_id_paid_on")
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = [
            d for d in compare_metadata(context, Base.metadata) if any(n in repr(d) for n in ours)
        ]
    assert differences == []


def test_bench_report_counts_every_attempt_it_made(store: Store) -> None:
    from dialer.reports.bench import bench_report

    result = bench_report(store, 3000)
    assert result.report_attempts == result.attempts == 3000
    assert result.debtors == 1000 and result.report_s > 0
