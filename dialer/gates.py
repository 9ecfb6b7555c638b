"""Attempt gates the engine asks before each Originate: the compliance guard, and an open gate
for tests of the engine alone."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from compliance_guard.audit import JsonlAudit
from compliance_guard.models import AttemptRequest, Decision
from compliance_guard.models import Outcome as ComplianceOutcome
from compliance_guard.rules import load_ruleset
from compliance_guard.service import Guard, RuleBook
from compliance_guard.store import DEFAULT_RETENTION_DAYS, ComplianceStore, MemoryStore
from dialer.calls.models import Outcome
from dialer.config import Config
from dialer.engine import GateDecision
from dialer.errors import ConfigError
from dialer.guard_names import guard_request
from dialer.store.attempts import DialCandidate
from dialer.store.db import Store
from dialer.store.models import Address

log = logging.getLogger(__name__)

# How a finished call counts for the rules. Every reservation is resolved: one left pending
# would count as an attempt but never as the conversation it may have been.
_NETWORK_OUTCOMES = {
    Outcome.BUSY: ComplianceOutcome.BUSY,
    Outcome.NO_ANSWER: ComplianceOutcome.NO_ANSWER,
    Outcome.MACHINE: ComplianceOutcome.MACHINE,
    # Never reached the debtor's line: Reg F does not count calls that do not connect.
    Outcome.CONGESTION: ComplianceOutcome.NETWORK_FAILURE,
    Outcome.INVALID_NUMBER: ComplianceOutcome.NETWORK_FAILURE,
    Outcome.FAILED: ComplianceOutcome.NETWORK_FAILURE,
}


def compliance_outcome(outcome: Outcome, connected: bool) -> ComplianceOutcome | None:
    """`connected`: an agent talked with the debtor, or may have (events lost in a restart)."""
    if outcome in (Outcome.ANSWERED, Outcome.UNKNOWN):
        # An unknown call (the dialer lost sight of it) is booked the strict way: a placed
        # call that may have been answered, or a conversation if an agent may have talked.
        return ComplianceOutcome.CONVERSATION if connected else ComplianceOutcome.ABANDONED
    return _NETWORK_OUTCOMES.get(outcome)


class ComplianceGate:
    """Adapts the dialer's candidates to the guard's check-and-reserve."""

    def __init__(self, guard: Guard, store: Store, *, tenant: str, campaign_id: int) -> None:
        self.guard = guard
        self.store = store
        self.tenant = tenant
        self.campaign_id = campaign_id

    def _requests(self, candidates: list[DialCandidate], now: datetime) -> list[AttemptRequest]:
        """The guard's requests, with each debtor's first address read in one query."""
        debtor_ids = {c.debtor_id for c in candidates}
        addresses: dict[int, Any] = {}
        if debtor_ids:
            with self.store.begin() as conn:
                rows = conn.execute(
                    select(Address.debtor_id, Address.postal_code, Address.country, Address.region)
                    .where(Address.debtor_id.in_(debtor_ids))
                    .order_by(Address.id)
                ).all()
            for row in rows:
                addresses.setdefault(row.debtor_id, row)
        return [self._request(c, addresses.get(c.debtor_id), now) for c in candidates]

    def _request(self, candidate: DialCandidate, address: Any, now: datetime) -> AttemptRequest:
        # Read from the store just now.
        return guard_request(self.tenant, self.campaign_id, candidate, address, facts_as_of=now)

    def prepare(self, candidates: list[DialCandidate], now: datetime) -> None:
        """Numbers about to be dialled (a hopper load): classify them now, off the dial path."""
        self.guard.prepare(self._requests(candidates, now))

    def reserve_many(self, candidates: list[DialCandidate], now: datetime) -> list[GateDecision]:
        requests = self._requests(candidates, now)
        return [self._decision(d) for d in self.guard.check_and_reserve_many(requests, now)]

    @staticmethod
    def _decision(decision: Decision) -> GateDecision:
        if decision.allowed:
            return GateDecision(True, reservation_id=decision.reservation_id)
        reason = "; ".join(f"{r.rule}: {r.message}" for r in decision.reasons)
        return GateDecision(False, reason=reason, next_allowed_at=decision.next_allowed_at)

    def release(self, reservation_id: str, now: datetime) -> None:
        self.guard.release(reservation_id, now)

    def record_outcome(
        self, reservation_id: str, outcome: Outcome, connected: bool, now: datetime
    ) -> None:
        mapped = compliance_outcome(outcome, connected)
        if mapped is not None:
            self.guard.record_outcome(reservation_id, mapped, now)


def build_guard(config: Config, store: Store) -> Guard:
    """The guard as configured: rule set, ledger backend, audit log."""
    settings = config.compliance
    try:
        ruleset = load_ruleset(settings.ruleset)
    except Exception as exc:
        raise ConfigError(f"compliance.ruleset: {exc}") from exc
    backend: ComplianceStore
    # Keep the ledger as long as the rule set looks back (a custom rule may exceed the default).
    retention = max(DEFAULT_RETENTION_DAYS, ruleset.lookback_days)
    if settings.backend == "memory":
        backend = MemoryStore(retention_days=retention)
    elif settings.backend == "sql":
        from compliance_guard.store_sql import SqlStore

        backend = SqlStore(store.engine, retention_days=retention)
    elif settings.backend == "redis":
        from compliance_guard.store_redis import RedisStore

        if not config.redis_url:
            raise ConfigError("compliance.backend = 'redis' needs redis_url (or REDIS_URL)")
        backend = RedisStore(
            config.redis_url, prefix=settings.redis_prefix, retention_days=retention
        )
    else:
        raise ConfigError(f"compliance.backend: {settings.backend!r} is not memory, sql or redis")
    audit_path = (
        Path(settings.audit_path)
        if settings.audit_path
        else config.data_dir / "compliance-audit.jsonl"
    )
    audit_path.parent.mkdir(parents=True, exist_ok=True)
    rulebook = RuleBook({ruleset.name: ruleset}, default=ruleset.name)
    log.info(
        "= compliance: rule set %s, %s ledger, audit %s", ruleset.name, settings.backend, audit_path
    )
    return Guard(backend, rulebook, audit=JsonlAudit(audit_path))


class UnguardedGate:
    """Allows every attempt. Only for tests of the engine itself; `dialer run` and the demo
    always dial behind the compliance guard."""

    def __init__(self) -> None:
        self._next = 0
        self.released: list[str] = []
        self.outcomes: list[tuple[str, Outcome, bool]] = []

    def reserve_many(self, candidates: list[DialCandidate], now: datetime) -> list[GateDecision]:
        decisions = []
        for _ in candidates:
            self._next += 1
            decisions.append(GateDecision(True, reservation_id=f"r{self._next}"))
        return decisions

    def prepare(self, candidates: list[DialCandidate], now: datetime) -> None:
        return None

    def release(self, reservation_id: str, now: datetime) -> None:
        self.released.append(reservation_id)

    def record_outcome(
        self, reservation_id: str, outcome: Outcome, connected: bool, now: datetime
    ) -> None:
        self.outcomes.append((reservation_id, outcome, connected))
