"""The campaign pacer: one object per campaign that the dialer and the simulator drive.

It owns the statistics and the abandonment ledger, holds every algorithm so the supervisor can
switch dial mode mid-campaign without losing what was learned, and applies the limits that hold
whatever the algorithm says: pause, no agents, the maximum dial ratio.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from pacing.abandonment import AbandonmentLedger
from pacing.algorithms import Algorithm, Context, Predictive, Progressive, Ratio, VicidialAdapt
from pacing.errors import SnapshotError, UnknownAlgorithm
from pacing.models import (
    AbandonmentReport,
    AgentCallEnded,
    AnswerKind,
    CallOutcome,
    DialMode,
    Overrides,
    PacingEvent,
    PacingSettings,
    PacingState,
)
from pacing.statistics import CampaignStatistics

SNAPSHOT_VERSION = 1


def _new_algorithm(mode: DialMode) -> Algorithm:
    if mode in (DialMode.PREVIEW, DialMode.PROGRESSIVE):
        return Progressive()
    if mode is DialMode.RATIO:
        return Ratio()
    if mode is DialMode.VICIDIAL_ADAPT:
        return VicidialAdapt()
    return Predictive()


class CampaignPacer:
    """Implements `pacing.models.Pacer` for one campaign."""

    def __init__(
        self,
        settings: PacingSettings,
        *,
        statistics: CampaignStatistics | None = None,
        ledger: AbandonmentLedger | None = None,
    ) -> None:
        self._settings = settings
        self.statistics = statistics or CampaignStatistics(utc_offset_s=settings.utc_offset_s)
        self.ledger = ledger or AbandonmentLedger(
            utc_offset_s=settings.utc_offset_s,
            amd_false_positive_rate=settings.amd_false_positive_rate,
        )
        self._algorithms: dict[DialMode, Algorithm] = {}

    @property
    def settings(self) -> PacingSettings:
        return self._settings

    def algorithm(self, mode: DialMode | None = None) -> Algorithm:
        mode = mode or self._settings.dial_mode
        if mode not in self._algorithms:
            self._algorithms[mode] = _new_algorithm(mode)
        return self._algorithms[mode]

    def calls_to_place(self, state: PacingState) -> int:
        settings = self._settings
        if settings.paused or state.agents_working == 0:
            return 0
        context = Context(settings, self.statistics, self.ledger)
        wanted = self.algorithm().decide(state, context)
        cap = math.floor(settings.max_dial_ratio * state.agents_working) - state.calls_in_flight
        return max(0, min(wanted, cap))

    def observe(self, event: PacingEvent) -> None:
        if isinstance(event, CallOutcome):
            self.statistics.observe_outcome(event)
            abandoned = event.answer is AnswerKind.LIVE and not event.connected
            self.ledger.record(event.answered_at, event.answer, abandoned)
        elif isinstance(event, AgentCallEnded):
            self.statistics.observe_agent(event)

    def apply(self, overrides: Overrides) -> None:
        """Supervisor changes; validated like settings, effective on the next `calls_to_place`."""
        changes = {
            f.name: getattr(overrides, f.name)
            for f in dataclasses.fields(overrides)
            if getattr(overrides, f.name) is not None
        }
        self._settings = dataclasses.replace(self._settings, **changes)
        self.ledger.amd_false_positive_rate = self._settings.amd_false_positive_rate

    def abandonment(self, now: float) -> AbandonmentReport:
        return self.ledger.report(now)

    def to_json(self) -> str:
        data: dict[str, Any] = {
            "version": SNAPSHOT_VERSION,
            "statistics": self.statistics.to_dict(),
            "ledger": self.ledger.to_dict(),
            "algorithms": {mode.value: a.to_dict() for mode, a in self._algorithms.items()},
        }
        return json.dumps(data, separators=(",", ":"))

    def restore(self, text: str) -> None:
        """Load a `to_json()` snapshot; on any error nothing is changed and SnapshotError says why."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SnapshotError(f"pacing snapshot is not JSON: {exc}") from exc
        if not isinstance(data, dict) or data.get("version") != SNAPSHOT_VERSION:
            raise SnapshotError(
                f"pacing snapshot: expected an object with version {SNAPSHOT_VERSION}"
            )
        settings = self._settings
        statistics = CampaignStatistics(utc_offset_s=settings.utc_offset_s)
        ledger = AbandonmentLedger(
            utc_offset_s=settings.utc_offset_s,
            amd_false_positive_rate=settings.amd_false_positive_rate,
        )
        for part in ("statistics", "ledger", "algorithms"):
            if not isinstance(data.get(part), dict):
                raise SnapshotError(f"pacing snapshot: '{part}' missing or not an object")
        statistics.load_dict(data["statistics"])
        ledger.load_dict(data["ledger"])
        algorithms: dict[DialMode, Algorithm] = {}
        for name, state in data["algorithms"].items():
            try:
                mode = DialMode(name)
            except ValueError as exc:
                raise SnapshotError(f"pacing snapshot: unknown algorithm '{name}'") from exc
            if not isinstance(state, dict):
                raise SnapshotError(f"pacing snapshot: algorithm '{name}' is not an object")
            algorithm = _new_algorithm(mode)
            algorithm.load_dict(state)
            algorithms[mode] = algorithm
        self.statistics, self.ledger, self._algorithms = statistics, ledger, algorithms


def make_pacer(name: str, settings: PacingSettings | None = None) -> CampaignPacer:
    """A pacer dialing in mode `name` (preview, progressive, ratio, vicidial-adapt, predictive)."""
    try:
        mode = DialMode(name)
    except ValueError:
        known = ", ".join(m.value for m in DialMode)
        raise UnknownAlgorithm(f"unknown pacing algorithm '{name}' (known: {known})") from None
    return CampaignPacer(dataclasses.replace(settings or PacingSettings(), dial_mode=mode))
