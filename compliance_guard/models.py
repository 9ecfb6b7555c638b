"""Requests, outcomes, flags and decisions exchanged with the compliance guard (frozen data)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, time


class Channel(enum.StrEnum):
    CALL = "call"
    SMS = "sms"
    EMAIL = "email"


class PhoneType(enum.StrEnum):
    MOBILE = "mobile"
    HOME = "home"
    WORK = "work"
    OTHER = "other"


class Outcome(enum.StrEnum):
    """What an attempt turned out to be; rules name which of these they count."""

    CONVERSATION = "conversation"  # right-party contact that was talked to
    VOICEMAIL = "voicemail"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    MACHINE = "machine"
    ABANDONED = "abandoned"
    NETWORK_FAILURE = "network_failure"  # never reached the network: not a placed call
    WRONG_PARTY = "wrong_party"


class Flag(enum.StrEnum):
    DO_NOT_CALL = "do_not_call"
    CEASE_COMMUNICATION = "cease_communication"
    ATTORNEY_REPRESENTED = "attorney_represented"
    BANKRUPTCY = "bankruptcy"
    DISPUTE = "dispute"
    DECEASED = "deceased"
    OPT_OUT_CALL = "opt_out_call"
    OPT_OUT_SMS = "opt_out_sms"
    OPT_OUT_EMAIL = "opt_out_email"
    CONSENT_REVOKED = "consent_revoked"
    # Not a prohibition: set by the collection workflow when the debtor cannot be reached,
    # which is what some rule sets (China) require before a third party may be contacted.
    DEBTOR_UNREACHABLE = "debtor_unreachable"


class FlagScope(enum.StrEnum):
    PERSON = "person"
    DEBT = "debt"
    PHONE = "phone"


@dataclass(frozen=True, slots=True)
class Preferences:
    """What the debtor asked for: "not before noon", "not Sundays" (weekday 0 = Monday)."""

    not_before: time | None = None
    not_after: time | None = None
    no_weekdays: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class AttemptRequest:
    """One contact attempt the dialer wants to make; every field is an input to the decision."""

    tenant: str
    person_id: str
    debt_ids: tuple[str, ...]
    phone: str  # E.164; for e-mail the address may go here, zones then come from the address
    campaign_id: str
    channel: Channel = Channel.CALL
    phone_type: PhoneType = PhoneType.OTHER
    time_zones: tuple[str, ...] = ()  # explicit IANA zones on the debtor or the phone
    postal_code: str | None = None
    country: str | None = None  # ISO 3166 alpha-2 of the address
    region: str | None = None  # state / province code of the address, when known
    third_party: bool = False  # calling a relative or reference, not the debtor
    preferences: Preferences = field(default_factory=Preferences)
    # When the debtor's record (zones, address, flags) was read; older than the guard's
    # max_facts_age means the decision would rest on stale data, so the guard denies.
    facts_as_of: datetime | None = None


@dataclass(frozen=True, slots=True)
class Reason:
    """One rule that denied, in words a compliance officer can read, with its legal basis."""

    rule: str
    message: str
    citation: str = ""


@dataclass(frozen=True, slots=True)
class Decision:
    """The guard's answer: allowed with a reservation id, or denied with every reason."""

    allowed: bool
    reservation_id: str | None
    reasons: tuple[Reason, ...]
    next_allowed_at: datetime | None  # None when denied with no foreseeable end (a flag)
    zones: tuple[str, ...]
    ruleset: str  # name@version
    ruleset_hash: str
    at: datetime
