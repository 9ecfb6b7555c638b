"""The guard facade the dialer calls: check-and-reserve, release, outcomes, inbound calls, flags."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta
from typing import Any

from compliance_guard.audit import AuditSink, MemoryAudit, NullAudit
from compliance_guard.engine import (
    EngineCache,
    Plan,
    conversation_key,
    decide,
    flag_target,
    plan_prepared,
    to_us,
    validate,
)
from compliance_guard.errors import GuardError, InvalidRequest, RuleSetNotFound, StoreUnavailable
from compliance_guard.logsafe import mask_phone
from compliance_guard.models import (
    AttemptRequest,
    Channel,
    Decision,
    Flag,
    FlagScope,
    Outcome,
    PhoneType,
    Preferences,
    Reason,
)
from compliance_guard.rules import RuleSet
from compliance_guard.store import ComplianceStore, Observation
from compliance_guard.zones import ZoneResolution, ZoneResolver

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RuleBook:
    """Which rule set governs a campaign: campaign choice, else tenant choice, else the default."""

    rulesets: Mapping[str, RuleSet]
    default: str | None = None
    by_tenant: Mapping[str, str] = field(default_factory=dict)
    by_campaign: Mapping[tuple[str, str], str] = field(default_factory=dict)

    def for_campaign(self, tenant: str, campaign_id: str | None) -> RuleSet:
        name = (
            self.by_campaign.get((tenant, campaign_id or ""))
            or self.by_tenant.get(tenant)
            or self.default
        )
        if name is None:
            raise RuleSetNotFound(f"no rule set chosen for tenant {tenant!r}")
        rs = self.rulesets.get(name)
        if rs is None:
            raise RuleSetNotFound(f"rule set {name!r} chosen for tenant {tenant!r} is not loaded")
        return rs


def _new_id() -> str:
    """128 random bits as 32 hex digits (what `uuid4().hex` gave, without building a UUID)."""
    return os.urandom(16).hex()


def request_to_dict(r: AttemptRequest) -> dict[str, Any]:
    p = r.preferences
    return {
        "tenant": r.tenant,
        "person_id": r.person_id,
        "debt_ids": list(r.debt_ids),
        "phone": r.phone,
        "campaign_id": r.campaign_id,
        "channel": r.channel.value,
        "phone_type": r.phone_type.value,
        "time_zones": list(r.time_zones),
        "postal_code": r.postal_code,
        "country": r.country,
        "region": r.region,
        "third_party": r.third_party,
        "preferences": {
            "not_before": p.not_before.isoformat() if p.not_before else None,
            "not_after": p.not_after.isoformat() if p.not_after else None,
            "no_weekdays": sorted(p.no_weekdays),
        },
        "facts_as_of": r.facts_as_of.isoformat() if r.facts_as_of else None,
    }


def request_from_dict(d: Mapping[str, Any]) -> AttemptRequest:
    try:
        p = d.get("preferences") or {}
        return AttemptRequest(
            tenant=d["tenant"],
            person_id=d["person_id"],
            debt_ids=tuple(d["debt_ids"]),
            phone=d["phone"],
            campaign_id=d["campaign_id"],
            channel=Channel(d.get("channel", "call")),
            phone_type=PhoneType(d.get("phone_type", "other")),
            time_zones=tuple(d.get("time_zones") or ()),
            postal_code=d.get("postal_code"),
            country=d.get("country"),
            region=d.get("region"),
            third_party=bool(d.get("third_party", False)),
            preferences=Preferences(
                time.fromisoformat(p["not_before"]) if p.get("not_before") else None,
                time.fromisoformat(p["not_after"]) if p.get("not_after") else None,
                frozenset(p.get("no_weekdays") or ()),
            ),
            facts_as_of=(
                datetime.fromisoformat(d["facts_as_of"]) if d.get("facts_as_of") else None
            ),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise InvalidRequest(f"request: {exc!r}") from None


def decision_to_dict(d: Decision) -> dict[str, Any]:
    return {
        "allowed": d.allowed,
        "reservation_id": d.reservation_id,
        "reasons": [
            {"rule": r.rule, "message": r.message, "citation": r.citation} for r in d.reasons
        ],
        "next_allowed_at": d.next_allowed_at.isoformat() if d.next_allowed_at else None,
        "zones": list(d.zones),
        "ruleset": d.ruleset,
        "ruleset_hash": d.ruleset_hash,
    }


def observation_to_dict(o: Observation | None) -> dict[str, Any] | None:
    if o is None:
        return None
    return {
        "counts": [[c.count, c.pivot_us] for c in o.counts],
        "flags": [sorted(f) for f in o.flags],
        "reserved": o.reserved,
    }


class Guard:
    """Synchronous facade; safe to share between threads; one per process per store.

    Flags and ledgers are read inside the backend's atomic step, so a flag set on one node is
    honoured by every node on its next check (no cache: the bound is one backend round trip).
    """

    def __init__(
        self,
        store: ComplianceStore,
        rulebook: RuleBook,
        *,
        audit: AuditSink | None = None,
        new_id: Callable[[], str] = _new_id,
        zones: ZoneResolver | None = None,
        max_facts_age: timedelta | None = timedelta(hours=24),
        cache_size: int = 100_000,
    ) -> None:
        for ruleset in rulebook.rulesets.values():
            if ruleset.lookback_days > store.retention_days:
                # Entries forgotten too early would let a cap or a conversation period pass.
                raise ValueError(
                    f"rule set {ruleset.label} looks back {ruleset.lookback_days} days but the "
                    f"ledger keeps {store.retention_days}: give the store retention_days="
                    f"{ruleset.lookback_days} or more"
                )
        self.store = store
        self.rulebook = rulebook
        self.audit: AuditSink = audit if audit is not None else MemoryAudit()
        self._no_audit = isinstance(self.audit, NullAudit)  # benchmarks: skip building records
        self._new_id = new_id
        # Caches of what never changes for a request (numbers classified, rule templates,
        # what a local date means): each holds at most `cache_size` entries.
        self._zones = zones or ZoneResolver(cache_size)
        self._cals = EngineCache(cache_size)
        self._max_facts_age = max_facts_age

    # -- deciding -------------------------------------------------------------------------
    def _plan(self, request: AttemptRequest, now: datetime) -> Plan | Decision:
        try:
            ruleset = self.rulebook.for_campaign(request.tenant, request.campaign_id)
        except RuleSetNotFound as exc:
            validate(request, now)  # make_plan validates on the normal path
            decision = Decision(
                False,
                None,
                (Reason("ruleset-missing", f"{exc}; denied until one is configured"),),
                None,
                (),
                "",
                "",
                now.astimezone(UTC),
            )
            self._audit(request, now, None, None, None, decision, "ruleset-missing")
            return decision
        prep = self._cals.prepared(ruleset, request, now, self._zones)
        return plan_prepared(ruleset, prep, request, now, self._cals, self._max_facts_age)

    def prepare(self, requests: Iterable[AttemptRequest]) -> int:
        """Classify the numbers of requests about to be dialled, and build their rule templates.

        For the hopper: call it when a portfolio's debtors are loaded, so the first decision on a
        number does not pay its `phonenumbers` classification (tens of µs) in the dial path.
        It reads and writes no ledger and audits nothing, and decisions are exactly the same
        with or without it. Invalid requests and those without a rule set are skipped (their
        decision will say why). Returns how many were prepared. The caches it fills are
        bounded (100,000 requests by default): preparing more keeps the most recent.
        """
        prepared = 0
        for request in requests:
            try:
                ruleset = self.rulebook.for_campaign(request.tenant, request.campaign_id)
                prepared += self._cals.prepare(ruleset, request, self._zones)
            except (RuleSetNotFound, InvalidRequest):
                continue
        return prepared

    def check_and_reserve(self, request: AttemptRequest, now: datetime) -> Decision:
        """Allowed with a reservation id (to release or give an outcome), or denied with reasons."""
        return self._decide_one(request, now, reserve=True)

    def check_and_reserve_many(
        self, requests: Sequence[AttemptRequest], now: datetime
    ) -> list[Decision]:
        """Several independent requests in one backend round trip (pipelined on Redis, one
        transaction on SQL). Each is decided as if the earlier ones of the batch were granted
        first, exactly as the same requests made one by one in that order."""
        return self._decide_batch(requests, now, reserve=True)

    def check(self, request: AttemptRequest, now: datetime) -> Decision:
        """The same decision without reserving anything (what-if, the CLI, screens)."""
        return self._decide_one(request, now, reserve=False)

    def _decide_one(self, request: AttemptRequest, now: datetime, reserve: bool) -> Decision:
        planned = self._plan(request, now)
        if isinstance(planned, Decision):
            return planned
        rid = self._new_id() if reserve and not planned.static_reasons else None
        try:
            obs: Observation | None = self.store.reserve(planned.call(rid))
            failure = None
        except StoreUnavailable as exc:
            obs, failure = None, str(exc)
        return self._finish(planned, obs, rid, failure, now)

    def _decide_batch(
        self, requests: Sequence[AttemptRequest], now: datetime, reserve: bool
    ) -> list[Decision]:
        out: list[Decision | None] = []
        pending: list[tuple[int, Plan, str | None]] = []
        for request in requests:
            planned = self._plan(request, now)
            if isinstance(planned, Decision):
                out.append(planned)
                continue
            rid = self._new_id() if reserve and not planned.static_reasons else None
            pending.append((len(out), planned, rid))
            out.append(None)
        if pending:
            calls = [plan.call(rid) for _, plan, rid in pending]
            try:
                observations: Sequence[Observation | None] = self.store.reserve_many(calls)
                failure = None
            except StoreUnavailable as exc:
                observations = [None] * len(calls)
                failure = str(exc)
            for (i, plan, rid), obs in zip(pending, observations, strict=True):
                out[i] = self._finish(plan, obs, rid, failure, now)
        return [d for d in out if d is not None]

    def _finish(
        self,
        plan: Plan,
        obs: Observation | None,
        rid: str | None,
        failure: str | None,
        now: datetime,
    ) -> Decision:
        decision = decide(plan, obs, rid, self._cals, failure)
        if not self._no_audit:
            self._audit(plan.request, now, plan.ruleset, plan.zones, obs, decision, failure)
        if not decision.allowed:
            log.info(
                "x denied %s person=%s phone=%s: %s",
                plan.request.campaign_id,
                plan.request.person_id,
                mask_phone(plan.request.phone),
                "; ".join(r.rule for r in decision.reasons),
            )
        return decision

    def _audit(
        self,
        request: AttemptRequest,
        now: datetime,
        ruleset: RuleSet | None,
        zones: tuple[str, ...] | None,
        obs: Observation | None,
        decision: Decision,
        failure: str | None,
    ) -> None:
        if self._no_audit:
            return
        self.audit.append(
            {
                "kind": "decision",
                "at": now.astimezone(UTC).isoformat(),
                "request": request_to_dict(request),
                "ruleset": ruleset.name if ruleset else None,
                "ruleset_label": ruleset.label if ruleset else None,
                "ruleset_hash": ruleset.digest if ruleset else None,
                "zones": list(zones) if zones is not None else None,
                "observation": observation_to_dict(obs),
                "failure": failure,
                "max_facts_age_s": (
                    self._max_facts_age.total_seconds() if self._max_facts_age else None
                ),
                "decision": decision_to_dict(decision),
            }
        )

    # -- after the decision ---------------------------------------------------------------
    def release(self, reservation_id: str, now: datetime) -> bool:
        """The attempt never left (Originate failed): it stops counting. Idempotent."""
        released = self.store.release(reservation_id)
        self.audit.append(
            {"kind": "release", "at": now.astimezone(UTC).isoformat(), "id": reservation_id}
        )
        return released

    def record_outcome(self, reservation_id: str, outcome: Outcome, now: datetime) -> None:
        """Outcomes a rule does not count leave its ledger; a conversation starts its period."""
        self.store.record_outcome(reservation_id, Outcome(outcome).value, to_us(now))
        self.audit.append(
            {
                "kind": "outcome",
                "at": now.astimezone(UTC).isoformat(),
                "id": reservation_id,
                "outcome": Outcome(outcome).value,
            }
        )

    def record_inbound(
        self, tenant: str, person_id: str, debt_ids: Sequence[str], now: datetime
    ) -> None:
        """The debtor called in and talked about these debts: not an attempt, but starts the period."""
        if not debt_ids:
            raise InvalidRequest("debt_ids: an inbound conversation is about at least one debt")
        member = f"inbound:{self._new_id()}"
        at = to_us(now)
        self.store.append([(conversation_key(tenant, person_id, d), at, member) for d in debt_ids])
        self.audit.append(
            {
                "kind": "inbound",
                "at": now.astimezone(UTC).isoformat(),
                "tenant": tenant,
                "person_id": person_id,
                "debt_ids": list(debt_ids),
            }
        )

    def record_past_attempt(
        self,
        request: AttemptRequest,
        outcome: Outcome | None,
        at: datetime,
        phone_type: PhoneType | None = None,
    ) -> None:
        """Import an attempt made before the guard knew of it (history, migration); never refused.

        `phone_type` None means unknown: the attempt then counts under every phone-type rule,
        which can only make later decisions stricter.
        """
        types = [phone_type] if phone_type is not None else list(PhoneType)
        member = f"past:{self._new_id()}"
        at_us = to_us(at)
        rows: set[tuple[str, int, str]] = set()
        for t in types:
            planned = self._plan(replace(request, phone_type=t), at)
            if isinstance(planned, Decision):
                raise GuardError("; ".join(r.message for r in planned.reasons))
            rows.update(
                (c.key, at_us, member)
                for c in planned.checks
                if c.record and (outcome is None or outcome.value in c.counts)
            )
            if outcome is Outcome.CONVERSATION:
                rows.update((k, at_us, member) for k in planned.conversation_keys)
        self.store.append(sorted(rows))

    # -- flags ----------------------------------------------------------------------------
    def set_flag(
        self, tenant: str, flag: Flag, scope: FlagScope, subject: str, now: datetime
    ) -> None:
        """Honoured by every node's next check (flags are read inside the atomic reserve)."""
        self.store.set_flag(flag_target(tenant, scope.value, subject), Flag(flag).value, to_us(now))
        self.audit.append(
            {
                "kind": "flag-set",
                "at": now.astimezone(UTC).isoformat(),
                "target": flag_target(tenant, scope.value, subject),
                "flag": Flag(flag).value,
            }
        )

    def clear_flag(
        self, tenant: str, flag: Flag, scope: FlagScope, subject: str, now: datetime
    ) -> bool:
        cleared = self.store.clear_flag(flag_target(tenant, scope.value, subject), Flag(flag).value)
        self.audit.append(
            {
                "kind": "flag-clear",
                "at": now.astimezone(UTC).isoformat(),
                "target": flag_target(tenant, scope.value, subject),
                "flag": Flag(flag).value,
            }
        )
        return cleared

    def flags(self, tenant: str, scope: FlagScope, subject: str) -> frozenset[str]:
        return self.store.flags(flag_target(tenant, scope.value, subject))

    def zones_for(self, request: AttemptRequest) -> ZoneResolution:
        return self._zones.resolve(request)

    def cache_sizes(self) -> dict[str, int]:
        """Entries held by each cache (for metrics); none holds more than `cache_size`."""
        return self._zones.sizes() | self._cals.sizes()
