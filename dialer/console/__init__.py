"""The supervisor console's body: live figures, campaign controls, listen / whisper / barge.

Pure and store-level parts only; the web layer (dialer/web) calls them and adds nothing of
its own. See docs/agents-web.md.
"""

from dialer.console.controls import AppliedChange, CampaignControls, apply_controls
from dialer.console.errors import CampaignNotFound, ConsoleError, ControlError, SpyError
from dialer.console.figures import CampaignFigures, EngineView, campaign_json
from dialer.console.spy import SpyMode, spy_originate
from dialer.console.store import AbandonTotals, WindowTotals, abandon_totals

__all__ = [
    "AbandonTotals",
    "AppliedChange",
    "CampaignControls",
    "CampaignFigures",
    "CampaignNotFound",
    "ConsoleError",
    "ControlError",
    "EngineView",
    "SpyError",
    "SpyMode",
    "WindowTotals",
    "abandon_totals",
    "apply_controls",
    "campaign_json",
    "spy_originate",
]
