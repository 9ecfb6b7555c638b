"""A supervisor's campaign controls: checked, stored as pacing overrides, audited.

The change is written with `dialer.store.campaigns.set_pacing_overrides`, the same path as
`dialer campaign set`; the engine running the campaign picks it up on its next tick
(`CampaignEngine._follow_supervisor`). Each accepted change leaves an audit row
(`campaign.controls`, `campaign:<id>`) with the values before and after.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from dialer.console.errors import CampaignNotFound, ControlError
from dialer.console.store import campaign_in_tenant
from dialer.errors import StoreError
from dialer.store import campaigns
from dialer.store.db import Store
from dialer.store.users import record_audit
from pacing.models import DialMode

__all__ = [
    "AUDIT_ACTION",
    "LEGAL_MAX_ABANDON_RATE",
    "MAX_DIAL_RATIO",
    "Actor",
    "AppliedChange",
    "CampaignControls",
    "CampaignNotFound",
    "ControlError",
    "apply_controls",
]

log = logging.getLogger(__name__)

# The US (FCC, 47 CFR 64.1200(a)(7)) and UK (Ofcom) limit on abandoned calls: 3% of live answers.
LEGAL_MAX_ABANDON_RATE = 0.03
# A supervisor may raise the ratio cap this far, no further: past it a wrong statistic would
# flood the lines (and the abandonment) before anybody could react.
MAX_DIAL_RATIO = 10.0
STATUSES = ("running", "paused")
DIAL_MODES = tuple(m.value for m in DialMode)
AUDIT_ACTION = "campaign.controls"


class Actor(Protocol):
    """Who changes the campaign; `dialer.web.auth.Caller` is one."""

    @property
    def user_id(self) -> int: ...

    @property
    def username(self) -> str: ...


@dataclass(frozen=True)
class CampaignControls:
    """What a supervisor asks to change; None leaves a setting as it is.

    `status` "paused" stops new dials (calls in progress finish), "running" dials again.
    `target_abandon_rate` is a fraction (0.02 for 2%).
    """

    status: str | None = None
    dial_mode: str | None = None
    target_abandon_rate: float | None = None
    max_dial_ratio: float | None = None

    def validate(self, *, legal_max_abandon_rate: float = LEGAL_MAX_ABANDON_RATE) -> None:
        """ControlError naming the first field out of range, or the request when it is empty."""
        if not _real(legal_max_abandon_rate) or not 0.0 < legal_max_abandon_rate < 1.0:
            raise ValueError(
                f"legal_max_abandon_rate must be in (0, 1), got {legal_max_abandon_rate}"
            )
        if not self.changes():
            raise ControlError("controls", "nothing to change")
        if self.status is not None and self.status not in STATUSES:
            raise ControlError("status", f"{self.status!r} is not one of {', '.join(STATUSES)}")
        if self.dial_mode is not None and self.dial_mode not in DIAL_MODES:
            raise ControlError(
                "dial_mode", f"{self.dial_mode!r} is not one of {', '.join(DIAL_MODES)}"
            )
        rate = self.target_abandon_rate
        if rate is not None and not (_real(rate) and 0.0 < rate <= legal_max_abandon_rate):
            raise ControlError(
                "target_abandon_rate",
                f"{rate!r} must be a fraction above 0 and at most the legal limit "
                f"{legal_max_abandon_rate:g}",
            )
        ratio = self.max_dial_ratio
        if ratio is not None and not (_real(ratio) and 1.0 <= ratio <= MAX_DIAL_RATIO):
            raise ControlError(
                "max_dial_ratio", f"{ratio!r} must be between 1 and {MAX_DIAL_RATIO:g}"
            )

    def changes(self) -> dict[str, Any]:
        """The fields set, by name (what the audit row records as the new values)."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) is not None
        }

    def overrides(self) -> dict[str, Any]:
        """The change as `campaigns.set_pacing_overrides` takes it (status becomes `paused`)."""
        out: dict[str, Any] = {}
        if self.status is not None:
            out["paused"] = self.status == "paused"
        if self.dial_mode is not None:
            out["dial_mode"] = self.dial_mode
        if self.target_abandon_rate is not None:
            out["target_abandon_rate"] = float(self.target_abandon_rate)
        if self.max_dial_ratio is not None:
            out["max_dial_ratio"] = float(self.max_dial_ratio)
        return out


def _real(value: object) -> bool:
    """A finite int or float, and not a bool (True would pass as 1)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class AppliedChange:
    """An accepted change: the fields changed with their values before and after.

    `old` holds the stored overrides: a rate or ratio of None was the configured value, a
    dial mode of None the campaign's own; `revision` is the overrides' new revision.
    """

    old: Mapping[str, Any]
    new: Mapping[str, Any]
    revision: int


def _before(
    overrides: campaigns.PacingOverrides, dial_mode: str, fields: list[str]
) -> dict[str, Any]:
    known: dict[str, Any] = {
        "status": "paused" if overrides.paused else "running",
        "dial_mode": overrides.dial_mode or dial_mode,
        "target_abandon_rate": overrides.target_abandon_rate,
        "max_dial_ratio": overrides.max_dial_ratio,
    }
    return {name: known[name] for name in fields}


def apply_controls(
    store: Store,
    tenant_id: int,
    campaign_id: int,
    controls: CampaignControls,
    *,
    user: Actor,
    now: datetime,
    legal_max_abandon_rate: float = LEGAL_MAX_ABANDON_RATE,
    client: str | None = None,
) -> AppliedChange:
    """Check, store and audit a supervisor's change to a campaign of their tenant.

    ControlError (nothing stored) for a value out of range, CampaignNotFound for a campaign not
    in the tenant, StoreError when the database fails. The engine applies the change on its
    next tick. Blocking: call it from a worker thread.
    """
    controls.validate(legal_max_abandon_rate=legal_max_abandon_rate)
    ref = campaign_in_tenant(store, tenant_id, campaign_id)
    if ref is None:
        raise CampaignNotFound(campaign_id)
    new = controls.changes()
    old = _before(campaigns.pacing_overrides(store, campaign_id), ref.dial_mode, list(new))
    after = campaigns.set_pacing_overrides(store, campaign_id, controls.overrides())
    target = f"campaign:{campaign_id}"
    try:
        record_audit(
            store,
            tenant_id,
            user.user_id,
            user.username,
            AUDIT_ACTION,
            target,
            old,
            new,
            client,
            now,
        )
    except StoreError:
        # The change is in force: say so, with what the missing audit row would have said.
        log.error(
            "x campaign %s: controls by %s applied (rev %d) but not audited: %s -> %s",
            campaign_id,
            user.username,
            after.revision,
            old,
            new,
        )
        raise
    log.info(
        "= campaign %s: controls by %s: %s -> %s (rev %d)",
        campaign_id,
        user.username,
        old,
        new,
        after.revision,
    )
    return AppliedChange(old=old, new=new, revision=after.revision)
