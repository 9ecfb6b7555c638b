"""Pure pacing algorithms: how many calls to originate now, given agents, calls in flight and statistics.

Nothing here reads a clock, touches I/O or draws random numbers: time comes in `PacingState.now`
and event fields. See `pacing.models` for the interface the dialer and the simulator call.
"""

from pacing.abandonment import AbandonmentLedger
from pacing.errors import PacingError, SnapshotError, UnknownAlgorithm
from pacing.models import (
    AbandonmentReport,
    AgentCallEnded,
    AnswerKind,
    CallOutcome,
    DialMode,
    Overrides,
    Pacer,
    PacingEvent,
    PacingSettings,
    PacingState,
    VicidialVariant,
    WindowCount,
)
from pacing.service import CampaignPacer, make_pacer
from pacing.statistics import CampaignStatistics

__all__ = [
    "AbandonmentLedger",
    "AbandonmentReport",
    "AgentCallEnded",
    "AnswerKind",
    "CallOutcome",
    "CampaignPacer",
    "CampaignStatistics",
    "DialMode",
    "Overrides",
    "Pacer",
    "PacingError",
    "PacingEvent",
    "PacingSettings",
    "PacingState",
    "SnapshotError",
    "UnknownAlgorithm",
    "VicidialVariant",
    "WindowCount",
    "make_pacer",
]
