"""Debtor and agent models: who answers, after how long, and how long they stay on the line."""

from __future__ import annotations

import enum
import hashlib
import math
import random
from dataclasses import dataclass
from typing import Protocol


class Outcome(enum.Enum):
    """What the far end does with one call attempt (what the carrier network would report)."""

    HUMAN = "human"  # a live person answers
    MACHINE = "machine"  # an answering machine / voicemail answers
    BUSY = "busy"  # Reason 5, cause 17
    NO_ANSWER = "no_answer"  # rings until the dialer's Originate timeout (Reason 3)
    REJECTED = "rejected"  # far end gives up ringing with cause 19 (Reason 0)
    CONGESTION = "congestion"  # Reason 8, cause 34
    UNALLOCATED = "unallocated"  # invalid number: Reason 0, cause 1
    SHORT_CALL = "short_call"  # answers, then hangs up within seconds
    OUT_OF_ORDER = "out_of_order"  # network failure: cause 27 destination out of order, Reason 0


@dataclass(frozen=True, slots=True)
class DebtorFate:
    """Everything the far end will do on one attempt; durations are simulated seconds."""

    outcome: Outcome
    ring_secs: float  # from dial to answer, busy, congestion or rejection
    talk_secs: float  # on the line once connected to an agent (or a machine's message length)
    patience_secs: float  # a live person waiting for an agent hangs up after this, from answer
    amd_status: str  # what Asterisk's AMD() would conclude: HUMAN, MACHINE, NOTSURE
    amd_cause: str  # AMDCAUSE as AMD() sets it
    amd_secs: float  # how long AMD() listens before deciding


class DebtorModel(Protocol):
    """Decides the fate of an attempt; must depend only on (number, attempt), never call order."""

    def fate(self, number: str, attempt: int) -> DebtorFate: ...


@dataclass(frozen=True, slots=True)
class OutcomeMix:
    """Probabilities of each outcome for one attempt; the rest of 1.0 goes to no answer."""

    human: float = 0.30
    machine: float = 0.15
    busy: float = 0.08
    congestion: float = 0.02
    unallocated: float = 0.05
    rejected: float = 0.05
    out_of_order: float = 0.0

    def __post_init__(self) -> None:
        values = (
            self.human,
            self.machine,
            self.busy,
            self.congestion,
            self.unallocated,
            self.rejected,
            self.out_of_order,
        )
        if any(v < 0 for v in values) or sum(values) > 1.0 + 1e-9:
            raise ValueError(f"outcome probabilities must be >= 0 and sum to <= 1: {self}")

    def cumulative(self) -> list[tuple[float, Outcome]]:
        running = 0.0
        table: list[tuple[float, Outcome]] = []
        for p, outcome in self._pairs():
            running += p
            table.append((running, outcome))
        table.append((math.inf, Outcome.NO_ANSWER))
        return table

    def probability(self, outcome: Outcome) -> float:
        if outcome is Outcome.NO_ANSWER:
            return 1.0 - sum(p for p, _ in self._pairs())
        return dict((o, p) for p, o in self._pairs()).get(outcome, 0.0)

    def _pairs(self) -> list[tuple[float, Outcome]]:
        return [
            (self.human, Outcome.HUMAN),
            (self.machine, Outcome.MACHINE),
            (self.busy, Outcome.BUSY),
            (self.congestion, Outcome.CONGESTION),
            (self.unallocated, Outcome.UNALLOCATED),
            (self.rejected, Outcome.REJECTED),
            (self.out_of_order, Outcome.OUT_OF_ORDER),
        ]


def _lognormal(rng: random.Random, median: float, sigma: float, low: float, high: float) -> float:
    return min(high, max(low, rng.lognormvariate(math.log(median), sigma)))


