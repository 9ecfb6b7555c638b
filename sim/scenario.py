"""Pacing scenarios: a simulated campaign day described in TOML, loaded and checked.

Example::

    name = "25 agents, live answer 0.10"
    seed = 2510
    duration_s = 28800                      # one working day
    agents = 25                             # or [{at_s = 0, agents = 50}, {at_s = 14400, agents = 25}]
    live_answer_probability = 0.10          # or {by_hour = [0.10, 0.15, ...]} from the day's start
    machine_probability = 0.15
    ring_time_s = {dist = "lognormal", mean = 8, sd = 4}
    no_answer_timeout_s = 25                # a number is a constant; at least 15 s
    talk_time_s = {dist = "lognormal", mean = 150, sd = 90}
    wrap_up_s = {dist = "uniform", low = 5, high = 15}
    abandon_after_s = 2                     # default 2
    target_abandon_rate = 0.03              # default 0.03
    start_hour = 9                          # local hour the day starts, default 9
"""

from __future__ import annotations

import math
import random
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

MIN_NO_ANSWER_S = 15.0  # unanswered calls ring at least this long (FTC)


class ScenarioError(ValueError):
    """A scenario file is unreadable or wrong; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class Distribution:
    """A duration distribution: lognormal (mean, sd), uniform (low, high), exponential, constant."""

    kind: str
    a: float
    b: float = 0.0

    @property
    def mean(self) -> float:
        if self.kind == "lognormal":
            return math.exp(self.a + self.b * self.b / 2)
        if self.kind == "uniform":
            return (self.a + self.b) / 2
        return self.a  # exponential (mean) and constant (value)

    def sample(self, rng: random.Random) -> float:
        if self.kind == "lognormal":
            return rng.lognormvariate(self.a, self.b)
        if self.kind == "uniform":
            return rng.uniform(self.a, self.b)
        if self.kind == "exponential":
            return rng.expovariate(1.0 / self.a)
        return self.a


@dataclass(frozen=True, slots=True)
class AgentShift:
    """From `at_s` seconds into the day, this many agents are logged in."""

    at_s: float
    agents: int


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    seed: int
    duration_s: float
    agents: tuple[AgentShift, ...]
    live_answer_by_hour: tuple[float, ...]  # the last value holds for the rest of the day
    machine_probability: float
    ring_time_s: Distribution
    no_answer_timeout_s: Distribution
    talk_time_s: Distribution
    wrap_up_s: Distribution
    abandon_after_s: float = 2.0
    target_abandon_rate: float = 0.03
    start_hour: float = 9.0

    def live_answer_probability(self, seconds_into_day: float) -> float:
        hour = min(int(seconds_into_day // 3600), len(self.live_answer_by_hour) - 1)
        return self.live_answer_by_hour[max(0, hour)]

    @property
    def ceiling_talk_minutes_per_agent_hour(self) -> float:
        """The physical limit: agents talking every moment they are not wrapping up."""
        talk, wrap = self.talk_time_s.mean, self.wrap_up_s.mean
        return 60.0 * talk / (talk + wrap)


_KEYS = {
    "name",
    "seed",
    "duration_s",
    "agents",
    "live_answer_probability",
    "machine_probability",
    "ring_time_s",
    "no_answer_timeout_s",
    "talk_time_s",
    "wrap_up_s",
    "abandon_after_s",
    "target_abandon_rate",
    "start_hour",
}


def load_scenario(path: Path | str) -> Scenario:
    """Read and check a scenario file; ScenarioError names the file and the offending key."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from exc
    return parse_scenario(data, str(path))


