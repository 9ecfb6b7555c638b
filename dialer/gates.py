"""Attempt gates the engine asks before each Originate (the compliance guard plugs in here)."""

from __future__ import annotations

from datetime import datetime

from dialer.calls.models import Outcome
from dialer.engine import GateDecision
from dialer.store.attempts import DialCandidate


class UnguardedGate:
    """Allows every attempt. Only for the simulator demo and tests of the engine itself; a
    campaign against a real Asterisk always runs behind the compliance guard."""

    def __init__(self) -> None:
        self._next = 0
        self.released: list[str] = []
        self.outcomes: list[tuple[str, Outcome, bool]] = []

    def reserve(self, candidate: DialCandidate, now: datetime) -> GateDecision:
        self._next += 1
        return GateDecision(True, reservation_id=f"r{self._next}")

    def release(self, reservation_id: str, now: datetime) -> None:
        self.released.append(reservation_id)

    def record_outcome(
        self, reservation_id: str, outcome: Outcome, connected: bool, now: datetime
    ) -> None:
        self.outcomes.append((reservation_id, outcome, connected))
