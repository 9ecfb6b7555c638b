"""The database schema as typed SQLAlchemy models: one row per tenant-owned fact of the trade."""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.expression import false

# Stable constraint names, so migrations can drop and alter them on every database alike.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Money: 4 decimal places hold every ISO 4217 minor unit; 14 integer digits hold any portfolio.
MONEY = Numeric(18, 4)
# Attempts and dispositions grow without bound; SQLite only auto-increments INTEGER keys.
BIG_ID = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every database.

    SQLite has no timezone type and hands back naive values; PostgreSQL hands back values in the
    session's zone. Both come back as aware UTC, and a naive value is refused on the way in
    because its meaning would depend on the server it ran on.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()}: pass a timezone-aware value")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class PhoneType(enum.StrEnum):
    MOBILE = "mobile"
    HOME = "home"
    WORK = "work"
    OTHER = "other"


class DebtStatus(enum.StrEnum):
    OPEN = "open"
    SETTLED = "settled"  # paid in full or by agreement
    CLOSED = "closed"  # recalled by the creditor, written off, sold on
    DISPUTED = "disputed"  # collection paused while the debtor's dispute is examined


class CampaignStatus(enum.StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    FINISHED = "finished"


class DispositionCode(enum.StrEnum):
    """What the agent recorded after talking (or failing to talk) to the debtor."""

    PROMISE_TO_PAY = "promise_to_pay"
    PARTIAL_PAYMENT = "partial_payment"
    CALLBACK = "callback"
    WRONG_PARTY = "wrong_party"
    REFUSED = "refused"
    DISPUTE = "dispute"
    DECEASED = "deceased"
    DO_NOT_CALL = "do_not_call"
    NO_CONTACT = "no_contact"
    OTHER = "other"


class Role(enum.StrEnum):
    """What a user of the pages may do; each role sees its own pages and endpoints."""

    AGENT = "agent"
    SUPERVISOR = "supervisor"
    QA = "qa"
    MANAGER = "manager"
    ADMIN = "admin"


class CallbackStatus(enum.StrEnum):
    PENDING = "pending"
    DIALLED = "dialled"  # handed to the dialer (an attempt row names it)
    DONE = "done"
    CANCELLED = "cancelled"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UtcDateTime(),
        Decimal: MONEY,
        dict[str, Any]: JSON(),
    }


class Tenant(Base):
    """A creditor or agency whose portfolio is kept apart from every other's."""

    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime]


class Campaign(Base):
    __tablename__ = "campaigns"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    name: Mapped[str] = mapped_column(String(100))
    dial_mode: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default=CampaignStatus.ACTIVE.value)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime]


class Debtor(Base):
    """A person who owes; may owe several debts and be reached on several phones."""

    __tablename__ = "debtors"
    __table_args__ = (UniqueConstraint("tenant_id", "external_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    external_id: Mapped[str] = mapped_column(String(64))
    full_name: Mapped[str] = mapped_column(String(200))
    national_id: Mapped[str | None] = mapped_column(String(64))
    timezone: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]


class Debt(Base):
    """One account placed with us for collection."""

    __tablename__ = "debts"
    __table_args__ = (UniqueConstraint("tenant_id", "external_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    debtor_id: Mapped[int] = mapped_column(ForeignKey("debtors.id"), index=True)
    external_id: Mapped[str] = mapped_column(String(64))
    principal: Mapped[Decimal]
    balance: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3))
    days_past_due: Mapped[int] = mapped_column(Integer)
    # The day days_past_due held on (migration 0016): the import's day, moved on by the nightly
    # ageing (dialer/cases/aging.py) so a debt left unpaid grows older by itself.
    dpd_as_of: Mapped[date | None] = mapped_column(Date)
    risk_score: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(20), default=DebtStatus.OPEN.value)
    # The creditor's product line (card, auto, mortgage ...), for assignment rules (0012).
    product: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime]


# The hopper walks a tenant's open debts from the highest balance down and stops at its LIMIT.
Index(
    "ix_debts_tenant_id_status_balance_id",
    Debt.tenant_id,
    Debt.status,
    Debt.balance.desc(),
    Debt.id,
)


