"""The pacing algorithms: each turns the campaign state and what was learned into a call count.

They share one `Context` (settings, statistics, abandonment ledger) owned by the campaign pacer;
their own memory (VICIdial's level, the predictive controller) is small and serialisable.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from pacing.abandonment import AbandonmentLedger
from pacing.errors import SnapshotError
from pacing.models import AbandonmentReport, PacingSettings, PacingState, VicidialVariant
from pacing.statistics import CampaignStatistics, FloatArray


@dataclass(frozen=True, slots=True)
class Context:
    """What every algorithm may read when deciding."""

    settings: PacingSettings
    statistics: CampaignStatistics
    ledger: AbandonmentLedger


class Algorithm(Protocol):
    def decide(self, state: PacingState, context: Context) -> int: ...

    def to_dict(self) -> dict[str, Any]: ...

    def load_dict(self, data: dict[str, Any]) -> None: ...


def _round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


class Progressive:
    """One call per ready agent that has no call coming: never more calls than free agents.

    Preview uses the same count; what differs is in the dialer, which binds each call to its
    agent before dialing so the agent sees the debtor's record first.
    """

    def decide(self, state: PacingState, context: Context) -> int:
        return max(0, state.agents_ready - state.calls_in_flight)

    def to_dict(self) -> dict[str, Any]:
        return {}

    def load_dict(self, data: dict[str, Any]) -> None:
        return None


class Ratio:
    """A fixed number of lines per ready agent: ratio × ready agents − calls in flight."""

    def decide(self, state: PacingState, context: Context) -> int:
        lines = _round_half_up(context.settings.dial_ratio * state.agents_ready)
        return max(0, lines - state.calls_in_flight)

    def to_dict(self) -> dict[str, Any]:
        return {}

    def load_dict(self, data: dict[str, Any]) -> None:
        return None


@dataclass(frozen=True, slots=True)
class _Sample:
    ready: int
    waiting: int
    agents: int


class VicidialAdapt:
    """VICIdial's ADAPT_HARD_LIMIT / ADAPT_TAPERED dial level, re-implemented as the baseline.

    Each second it samples ready agents and waiting calls (last 15 kept); every 15 s it moves the
    level by the differential; every 2.5 s it dials up to level × (ready + in call) lines. As in
    VICIdial, whose live-call table keeps a call until hangup, the lines already used count the
    calls talking to agents too, so level 1.0 is progressive; agents in wrap-up count on neither
    side, as VICIdial's agents paused in the disposition screen do not.
    """

    SAMPLE_S = 1.0
    ADJUST_S = 15.0
    PLACE_S = 2.5
    SAMPLES = 15

    def __init__(self) -> None:
        self.level = 1.0
        self._samples: deque[_Sample] = deque(maxlen=self.SAMPLES)
        self._next_sample = -math.inf
        self._next_adjust = -math.inf
        self._next_place = -math.inf

    def decide(self, state: PacingState, context: Context) -> int:
        now = state.now
        if now >= self._next_sample:
            self._samples.append(
                _Sample(
                    state.agents_ready,
                    len(state.waiting_s),
                    state.agents_ready + state.agents_on_call,
                )
            )
            self._next_sample = now + self.SAMPLE_S
        if now >= self._next_adjust:
            if math.isfinite(self._next_adjust):  # the first 15 s only collect samples
                self._adjust(now, context)
            self._next_adjust = now + self.ADJUST_S
        if now < self._next_place:
            return 0
        self._next_place = now + self.PLACE_S
        agents = state.agents_ready + state.agents_on_call
        lines_used = state.calls_in_flight + state.agents_on_call
        return max(0, _round_half_up(self.level * agents) - lines_used)

    def _adjust(self, now: float, context: Context) -> None:
        settings = context.settings
        samples = self._samples
        if samples:
            avg_ready = sum(s.ready for s in samples) / len(samples)
            avg_waiting = sum(s.waiting for s in samples) / len(samples)
            avg_agents = sum(s.agents for s in samples) / len(samples)
            if avg_agents > 0:
                m = (avg_ready - avg_waiting + settings.vicidial_diff_target) / avg_agents
                i = settings.vicidial_intensity
                m = m * (1 + i) if m >= 0 else m * abs(i - 1)
                self.level *= 1 + m
        last_minute = context.ledger.window(now, 60)
        if last_minute.live > 20 and last_minute.rate > 0.5:
            self.level /= 2
        today = context.ledger.today(now)
        if today.live > 50:
            allowed = settings.target_abandon_rate
            if settings.vicidial_variant is VicidialVariant.TAPERED:
                # Over the limit is tolerated early in the shift, less and less toward its end.
                hour = (now - context.ledger.day_start(now)) / 3600
                length = settings.shift_end_hour - settings.shift_start_hour
                left = min(1.0, max(0.0, (settings.shift_end_hour - hour) / length))
                allowed *= 1 + left
            if today.rate > allowed:
                self.level = 1.0
        self.level = min(settings.vicidial_max_level, max(1.0, self.level))

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level}

    def load_dict(self, data: dict[str, Any]) -> None:
        try:
            level = float(data["level"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SnapshotError(f"vicidial-adapt: {exc!r}") from exc
        if not math.isfinite(level) or level < 1.0:
            raise SnapshotError(f"vicidial-adapt: level {level} is not a dial level")
        self.level = level


class Predictive:
    """Ours: balance the live answers expected soon against the agents expected free by then.

    For a few horizons h (fractions and multiples of the mean ring time of live answers), demand
    is the calls waiting, the live answers expected within h from calls ringing (given how long
    each has rung) and `n × P(live answer within h)` for n new calls; supply is the ready agents
    plus, for each busy agent, the probability of being free by `h + abandon_after_s` (given the
    elapsed talk or wrap-up time). It places the largest n for which, at every horizon,
    demand + z·σ ≤ supply, σ being the spread of that difference (sums of Bernoulli trials).
    Several horizons, because an answer after one second needs an agent free by three, not by
    the end of the longest horizon.

    `z` is the safety factor. An integral controller moves it on every abandon and every live
    answer, aiming at `target × (1 − margin)`: each abandon beyond that budget makes it more
    careful, each connected call a little bolder; over the legal limit in today's or the last 24
    hours' window it never goes below its starting caution. The margin is what a day's chance
    needs at the campaign's volume (1.5 standard deviations of a day's rate), at most
    `safety_margin`: a large campaign aims closer to the limit than a small one.

    Safe while it knows little: until a few dozen outcomes and finished calls are seen it dials
    progressively; the live-answer probability it uses is an upper confidence bound (more answers
    assumed means fewer calls); it starts cautious (z = 2) and earns its boldness.
    """

    MIN_OUTCOMES = 50
    MIN_FINISHED_CALLS = 20
    HORIZONS = np.array([0.25, 0.5, 1.0, 1.5, 2.5])  # × mean live ring time
    Z_START = 2.0
    REFERENCE_TARGET = 0.03
    Z_MIN = -1.5
    Z_MAX = 5.0
    GAIN = 0.15  # z moves this much per abandon beyond the budget
    CONTROL_S = 5.0
    NOISE_SDS = 1.5  # the aim sits this many day-to-day standard deviations under the target
    MIN_MARGIN = 0.03
    MIN_LIVE_FOR_NOISE = 200

    def __init__(self) -> None:
        self.z = self.Z_START
        self._aimed_at: float | None = None  # the target z was learned for
        self._next_control = -math.inf
        self._seen_live = 0.0
        self._seen_abandoned = 0.0
        self._frozen = False

    def freeze(self, z: float) -> None:
        """Hold the safety factor at `z` with the controller off.

        Not a dial mode: the benchmark uses it to trace what abandonment buys in talk time
        (`dialer bench pacing --frontier`), one fixed caution per simulated run.
        """
        self.z, self._frozen = z, True

    def decide(self, state: PacingState, context: Context) -> int:
        settings = context.settings
        stats = context.statistics
        now = state.now
        target = settings.target_abandon_rate
        if target != self._aimed_at and not self._frozen:
            # Z_START is the caution for the US 3%; a stricter target starts (and stays) stricter.
            self.z = _reaim(self.z, target / (self._aimed_at or self.REFERENCE_TARGET))
        self._aimed_at = target
        if now >= self._next_control and not self._frozen:
            self._control(now, context)
            self._next_control = now + self.CONTROL_S
        if (
            stats.outcomes < self.MIN_OUTCOMES
            or stats.ring_live.count < 5
            or stats.talk.count < self.MIN_FINISHED_CALLS
        ):
            return Progressive().decide(state, context)

        mix = stats.answer_mix(now)
        spread = math.sqrt(mix.live * (1 - mix.live) / (mix.evidence + stats.profile_weight))
        p_live = min(1.0, mix.live + spread)
        rest = mix.machine + mix.none
        p_machine = (1 - p_live) * (mix.machine / rest) if rest > 0 else 0.0
        p_none = (1 - p_live) - p_machine

        horizons = np.maximum(1.0, self.HORIZONS * stats.ring_live.mean(8.0))[:, None]
        reach = horizons + settings.abandon_after_s
        k = len(self.HORIZONS)

        # Demand: live answers expected within each horizon from what is already in flight.
        demand = np.full(k, float(len(state.waiting_s)))
        variance = np.zeros(k)
        if state.ringing_s:
            rung, calls = _grouped(state.ringing_s, 0.5)
            g_now = stats.ring_live.cdf(rung)
            still = (
                p_live * (1 - g_now)
                + p_machine * (1 - stats.ring_machine.cdf(rung))
                + p_none * (1 - stats.ring_none.cdf(rung))
            )
            g_then = stats.ring_live.cdf(rung[None, :] + horizons)
            # `still` ≥ p_live·(1 − g_now), so q stays within [0, 1] by construction.
            q = p_live * (g_then - g_now) / np.maximum(still, 1e-9)
            demand += q @ calls
            variance += (q * (1 - q)) @ calls

        # Supply: ready agents, and busy agents likely free in time to take those answers.
        supply = np.full(k, float(state.agents_ready))
        if state.on_call_s:
            # The wrap-up after the call is taken at its mean: it varies far less than talk.
            talk, agents = _grouped(state.on_call_s, 1.0)
            free = stats.talk.ends_within(talk, reach - stats.wrap_up.mean(0.0))
            supply += free @ agents
            variance += (free * (1 - free)) @ agents
        if state.wrap_up_s:
            wrap, agents = _grouped(state.wrap_up_s, 0.5)
            free = stats.wrap_up.ends_within(wrap, reach)
            supply += free @ agents
            variance += (free * (1 - free)) @ agents

        per_call = p_live * stats.ring_live.cdf(horizons[:, 0])
        if per_call.max() <= 0:
            return Progressive().decide(state, context)
        z = self.z
        # A handful of horizons: plain floats beat numpy's per-call overhead in the bisection.
        horizon_terms = [
            (float(d - s), max(0.0, float(v)), float(p), float(p * (1 - p)))
            for d, s, v, p in zip(demand, supply, variance, per_call, strict=True)
        ]

        def fits(n: int) -> bool:
            return all(
                gap + n * p + z * math.sqrt(v + n * pv) <= 0 for gap, v, p, pv in horizon_terms
            )

        cap = max(
            0, math.floor(settings.max_dial_ratio * state.agents_working) - state.calls_in_flight
        )
        if not fits(0):
            return 0
        lo, hi = 0, cap  # largest n in [lo, hi] that fits, by bisection
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if fits(mid):
                lo = mid
            else:
                hi = mid - 1
        return lo

    def _control(self, now: float, context: Context) -> None:
        """Integral control on abandon counts against the budget `aim × live answers`."""
        ledger = context.ledger
        live, abandoned = ledger.live_total, ledger.abandoned_total
        if live < self._seen_live:  # a fresh ledger under restored statistics: start counting
            self._seen_live, self._seen_abandoned = live, abandoned
        new_live = live - self._seen_live
        new_abandoned = abandoned - self._seen_abandoned
        self._seen_live, self._seen_abandoned = live, abandoned
        if new_live <= 0:
            return
        report = ledger.report(now)
        target = context.settings.target_abandon_rate
        aim = target * (1 - self.margin(target, context.settings.safety_margin, report))
        self.z += self.GAIN * (new_abandoned - aim * new_live)
        # Over the legal limit in a window regulators look at: no slack until back under it.
        for window in (report.today, report.rolling_24h):
            if window.live >= 50 and window.rate > context.settings.target_abandon_rate:
                self.z = max(self.z, self.Z_START)
        self.z = min(self.Z_MAX, max(self.Z_MIN, self.z))

    @classmethod
    def margin(cls, target: float, largest: float, report: AbandonmentReport) -> float:
        """How far below the target to aim: enough for a day's chance, at most `largest`.

        A day's rate strays from the aim by about √(target·(1 − target) / live answers), so a
        campaign with ten thousand live answers a day can aim much closer to the limit than one
        with a thousand. The volume is the last 24 hours'; until it is known, `largest`.
        """
        live = report.rolling_24h.live
        if live < cls.MIN_LIVE_FOR_NOISE or target <= 0:
            return largest
        day_noise = math.sqrt(target * (1 - target) / live)
        return min(largest, max(cls.MIN_MARGIN, cls.NOISE_SDS * day_noise / target))

    def to_dict(self) -> dict[str, Any]:
        return {
            "z": self.z,
            "aimed_at": self._aimed_at,
            "seen_live": self._seen_live,
            "seen_abandoned": self._seen_abandoned,
        }

    def load_dict(self, data: dict[str, Any]) -> None:
        try:
            z = float(data["z"])
            aimed_at = None if data.get("aimed_at") is None else float(data["aimed_at"])
            seen_live = float(data.get("seen_live", 0.0))
            seen_abandoned = float(data.get("seen_abandoned", 0.0))
        except (KeyError, TypeError, ValueError) as exc:
            raise SnapshotError(f"predictive: {exc!r}") from exc
        if not math.isfinite(z):
            raise SnapshotError(f"predictive: z {z} is not finite")
        self.z = min(self.Z_MAX, max(self.Z_MIN, z))
        self._seen_live, self._seen_abandoned = seen_live, seen_abandoned
        self._aimed_at = aimed_at


def _grouped(elapsed: tuple[float, ...], width: float) -> tuple[FloatArray, FloatArray]:
    """Elapsed times grouped in bins of `width` seconds: (bin middles, how many in each).

    Hundreds of calls ring at once in a large campaign; their probabilities differ little
    within half a second, and computing them per bin instead of per call keeps a tick cheap.
    """
    values = np.asarray(elapsed, dtype=np.float64)
    if len(values) < 64:  # too few to gain from grouping
        return values, np.ones(len(values))
    counts = np.bincount((values / width).astype(np.int64))
    occupied = np.flatnonzero(counts)
    middles = ((occupied + 0.5) * width).astype(np.float64)
    return middles, counts[occupied].astype(np.float64)


def _normal_loss(z: float) -> float:
    """E[(X − z)⁺] for a standard normal X: the expected overflow beyond z·σ, per σ."""
    density = math.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    upper_tail = 0.5 * math.erfc(z / math.sqrt(2))
    return density - z * upper_tail


def _reaim(z: float, factor: float) -> float:
    """The safety factor whose expected overflow is `factor` times that of `z`.

    When a supervisor changes the target, the controller would need minutes of calls to find the
    new level; scaling the expected overflow with the target gets there on the next tick.
    """
    wanted = _normal_loss(z) * factor
    low, high = Predictive.Z_MIN, Predictive.Z_MAX
    for _ in range(40):  # the loss falls as z rises: bisection
        mid = (low + high) / 2
        if _normal_loss(mid) > wanted:
            low = mid
        else:
            high = mid
    return (low + high) / 2
