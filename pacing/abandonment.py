"""Abandonment accounting: live answers not connected in time, over rolling 30 d, 24 h and today.

One definition for the dialer, the simulator and the benchmark: a live answer not connected to an
agent within `abandon_after_s` is abandoned; machines are not in the denominator (US), unless an
estimated share of AMD verdicts is counted as live answers hung up on (UK, false positives).
Counts are kept per minute; a window takes in every minute it touches, so it errs on the side
of counting an abandon rather than missing one.
"""

from __future__ import annotations

import bisect
import json
import math
from typing import Any

from pacing.errors import SnapshotError
from pacing.models import AbandonmentReport, AnswerKind, WindowCount

_MINUTE = 60
_DAY = 86_400
_KEEP_S = 31 * _DAY  # a little more than the longest window


class AbandonmentLedger:
    """Per-minute counts of live answers, abandons and machine verdicts, with window queries."""

    def __init__(self, *, utc_offset_s: float = 0.0, amd_false_positive_rate: float = 0.0) -> None:
        self.utc_offset_s = utc_offset_s
        self.amd_false_positive_rate = amd_false_positive_rate
        # Parallel lists: minute index, and running totals up to and including that minute.
        self._minutes: list[int] = []
        self._live: list[int] = []
        self._abandoned: list[int] = []
        self._machine: list[int] = []

    def record(self, at: float, answer: AnswerKind, abandoned: bool) -> None:
        """Count one answered call at `at` (its answer time). Unanswered calls count nowhere.

        A report arriving after a later minute was already counted lands in that later minute:
        outcomes arrive seconds late at most, and the running totals stay append-only.
        """
        if answer is AnswerKind.NONE:
            return
        minute = math.floor(at / _MINUTE)
        if not self._minutes or minute > self._minutes[-1]:
            self._minutes.append(minute)
            self._live.append(self._live[-1] if self._live else 0)
            self._abandoned.append(self._abandoned[-1] if self._abandoned else 0)
            self._machine.append(self._machine[-1] if self._machine else 0)
            self._forget_before(minute - _KEEP_S // _MINUTE)
        if answer is AnswerKind.LIVE:
            self._live[-1] += 1
            if abandoned:
                self._abandoned[-1] += 1
        else:
            self._machine[-1] += 1

    @property
    def live_total(self) -> float:
        """Live answers ever counted (plus estimated AMD false positives); only grows."""
        if not self._live:
            return 0.0
        return self._live[-1] + self._machine[-1] * self.amd_false_positive_rate

    @property
    def abandoned_total(self) -> float:
        """Abandoned calls ever counted (plus estimated AMD false positives); only grows."""
        if not self._abandoned:
            return 0.0
        return self._abandoned[-1] + self._machine[-1] * self.amd_false_positive_rate

    def window(self, now: float, seconds: float) -> WindowCount:
        """Counts over the last `seconds` up to `now`, widened to whole minutes."""
        return self.between(now - seconds, now)

    def between(self, start: float, end: float) -> WindowCount:
        """Counts of the minutes that overlap [start, end]: a window is never short of a call."""
        lo = bisect.bisect_left(self._minutes, math.floor(start / _MINUTE))
        hi = bisect.bisect_right(self._minutes, math.floor(end / _MINUTE))
        if hi <= lo:
            return WindowCount(0.0, 0.0)
        live = self._live[hi - 1] - (self._live[lo - 1] if lo else 0)
        abandoned = self._abandoned[hi - 1] - (self._abandoned[lo - 1] if lo else 0)
        machine = self._machine[hi - 1] - (self._machine[lo - 1] if lo else 0)
        false_positives = machine * self.amd_false_positive_rate
        return WindowCount(live + false_positives, abandoned + false_positives)

    def day_start(self, now: float) -> float:
        """The last local midnight at or before `now`, on the `now` time line."""
        local = now + self.utc_offset_s
        return math.floor(local / _DAY) * _DAY - self.utc_offset_s

    def today(self, now: float) -> WindowCount:
        return self.between(self.day_start(now), now)

    def report(self, now: float) -> AbandonmentReport:
        return AbandonmentReport(
            rolling_30d=self.window(now, 30 * _DAY),
            rolling_24h=self.window(now, _DAY),
            today=self.today(now),
        )

    def _forget_before(self, minute: int) -> None:
        cut = bisect.bisect_left(self._minutes, minute)
        if cut > 256:  # trim in batches: slicing per minute would cost more than it saves
            del self._minutes[:cut], self._live[:cut], self._abandoned[:cut], self._machine[:cut]

    def to_dict(self) -> dict[str, Any]:
        return {
            "minutes": self._minutes,
            "live": self._live,
            "abandoned": self._abandoned,
            "machine": self._machine,
        }

    def load_dict(self, data: dict[str, Any]) -> None:
        try:
            columns = [list(map(int, data[k])) for k in ("minutes", "live", "abandoned", "machine")]
        except (KeyError, TypeError, ValueError) as exc:
            raise SnapshotError(f"abandonment ledger: {exc!r}") from exc
        if len({len(c) for c in columns}) != 1:
            raise SnapshotError("abandonment ledger: columns have different lengths")
        if any(a >= b for a, b in zip(columns[0], columns[0][1:], strict=False)):
            raise SnapshotError("abandonment ledger: minutes are not increasing")
        self._minutes, self._live, self._abandoned, self._machine = columns

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(
        cls, text: str, *, utc_offset_s: float = 0.0, amd_false_positive_rate: float = 0.0
    ) -> AbandonmentLedger:
        ledger = cls(utc_offset_s=utc_offset_s, amd_false_positive_rate=amd_false_positive_rate)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SnapshotError(f"abandonment ledger: not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise SnapshotError("abandonment ledger: expected a JSON object")
        ledger.load_dict(data)
        return ledger
