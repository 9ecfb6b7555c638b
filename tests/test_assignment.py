"""Assignment rules on worked examples, on SQLite and PostgreSQL: each kind of rule places its
case, no collector goes over capacity, high-risk cases go to senior collectors, moves keep
their history, a dry run changes nothing, the import places the cases it opens, and a bad
rules file is refused naming the key."""

from __future__ import annotations

import csv
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dialer.cases import assignment_service as service
from dialer.cases.assignment import (
    AssignmentRules,
    CaseFacts,
    CollectorInfo,
    Roster,
    Seniority,
    assign_all,
    load_rules,
    rules_from_mapping,
)
from dialer.cases.config_files import ConfigFileError
from dialer.cases.models import Actor
from dialer.cases.scoring import RiskBand
from dialer.cli import main
from dialer.importer import COLUMNS, import_csv
from dialer.store import attempts as repo
from dialer.store.db import Store
from dialer.store.models import Case, CaseHistory, Debtor, Team
from tests.test_desk import T0, TENANT, _row

NOW = T0
HEADER = (*COLUMNS, "product")


@pytest.fixture
def store(migrated_store: Store) -> Store:
    return migrated_store


def _debtor(ext: str, **facts: str) -> dict[str, str]:
    """One debtor with one debt (`D9` owes debt `D9-1`) and one phone."""
    n = int(ext[1:])
    row = _row(ext, f"Debtor {ext}", f"{ext}-1", "500.00", f"+1212555{100 + n:04d}")
    row["product"] = ""
    row.update(facts)
    row["principal"] = row["balance"]
    return row


def _import(store: Store, tmp_path: Path, rows: list[dict[str, str]], name: str = "p.csv") -> Any:
    path = tmp_path / name
    with path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.DictWriter(fh, HEADER)
        out.writeheader()
        out.writerows(rows)
    report = import_csv(store, path, TENANT, now=NOW - timedelta(days=1))
    assert report.rejected == 0, report.errors
    return report


def _tenant(store: Store) -> int:
    return repo.ensure_tenant(store, TENANT)


def _placed(store: Store) -> dict[str, tuple[str | None, str | None, str | None, str | None]]:
    """Debtor external id -> (team, collector, campaign, rule) of their case."""
    with store.begin() as conn:
        rows = conn.execute(
            sa.select(
                Debtor.external_id,
                Team.name,
                Case.agent_id,
                Case.assigned_campaign,
                Case.assignment_rule,
            )
            .join(Case, Case.debtor_id == Debtor.id)
            .outerjoin(Team, Team.id == Case.team_id)
        ).all()
    return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}


def _staff(store: Store, *collectors: tuple[str, str, str, int, list[str]]) -> None:
    """(agent id, team, seniority, capacity, languages) each."""
    for agent, team, seniority, capacity, languages in collectors:
        service.save_collector(
            store,
            _tenant(store),
            agent,
            NOW,
            team=team,
            seniority=seniority,
            capacity=capacity,
            languages=languages,
        )


def _rules(*rules: dict[str, Any], **settings: Any) -> AssignmentRules:
    return rules_from_mapping({"rules": list(rules), **settings}, "test rules")


def _run(store: Store, rules: AssignmentRules, **kw: Any) -> service.AssignmentReport:
    return service.run_assignment(store, _tenant(store), rules, NOW, **kw)


