"""The supervisor console's exception tree.

    DialerError
    └── ConsoleError            anything the console refuses on purpose
        ├── CampaignNotFound    no such campaign in the supervisor's tenant (a 404)
        ├── ControlError        a campaign control out of range; names the field (a 422)
        └── SpyError            a listen / whisper / barge request that cannot be sent (a 422)

Store failures stay `dialer.errors.StoreError`, as everywhere else.
"""

from __future__ import annotations

from dialer.errors import DialerError


class ConsoleError(DialerError):
    """Base of the errors the console raises on purpose."""


class CampaignNotFound(ConsoleError):
    """The campaign does not exist, or belongs to another tenant (the two look the same)."""

    def __init__(self, campaign_id: int) -> None:
        super().__init__(f"campaign {campaign_id} not found")
        self.campaign_id = campaign_id


class ControlError(ConsoleError):
    """A supervisor's control was refused; `field` is the request field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class SpyError(ConsoleError):
    """A listen / whisper / barge Originate was refused before anything was sent."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