class Phone(Base):
    __tablename__ = "phones"
    # The unique key leads with debtor_id, so it also serves "phones of this debtor".
    __table_args__ = (
        UniqueConstraint("debtor_id", "e164"),
        Index(None, "tenant_id", "e164"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    debtor_id: Mapped[int] = mapped_column(ForeignKey("debtors.id"))
    e164: Mapped[str] = mapped_column(String(16))
    phone_type: Mapped[str] = mapped_column(String(10))
    source: Mapped[str | None] = mapped_column(String(40))
    consent: Mapped[bool] = mapped_column(Boolean, default=False)
    # Set only when known better than the number's own prefix (a ported or roaming mobile).
    timezone: Mapped[str | None] = mapped_column(String(64))
    do_not_call: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]


class Address(Base):
    __tablename__ = "addresses"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    debtor_id: Mapped[int] = mapped_column(ForeignKey("debtors.id"), index=True)
    line1: Mapped[str | None] = mapped_column(String(200))
    city: Mapped[str | None] = mapped_column(String(100))
    region: Mapped[str | None] = mapped_column(String(100))
    postal_code: Mapped[str | None] = mapped_column(String(20))
    country: Mapped[str | None] = mapped_column(String(2))


class Agent(Base):
    __tablename__ = "agents"
    __table_args__ = (UniqueConstraint("tenant_id", "external_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    external_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(128))


class CallAttempt(Base):
    """One Originate: written before the call leaves, updated as Asterisk reports on it."""

    __tablename__ = "call_attempts"
    __table_args__ = (
        Index(None, "campaign_id", "status"),
        Index(None, "campaign_id", "phone_id"),
        Index(None, "uniqueid"),
        Index(None, "status", "node_id"),
    )

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    debtor_id: Mapped[int] = mapped_column(ForeignKey("debtors.id"))
    debt_id: Mapped[int | None] = mapped_column(ForeignKey("debts.id"))
    phone_id: Mapped[int] = mapped_column(ForeignKey("phones.id"))
    status: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str | None] = mapped_column(String(20))
    abandoned: Mapped[bool] = mapped_column(Boolean, default=False)
    # Asterisk's OriginateResponse Reason (0 failed, 1 no such extension, 3 no answer, 4 answered,
    # 5 busy, 8 congestion).
    reason: Mapped[int | None] = mapped_column(Integer)
    dialed_at: Mapped[datetime]
    answered_at: Mapped[datetime | None]
    connected_at: Mapped[datetime | None]
    hungup_at: Mapped[datetime | None]
    hangup_cause: Mapped[int | None] = mapped_column(Integer)  # Q.850 cause code
    server: Mapped[str] = mapped_column(String(64))
    node_id: Mapped[str] = mapped_column(String(64))
    uniqueid: Mapped[str | None] = mapped_column(String(64))
    linkedid: Mapped[str | None] = mapped_column(String(64))
    channel: Mapped[str | None] = mapped_column(String(200))
    # The agent's id as the dialer knows it (config `agents[].id`), not a row key: attempts are
    # written by the engine, which never waits on the agents table.
    agent_id: Mapped[str | None] = mapped_column(String(64))
    recording_path: Mapped[str | None] = mapped_column(String(500))
    amd_status: Mapped[str | None] = mapped_column(String(32))
    # The compliance guard's reservation for this call: its outcome must reach the ledger, if
    # need be after a restart (see the engine's recovery).
    reservation_id: Mapped[str | None] = mapped_column(String(64))


class Disposition(Base):
    __tablename__ = "dispositions"

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    attempt_id: Mapped[int] = mapped_column(BIG_ID, ForeignKey("call_attempts.id"), index=True)
    agent_id: Mapped[str] = mapped_column(String(64))
    code: Mapped[str] = mapped_column(String(20))
    promise_amount: Mapped[Decimal | None]
    promise_date: Mapped[date | None] = mapped_column(Date)
    callback_at: Mapped[datetime | None]
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    # A partial payment taken on the call (card, transfer promised during the call).
    payment_amount: Mapped[Decimal | None]


class PacingSnapshot(Base):
    """A campaign's learned pacing statistics, so a campaign resumed later does not start cold."""

    __tablename__ = "pacing_snapshots"

    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    snapshot: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime]


class User(Base):
    """Someone who logs in to the pages: an agent, supervisor, QA, manager or admin."""

    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("tenant_id", "username"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    username: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    # argon2id, in the encoded form argon2-cffi writes (parameters and salt included)
    password_hash: Mapped[str] = mapped_column(String(255))
    language: Mapped[str] = mapped_column(String(8), default="en")
    # For role agent: the agent id the dialer routes calls to (config/attempts `agent_id`).
    agent_id: Mapped[str | None] = mapped_column(String(64))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    password_changed_at: Mapped[datetime]


class WebSession(Base):
    """A logged-in browser: the cookie carries a random token, the table only its SHA-256."""

    __tablename__ = "web_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]


class AgentSessionRow(Base):
    """One agent's shift: from login to logout, with the state they are in now.

    The dialer writes every change; a restarted dialer reads the open rows back, so agents stay
    logged in (and paused if their phone is gone) across restarts.
    """

    __tablename__ = "agent_sessions"
    __table_args__ = (Index(None, "tenant_id", "agent_id", "logged_out_at"),)

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    agent_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    node_id: Mapped[str] = mapped_column(String(64))
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id"))
    # The agent's phone as Asterisk dials it (PJSIP/1001, Local/agent1@agents).
    phone: Mapped[str] = mapped_column(String(128))
    connect: Mapped[str] = mapped_column(String(8))
    # The nailed-up call's ChannelId, so a restarted dialer finds it among live channels.
    phone_call_id: Mapped[str | None] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16))
    state_since: Mapped[datetime]
    pause_reason: Mapped[str | None] = mapped_column(String(32))
    attempt_id: Mapped[int | None] = mapped_column(BIG_ID)
    logged_in_at: Mapped[datetime]
    logged_out_at: Mapped[datetime | None]