def test_each_kind_of_rule_places_its_worked_example(store: Store, tmp_path: Path) -> None:
    _import(
        store,
        tmp_path,
        [
            _debtor("D1", days_past_due="200"),  # days past due bucket
            _debtor("D2", balance="25000.00"),  # balance
            _debtor("D3", risk_score="850"),  # risk band (imported score, not yet scored)
            _debtor("D4", region="CA", city="Los Angeles", postal_code="90001"),  # region
            _debtor("D5", product="mortgage"),  # product
            _debtor("D6", country="CN", region="Beijing", phone="+8613800138006"),  # language
            _debtor("D7"),  # none of them: the catch-all
        ],
    )
    tenant = _tenant(store)
    repo.ensure_campaign(store, tenant, "late-calls", "predictive")
    for team in ("legal", "large", "watch", "west", "mortgages", "mandarin", "general"):
        service.add_team(store, tenant, team, NOW)
    rules = _rules(
        {"name": "bucket-180", "when": {"days_past_due_min": 181}, "team": "legal",
         "collector": "none", "campaign": "late-calls"},
        {"name": "large", "when": {"balance_min": 10000}, "team": "large", "collector": "none"},
        {"name": "risky", "when": {"risk_band": ["high"]}, "team": "watch", "collector": "none"},
        {"name": "west", "when": {"region": ["CA", "WA"]}, "team": "west", "collector": "none"},
        {"name": "mortgage", "when": {"product": ["mortgage"]}, "team": "mortgages",
         "collector": "none"},
        {"name": "mandarin", "when": {"language": ["zh-CN"]}, "team": "mandarin",
         "collector": "none"},
        {"name": "rest", "team": "general", "collector": "none"},
    )  # fmt: skip
    report = _run(store, rules)
    assert _placed(store) == {
        "D1": ("legal", None, "late-calls", "bucket-180"),
        "D2": ("large", None, None, "large"),
        "D3": ("watch", None, None, "risky"),
        "D4": ("west", None, None, "west"),
        "D5": ("mortgages", None, None, "mortgage"),
        "D6": ("mandarin", None, None, "mandarin"),
        "D7": ("general", None, None, "rest"),
    }
    assert report.moved == 7 and report.unmatched == 0
    why = {m.rule: m.reasons for m in report.moves}
    assert "days past due 200 >= 181" in why["bucket-180"]
    assert "balance 25000 >= 10000" in why["large"]
    assert "risk band high" in why["risky"]
    assert "language zh-CN" in why["mandarin"]


def test_no_collector_is_given_more_open_cases_than_their_capacity(
    store: Store, tmp_path: Path
) -> None:
    _import(store, tmp_path, [_debtor(f"D{i}") for i in range(1, 6)])
    _staff(store, ("a1", "desk", "junior", 2, ["en"]), ("a2", "desk", "junior", 2, ["en"]))
    report = _run(store, _rules({"name": "all", "team": "desk"}))
    placed = _placed(store)
    collectors = [p[1] for p in placed.values()]
    assert collectors.count("a1") == 2 and collectors.count("a2") == 2
    assert collectors.count(None) == 1
    assert report.queued_no_room == 1
    left = next(m for m in report.moves if m.new_agent is None)
    assert "no qualified collector with room" in "; ".join(left.reasons)
    assert report.loads == {"a1": 2, "a2": 2}
    # Run again: the case still waits in the queue, and is counted so.
    waiting = _run(store, _rules({"name": "all", "team": "desk"}))
    assert (waiting.moved, waiting.queued_no_room) == (0, 1)
    # Room made by raising a capacity is used by the next run; the others stay put.
    _staff(store, ("a2", "desk", "junior", 3, ["en"]))
    again = _run(store, _rules({"name": "all", "team": "desk"}))
    assert (again.moved, again.stayed) == (1, 4)
    assert [p[1] for p in _placed(store).values()].count("a2") == 3


def test_high_risk_cases_go_to_senior_collectors_and_the_rest_to_the_least_loaded(
    store: Store, tmp_path: Path
) -> None:
    _import(
        store,
        tmp_path,
        [_debtor("D1", risk_score="900"), _debtor("D2", risk_score="100")],
    )
    # The junior has the lightest load, yet the high-risk case needs a senior.
    _staff(
        store, ("junior1", "desk", "junior", 50, ["en"]), ("senior1", "desk", "senior", 50, ["en"])
    )
    report = _run(store, _rules({"name": "all", "team": "desk"}))
    placed = _placed(store)
    assert placed["D1"][1] == "senior1"
    assert placed["D2"][1] == "junior1"
    d1 = next(m for m in report.moves if m.new_agent == "senior1")
    assert "high risk: senior1 is senior" in d1.reasons


def test_a_chinese_speaking_debtor_goes_to_a_collector_who_speaks_chinese(
    store: Store, tmp_path: Path
) -> None:
    _import(
        store,
        tmp_path,
        [_debtor("D1", country="CN", region="Shanghai", phone="+8613800138001")],
    )
    _staff(store, ("en1", "desk", "junior", 50, ["en"]), ("zh1", "desk", "junior", 50, ["zh-CN"]))
    _run(store, _rules({"name": "all", "team": "desk"}))
    assert _placed(store)["D1"][1] == "zh1"


def _history(store: Store) -> list[tuple[str, str | None, str | None, str, str]]:
    with store.begin() as conn:
        return [
            tuple(r)  # type: ignore[misc]
            for r in conn.execute(
                sa.select(
                    CaseHistory.field,
                    CaseHistory.old_value,
                    CaseHistory.new_value,
                    CaseHistory.actor,
                    CaseHistory.reason,
                ).order_by(CaseHistory.id)
            )
        ]


