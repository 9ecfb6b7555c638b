"""Call outcomes and attempt status values shared by the engine, the store and reports."""

from __future__ import annotations

import enum


class Outcome(enum.StrEnum):
    """Final classification of one call attempt (one Originate)."""

    # A live person answered. Whether an agent was connected in time is a separate fact
    # (the attempt's `connected_at` / `abandoned`), so abandonment never hides the answer.
    ANSWERED = "answered"
    MACHINE = "machine"  # answering machine detected
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    CONGESTION = "congestion"
    INVALID_NUMBER = "invalid_number"
    FAILED = "failed"  # any other network or dialplan failure
    UNKNOWN = "unknown"  # reconciled after a crash: the real outcome could not be learned


# Outcomes counted in the demo/run summary `outcomes` object (`unknown` only appears after a crash).
SUMMARY_OUTCOMES: tuple[Outcome, ...] = (
    Outcome.ANSWERED,
    Outcome.BUSY,
    Outcome.NO_ANSWER,
    Outcome.CONGESTION,
    Outcome.INVALID_NUMBER,
    Outcome.MACHINE,
    Outcome.FAILED,
)


class AttemptStatus(enum.StrEnum):
    """Where an attempt row is in its life; only `ended` rows carry a final outcome."""

    RESERVED = "reserved"  # row written, Originate not yet sent
    DIALING = "dialing"  # Originate sent, no answer yet
    ANSWERED = "answered"  # far end answered, not yet with an agent
    CONNECTED = "connected"  # bridged to an agent
    ENDED = "ended"

    @property
    def in_progress(self) -> bool:
        return self is not AttemptStatus.ENDED