class AgentStateChange(Base):
    """Every agent state change, for the reports (time in state, pause reasons, occupancy)."""

    __tablename__ = "agent_state_changes"
    __table_args__ = (Index(None, "tenant_id", "agent_id", "at"),)

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    session_id: Mapped[int] = mapped_column(BIG_ID, ForeignKey("agent_sessions.id"))
    agent_id: Mapped[str] = mapped_column(String(64))
    from_state: Mapped[str] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(32))
    attempt_id: Mapped[int | None] = mapped_column(BIG_ID)
    at: Mapped[datetime]


class AuditEvent(Base):
    """Who did what, when, from what to what: supervisor changes, listening in, refusals."""

    __tablename__ = "audit_events"
    __table_args__ = (Index(None, "tenant_id", "at"),)

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    username: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(200))
    old_value: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    new_value: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    client: Mapped[str | None] = mapped_column(String(64))
    at: Mapped[datetime]


class Callback(Base):
    """A call the debtor asked for at a time; dialled then, through the guard like any call."""

    __tablename__ = "callbacks"
    __table_args__ = (Index(None, "campaign_id", "status", "due_at"),)

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    debtor_id: Mapped[int] = mapped_column(ForeignKey("debtors.id"))
    debt_id: Mapped[int | None] = mapped_column(ForeignKey("debts.id"))
    phone_id: Mapped[int] = mapped_column(ForeignKey("phones.id"))
    due_at: Mapped[datetime]
    # Set: only this agent takes the call (a personal callback); empty: any ready agent.
    agent_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=CallbackStatus.PENDING.value)
    disposition_id: Mapped[int | None] = mapped_column(BIG_ID, ForeignKey("dispositions.id"))
    attempt_id: Mapped[int | None] = mapped_column(BIG_ID)
    created_at: Mapped[datetime]