def test_reassignment_keeps_the_history_of_every_move(store: Store, tmp_path: Path) -> None:
    _import(store, tmp_path, [_debtor("D1", days_past_due="40")])
    _staff(store, ("a1", "early", "junior", 10, ["en"]), ("b1", "late", "senior", 10, ["en"]))
    early = _rules({"name": "early", "team": "early"})
    _run(store, early)
    # Run again: nothing moves, nothing is written twice.
    assert _run(store, early).moved == 0
    _run(store, _rules({"name": "late", "when": {"days_past_due_min": 31}, "team": "late"}))
    assert _placed(store)["D1"][:2] == ("late", "b1")
    history = _history(store)
    assert [h[:3] for h in history] == [
        ("team", None, "early"),
        ("agent", None, "a1"),
        ("team", "early", "late"),
        ("agent", "a1", "b1"),
    ]
    assert all(h[3] == "system:assign" for h in history)
    assert history[-1][4].startswith(
        "rule late; days past due 40 >= 31; b1: least senior, least loaded"
    )


def test_a_dry_run_tells_each_move_and_why_and_changes_nothing(
    store: Store, tmp_path: Path
) -> None:
    _import(store, tmp_path, [_debtor("D1"), _debtor("D2", balance="9000.00")])
    _staff(store, ("a1", "desk", "junior", 10, ["en"]))
    report = _run(store, _rules({"name": "big", "when": {"balance_min": 5000}, "team": "desk"}),
                  dry_run=True)  # fmt: skip
    assert (report.cases, report.moved, report.unmatched) == (2, 1, 1)
    [move] = report.moves
    assert (move.old_team, move.new_team, move.old_agent, move.new_agent) == (
        None,
        "desk",
        None,
        "a1",
    )
    assert move.reasons[:2] == ("rule big", "balance 9000 >= 5000")
    assert _placed(store) == {"D1": (None, None, None, None), "D2": (None, None, None, None)}
    assert _history(store) == []


def test_the_tenants_saved_rules_place_the_cases_an_import_opens(
    store: Store, tmp_path: Path
) -> None:
    tenant = _tenant(store)
    _staff(store, ("a1", "desk", "junior", 10, ["en"]))
    service.save_rules(
        store, tenant, _rules({"name": "all", "team": "desk"}), "t.toml", Actor.user("mei"), NOW
    )
    report = _import(store, tmp_path, [_debtor("D1"), _debtor("D2")])
    assert report.cases_assigned == 2
    assert {p[:2] for p in _placed(store).values()} == {("desk", "a1")}
    assert {h[3] for h in _history(store)} == {"system:import"}
    # A re-import opens no case and places none.
    again = _import(store, tmp_path, [_debtor("D1"), _debtor("D2")], "again.csv")
    assert again.cases_assigned is None
    assert len(_history(store)) == 4


def test_an_import_for_a_tenant_without_rules_leaves_its_cases_unplaced(
    store: Store, tmp_path: Path
) -> None:
    report = _import(store, tmp_path, [_debtor("D1")])
    assert report.cases_assigned is None
    assert _placed(store) == {"D1": (None, None, None, None)}


