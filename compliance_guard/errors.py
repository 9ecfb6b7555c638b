"""The compliance guard's exception tree: every error it raises on purpose derives from GuardError."""

from __future__ import annotations


class GuardError(Exception):
    """Base of every error raised on purpose by the compliance guard."""


class RuleSetError(GuardError):
    """A rule set could not be loaded or is invalid; the message names the file and the key."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        super().__init__(f"{source}: {key}: {problem}")
        self.source = source
        self.key = key
        self.problem = problem


class RuleSetNotFound(GuardError):
    """No rule set of that name is known (neither a preset nor a loaded custom set)."""


class InvalidRequest(GuardError):
    """An attempt request or an event is malformed; the message names the field."""


class StoreUnavailable(GuardError):
    """The ledger backend could not be reached or failed mid-operation; the guard denies."""


class UnknownReservation(GuardError):
    """A release or outcome named a reservation the ledger does not hold."""


class ReservationClosed(GuardError):
    """An outcome was reported for a reservation already released or already given an outcome."""


class AuditError(GuardError):
    """The audit log could not be read or written."""