class RecordingStatus(enum.StrEnum):
    PENDING = "pending"  # known, not yet in the archive
    ARCHIVED = "archived"  # hashed, in the archive, entered in the evidence manifest
    FAILED = "failed"  # corrupt, truncated or never found: `error` says why
    DELETED = "deleted"  # removed by the retention job (entered in the manifest)


class JobKind(enum.StrEnum):
    ARCHIVE = "archive"
    ANALYSE = "analyse"  # VAD, talk time, silence, overtalk
    TRANSCRIBE = "transcribe"


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"  # leased to `locked_by` until `locked_until`
    DONE = "done"
    FAILED = "failed"  # gave up: `error` says why


class Recording(Base):
    """One connected call's recording: where it was written, where it is kept, its hash."""

    __tablename__ = "recordings"
    __table_args__ = (
        Index(None, "status", "retain_until"),
        Index(None, "tenant_id", "recorded_at"),
    )

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    attempt_id: Mapped[int] = mapped_column(BIG_ID, ForeignKey("call_attempts.id"), unique=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    # The file as Asterisk wrote it (the attempt's recording_path).
    source_path: Mapped[str] = mapped_column(String(500))
    # Relative to the archive root: <tenant>/<YYYY>/<MM>/<DD>/attempt-<id>-<sha8>.wav
    archive_path: Mapped[str | None] = mapped_column(String(500))
    sha256: Mapped[str | None] = mapped_column(String(64))
    bytes: Mapped[int | None] = mapped_column(BigInteger)
    duration_s: Mapped[float | None] = mapped_column(Float)
    sample_rate: Mapped[int | None] = mapped_column(Integer)
    channels: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=RecordingStatus.PENDING.value)
    error: Mapped[str | None] = mapped_column(Text)
    recorded_at: Mapped[datetime]
    archived_at: Mapped[datetime | None]
    retain_until: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]


class RecordingJob(Base):
    """A unit of work on a recording, leased to one worker at a time (see recording/jobs.py)."""

    __tablename__ = "recording_jobs"
    __table_args__ = (
        UniqueConstraint("recording_id", "kind"),
        # The claim: queued jobs of a kind that are due, oldest first, and expired leases.
        Index(None, "state", "kind", "not_before"),
    )

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    recording_id: Mapped[int] = mapped_column(BIG_ID, ForeignKey("recordings.id"))
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default=JobState.QUEUED.value)
    # Claims so far; also the fencing token: done/fail must name the claim they finish.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[datetime]
    locked_by: Mapped[str | None] = mapped_column(String(128))
    locked_until: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Party(enum.StrEnum):
    """Whose voice a transcript holds: each channel of a stereo or split recording, or both."""

    AGENT = "agent"
    DEBTOR = "debtor"
    MIXED = "mixed"  # one mono recording of both


class Transcript(Base):
    """What one party of one call said, as one engine heard it (re-transcribing replaces it).

    The search index (SQLite FTS5 `transcript_fts`, PostgreSQL `transcript_search`) is made by
    migration 0008 for the database at hand and kept by recording/transcripts.py, so it is not
    modelled here.
    """

    __tablename__ = "transcripts"
    __table_args__ = (UniqueConstraint("attempt_id", "party", "engine"),)

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    attempt_id: Mapped[int] = mapped_column(BIG_ID, ForeignKey("call_attempts.id"))
    recording_id: Mapped[int | None] = mapped_column(BIG_ID, ForeignKey("recordings.id"))
    party: Mapped[str] = mapped_column(String(8))
    engine: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(200))
    language: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    confidence: Mapped[float | None] = mapped_column(Float)
    # The call's facts the index filters on (recording/transcripts.py `index_tags`), as
    # indexed: its entries are removed with exactly these.
    tags: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class TranscriptSegment(Base):
    """One stretch of speech: its seconds from the start of the recording and its words,
    each `{"w": word, "s": start_s, "e": end_s, "c": confidence}`. Its id is its key in the
    search index."""

    __tablename__ = "transcript_segments"
    __table_args__ = (UniqueConstraint("transcript_id", "seq"),)

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    transcript_id: Mapped[int] = mapped_column(BIG_ID, ForeignKey("transcripts.id"))
    seq: Mapped[int] = mapped_column(Integer)
    start_s: Mapped[float] = mapped_column(Float)
    end_s: Mapped[float] = mapped_column(Float)
    text: Mapped[str] = mapped_column(Text)
    words: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    confidence: Mapped[float | None] = mapped_column(Float)