def parse_scenario(data: dict[str, Any], source: str = "<scenario>") -> Scenario:
    def fail(key: str, problem: str) -> ScenarioError:
        return ScenarioError(f"{source}: {key}: {problem}")

    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise fail(unknown[0], f"unknown key (known: {', '.join(sorted(_KEYS))})")
    for key in ("name", "seed", "duration_s", "agents", "live_answer_probability"):
        if key not in data:
            raise fail(key, "missing")

    def number(key: str, default: float | None = None, *, low: float = 0.0) -> float:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise fail(key, f"expected a number, got {value!r}")
        if not math.isfinite(value) or value < low:
            raise fail(key, f"must be a finite number ≥ {low}, got {value!r}")
        return float(value)

    def probability(key: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise fail(key, f"expected a probability between 0 and 1, got {value!r}")
        return float(value)

    name = data["name"]
    if not isinstance(name, str) or not name.strip():
        raise fail("name", "expected a non-empty string")
    seed = data["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise fail("seed", f"expected an integer, got {seed!r}")
    duration = number("duration_s", low=1.0)

    agents = _agents(data["agents"], duration, fail)

    live = data["live_answer_probability"]
    if isinstance(live, dict):
        if set(live) != {"by_hour"} or not isinstance(live["by_hour"], list) or not live["by_hour"]:
            raise fail("live_answer_probability", "a table must be {by_hour = [p, p, ...]}")
        by_hour = tuple(
            probability(f"live_answer_probability.by_hour[{i}]", p)
            for i, p in enumerate(live["by_hour"])
        )
    else:
        by_hour = (probability("live_answer_probability", live),)
    machine = probability("machine_probability", data.get("machine_probability", 0.0))
    if max(by_hour) + machine > 1:
        raise fail("machine_probability", "live answer + machine probabilities exceed 1")

    timeout = _distribution(data.get("no_answer_timeout_s", 25.0), "no_answer_timeout_s", fail)
    if timeout.kind == "constant" and timeout.a < MIN_NO_ANSWER_S:
        raise fail(
            "no_answer_timeout_s", f"unanswered calls must ring at least {MIN_NO_ANSWER_S} s"
        )
    target = number("target_abandon_rate", 0.03)
    if not 0 < target < 1:
        raise fail("target_abandon_rate", f"must be between 0 and 1, got {target}")
    start_hour = number("start_hour", 9.0)
    if start_hour >= 24:
        raise fail("start_hour", f"must be below 24, got {start_hour}")
    return Scenario(
        name=name,
        seed=seed,
        duration_s=duration,
        agents=agents,
        live_answer_by_hour=by_hour,
        machine_probability=machine,
        ring_time_s=_distribution(data.get("ring_time_s", 8.0), "ring_time_s", fail),
        no_answer_timeout_s=timeout,
        talk_time_s=_distribution(data.get("talk_time_s", 150.0), "talk_time_s", fail),
        wrap_up_s=_distribution(data.get("wrap_up_s", 10.0), "wrap_up_s", fail),
        abandon_after_s=number("abandon_after_s", 2.0, low=0.1),
        target_abandon_rate=target,
        start_hour=start_hour,
    )


class _Fail(Protocol):
    def __call__(self, key: str, problem: str) -> ScenarioError: ...


def _agents(value: Any, duration: float, fail: _Fail) -> tuple[AgentShift, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise fail("agents", f"need at least one agent, got {value}")
        return (AgentShift(0.0, value),)
    if not isinstance(value, list) or not value:
        raise fail("agents", "expected a number or a list of {at_s = ..., agents = ...}")
    shifts: list[AgentShift] = []
    for i, item in enumerate(value):
        where = f"agents[{i}]"
        if not isinstance(item, dict) or set(item) != {"at_s", "agents"}:
            raise fail(where, "expected {at_s = seconds into the day, agents = count}")
        at, count = item["at_s"], item["agents"]
        if isinstance(at, bool) or not isinstance(at, int | float) or not 0 <= at < duration:
            raise fail(f"{where}.at_s", f"must be within the day (0 ≤ at_s < {duration:g})")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise fail(f"{where}.agents", f"expected a whole number ≥ 0, got {count!r}")
        if shifts and at <= shifts[-1].at_s:
            raise fail(f"{where}.at_s", "times must increase")
        shifts.append(AgentShift(float(at), count))
    if shifts[0].at_s != 0:
        raise fail("agents[0].at_s", "the schedule must start at 0")
    return tuple(shifts)


_PARAMS = {
    "lognormal": ("mean", "sd"),
    "uniform": ("low", "high"),
    "exponential": ("mean",),
    "constant": ("value",),
}


def _distribution(value: Any, key: str, fail: _Fail) -> Distribution:
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0:
            raise fail(key, f"a duration cannot be negative, got {value}")
        return Distribution("constant", float(value))
    if not isinstance(value, dict) or "dist" not in value:
        raise fail(key, "expected a number or {dist = ..., ...}")
    kind = value["dist"]
    if kind not in _PARAMS:
        raise fail(f"{key}.dist", f"unknown distribution {kind!r} (known: {', '.join(_PARAMS)})")
    wanted = set(_PARAMS[kind])
    if set(value) - {"dist"} != wanted:
        raise fail(key, f"{kind} takes exactly {', '.join(sorted(wanted))}")
    params: dict[str, float] = {}
    for p in wanted:
        v = value[p]
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
            raise fail(f"{key}.{p}", f"expected a number ≥ 0, got {v!r}")
        params[p] = float(v)
    if kind == "lognormal":
        mean, sd = params["mean"], params["sd"]
        if mean <= 0 or sd <= 0:
            raise fail(key, "lognormal needs mean > 0 and sd > 0")
        sigma2 = math.log(1 + (sd / mean) ** 2)
        return Distribution("lognormal", math.log(mean) - sigma2 / 2, math.sqrt(sigma2))
    if kind == "uniform":
        if params["high"] < params["low"]:
            raise fail(key, "uniform needs low ≤ high")
        return Distribution("uniform", params["low"], params["high"])
    if kind == "exponential":
        if params["mean"] <= 0:
            raise fail(f"{key}.mean", "must be positive")
        return Distribution("exponential", params["mean"])
    return Distribution("constant", params["value"])
