"""Risk scores and strategies on worked examples: each score explained term by term, each step
kind, the choice of a strategy with its reasons, and a day run twice doing nothing twice."""

from __future__ import annotations

import json
import math
from datetime import date, timedelta
from pathlib import Path

import pytest

from dialer.cases.config_files import ConfigFileError
from dialer.cases.scoring import (
    CaseFeatures,
    RiskBand,
    load_score_model,
    score,
    score_model_from_mapping,
)
from dialer.cases.strategy import (
    ActionKind,
    CaseFacts,
    Position,
    Strategies,
    advance,
    choose,
    load_strategies,
    shipped_score_model,
    shipped_strategies,
    start,
    strategies_from_mapping,
)

DAY0 = date(2026, 3, 2)


def days(n: int) -> date:
    return DAY0 + timedelta(days=n)


# --- risk score ---------------------------------------------------------------------------


def test_the_shipped_points_score_is_the_sum_of_its_explained_terms() -> None:
    model = shipped_score_model()
    case = CaseFeatures(
        days_past_due=120, balance=1200.0, principal=1500.0, broken_promises=1, paid_ratio=0.2
    )
    s = score(model, case)
    # By hand: base 20, 120 days past due (90..180) 30, one broken promise 10, a fifth paid 0,
    # never reached 10, balance 1,200 (500..5,000) 0.
    assert s.value == 70
    assert s.band is RiskBand.HIGH
    assert [(t.feature, t.contribution) for t in s.terms] == [
        ("base", 20),
        ("days_past_due", 30),
        ("broken_promises", 10),
        ("paid_ratio", 0),
        ("days_since_last_contact", 10),
        ("balance", 0),
    ]
    assert sum(t.contribution for t in s.terms) == s.value
    assert "days_past_due 120 (90 <= days_past_due < 180)" in s.explain()
    assert "days_since_last_contact unknown" in s.explain()


def test_a_recent_small_debt_reached_last_week_is_low_risk() -> None:
    s = score(
        shipped_score_model(),
        CaseFeatures(days_past_due=12, balance=300.0, principal=300.0, days_since_last_contact=6),
    )
    # 20 + 0 + 0 + 5 (nothing paid) - 5 (reached recently) - 5 (small balance)
    assert s.value == 15
    assert s.band is RiskBand.LOW


def test_a_logistic_score_is_the_probability_of_not_paying_with_each_term() -> None:
    model = score_model_from_mapping(
        {
            "score": {
                "kind": "logistic",
                "intercept": -2.0,
                "coefficients": [
                    {"feature": "days_past_due", "weight": 0.02},
                    {"feature": "balance", "weight": 0.5, "transform": "log1p"},
                    {"feature": "kept_promises", "weight": -0.8},
                ],
                "categories": [{"feature": "region", "weights": {"CN-GD": 0.3}}],
            }
        }
    )
    case = CaseFeatures(
        days_past_due=50, balance=999.0, principal=1000.0, kept_promises=2, region="CN-GD"
    )
    s = score(model, case)
    logit = -2.0 + 0.02 * 50 + 0.5 * math.log1p(999.0) - 0.8 * 2 + 0.3
    assert s.value == round(100 / (1 + math.exp(-logit)), 2)
    assert s.value == 76.02
    assert s.band is RiskBand.HIGH  # bands by default: medium from 40 %, high from 70 %
    assert [t.feature for t in s.terms] == [
        "intercept",
        "days_past_due",
        "balance",
        "kept_promises",
        "region",
    ]
    assert sum(t.contribution for t in s.terms) == pytest.approx(logit)


@pytest.mark.parametrize(
    ("score_table", "expected"),
    [
        (
            {"kind": "points", "bands": {"medium": 1, "high": 2}, "numeric": [{"feature": "age"}]},
            "score.numeric[0].feature",
        ),
        (
            {
                "kind": "points",
                "bands": {"medium": 1, "high": 2},
                "numeric": [{"feature": "balance", "bins": [{"below": 5, "points": 1}]}],
            },
            "score.numeric[0]: the last bin must have no 'below'",
        ),
        ({"kind": "points", "bands": {"medium": 5, "high": 2}}, "score.bands: 'high' must be"),
        ({"kind": "magic"}, "score: Input tag 'magic'"),
        ({"kind": "logistic", "intercept": "high"}, "score.intercept:"),
    ],
)
def test_a_bad_score_file_names_the_key(score_table: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigFileError) as err:
        score_model_from_mapping({"score": score_table}, "risk.toml")
    assert str(err.value).startswith("risk.toml: ")
    assert expected in str(err.value)


def test_a_score_file_with_a_syntax_error_says_where(tmp_path: Path) -> None:
    bad = tmp_path / "risk.toml"
    bad.write_text('[score]\nkind = "points"\nbase = \n')
    with pytest.raises(ConfigFileError, match=r"risk\.toml: .*line 3"):
        load_score_model(str(bad))


# --- choosing a strategy --------------------------------------------------------------------