@dataclass(frozen=True, slots=True)
class SeededDebtors:
    """A population of debtors drawn from `mix`; one private random stream per attempt.

    Seeding each attempt from a hash of (seed, number, attempt) makes a run reproducible even
    when the dialer's pacing changes the order of calls.
    """

    seed: int = 0
    mix: OutcomeMix = OutcomeMix()
    ring_median_secs: float = 9.0
    talk_median_secs: float = 120.0
    patience_median_secs: float = 6.0
    machine_message_secs: float = 25.0
    # AMD is imperfect: real deployments see a few percent of humans taken for machines.
    amd_human_accuracy: float = 0.92
    amd_machine_accuracy: float = 0.85

    def _rng(self, number: str, attempt: int) -> random.Random:
        digest = hashlib.blake2b(f"{self.seed}|{number}|{attempt}".encode(), digest_size=8)
        return random.Random(int.from_bytes(digest.digest(), "big"))

    def fate(self, number: str, attempt: int) -> DebtorFate:
        rng = self._rng(number, attempt)
        draw = rng.random()
        outcome = next(o for limit, o in self.mix.cumulative() if draw < limit)
        ring = _lognormal(rng, self.ring_median_secs, 0.5, 1.5, 45.0)
        talk = _lognormal(rng, self.talk_median_secs, 0.7, 10.0, 1800.0)
        patience = _lognormal(rng, self.patience_median_secs, 0.5, 1.0, 30.0)
        amd_roll = rng.random()
        if outcome is Outcome.MACHINE:
            talk = _lognormal(rng, self.machine_message_secs, 0.3, 8.0, 60.0)
            if amd_roll < self.amd_machine_accuracy:
                amd = ("MACHINE", "LONGGREETING-1500-1500", 2.4)
            else:
                amd = ("NOTSURE", "TOOLONG-5000", 5.0)
        elif amd_roll < self.amd_human_accuracy:
            amd = ("HUMAN", "HUMAN-808-800", 1.8)
        else:
            amd = ("MACHINE", "MAXWORDS-4-4", 2.6)
        if outcome in (Outcome.BUSY, Outcome.CONGESTION, Outcome.UNALLOCATED):
            ring = rng.uniform(0.05, 1.5)  # the network answers these at once
        elif outcome is Outcome.NO_ANSWER:
            ring = 3600.0  # rings on until the dialer gives up
        elif outcome is Outcome.REJECTED:
            ring = rng.uniform(20.0, 60.0)
        return DebtorFate(outcome, ring, talk, patience, amd[0], amd[1], amd[2])


@dataclass(frozen=True, slots=True)
class SuffixDebtors:
    """The capture's test dialplan: the last digit of the number decides.

    1 answers after 2 s, 2 busy, 3 rings on, 4 answering machine, 5 congestion, 6 rejected with
    cause 19 while ringing, 7 short call, 8 long call, 9 human, 0 unallocated number.
    """

    talk_secs: float = 18.0

    def fate(self, number: str, attempt: int) -> DebtorFate:
        last = number[-1:] or "0"
        human = ("HUMAN", "HUMAN-808-800", 1.8)
        machine = ("MACHINE", "LONGGREETING-1500-1500", 2.4)
        table: dict[str, tuple[Outcome, float, float, tuple[str, str, float]]] = {
            "1": (Outcome.HUMAN, 2.0, self.talk_secs, human),
            "2": (Outcome.BUSY, 0.0, 0.0, human),
            "3": (Outcome.NO_ANSWER, 3600.0, 0.0, human),
            "4": (Outcome.MACHINE, 4.0, 30.0, machine),
            "5": (Outcome.CONGESTION, 0.0, 0.0, human),
            "6": (Outcome.REJECTED, 5.0, 0.0, human),
            "7": (Outcome.SHORT_CALL, 2.0, 3.0, human),
            "8": (Outcome.HUMAN, 3.0, 120.0, human),
            "9": (Outcome.HUMAN, 2.0, self.talk_secs, human),
            "0": (Outcome.UNALLOCATED, 0.0, 0.0, human),
        }
        outcome, ring, talk, amd = table.get(last, table["9"])
        return DebtorFate(outcome, ring, talk, 8.0, amd[0], amd[1], amd[2])


@dataclass(frozen=True, slots=True)
class AgentModel:
    """Agents (`Local/<id>@agents`) answer after a short delay and stay until the debtor leaves."""

    answer_secs: float = 0.5