class QaFlagKind(enum.StrEnum):
    FORBIDDEN = "forbidden"  # a forbidden phrase was said
    MISSING = "missing"  # a mandatory phrase was not said in time
    SILENCE = "silence"  # over the rule set's silence limits
    OVERTALK = "overtalk"  # both talking at once, over the limits


class QaVerdict(enum.StrEnum):
    RIGHT = "right"
    WRONG = "wrong"


class QaFlag(Base):
    """One QA finding on a call, at the second it concerns; a supervisor marks it right or
    wrong, which gives each rule its precision."""

    __tablename__ = "qa_flags"
    __table_args__ = (Index(None, "attempt_id"), Index(None, "tenant_id", "rule_id", "verdict"))

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    attempt_id: Mapped[int] = mapped_column(BIG_ID, ForeignKey("call_attempts.id"))
    rule_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    party: Mapped[str | None] = mapped_column(String(8))
    at_s: Mapped[float] = mapped_column(Float)
    snippet: Mapped[str] = mapped_column(Text)
    # How sure the matcher was, 0..100 (100 for measured limits).
    score: Mapped[float] = mapped_column(Float)
    verdict: Mapped[str | None] = mapped_column(String(8))
    reviewed_by: Mapped[str | None] = mapped_column(String(64))
    reviewed_at: Mapped[datetime | None]


class QaScore(Base):
    """A call's QA score (100: nothing found) and how many of its flags stand (not judged
    wrong): the supervisors' list puts calls with flags first, lowest score first."""

    __tablename__ = "qa_scores"
    __table_args__ = (Index(None, "tenant_id", "score", "attempt_id"),)

    attempt_id: Mapped[int] = mapped_column(
        BIG_ID, ForeignKey("call_attempts.id"), primary_key=True
    )
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    score: Mapped[float] = mapped_column(Float)
    flags: Mapped[int] = mapped_column(Integer)
    scored_at: Mapped[datetime]


class CaseStatus(enum.StrEnum):
    """Where a debtor's case stands in collection (dialer/cases/models.py: the transitions)."""

    NEW = "new"
    IN_PROGRESS = "in_progress"
    PROMISE_TO_PAY = "promise_to_pay"
    BROKEN_PROMISE = "broken_promise"
    PAID = "paid"  # the balance of every debt reached zero
    SETTLED = "settled"  # closed by agreement for less than the balance
    LEGAL = "legal"
    CLOSED = "closed"


class PromiseStatus(enum.StrEnum):
    OPEN = "open"
    KEPT = "kept"  # paid in full by the due date
    BROKEN = "broken"  # the due date passed unpaid
    CANCELLED = "cancelled"  # replaced by a newer promise, or the case closed