def test_each_case_gets_the_strategy_of_the_first_rule_it_meets_with_the_reasons() -> None:
    strategies = shipped_strategies()
    model = shipped_score_model()

    old_risky = CaseFeatures(days_past_due=200, balance=9000.0, principal=9000.0)
    choice = choose(
        strategies, CaseFacts(balance=9000.0, days_past_due=200), score(model, old_risky), True
    )
    assert choice.strategy == "legal"
    assert choice.reasons == ("rule 1", "days past due 200 >= 180", "risk 80 is high")

    fresh = CaseFeatures(days_past_due=12, balance=300.0, principal=300.0)
    choice = choose(
        strategies, CaseFacts(balance=300.0, days_past_due=12), score(model, fresh), True
    )
    assert choice.strategy == "gentle_reminder"
    assert choice.reasons[0] == "rule 4"

    broke = CaseFacts(balance=2000.0, days_past_due=45, broken_promises=1)
    assert choose(strategies, broke, None, False).strategy == "negotiation"

    middle = CaseFacts(balance=2000.0, days_past_due=45)
    choice = choose(strategies, middle, None, False)
    assert (choice.strategy, choice.reasons) == ("firm_reminder", ("no rule matched: the default",))


# --- running a strategy day by day ---------------------------------------------------------


def run_days(
    strategies: Strategies, pos: Position, facts: CaseFacts, first: int, last: int
) -> list[tuple[int, list[tuple[str, str | None]]]]:
    """Each day from `first` to `last` that did something: (day, [(kind, target)])."""
    out = []
    for n in range(first, last + 1):
        adv = advance(strategies, pos, facts, days(n))
        pos = adv.position
        if adv.actions:
            out.append(
                (n, [(a.kind.value, a.template or a.campaign or a.target) for a in adv.actions])
            )
    return out


def test_a_gentle_reminder_unanswered_for_two_weeks_escalates_to_firm() -> None:
    strategies = shipped_strategies()
    unpaid = CaseFacts(balance=300.0, days_past_due=12)
    done = run_days(strategies, start("gentle_reminder", DAY0), unpaid, 0, 16)
    assert done == [
        (0, [("sms", "reminder_gentle")]),
        (3, [("email", "reminder_gentle_email")]),
        (7, [("call", "early")]),
        (14, [("escalate", "firm_reminder"), ("call", "standard")]),
        (16, [("sms", "reminder_firm")]),  # firm: not reached within two days
    ]


def test_a_paid_case_stops_its_strategy() -> None:
    strategies = shipped_strategies()
    pos = advance(strategies, start("gentle_reminder", DAY0), CaseFacts(balance=300.0), DAY0)
    paid = advance(strategies, pos.position, CaseFacts(balance=0.0), days(3))
    assert [a.kind for a in paid.actions] == [ActionKind.FINISHED]
    assert paid.position.finished
    later = advance(strategies, paid.position, CaseFacts(balance=0.0), days(10))
    assert later.actions == ()


def test_a_day_run_twice_does_nothing_the_second_time() -> None:
    strategies = shipped_strategies()
    facts = CaseFacts(balance=300.0)
    first = advance(strategies, start("gentle_reminder", DAY0), facts, DAY0)
    again = advance(strategies, first.position, facts, DAY0)
    assert [a.kind for a in first.actions] == [ActionKind.SMS]
    assert again.actions == ()
    assert again.position == first.position
    # Nor does running an earlier day after a later one.
    assert advance(strategies, first.position, facts, days(-1)).actions == ()


def test_a_broken_promise_escalates_to_negotiation() -> None:
    strategies = shipped_strategies()
    promised = CaseFacts(balance=800.0, promise_active=True, last_contact=days(1))
    pos = start("firm_reminder", DAY0)
    pos = advance(strategies, pos, promised, DAY0).position  # the first call
    # Day 2: the debtor was reached (a promise), so the SMS and second call are skipped.
    reached = CaseFacts(
        balance=800.0, promise_active=True, last_right_party_contact=days(1), last_contact=days(1)
    )
    adv = advance(strategies, pos, reached, days(2))
    assert adv.actions == ()
    assert "right_party_contact is True: step:follow" in adv.trace[-2]
    # Five days on the promise has been broken.
    broken = CaseFacts(balance=800.0, last_promise="broken", broken_promises=1)
    adv = advance(strategies, adv.position, broken, days(7))
    assert [(a.kind.value, a.target or a.campaign) for a in adv.actions] == [
        ("escalate", "negotiation"),
        ("call", "negotiation"),
        ("email", None),
    ]
    assert adv.position.strategy == "negotiation"


def test_legal_sets_the_status_and_finishes() -> None:
    strategies = shipped_strategies()
    adv = advance(strategies, start("legal", DAY0), CaseFacts(balance=5000.0), DAY0)
    assert [(a.kind, a.target) for a in adv.actions] == [
        (ActionKind.EMAIL, None),
        (ActionKind.SET_STATUS, "legal"),
    ]
    assert adv.position.finished


