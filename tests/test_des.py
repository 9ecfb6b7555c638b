"""The virtual-time simulator and its scenario files: errors named, days replayable, pacing judged."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from pacing import PacingSettings, make_pacer
from sim.bench_pacing import SCENARIOS_DIR, summarize
from sim.des import DaySimulation, simulate
from sim.scenario import Scenario, ScenarioError, load_scenario, parse_scenario


def scenario_data(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "small team",
        "seed": 42,
        "duration_s": 3600,
        "agents": 20,
        "live_answer_probability": 0.25,
        "machine_probability": 0.15,
        "ring_time_s": {"dist": "lognormal", "mean": 8, "sd": 4},
        "no_answer_timeout_s": 25,
        "talk_time_s": {"dist": "lognormal", "mean": 150, "sd": 90},
        "wrap_up_s": {"dist": "uniform", "low": 5, "high": 15},
    }
    data.update(changes)
    return data


# -- scenario files ----------------------------------------------------------------------------


def test_every_standard_scenario_loads() -> None:
    paths = sorted(SCENARIOS_DIR.glob("*.toml"))
    names = {load_scenario(p).name for p in paths}
    assert len(names) == len(paths) >= 17
    sizes = {load_scenario(p).agents[0].agents for p in paths}
    assert {10, 25, 50, 100, 500} <= sizes


def test_scenario_file_with_a_defaulted_key_gets_the_legal_defaults(tmp_path: Path) -> None:
    path = tmp_path / "day.toml"
    path.write_text(
        'name = "x"\nseed = 1\nduration_s = 600\nagents = 3\nlive_answer_probability = 0.2\n'
    )
    scenario = load_scenario(path)
    assert scenario.abandon_after_s == 2.0
    assert scenario.target_abandon_rate == 0.03


@pytest.mark.parametrize(
    ("changes", "key", "problem"),
    [
        ({"seed": "x"}, "seed", "integer"),
        ({"agents": 0}, "agents", "at least one"),
        ({"agnets": 5}, "agnets", "unknown key"),
        ({"live_answer_probability": 1.5}, "live_answer_probability", "probability"),
        ({"machine_probability": 0.9}, "machine_probability", "exceed 1"),
        ({"no_answer_timeout_s": 10}, "no_answer_timeout_s", "at least 15"),
        ({"talk_time_s": {"dist": "gamma", "mean": 3}}, "talk_time_s.dist", "unknown distribution"),
        ({"talk_time_s": {"dist": "lognormal", "mean": 150}}, "talk_time_s", "mean, sd"),
        ({"wrap_up_s": {"dist": "uniform", "low": 9, "high": 3}}, "wrap_up_s", "low ≤ high"),
        (
            {"agents": [{"at_s": 0, "agents": 5}, {"at_s": 0, "agents": 3}]},
            "agents[1].at_s",
            "increase",
        ),
        ({"agents": [{"at_s": 60, "agents": 5}]}, "agents[0].at_s", "start at 0"),
        ({"live_answer_probability": {"by_hour": []}}, "live_answer_probability", "by_hour"),
    ],
)
def test_bad_scenario_is_refused_naming_the_key(
    changes: dict[str, Any], key: str, problem: str
) -> None:
    with pytest.raises(ScenarioError) as error:
        parse_scenario(scenario_data(**changes), "day.toml")
    message = str(error.value)
    assert message.startswith(f"day.toml: {key}:")
    assert problem in message


def test_missing_key_and_broken_toml_are_named(tmp_path: Path) -> None:
    data = scenario_data()
    del data["duration_s"]
    with pytest.raises(ScenarioError, match="duration_s: missing"):
        parse_scenario(data, "day.toml")
    path = tmp_path / "broken.toml"
    path.write_text("name = \n")
    with pytest.raises(ScenarioError, match=r"broken\.toml: not valid TOML"):
        load_scenario(path)
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "absent.toml")


# -- the simulator -----------------------------------------------------------------------------


def run(scenario: Scenario, algorithm: str, days: int = 1, **settings: Any) -> dict[str, Any]:
    pacer = make_pacer(
        algorithm, PacingSettings(target_abandon_rate=scenario.target_abandon_rate, **settings)
    )
    return summarize(scenario, simulate(scenario, pacer, days))


def test_same_scenario_and_day_replay_identically() -> None:
    scenario = parse_scenario(scenario_data(duration_s=900))
    first = DaySimulation(scenario, make_pacer("ratio"), day=3).run()
    again = DaySimulation(scenario, make_pacer("ratio"), day=3).run()
    other_day = DaySimulation(scenario, make_pacer("ratio"), day=4).run()
    assert first == again
    assert first != other_day


def test_progressive_never_abandons_and_no_live_answer_waits_past_the_message() -> None:
    scenario = parse_scenario(scenario_data(duration_s=1800))
    progressive = run(scenario, "progressive")
    assert progressive["abandon_rate"] == 0.0
    aggressive = run(scenario, "ratio", dial_ratio=6.0, max_dial_ratio=10.0)
    assert aggressive["abandon_rate"] > 0.03
    assert aggressive["max_connect_wait_s"] <= scenario.abandon_after_s


def test_shift_change_halves_the_logged_in_time_of_the_afternoon() -> None:
    steady = parse_scenario(scenario_data(duration_s=1800, agents=20))
    shift = parse_scenario(
        scenario_data(
            duration_s=1800,
            agents=[{"at_s": 0, "agents": 20}, {"at_s": 900, "agents": 10}],
        )
    )
    full = simulate(steady, make_pacer("progressive"), 1).days[0].logged_in_s
    halved = simulate(shift, make_pacer("progressive"), 1).days[0].logged_in_s
    # agents on a call finish it before leaving, so a little more than three quarters
    assert 0.75 * full < halved < 0.85 * full


def test_predictive_keeps_abandonment_under_target_and_beats_progressive_on_talk() -> None:
    scenario = parse_scenario(scenario_data(duration_s=2 * 3600))
    progressive = run(scenario, "progressive")
    predictive = run(scenario, "predictive")
    assert predictive["abandon_rate"] <= scenario.target_abandon_rate
    assert predictive["max_connect_wait_s"] <= scenario.abandon_after_s
    assert (
        predictive["talk_minutes_per_agent_hour"] > 1.2 * progressive["talk_minutes_per_agent_hour"]
    )


def test_predictive_stays_under_target_when_half_the_agents_leave_at_once() -> None:
    scenario = parse_scenario(
        scenario_data(
            duration_s=2 * 3600,
            agents=[{"at_s": 0, "agents": 30}, {"at_s": 3600, "agents": 15}],
        )
    )
    assert run(scenario, "predictive")["abandon_rate"] <= scenario.target_abandon_rate


def test_stricter_target_is_kept_too_and_still_beats_progressive() -> None:
    scenario = parse_scenario(scenario_data(duration_s=2 * 3600))
    strict = dataclasses.replace(scenario, target_abandon_rate=0.01)
    at_one = run(strict, "predictive")
    assert at_one["abandon_rate"] <= 0.01
    progressive = run(strict, "progressive")
    assert at_one["talk_minutes_per_agent_hour"] > progressive["talk_minutes_per_agent_hour"]


# -- the benchmark command ---------------------------------------------------------------------


def bench_rows(
    capsys: pytest.CaptureFixture[str], scenario: Path, toml: str, *argv: str
) -> list[dict[str, Any]]:
    """Write `toml` to `scenario`, run `dialer bench pacing --json` on it, parse its lines."""
    import argparse
    import json

    from sim import bench_pacing

    scenario.write_text(toml)
    parser = argparse.ArgumentParser()
    bench_pacing.add_arguments(parser)
    args = parser.parse_args(["--scenario", str(scenario), "--json", "--jobs", "1", *argv])
    assert bench_pacing.run(args) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_bench_prints_one_json_object_per_algorithm_with_the_issue_fields(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = bench_rows(
        capsys,
        tmp_path / "tiny.toml",
        'name = "tiny"\nseed = 5\nduration_s = 900\nagents = 6\nlive_answer_probability = 0.3\n',
        *("--algorithm", "progressive", "--algorithm", "ratio", "--days", "2"),
    )
    assert [r["algorithm"] for r in rows] == ["progressive", "ratio"]
    for field in [
        "algorithm",
        "scenario",
        "days",
        "talk_minutes_per_agent_hour",
        "occupancy",
        "utilization",
        "abandon_rate",
        "worst_day_abandon_rate",
        "worst_hour_abandon_rate",
        "live_answers",
        "dials",
        "mean_agent_wait_s",
        "wall_s",
        "ceiling_talk_minutes_per_agent_hour",
        "best_fixed_ratio",
    ]:
        assert field in rows[0], field
    assert rows[0]["days"] == 2
    assert rows[0]["best_fixed_ratio"]["abandon_rate"] <= 0.03


def test_bench_refuses_a_bad_scenario_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from sim import bench_pacing

    path = tmp_path / "bad.toml"
    path.write_text(
        'name = "bad"\nseed = 5\nduration_s = 900\nagents = 0\nlive_answer_probability = 0.3\n'
    )
    parser = argparse.ArgumentParser()
    bench_pacing.add_arguments(parser)
    assert bench_pacing.run(parser.parse_args(["--scenario", str(path)])) == 2
    assert "bad.toml: agents:" in capsys.readouterr().err


def test_frontier_shows_less_caution_buys_talk_with_abandons(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sim import bench_pacing

    rows = bench_rows(
        capsys,
        tmp_path / "hour.toml",
        'name = "hour"\nseed = 8\nduration_s = 3600\nagents = 20\nlive_answer_probability = 0.3\n',
        *("--algorithm", "predictive", "--frontier", "--days", "1", "--no-best-ratio"),
    )
    curve = {r["safety_factor"]: r for r in rows if "safety_factor" in r}
    assert sorted(curve) == sorted(bench_pacing.FRONTIER_Z)
    careful, reckless = curve[max(curve)], curve[min(curve)]
    assert reckless["abandon_rate"] > 0.10 > careful["abandon_rate"]
    assert reckless["talk_minutes_per_agent_hour"] > careful["talk_minutes_per_agent_hour"]
    assert rows[0]["algorithm"] == "predictive"  # the controlled run comes first


def test_best_ratio_by_day_keeps_the_days_over_target_the_goal_allows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    row = bench_rows(
        capsys,
        tmp_path / "tiny.toml",
        'name = "tiny"\nseed = 5\nduration_s = 1800\nagents = 8\nlive_answer_probability = 0.3\n',
        *("--algorithm", "progressive", "--days", "3", "--best-ratio-by-day"),
    )[0]
    by_day, overall = row["best_fixed_ratio_by_day"], row["best_fixed_ratio"]
    assert by_day["days_over_target"] == 0  # 3 days: none may be over
    assert by_day["worst_day_abandon_rate"] <= 0.03
    assert overall["abandon_rate"] <= 0.03
