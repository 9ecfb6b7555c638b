"""Online statistics a campaign learns while it dials: answer mix by time, ring, talk, wrap-up times.

Recent behaviour matters most (answer rates drift through the day), so counts fade with a time
half-life and histograms with a count half-life; an hour-of-day profile, learned over days, is
the prior for the current hour, so an afternoon restart does not begin from nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from pacing.errors import SnapshotError
from pacing.models import AgentCallEnded, AnswerKind, CallOutcome

FloatArray = npt.NDArray[np.float64]

_KINDS = (AnswerKind.LIVE, AnswerKind.MACHINE, AnswerKind.NONE)


class Histogram:
    """A fading histogram of durations in fixed bins; newer observations weigh more.

    Instead of shrinking every bin at each observation, each new observation weighs `growth`
    times the previous one, and all weights are rescaled when they grow large.
    """

    def __init__(self, bin_s: float, max_s: float, half_life_count: float) -> None:
        self.bin_s = bin_s
        self.bins = math.ceil(max_s / bin_s)
        self.half_life_count = half_life_count
        self.growth = 2.0 ** (1.0 / half_life_count)
        self._weights = np.zeros(self.bins, dtype=np.float64)
        self._next_weight = 1.0
        self._sum = 0.0  # weighted sum of values, for the mean
        self._total = 0.0  # sum of the weights
        self._stale = 0  # observations not yet in the cached CDF
        self.count = 0  # observations ever (not faded): how much evidence there is
        self._edges = np.arange(self.bins + 1, dtype=np.float64) * bin_s
        self._cdf: FloatArray | None = None

    @property
    def max_s(self) -> float:
        return self.bins * self.bin_s

    def add(self, value: float) -> None:
        value = min(max(value, 0.0), self.max_s - 1e-9)
        self._weights[int(value / self.bin_s)] += self._next_weight
        self._sum += value * self._next_weight
        self._total += self._next_weight
        self._next_weight *= self.growth
        self.count += 1
        self._stale += 1
        if self._next_weight > 1e100:
            self._rescale(1e-100)

    def _rescale(self, factor: float) -> None:
        self._weights *= factor
        self._sum *= factor
        self._total *= factor
        self._next_weight *= factor

    @property
    def total(self) -> float:
        return self._total

    def mean(self, default: float) -> float:
        total = self._total
        return self._sum / total if total > 0 else default

    def cdf(self, x: FloatArray) -> FloatArray:
        """P(T ≤ x), linear within bins; 0 everywhere while empty.

        The cumulative table is rebuilt after every 16 observations, not after each one: a
        few observations move a fading histogram very little, and rebuilding costs a pass.
        """
        if self._cdf is None or self._stale >= 16 or (self._stale and self.count < 256):
            total = self._total
            cum = np.concatenate(([0.0], np.cumsum(self._weights)))
            self._cdf = cum / total if total > 0 else cum
            self._stale = 0
        result: FloatArray = np.interp(x, self._edges, self._cdf)
        return result

    def cdf1(self, x: float) -> float:
        return float(self.cdf(np.array([x]))[0])

    def ends_within(self, elapsed: FloatArray, horizon: FloatArray) -> FloatArray:
        """P(T ≤ elapsed + horizon | T > elapsed) for each elapsed time (and each horizon).

        `horizon` may be a column of horizons: the result then has one row per horizon.

        Past the longest observed duration the histogram knows nothing; an exponential tail with
        the observed mean stands in there.
        """
        horizon = np.maximum(horizon, 0.0)
        before = self.cdf(elapsed)
        after = self.cdf(elapsed + horizon)
        survival = 1.0 - before
        known = survival > 1e-6
        if known.all():  # the usual case: skip building the tail
            result: FloatArray = (after - before) / survival
            return result
        tail = 1.0 - np.exp(-horizon / max(self.mean(60.0), 1.0))
        result = np.where(known, (after - before) / np.where(known, survival, 1.0), tail)
        return result

    def to_dict(self) -> dict[str, Any]:
        scale = 1.0 / self._next_weight  # store with the newest weight at 1
        return {
            "bin_s": self.bin_s,
            "weights": [float(w) * scale for w in self._weights],
            "sum": self._sum * scale,
            "count": self.count,
        }

    def load_dict(self, data: dict[str, Any], where: str) -> None:
        try:
            weights = np.array([float(w) for w in data["weights"]], dtype=np.float64)
            bin_s = float(data["bin_s"])
            total_sum = float(data["sum"])
            count = int(data["count"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SnapshotError(f"{where}: {exc!r}") from exc
        if bin_s != self.bin_s or len(weights) != self.bins:
            raise SnapshotError(f"{where}: bins do not match ({bin_s} s x {len(weights)})")
        if np.any(weights < 0) or not np.all(np.isfinite(weights)):
            raise SnapshotError(f"{where}: negative or non-finite weights")
        self._weights, self._sum, self.count = weights, total_sum, count
        self._total = float(weights.sum())
        self._next_weight = 1.0
        self._cdf = None


@dataclass(frozen=True, slots=True)
class AnswerMix:
    """Probabilities of each outcome per dial, and how many dials of evidence back them."""

    live: float
    machine: float
    none: float
    evidence: float


class CampaignStatistics:
    """Everything pacing learns from `CallOutcome` and `AgentCallEnded` events.

    Answer counts are kept as [live, machine, none] lists (indexed by `_KINDS`), not dicts keyed
    by the enum: this runs for every dial in the simulator and enum hashing showed in profiles.
    """

    def __init__(
        self,
        *,
        utc_offset_s: float = 0.0,
        answer_half_life_s: float = 600.0,
        profile_weight: float = 50.0,
    ) -> None:
        self.utc_offset_s = utc_offset_s
        self.answer_half_life_s = answer_half_life_s
        self.profile_weight = profile_weight  # pseudo-dials the hourly profile is worth
        self._recent = [0.0, 0.0, 0.0]
        self._recent_at = -math.inf
        self._hourly = [[0.0, 0.0, 0.0] for _ in range(24)]
        self.ring_live = Histogram(0.5, 120.0, 400)
        self.ring_machine = Histogram(0.5, 120.0, 400)
        self.ring_none = Histogram(0.5, 180.0, 400)
        self.talk = Histogram(2.0, 7200.0, 1000)
        self.wrap_up = Histogram(1.0, 1800.0, 1000)
        self.outcomes = 0

    def hour_of_day(self, t: float) -> int:
        return int(((t + self.utc_offset_s) % 86_400) // 3600)

    def observe_outcome(self, event: CallOutcome) -> None:
        answer = event.answer
        if answer is AnswerKind.LIVE:
            index, ring = 0, self.ring_live
        elif answer is AnswerKind.MACHINE:
            index, ring = 1, self.ring_machine
        else:
            index, ring = 2, self.ring_none
        at = event.answered_at
        recent = self._recent
        if at > self._recent_at:
            if math.isfinite(self._recent_at):
                fade = 0.5 ** ((at - self._recent_at) / self.answer_half_life_s)
                recent[0] *= fade
                recent[1] *= fade
                recent[2] *= fade
            self._recent_at = at
        recent[index] += 1.0
        hour = self._hourly[self.hour_of_day(event.dialed_at)]
        hour[index] += 1.0
        if hour[0] + hour[1] + hour[2] > 20_000:  # keep the profile learning across weeks
            hour[:] = [v * 0.5 for v in hour]
        ring.add(event.ring_s)
        self.outcomes += 1

    def observe_agent(self, event: AgentCallEnded) -> None:
        self.talk.add(event.talk_s)
        self.wrap_up.add(event.wrap_up_s)

    def answer_mix(self, now: float) -> AnswerMix:
        """Recent answer mix, shrunk toward this hour's profile (or toward all live while new).

        With no history at all the prior is "everybody answers", the assumption that dials least.
        """
        recent = [0.0, 0.0, 0.0]
        if math.isfinite(self._recent_at):
            fade = 0.5 ** (max(0.0, now - self._recent_at) / self.answer_half_life_s)
            recent = [v * fade for v in self._recent]
        hour = self._hourly[self.hour_of_day(now)]
        hour_total = sum(hour)
        prior = [v / hour_total for v in hour] if hour_total >= 20 else [1.0, 0.0, 0.0]
        weight = self.profile_weight
        evidence = sum(recent)
        denominator = evidence + weight
        live, machine, none = (
            (r + weight * p) / denominator for r, p in zip(recent, prior, strict=True)
        )
        return AnswerMix(live=live, machine=machine, none=none, evidence=evidence)

    def to_dict(self) -> dict[str, Any]:
        return {
            "recent": dict(zip((k.value for k in _KINDS), self._recent, strict=True)),
            "recent_at": self._recent_at if math.isfinite(self._recent_at) else None,
            "hourly": [dict(zip((k.value for k in _KINDS), h, strict=True)) for h in self._hourly],
            "ring_live": self.ring_live.to_dict(),
            "ring_machine": self.ring_machine.to_dict(),
            "ring_none": self.ring_none.to_dict(),
            "talk": self.talk.to_dict(),
            "wrap_up": self.wrap_up.to_dict(),
            "outcomes": self.outcomes,
        }

    def load_dict(self, data: dict[str, Any]) -> None:
        """Load `to_dict()` output; on error this object is unchanged."""
        try:
            recent = [float(data["recent"][k.value]) for k in _KINDS]
            recent_at = data["recent_at"]
            hourly = [[float(h[k.value]) for k in _KINDS] for h in data["hourly"]]
            outcomes = int(data["outcomes"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SnapshotError(f"statistics: {exc!r}") from exc
        if len(hourly) != 24:
            raise SnapshotError(f"statistics: hourly profile has {len(hourly)} hours, not 24")
        histograms = {}
        for name in ("ring_live", "ring_machine", "ring_none", "talk", "wrap_up"):
            if not isinstance(data.get(name), dict):
                raise SnapshotError(f"statistics: {name} missing")
            template: Histogram = getattr(self, name)
            histogram = Histogram(template.bin_s, template.max_s, template.half_life_count)
            histogram.load_dict(data[name], f"statistics: {name}")
            histograms[name] = histogram
        for name, histogram in histograms.items():
            setattr(self, name, histogram)
        self._recent = recent
        self._recent_at = -math.inf if recent_at is None else float(recent_at)
        self._hourly = hourly
        self.outcomes = outcomes
