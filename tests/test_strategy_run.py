"""The day's strategy run and the nightly re-score on SQLite and PostgreSQL: a new case is
scored and given the strategy the rules say, with the reasons; a broken promise moves it on;
an SMS the guard refuses at 22:30 in Beijing goes the next morning; a day run twice does
nothing twice; a manager's override holds through the nightly re-choice; stored explanations
add up to the score."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from compliance_guard.models import Channel
from dialer.cases import service
from dialer.cases.errors import CaseRefused
from dialer.cases.models import Actor
from dialer.cases.promises import run_promises
from dialer.cases.rescore import rescore
from dialer.cases.scoring import (
    CaseFeatures,
    Scorer,
    score,
    score_model_from_mapping,
    terms_to_json,
)
from dialer.cases.state import open_cases
from dialer.cases.strategy import shipped_score_model, shipped_strategies
from dialer.cases.strategy_run import (
    StrategyRunError,
    clear_override,
    override_strategy,
    run_strategies,
    strategy_templates,
)
from dialer.messaging.file_provider import FileProvider
from dialer.messaging.service import MessagingService, MessagingSettings
from dialer.store.db import Store, open_store
from dialer.store.models import Case, CaseHistory, CaseStrategyAction, Debt
from tests.messaging_fixtures import Clock, seed, sql_guard

# 12:00 in Beijing on Wednesday 2 December 2026; 22:30 the same evening; 08:00 the next day.
MIDDAY = datetime(2026, 12, 2, 4, 0, tzinfo=UTC)
LATE_EVENING = datetime(2026, 12, 2, 14, 30, tzinfo=UTC)
NEXT_MORNING = datetime(2026, 12, 3, 0, 0, tzinfo=UTC)
MANAGER = Actor.user("mei")


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    opened = open_store(database_url)
    yield opened
    opened.close()


@dataclass
class World:
    store: Store
    tenant_id: int
    cases: dict[str, int]  # debtor's external id -> case id
    clock: Clock
    outbox: Path
    messaging: MessagingService

    def run(self, now: datetime, today: date | None = None, **kwargs: Any) -> Any:
        self.clock.now = now
        return run_strategies(
            self.store,
            self.tenant_id,
            shipped_strategies(),
            shipped_score_model(),
            today=today or now.date(),
            now=now,
            messaging=self.messaging,
            templates=strategy_templates(),
            **kwargs,
        )

    def case(self, debtor: str) -> Any:
        with self.store.begin() as conn:
            return conn.execute(select(Case).where(Case.id == self.cases[debtor])).one()

    def sent(self) -> list[dict[str, str]]:
        if not self.outbox.exists():
            return []
        lines = self.outbox.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines]

    def actions(self, debtor: str) -> list[Any]:
        with self.store.begin() as conn:
            return list(
                conn.execute(
                    select(CaseStrategyAction)
                    .where(CaseStrategyAction.case_id == self.cases[debtor])
                    .order_by(CaseStrategyAction.id)
                ).all()
            )

    def history(self, debtor: str, field: str) -> list[tuple[str | None, str | None, str]]:
        with self.store.begin() as conn:
            rows = conn.execute(
                select(CaseHistory.old_value, CaseHistory.new_value, CaseHistory.reason)
                .where(CaseHistory.case_id == self.cases[debtor], CaseHistory.field == field)
                .order_by(CaseHistory.id)
            ).all()
        return [(r[0], r[1], r[2]) for r in rows]


def world(store: Store, tmp_path: Path, days_past_due: dict[str, int]) -> World:
    """Debtors D-1.. of the messaging fixtures (a Chinese mobile and an e-mail address each,
    1,000 + i CNY owed of 2,000), each with their case and the given days past due."""
    seeded = seed(store, count=len(days_past_due))
    with store.begin() as conn:
        for debtor, dpd in days_past_due.items():
            conn.execute(
                update(Debt)
                .where(Debt.debtor_id == seeded.debtors[debtor])
                .values(days_past_due=dpd)
            )
        open_cases(conn, seeded.tenant_id, seeded.debtors.values(), Actor.system("import"), MIDDAY)
        cases = {
            external: conn.execute(select(Case.id).where(Case.debtor_id == debtor_id)).scalar_one()
            for external, debtor_id in seeded.debtors.items()
        }
    clock = Clock(MIDDAY)
    outbox = tmp_path / "outbox.jsonl"
    providers = {
        Channel.SMS: FileProvider(Channel.SMS, outbox),
        Channel.EMAIL: FileProvider(Channel.EMAIL, outbox),
    }
    settings = MessagingSettings(tenant="bank", payment_link="https://pay.example.cn/{debtor}")
    messaging = MessagingService(store, sql_guard(store), providers, settings, clock=clock)
    return World(store, seeded.tenant_id, cases, clock, outbox, messaging)


def test_a_new_case_is_scored_and_gets_the_strategy_the_rules_say_with_the_reasons(
    store: Store, tmp_path: Path
) -> None:
    w = world(store, tmp_path, {"D-1": 12, "D-2": 30})
    report = w.run(MIDDAY)
    assert (report.cases, report.chosen, report.scored) == (2, 2, 2)

    early = w.case("D-1")
    # 20 base + 0 (under 30 days) + 5 (nothing paid) + 10 (never reached) + 0 (1,001 owed)
    assert (early.risk_score, early.risk_band) == (35.0, "low")
    assert early.strategy == "gentle_reminder"
    assert json.loads(early.strategy_reasons) == [
        "rule 4",
        "days past due 12 <= 29",
        "risk 35 is low",
    ]
    assert w.history("D-1", "strategy") == [
        (None, "gentle_reminder", "rule 4; days past due 12 <= 29; risk 35 is low")
    ]
    # Its first step, the gentle SMS, went at noon in Beijing, in Chinese.
    sms = [m for m in w.sent() if m["channel"] == "sms"]
    assert [m["to"] for m in sms] == ["+8613800138001"]
    assert "张1您好" in sms[0]["body"]
    [action] = w.actions("D-1")
    assert (action.kind, action.template, action.outcome) == ("sms", "reminder_gentle", "sent")
    assert action.message_id is not None

    late = w.case("D-2")
    assert (late.risk_score, late.risk_band) == (45.0, "medium")
    assert late.strategy == "firm_reminder"
    assert json.loads(late.strategy_reasons) == ["no rule matched: the default"]
    # The firm reminder starts with a call: the case is on the standard campaign's list.
    assert (late.queued_campaign, late.queued_step, late.queued_since) == (
        "standard",
        0,
        MIDDAY.date(),
    )
    assert [(a.kind, a.campaign, a.outcome) for a in w.actions("D-2")] == [
        ("call", "standard", "queued")
    ]
    assert report.actions == {"sms": {"sent": 1}, "call": {"queued": 1}}


def test_a_broken_promise_moves_the_case_on_to_negotiation(store: Store, tmp_path: Path) -> None:
    w = world(store, tmp_path, {"D-1": 30})
    w.run(MIDDAY)
    assert w.case("D-1").strategy == "firm_reminder"
    service.make_promise(
        store,
        w.tenant_id,
        w.cases["D-1"],
        Decimal(500),
        date(2026, 12, 3),
        Actor.agent("a1"),
        MIDDAY,
    )
    run_promises(store, date(2026, 12, 4), MIDDAY + timedelta(days=2))
    assert w.case("D-1").status == "broken_promise"

    report = w.run(MIDDAY + timedelta(days=2))
    case = w.case("D-1")
    assert case.strategy == "negotiation"
    assert report.rechosen == 1
    assert "broken promises 1 >= 1" in json.loads(case.strategy_reasons)
    assert w.history("D-1", "strategy")[-1][:2] == ("firm_reminder", "negotiation")
    assert case.queued_campaign == "negotiation"
    today = [a for a in w.actions("D-1") if a.run_date == date(2026, 12, 4)]
    assert [(a.kind, a.campaign or a.template, a.outcome) for a in today] == [
        ("call", "negotiation", "queued"),
        ("email", "settlement_offer", "sent"),
    ]
    [offer] = w.sent()
    assert (offer["channel"], offer["to"]) == ("email", "d1@example.com")
    assert offer["subject"].startswith("协商还款方案")


def test_an_sms_refused_at_half_past_ten_in_beijing_goes_the_next_morning(
    store: Store, tmp_path: Path
) -> None:
    w = world(store, tmp_path, {"D-1": 12})
    evening = w.run(LATE_EVENING)
    assert evening.actions == {"sms": {"scheduled": 1}}
    assert w.sent() == []
    [waiting] = w.actions("D-1")
    assert waiting.outcome == "scheduled"
    assert "goes at 2026-12-03T00:00:00+00:00" in waiting.detail

    morning = w.run(NEXT_MORNING)
    assert morning.earlier == {"sent": 1}
    assert morning.actions == {}  # the gentle reminder waits three days after its SMS
    assert [m["to"] for m in w.sent()] == ["+8613800138001"]
    [done] = w.actions("D-1")
    assert (done.id, done.outcome, done.run_date) == (waiting.id, "sent", date(2026, 12, 2))


def test_a_day_run_twice_sends_queues_and_moves_nothing_twice(store: Store, tmp_path: Path) -> None:
    w = world(store, tmp_path, {"D-1": 12, "D-2": 30, "D-3": 130})
    first = w.run(MIDDAY)
    assert first.actions["sms"] == {"sent": 2}  # gentle reminder, pre-legal notice
    sent, actions = w.sent(), [w.actions(d) for d in w.cases]
    cases = [w.case(d) for d in w.cases]

    again = w.run(MIDDAY + timedelta(hours=3))
    assert (again.already_run, again.actions, again.earlier) == (3, {}, {})
    assert w.sent() == sent
    assert [w.actions(d) for d in w.cases] == actions
    assert [w.case(d) for d in w.cases] == cases


def test_a_managers_override_holds_through_the_nightly_re_choice(
    store: Store, tmp_path: Path
) -> None:
    w = world(store, tmp_path, {"D-1": 30})
    w.run(MIDDAY)
    override_strategy(
        store,
        w.tenant_id,
        w.cases["D-1"],
        "gentle_reminder",
        shipped_strategies(),
        MANAGER,
        "long-standing customer, lost his job",
        MIDDAY,
    )
    service.make_promise(
        store, w.tenant_id, w.cases["D-1"], Decimal(100), date(2026, 12, 3), MANAGER, MIDDAY
    )
    run_promises(store, date(2026, 12, 4), MIDDAY + timedelta(days=2))

    w.run(MIDDAY + timedelta(days=2))
    held = w.case("D-1")
    # A broken promise would choose negotiation; the manager's choice stands.
    assert held.strategy == "gentle_reminder"
    assert (held.override_by, held.override_why) == (
        "user:mei",
        "long-standing customer, lost his job",
    )
    assert w.history("D-1", "strategy")[-1] == (
        "firm_reminder",
        "gentle_reminder",
        "override: long-standing customer, lost his job",
    )
    assert [a.template for a in w.actions("D-1") if a.run_date == date(2026, 12, 4)] == [
        "reminder_gentle"
    ]

    assert clear_override(
        store, w.tenant_id, w.cases["D-1"], MANAGER, "he found work", MIDDAY + timedelta(days=2)
    )
    w.run(MIDDAY + timedelta(days=3))
    assert w.case("D-1").strategy == "negotiation"


def test_an_override_names_an_unknown_strategy_and_changes_nothing(
    store: Store, tmp_path: Path
) -> None:
    w = world(store, tmp_path, {"D-1": 30})
    with pytest.raises(CaseRefused, match="strategy: no strategy 'lenient'"):
        override_strategy(
            store,
            w.tenant_id,
            w.cases["D-1"],
            "lenient",
            shipped_strategies(),
            MANAGER,
            "x",
            MIDDAY,
        )
    assert w.case("D-1").override_at is None


def test_a_dry_run_counts_what_would_be_done_and_writes_nothing(
    store: Store, tmp_path: Path
) -> None:
    w = world(store, tmp_path, {"D-1": 12, "D-2": 30})
    report = w.run(MIDDAY, dry_run=True)
    assert report.actions == {"sms": {"would": 1}, "call": {"would": 1}}
    assert w.sent() == []
    assert w.case("D-1").strategy is None
    assert w.actions("D-1") == []


def test_a_strategy_naming_a_missing_template_stops_the_run_before_anything_is_done(
    store: Store, tmp_path: Path
) -> None:
    w = world(store, tmp_path, {"D-1": 12})
    templates = strategy_templates()
    del templates["reminder_firm"]
    with pytest.raises(StrategyRunError, match=r"strategies\.firm_reminder\.steps\[3\]\.template"):
        run_strategies(
            store,
            w.tenant_id,
            shipped_strategies(),
            shipped_score_model(),
            today=MIDDAY.date(),
            now=MIDDAY,
            messaging=w.messaging,
            templates=templates,
        )
    assert w.case("D-1").strategy is None


def test_the_nightly_re_score_stores_explanations_that_add_up_to_the_score(
    store: Store, tmp_path: Path
) -> None:
    w = world(store, tmp_path, {"D-1": 12, "D-2": 75, "D-3": 200})
    model = shipped_score_model()
    report = rescore(store, model, today=MIDDAY.date(), now=MIDDAY, tenant_id=w.tenant_id)
    assert report.scored == 3
    # 20 + (0, 20, 40 for days past due) + 5 + 10 + 0
    expected = {"D-1": (35.0, "low"), "D-2": (55.0, "medium"), "D-3": (75.0, "high")}
    assert report.bands == {"low": 1, "medium": 1, "high": 1}
    for debtor, (value, band) in expected.items():
        case = w.case(debtor)
        assert (case.risk_score, case.risk_band) == (value, band)
        terms = json.loads(case.risk_terms)
        assert sum(points for _f, _v, points, _r in terms) == pytest.approx(value)
        assert case.score_model == "collections-points-v1"
        assert case.scored_at == MIDDAY
    dpd_term = next(t for t in json.loads(w.case("D-2").risk_terms) if t[0] == "days_past_due")
    assert dpd_term == ["days_past_due", "75", 20.0, "days_past_due 75 (60 <= days_past_due < 90)"]
    # Running it again finds the same scores.
    rescore(store, model, today=MIDDAY.date(), now=MIDDAY, tenant_id=w.tenant_id)
    assert w.case("D-3").risk_score == 75.0
    with store.begin() as conn:
        assert conn.execute(select(func.count()).where(Case.risk_score.is_(None))).scalar() == 0


LOGISTIC = {
    "score": {
        "kind": "logistic",
        "intercept": -1.5,
        "coefficients": [
            {"feature": "days_past_due", "weight": 0.02},
            {"feature": "balance", "weight": 0.3, "transform": "log1p"},
            {"feature": "days_since_last_contact", "weight": 0.01, "missing": 90},
        ],
        "categories": [{"feature": "region", "weights": {"north": 0.4}}],
    }
}


@pytest.mark.parametrize("kind", ["points", "logistic"])
def test_the_bulk_scorer_gives_exactly_what_the_model_gives(kind: str) -> None:
    model = shipped_score_model() if kind == "points" else score_model_from_mapping(LOGISTIC)
    scorer = Scorer(model)
    rnd = random.Random(7)
    for _ in range(5000):
        case = CaseFeatures(
            days_past_due=rnd.choice([0, 29, 30, 59, 60, 179, 180, rnd.randint(0, 400)]),
            balance=rnd.choice([0.0, 499.99, 500.0, 5000.0, rnd.uniform(0, 1e5)]),
            principal=1000.0,
            broken_promises=rnd.randint(0, 3),
            paid_ratio=rnd.choice([0.0, 0.0999, 0.1, 0.5, rnd.random()]),
            days_since_last_contact=rnd.choice([None, 0, 13, 14, 60, rnd.randint(0, 300)]),
            region=rnd.choice([None, "north", "south"]),
        )
        expected = score(model, case)
        got, terms = scorer.score_json(case)
        assert got == expected
        assert terms == terms_to_json(expected.terms)
        assert scorer.value_json(case) == (expected.value, expected.band, terms)


def test_the_case_shows_its_score_term_by_term_its_strategy_and_why(
    store: Store, tmp_path: Path
) -> None:
    w = world(store, tmp_path, {"D-1": 30})
    w.run(MIDDAY)
    override_strategy(
        store,
        w.tenant_id,
        w.cases["D-1"],
        "negotiation",
        shipped_strategies(),
        MANAGER,
        "asked for a plan",
        MIDDAY,
    )
    view = service.get_case(store, w.tenant_id, w.cases["D-1"])
    assert (view.risk_score, view.risk_band) == (45.0, "medium")
    assert sum(t.points for t in view.risk_terms) == 45.0
    assert [t.feature for t in view.risk_terms] == [
        "base",
        "days_past_due",
        "broken_promises",
        "paid_ratio",
        "days_since_last_contact",
        "balance",
    ]
    assert (view.strategy, view.strategy_step) == ("negotiation", 0)
    assert view.strategy_reasons == ("chosen by user:mei: asked for a plan",)
    assert (view.override_by, view.override_why) == ("user:mei", "asked for a plan")
    assert view.queued_campaign == "standard"  # from the firm reminder's call, until it moves
    # The cases API hands out the same.
    from dialer.web.cases_api import _read

    read = _read(view).model_dump()
    assert read["strategy"] == "negotiation"
    assert read["risk_terms"][1] == {
        "feature": "days_past_due",
        "value": "30",
        "points": 10.0,
        "reason": "days_past_due 30 (30 <= days_past_due < 60)",
    }


def test_the_commands_score_run_dry_and_override_with_clear_answers(
    store: Store,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from dialer.cli import main

    w = world(store, tmp_path, {"D-1": 12, "D-2": 30})
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.chdir(tmp_path)
    assert main(["cases", "score", "--tenant", "bank", "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert (scored["scored"], scored["bands"]) == (2, {"low": 1, "medium": 1, "high": 0})

    assert main(["strategy", "run", "--tenant", "bank", "--date", "2026-12-02", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "2 open cases, 2 given a strategy" in out
    assert "dry run: nothing written or sent" in out
    assert "sms        1 would" in out and "call       1 would" in out
    assert w.case("D-1").strategy is None

    case = str(w.cases["D-2"])
    assert (
        main(
            ["strategy", "set", case, "legal", "--why", "fraud", "--by", "mei", "--tenant", "bank"]
        )
        == 0
    )
    assert capsys.readouterr().out.strip() == f"case {case}: strategy legal, chosen by user:mei"
    assert w.case("D-2").override_why == "fraud"
    assert main(["strategy", "set", "999999", "legal", "--why", "x", "--tenant", "bank"]) == 2
    assert "no case 999999" in capsys.readouterr().err


def test_the_nightly_run_follows_the_strategies_a_manager_saved_at_the_pages(
    store: Store,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from dialer.cases.tenant_files import SHIPPED, Kind, TenantFiles
    from dialer.cli import main

    world(store, tmp_path, {"D-1": 12, "D-2": 30})
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.delenv("DIALER_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    # The manager drops the gentle SMS start for young debts: everyone is called first.
    shipped = SHIPPED.read_text("utf-8")
    gentle_rule = (
        '[[selection]]\nstrategy = "gentle_reminder"\n'
        'when = { days_past_due_max = 29, risk_band = ["low", "medium"] }\n'
    )
    assert gentle_rule in shipped
    files = TenantFiles(tmp_path / "dialer-data" / "tenants")
    opened = files.read("bank", Kind.STRATEGIES)
    files.save(
        "bank",
        Kind.STRATEGIES,
        shipped.replace(gentle_rule, ""),
        base_version=opened.version,
        now=datetime(2026, 12, 1, tzinfo=UTC),
    )
    args = ["strategy", "run", "--tenant", "bank", "--date", "2026-12-02", "--dry-run"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "call       2 would" in out and "sms" not in out

    # A file named on the command line still wins, for that run only.
    assert main([*args, "--strategies", str(SHIPPED)]) == 0
    out = capsys.readouterr().out
    assert "sms        1 would" in out and "call       1 would" in out

    # A saved file broken behind the pages' back stops the run, naming the problem.
    files.path("bank", Kind.STRATEGIES).write_text('default = "nowhere"\n', "utf-8")
    assert main(args) == 2
    assert "strategies" in capsys.readouterr().err