def test_a_rules_file_with_mistakes_is_refused_naming_the_file_and_each_key(
    tmp_path: Path,
) -> None:
    path = tmp_path / "assign.toml"
    path.write_text(
        '[[rules]]\nname = "a"\nteam = "desk"\n'
        '[[rules]]\nname = "b"\nteam = "desk"\nwhen = { days_past_due_min = -3, colour = "red" }\n'
        '[[rules]]\nname = "c"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigFileError) as raised:
        load_rules(path)
    message = str(raised.value)
    assert message.startswith(str(path))
    assert "rules[1].when.days_past_due_min: Input should be greater than or equal to 0" in message
    assert "rules[1].when.colour: Extra inputs are not permitted" in message
    assert "rules[2]: a rule names at least one of 'team', 'collector' or 'campaign'" in message


def test_rules_naming_a_team_collector_or_campaign_the_tenant_lacks_are_refused(
    store: Store,
) -> None:
    _staff(store, ("a1", "desk", "junior", 10, ["en"]))
    rules = _rules(
        {"name": "x", "team": "desk", "collector": "a9"},
        {"name": "y", "team": "nope", "campaign": "ghost"},
    )
    with pytest.raises(ConfigFileError) as raised:
        _run(store, rules, source="mine.toml")
    assert raised.value.problems == [
        "rules[0].collector: no collector 'a9'",
        "rules[1].team: no team 'nope' (teams: desk)",
        "rules[1].campaign: no campaign 'ghost'",
    ]


def test_the_shipped_rules_file_loads() -> None:
    from dialer.cases.assignment import SHIPPED

    rules = load_rules(SHIPPED)
    assert rules.rules[-1].name == "everyone-else"
    assert rules.high_risk_seniority is Seniority.SENIOR


def test_dialer_cases_assign_dry_run_prints_each_move_then_a_real_run_saves_and_moves(
    store: Store,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _import(store, tmp_path, [_debtor("D1", days_past_due="200")])
    monkeypatch.setenv("DATABASE_URL", store.engine.url.render_as_string(False))
    rules = tmp_path / "assign.toml"
    rules.write_text('[[rules]]\nname = "late"\nteam = "legal"\n', encoding="utf-8")
    assert main(["cases", "collectors", "add", "b1", "--team", "legal", "--tenant", TENANT]) == 0
    capsys.readouterr()
    argv = ["cases", "assign", "--rules", str(rules), "--tenant", TENANT]
    assert main([*argv, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "team - -> legal, collector - -> b1  [rule late; b1: least senior, least loaded" in out
    assert "1 cases: 1 would move, 0 stay" in out
    assert _placed(store)["D1"] == (None, None, None, None)
    assert main([*argv, "--save"]) == 0
    assert _placed(store)["D1"] == ("legal", "b1", None, "late")
    assert main(["cases", "assign", "--tenant", TENANT]) == 0  # the saved rules: nothing moves
    assert "1 cases: 0 moved, 1 stay" in capsys.readouterr().out
    assert main(["cases", "collectors", "list", "--tenant", TENANT]) == 0
    assert "1/200 open" in capsys.readouterr().out


# ----- the pure rules, without a database -----


def _facts(case_id: int, band: RiskBand | None = None, agent: str | None = None) -> CaseFacts:
    return CaseFacts(case_id, "new", 30, 100.0, band, None, None, "en", None, agent, None)


def test_the_same_cases_and_loads_give_the_same_decisions() -> None:
    rules = _rules({"name": "all", "team": "t"})
    staff = [
        CollectorInfo("c", "t", Seniority.SENIOR, frozenset(), frozenset(), 3),
        CollectorInfo("a", "t", Seniority.JUNIOR, frozenset(), frozenset(), 2),
        CollectorInfo("b", "t", Seniority.JUNIOR, frozenset(), frozenset(), 4),
    ]
    cases = [_facts(i, RiskBand.HIGH if i % 3 == 0 else None) for i in range(1, 10)]
    first = list(assign_all(rules, Roster.of(staff, {}), cases))
    second = list(assign_all(rules, Roster.of(reversed(staff), {}), cases))
    assert first == second
    given = [d.new_agent for d in first]
    assert given.count("a") <= 2 and given.count("b") <= 4 and given.count("c") <= 3
    # Every high-risk case went to the senior.
    assert all(d.new_agent == "c" for d in first if d.case_id % 3 == 0)


def test_a_collector_over_capacity_hands_over_only_what_is_over() -> None:
    rules = _rules({"name": "all", "team": "t"})
    staff = [
        CollectorInfo("a", "t", Seniority.JUNIOR, frozenset(), frozenset(), 2),
        CollectorInfo("b", "t", Seniority.JUNIOR, frozenset(), frozenset(), 5),
    ]
    cases = [_facts(i, agent="a") for i in range(1, 5)]
    decisions = list(assign_all(rules, Roster.of(staff, {"a": 4}), cases))
    assert [d.new_agent for d in decisions] == ["b", "b", "a", "a"]


def test_a_closed_case_is_left_where_it_ended(store: Store, tmp_path: Path) -> None:
    from dialer.cases import service as cases
    from dialer.cases.models import CaseStatus

    _import(store, tmp_path, [_debtor("D1"), _debtor("D2")])
    _staff(store, ("a1", "desk", "junior", 10, ["en"]))
    tenant = _tenant(store)
    with store.begin() as conn:
        d1 = conn.execute(sa.select(Debtor.id).where(Debtor.external_id == "D1")).scalar_one()
    closed = cases.case_of(store, tenant, d1)
    assert closed is not None
    cases.change_status(
        store, tenant, closed, CaseStatus.CLOSED, Actor.user("mei"), "recalled", NOW
    )
    report = _run(store, _rules({"name": "all", "team": "desk"}))
    assert report.cases == 1
    assert _placed(store) == {"D1": (None, None, None, None), "D2": ("desk", "a1", None, "all")}


def _case_id(store: Store, ext: str) -> int:
    with store.begin() as conn:
        found = conn.execute(
            sa.select(Case.id)
            .join(Debtor, Debtor.id == Case.debtor_id)
            .where(Debtor.external_id == ext)
        ).scalar_one()
    return int(found)


def test_a_case_given_by_hand_stays_with_its_collector_through_the_nightly_rules(
    store: Store, tmp_path: Path
) -> None:
    _import(store, tmp_path, [_debtor("D1", days_past_due="40"), _debtor("D2")])
    _staff(store, ("a1", "desk", "junior", 10, ["en"]), ("b1", "desk", "junior", 10, ["en"]))
    # Rebalanced every night: each case goes to whoever is least loaded at that point.
    rules = _rules({"name": "all", "team": "desk"}, keep_current=False)
    _run(store, rules)
    assert _placed(store)["D1"][1] == "a1"  # the least loaded, in case order
    d1 = _case_id(store, "D1")
    service.give_case(store, _tenant(store), d1, "b1", Actor.user("mei"), "speaks to her", NOW)
    # b1 now holds two cases, a1 none: the rules would balance D1 back, but a manager chose.
    report = _run(store, rules)
    assert _placed(store)["D1"][:2] == ("desk", "b1")
    assert d1 not in {m.case_id for m in report.moves}
    # Another rule's team: the team follows the rule, the collector stays the manager's.
    service.add_team(store, _tenant(store), "late", NOW)
    _run(store, _rules({"name": "late", "team": "late"}), keep_moves=10)
    assert _placed(store)["D1"][:2] == ("late", "b1")
    history = [h for h in _history(store) if h[:3] == ("agent", "a1", "b1")]
    assert history and history[0][3] == "user:mei" and history[0][4] == "speaks to her"


def test_a_case_given_to_a_collector_who_leaves_goes_back_to_the_rules(
    store: Store, tmp_path: Path
) -> None:
    _import(store, tmp_path, [_debtor("D1")])
    _staff(store, ("a1", "desk", "junior", 10, ["en"]), ("b1", "desk", "junior", 10, ["en"]))
    d1 = _case_id(store, "D1")
    service.give_case(store, _tenant(store), d1, "b1", Actor.user("mei"), "VIP", NOW)
    service.save_collector(store, _tenant(store), "b1", NOW, team="desk", active=False)
    report = _run(store, _rules({"name": "all", "team": "desk"}), keep_moves=10)
    assert _placed(store)["D1"][1] == "a1"
    (move,) = report.moves
    assert "given by hand to b1, who no longer works cases" in move.reasons
    # Taken from b1 by the rules, the case is the rules' again: a1 is not held to it.
    with store.begin() as conn:
        assert conn.execute(sa.select(Case.agent_pinned).where(Case.id == d1)).scalar() is False


def test_giving_a_case_to_someone_who_is_not_an_active_collector_is_refused(
    store: Store, tmp_path: Path
) -> None:
    from dialer.cases.errors import CaseRefused

    _import(store, tmp_path, [_debtor("D1")])
    _staff(store, ("a1", "desk", "junior", 10, ["en"]))
    service.save_collector(store, _tenant(store), "gone", NOW, active=False)
    d1 = _case_id(store, "D1")
    for agent, says in (("zed", "not one of the tenant's collectors"), ("gone", "not active")):
        with pytest.raises(CaseRefused, match=says) as refused:
            service.give_case(store, _tenant(store), d1, agent, Actor.user("mei"), "x", NOW)
        assert refused.value.field == "agent_id"
    assert _placed(store)["D1"][1] is None and _history(store) == []


def test_dialer_cases_give_hands_a_case_over_and_back_to_the_queue(
    store: Store,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _import(store, tmp_path, [_debtor("D1")])
    _staff(store, ("a1", "desk", "junior", 10, ["en"]))
    monkeypatch.setenv("DATABASE_URL", store.engine.url.render_as_string(False))
    case = str(_case_id(store, "D1"))
    argv = ["cases", "give", case, "a1", "--why", "asked for her", "--by", "mei"]
    assert main([*argv, "--tenant", TENANT]) == 0
    out = capsys.readouterr().out
    assert out.strip() == f"case {case}: given to a1 (kept there by the nightly assignment)"
    assert main(["cases", "give", case, "none", "--why", "back", "--tenant", TENANT]) == 0
    assert capsys.readouterr().out.strip() == f"case {case}: back to the team's queue"
    assert main(["cases", "give", case, "zed", "--why", "x", "--tenant", TENANT]) == 2
    assert "'zed' is not one of the tenant's collectors" in capsys.readouterr().err
    assert _placed(store)["D1"][1] is None
