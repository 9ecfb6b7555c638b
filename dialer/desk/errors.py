"""The desk's exception tree: every error it raises on purpose derives from DeskError."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from dialer.errors import DialerError

if TYPE_CHECKING:
    from dialer.desk.dispositions import GuardEffects


class DeskError(DialerError):
    """Base of every error raised on purpose by the agent desktop's services."""


class DispositionError(DeskError, ValueError):
    """A disposition that cannot be recorded as asked; `field` names the request field at fault.

    Nothing was written. `next_allowed_at` is set when the compliance guard refused a callback
    time and knows when it would allow one.
    """

    def __init__(
        self, field: str, message: str, *, next_allowed_at: datetime | None = None
    ) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.next_allowed_at = next_allowed_at


class ComplianceNotUpdated(DeskError):
    """The disposition is saved, but the compliance guard could not be told (its ledger was
    unreachable). `apply_guard_effects(guard, tenant, error.effects, now)` tells it again; every
    effect is idempotent."""

    def __init__(
        self, disposition_id: int, callback_id: int | None, effects: GuardEffects, reason: str
    ) -> None:
        super().__init__(
            f"disposition {disposition_id} saved, but the compliance guard was not updated: {reason}"
        )
        self.disposition_id = disposition_id
        self.callback_id = callback_id
        self.effects = effects
        self.reason = reason