class Case(Base):
    """One debtor's case: every debt of theirs is worked as one, by one collector at a time."""

    __tablename__ = "cases"
    __table_args__ = (
        UniqueConstraint("debtor_id"),
        Index(None, "tenant_id", "status"),
        Index(None, "tenant_id", "agent_id"),
        # Segments: "cases a call step queued for campaign C", "cases on strategy S, step N".
        Index(None, "tenant_id", "queued_campaign"),
        Index(None, "tenant_id", "strategy", "strategy_step"),
        Index(None, "tenant_id", "team_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    debtor_id: Mapped[int] = mapped_column(ForeignKey("debtors.id"))
    status: Mapped[str] = mapped_column(String(20), default=CaseStatus.NEW.value)
    # The collector working the case, as the dialer knows agents (users.agent_id); empty: nobody.
    agent_id: Mapped[str | None] = mapped_column(String(64))
    opened_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime]
    status_changed_at: Mapped[datetime]
    # The nightly risk score (dialer/cases/rescore.py): value, band, the terms that made it
    # as JSON [[feature, value, points, reason], ...], when and by which model.
    risk_score: Mapped[float | None] = mapped_column(Float)
    risk_band: Mapped[str | None] = mapped_column(String(8))
    risk_terms: Mapped[str | None] = mapped_column(Text)
    scored_at: Mapped[datetime | None]
    score_model: Mapped[str | None] = mapped_column(String(100))
    # Where the case is in its strategy (dialer/cases/strategy_run.py) and why it got it
    # (JSON list of reasons). Empty strategy: not yet run.
    strategy: Mapped[str | None] = mapped_column(String(64))
    strategy_step: Mapped[int | None] = mapped_column(Integer)
    strategy_since: Mapped[date | None] = mapped_column(Date)
    strategy_last_run: Mapped[date | None] = mapped_column(Date)
    strategy_reasons: Mapped[str | None] = mapped_column(Text)
    # A manager's choice of strategy: the nightly re-choice leaves the case on it until cleared.
    override_by: Mapped[str | None] = mapped_column(String(100))
    override_why: Mapped[str | None] = mapped_column(Text)
    override_at: Mapped[datetime | None]
    # The call list a strategy's call step put the case on (campaign name), which step of
    # `strategy` did and since when; cleared when the case moves on without a call.
    queued_campaign: Mapped[str | None] = mapped_column(String(100))
    queued_step: Mapped[int | None] = mapped_column(Integer)
    queued_since: Mapped[date | None] = mapped_column(Date)
    strategy_finished: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Where the assignment rules (dialer/cases/assignment.py) put the case: its team, the
    # dialer campaign (name) it is given to, which rule did it and when (migration 0012).
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id"))
    assigned_campaign: Mapped[str | None] = mapped_column(String(100))
    assignment_rule: Mapped[str | None] = mapped_column(String(64))
    assigned_at: Mapped[datetime | None]
    # Given to its collector by hand (migration 0015): the nightly assignment keeps the case
    # with that collector while they are active.
    agent_pinned: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class CaseStrategyAction(Base):
    """What one day's strategy run did for a case at one step: a message sent (or denied by
    the guard, or scheduled by it), a call list joined, an escalation. Unique per case, day,
    strategy, step and kind: a day run twice finds its rows and does nothing twice."""

    __tablename__ = "case_strategy_actions"
    __table_args__ = (
        UniqueConstraint("case_id", "run_date", "strategy", "step", "kind"),
        Index(None, "tenant_id", "run_date"),
        Index(None, "outcome"),
    )

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    run_date: Mapped[date] = mapped_column(Date)
    strategy: Mapped[str] = mapped_column(String(64))
    step: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))  # call, sms, email, escalate, set_status, ...
    campaign: Mapped[str | None] = mapped_column(String(100))
    template: Mapped[str | None] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(64))
    # pending, sent, scheduled, blocked, failed, skipped, queued, escalated, status_set,
    # refused, finished (dialer/cases/strategy_run.py: Outcome)
    outcome: Mapped[str] = mapped_column(String(16))
    # The messages row (dialer/messaging/tables.py) an sms or email step planned.
    message_id: Mapped[int | None] = mapped_column(BIG_ID)
    batch_key: Mapped[str | None] = mapped_column(String(100))
    detail: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class CaseHistory(Base):
    """One change of a case (its status, its collector): from what to what, who and why."""

    __tablename__ = "case_history"
    __table_args__ = (Index(None, "case_id", "at"),)

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    field: Mapped[str] = mapped_column(String(16))
    old_value: Mapped[str | None] = mapped_column(String(64))
    new_value: Mapped[str | None] = mapped_column(String(64))
    # "user:<username>", "agent:<agent id>" or "system:<job>"
    actor: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime]