def test_a_loop_without_a_wait_stops_for_the_day() -> None:
    strategies = strategies_from_mapping(
        {
            "default": "loop",
            "strategies": {
                "loop": {
                    "title": "loops",
                    "steps": [
                        {"kind": "condition", "check": "paid", "else": "step:again", "id": "again"},
                    ],
                }
            },
        }
    )
    adv = advance(strategies, start("loop", DAY0), CaseFacts(balance=1.0), DAY0)
    assert adv.actions == ()
    assert "reached twice today" in adv.trace[-1]


@pytest.mark.parametrize(
    ("strategies", "expected"),
    [
        (
            {"default": "a", "strategies": {"a": {"title": "A", "steps": [{"kind": "wait"}]}}},
            "strategies.a.steps[0].days: Field required",
        ),
        (
            {"default": "a", "strategies": {"a": {"title": "A", "steps": [{"kind": "fax"}]}}},
            "strategies.a.steps[0]: Input tag 'fax'",
        ),
        (
            {"default": "a", "strategies": {"a": {"title": "A", "steps": [{"kind": "sms"}]}}},
            "strategies.a.steps[0]: an sms step needs 'template'",
        ),
        (
            {
                "default": "a",
                "strategies": {
                    "a": {
                        "title": "A",
                        "steps": [{"kind": "condition", "check": "paid", "then": "step:nowhere"}],
                    }
                },
            },
            "strategies.a.steps[0].then: 'step:nowhere'",
        ),
        (
            {
                "default": "b",
                "strategies": {"a": {"title": "A", "steps": [{"kind": "escalate", "to": "a"}]}},
            },
            "default: unknown strategy 'b'",
        ),
        (
            {"default": "a", "strategies": {"a": {"title": "A", "steps": []}}, "colour": 1},
            "colour: Extra inputs are not permitted",
        ),
    ],
)
def test_a_bad_strategy_file_names_the_key(strategies: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigFileError) as err:
        strategies_from_mapping(strategies, "mine.toml")
    assert expected in str(err.value)


def test_an_escalation_names_a_strategy_or_a_status_not_both() -> None:
    def one(step: dict[str, object]) -> dict[str, object]:
        return {"default": "a", "strategies": {"a": {"title": "A", "steps": [step]}}}

    with pytest.raises(ConfigFileError, match=r"steps\[0\]: .*exactly one of 'to' or 'status'"):
        strategies_from_mapping(one({"kind": "escalate", "to": "a", "status": "legal"}))
    with pytest.raises(ConfigFileError, match=r"steps\[0\]\.to: 'nowhere' is not a strategy"):
        strategies_from_mapping(one({"kind": "escalate", "to": "nowhere"}))
    with pytest.raises(ConfigFileError, match=r"steps\[0\]\.status: Input should be"):
        strategies_from_mapping(one({"kind": "escalate", "status": "jail"}))


def test_a_manager_defines_a_strategy_in_json(tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    path.write_text(
        json.dumps(
            {
                "default": "sms_only",
                "strategies": {
                    "sms_only": {
                        "title": "SMS only",
                        "steps": [
                            {"kind": "sms", "template": "t1"},
                            {"kind": "wait", "days": 2},
                            {"kind": "sms", "template": "t2"},
                        ],
                    }
                },
            }
        )
    )
    strategies = load_strategies(path)
    done = run_days(strategies, start("sms_only", DAY0), CaseFacts(balance=10.0), 0, 5)
    assert done == [(0, [("sms", "t1")]), (2, [("sms", "t2"), ("finished", None)])]


# --- the command line -----------------------------------------------------------------------


def test_strategy_check_accepts_the_shipped_files_and_names_the_bad_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dialer.cli import main

    assert main(["strategy", "check", "--json"]) == 0
    shipped = json.loads(capsys.readouterr().out)
    assert set(shipped["strategies"]) == {
        "gentle_reminder",
        "firm_reminder",
        "negotiation",
        "pre_legal",
        "legal",
    }
    assert shipped["strategies"]["gentle_reminder"][0] == "sms reminder_gentle"
    bad = tmp_path / "mine.toml"
    bad.write_text(
        'default = "a"\n[strategies.a]\ntitle = "A"\nsteps = [{ kind = "wait", days = 0 }]\n'
    )
    assert main(["strategy", "check", str(bad)]) == 2
    assert "mine.toml: strategies.a.steps[0].days: Input should be greater than or equal to 1" in (
        capsys.readouterr().err
    )


def test_strategy_explain_shows_the_terms_and_the_chosen_strategy(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from dialer.cli import main

    assert main(["strategy", "explain", "--days-past-due", "200", "--balance", "9000"]) == 0
    out = capsys.readouterr().out
    assert "risk 80 (high)" in out
    assert "+40  days_past_due 200 (180 <= days_past_due)" in out
    assert "strategy legal: rule 1; days past due 200 >= 180; risk 80 is high" in out
