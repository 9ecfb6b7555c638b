"""What messaging exchanges: message states, outgoing messages, send results, receipts (frozen)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

from compliance_guard.models import Channel

__all__ = [
    "Channel",
    "DeliveryReceipt",
    "InboundResult",
    "MessageStatus",
    "Outgoing",
    "SendResult",
]


class MessageStatus(enum.StrEnum):
    PLANNED = "planned"  # rendered and stored, not yet put to the guard
    SCHEDULED = "scheduled"  # the guard said not now: goes at `not_before`
    SENDING = "sending"  # reserved by the guard and handed to the provider
    SENT = "sent"  # the provider accepted it
    DELIVERED = "delivered"  # the receipt says it reached the handset / mailbox
    FAILED = "failed"  # the provider refused it, or it never got through
    BLOCKED = "blocked"  # the guard refused it with no foreseeable end (opt-out, flag)
    # A crash left an e-mail between "handed to SMTP" and "accepted": it may have gone, so it
    # is never sent again (a re-run never sends twice); a person decides.
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message as a provider sees it. `ref` is ours and stable across retries and re-runs,
    so a gateway that de-duplicates by client reference never delivers it twice."""

    ref: str
    to: str
    body: str
    subject: str | None = None


@dataclass(frozen=True, slots=True)
class SendResult:
    """What the provider said of one message: accepted with its id, or failed (and whether
    trying again could help)."""

    ref: str
    ok: bool
    provider_message_id: str | None = None
    error: str | None = None
    permanent: bool = False
    tries: int = 1


@dataclass(frozen=True, slots=True)
class DeliveryReceipt:
    """The gateway's word on a message it accepted (called back or polled)."""

    provider_message_id: str
    delivered: bool
    at: datetime
    detail: str = ""


@dataclass(frozen=True, slots=True)
class InboundResult:
    """An inbound reply handled: whether it opted the number out, with which guard flags, and
    the channels the rule set now refuses for that number."""

    sender: str
    opted_out: bool
    flags: tuple[str, ...] = ()
    channels_refused: tuple[Channel, ...] = ()
    debtor_ids: tuple[int, ...] = field(default_factory=tuple)