class CaseNote(Base):
    __tablename__ = "case_notes"
    __table_args__ = (Index(None, "case_id", "created_at"),)

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    author: Mapped[str] = mapped_column(String(100))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class Payment(Base):
    """Money received on one debt; the creditor's payment id makes posting it twice harmless."""

    __tablename__ = "payments"
    __table_args__ = (
        UniqueConstraint("tenant_id", "external_id"),
        Index(None, "case_id", "paid_on"),
    )

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    debt_id: Mapped[int] = mapped_column(ForeignKey("debts.id"))
    external_id: Mapped[str] = mapped_column(String(64))
    amount: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3))
    paid_on: Mapped[date] = mapped_column(Date)
    method: Mapped[str | None] = mapped_column(String(32))
    reference: Mapped[str | None] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(String(16))  # csv, api
    recorded_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime]


class Promise(Base):
    """A promise to pay `amount` by `due_date`; kept by payments dated from `promised_on` on."""

    __tablename__ = "promises"
    __table_args__ = (
        Index(None, "case_id"),
        # The nightly run: a tenant's open promises whose date has passed.
        Index(None, "status", "due_date"),
    )

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    debt_id: Mapped[int | None] = mapped_column(ForeignKey("debts.id"))
    amount: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3))
    promised_on: Mapped[date] = mapped_column(Date)
    due_date: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), default=PromiseStatus.OPEN.value)
    disposition_id: Mapped[int | None] = mapped_column(BIG_ID, ForeignKey("dispositions.id"))
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]


# A case's timeline lists every call to its debtor.
Index("ix_call_attempts_debtor_id", CallAttempt.debtor_id)


class Team(Base):
    """A group of collectors that assignment rules give cases to (migration 0012)."""

    __tablename__ = "teams"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]


class Collector(Base):
    """An agent who works cases: their team, seniority, languages, skills and how many open
    cases they may hold. `agent_id` is the dialer's agent id (users.agent_id, cases.agent_id)."""

    __tablename__ = "collectors"
    __table_args__ = (UniqueConstraint("tenant_id", "agent_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    agent_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id"))
    seniority: Mapped[str] = mapped_column(String(16))  # junior, senior, lead
    languages: Mapped[list[str]] = mapped_column(JSON)  # e.g. ["en", "zh-CN"]
    skills: Mapped[list[str]] = mapped_column(JSON)  # e.g. ["mortgage", "legal"]
    capacity: Mapped[int] = mapped_column(Integer)  # open cases at most
    active: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class AssignmentRuleSet(Base):
    """A tenant's assignment rules (dialer/cases/assignment.py), as validated when saved: the
    import and the nightly run apply them."""

    __tablename__ = "assignment_rule_sets"

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    rules: Mapped[dict[str, Any]] = mapped_column(JSON)
    source: Mapped[str] = mapped_column(String(500))  # the file they were read from
    updated_by: Mapped[str] = mapped_column(String(100))
    updated_at: Mapped[datetime]


class Segment(Base):
    """A saved, validated filter over a tenant's cases (dialer/cases/segments.py)."""

    __tablename__ = "segments"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text)
    filter: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class CampaignSegment(Base):
    """The segment a campaign's call list was loaded from: while this row exists the hopper
    dials only the debtors on the campaign's list (campaign_list), none other."""

    __tablename__ = "campaign_segments"

    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    segment_id: Mapped[int] = mapped_column(ForeignKey("segments.id"))
    cases: Mapped[int] = mapped_column(Integer)
    loaded_by: Mapped[str] = mapped_column(String(100))
    loaded_at: Mapped[datetime]


class CampaignListEntry(Base):
    """One debtor (through their case) on a campaign's call list."""

    __tablename__ = "campaign_list"

    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), primary_key=True)
    debtor_id: Mapped[int] = mapped_column(ForeignKey("debtors.id"), primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))


# The reports (dialer/reports, migration 0014) read a tenant's attempts, dispositions and
# payments of a period.
Index("ix_call_attempts_tenant_id_dialed_at", CallAttempt.tenant_id, CallAttempt.dialed_at)
Index("ix_dispositions_tenant_id_created_at", Disposition.tenant_id, Disposition.created_at)
Index("ix_payments_tenant_id_paid_on", Payment.tenant_id, Payment.paid_on)
