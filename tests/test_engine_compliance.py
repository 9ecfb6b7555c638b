"""No Originate leaves without a reservation granted by the compliance guard."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from compliance_guard.rules import load_preset
from compliance_guard.service import Guard, RuleBook
from compliance_guard.store import MemoryStore
from compliance_guard.store_redis import RedisStore
from dialer.calls.models import Outcome
from dialer.demo import business_afternoon, simulated_clock
from dialer.engine import CampaignEngine, GateDecision
from dialer.gates import ComplianceGate, compliance_outcome
from dialer.store.attempts import DialCandidate
from pacing.service import make_pacer
from tests.test_engine import SCALE, Rig, _rig, _sim


class CountingGate:
    """The real compliance gate, with a tally of what it granted, released and was told."""

    def __init__(self, inner: ComplianceGate) -> None:
        self.inner = inner
        self.granted: set[str] = set()
        self.released: set[str] = set()
        self.denied = 0
        self.prepared: set[int] = set()  # phone ids handed over at hopper load
        self.unprepared_reservations = 0

    def reserve_many(self, candidates: list[DialCandidate], now: datetime) -> list[GateDecision]:
        self.unprepared_reservations += sum(c.phone_id not in self.prepared for c in candidates)
        decisions = self.inner.reserve_many(candidates, now)
        for decision in decisions:
            if decision.allowed:
                assert decision.reservation_id is not None
                self.granted.add(decision.reservation_id)
            else:
                self.denied += 1
        return decisions

    def prepare(self, candidates: list[DialCandidate], now: datetime) -> None:
        self.prepared.update(c.phone_id for c in candidates)
        self.inner.prepare(candidates, now)

    def release(self, reservation_id: str, now: datetime) -> None:
        self.released.add(reservation_id)
        self.inner.release(reservation_id, now)

    def record_outcome(
        self, reservation_id: str, outcome: Outcome, connected: bool, now: datetime
    ) -> None:
        assert reservation_id in self.granted
        self.inner.record_outcome(reservation_id, outcome, connected, now)


def _guarded(
    rig: Rig,
    guard: Guard,
    clock: Callable[[], datetime],
    kind: Callable[[ComplianceGate], CountingGate] = CountingGate,
) -> CountingGate:
    """The rig's engine rebuilt to dial behind `guard`, through a gate of `kind`."""
    gate = kind(
        ComplianceGate(guard, rig.store, tenant="default", campaign_id=rig.engine.campaign_id)
    )
    rig.engine = CampaignEngine(
        rig.config,
        rig.store,
        tenant_id=rig.engine.tenant_id,
        campaign_id=rig.engine.campaign_id,
        pacer=make_pacer("progressive"),
        gate=gate,
        wallclock=clock,
    )
    return gate


async def _run_to_end(rig: Rig, limit_s: float) -> None:
    """Run the campaign until its list is exhausted, then shut the rig down."""
    try:
        async with asyncio.timeout(limit_s):
            await rig.engine.run(asyncio.Event())
    finally:
        rig.store.close()
        await rig.sim.close()


def _regf_guard(store: MemoryStore | RedisStore) -> Guard:
    regf = load_preset("us-regf")
    return Guard(store, RuleBook({regf.name: regf}, default=regf.name))


async def test_every_originate_holds_a_granted_reservation(tmp_path: Path) -> None:
    rig = await _rig(tmp_path, f"sqlite:///{tmp_path / 'd.db'}", [_sim()], debtors=40)
    gate = _guarded(rig, _regf_guard(MemoryStore()), simulated_clock(business_afternoon(), SCALE))
    await _run_to_end(rig, 90)
    originates = rig.sim.stats()["originates"]
    assert isinstance(originates, int) and originates > 0
    assert originates == len(gate.granted) - len(gate.released)
    # Reg F: after a conversation about a debt, no call about it for 7 days, on any phone.
    with rig.store.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT debt_id, connected_at, dialed_at FROM call_attempts ORDER BY dialed_at")
        ).all()
    talked: dict[int, datetime] = {}
    for debt_id, connected_at, dialed_at in rows:
        assert debt_id not in talked, f"debt {debt_id} called again after a conversation"
        if connected_at is not None:
            talked[debt_id] = dialed_at
    assert talked, "no conversation happened: the rule was never exercised"
    assert gate.denied > 0
    # Every number was classified when the hopper loaded it, before its first reservation.
    assert gate.unprepared_reservations == 0


async def test_dialer_dials_nobody_when_the_guard_cannot_reach_its_ledger(tmp_path: Path) -> None:
    rig = await _rig(tmp_path, f"sqlite:///{tmp_path / 'd.db'}", [_sim()], debtors=10)
    dead_redis = RedisStore("redis://127.0.0.1:1/0")  # nothing listens there
    gate = _guarded(rig, _regf_guard(dead_redis), simulated_clock(business_afternoon(), SCALE))
    await _run_to_end(rig, 60)
    assert rig.sim.stats()["originates"] == 0
    assert gate.granted == set()
    assert gate.denied > 0
    assert rig.engine.stats.denied_by_gate == gate.denied


async def test_nobody_is_called_outside_the_legal_window(tmp_path: Path) -> None:
    rig = await _rig(tmp_path, f"sqlite:///{tmp_path / 'd.db'}", [_sim()], debtors=10)
    # 06:00 in New York: 03:00 in Los Angeles, 01:00 in Honolulu; before 08:00 everywhere.
    night = business_afternoon() - timedelta(hours=7)
    rig.config = dataclasses.replace(
        rig.config, campaign=dataclasses.replace(rig.config.campaign, reschedule_horizon_s=0)
    )
    gate = _guarded(rig, _regf_guard(MemoryStore()), lambda: night.astimezone(UTC))
    await _run_to_end(rig, 60)
    assert rig.sim.stats()["originates"] == 0
    assert gate.denied > 0


def test_finished_calls_count_for_the_rules_as_the_law_sees_them() -> None:
    from compliance_guard.models import Outcome as Counted

    assert compliance_outcome(Outcome.ANSWERED, connected=True) is Counted.CONVERSATION
    assert compliance_outcome(Outcome.ANSWERED, connected=False) is Counted.ABANDONED
    assert compliance_outcome(Outcome.CONGESTION, connected=False) is Counted.NETWORK_FAILURE
    assert compliance_outcome(Outcome.MACHINE, connected=False) is Counted.MACHINE
    # A call the dialer lost sight of is booked the strict way, never left pending.
    assert compliance_outcome(Outcome.UNKNOWN, connected=False) is Counted.ABANDONED
    assert compliance_outcome(Outcome.UNKNOWN, connected=True) is Counted.CONVERSATION


async def test_phone_denied_until_its_window_opens_is_dialled_once_it_opens(tmp_path: Path) -> None:
    rig = await _rig(tmp_path, f"sqlite:///{tmp_path / 'd.db'}", [_sim()], debtors=40)
    new_york = ZoneInfo("America/New_York")
    # 07:50 in New York: the East coast opens in 10 minutes (within the reschedule horizon),
    # the rest of the country more than an hour later (left for the next run).
    start = business_afternoon().astimezone(new_york).replace(hour=7, minute=50)
    gate = _guarded(rig, _regf_guard(MemoryStore()), simulated_clock(start, SCALE))
    await _run_to_end(rig, 90)
    with rig.store.engine.connect() as conn:
        dialled = [row[0] for row in conn.execute(sa.text("SELECT dialed_at FROM call_attempts"))]
    assert dialled, "the East coast should have been dialled once its window opened"
    opening = start.replace(hour=8, minute=0)
    assert all(_aware(at) >= opening for at in dialled)
    assert rig.engine.stats.denied_by_gate > 0
    assert len(gate.granted) - len(gate.released) == len(dialled)


def _aware(at: datetime | str) -> datetime:
    """A stored UTC time (SQLite hands raw SQL results back as text)."""
    value = datetime.fromisoformat(at) if isinstance(at, str) else at
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class SlowLedgerGate(CountingGate):
    """The real gate, whose first check-and-reserve waits until the dialer shows it is alive."""

    def __init__(self, inner: ComplianceGate) -> None:
        super().__init__(inner)
        self.waiting = threading.Event()
        self.loop_alive = threading.Event()

    def reserve_many(self, candidates: list[DialCandidate], now: datetime) -> list[GateDecision]:
        if not self.waiting.is_set():
            self.waiting.set()
            # Set only by a coroutine of the dialer's event loop: it must run meanwhile.
            assert self.loop_alive.wait(10), "the dialer froze while the ledger answered"
        return super().reserve_many(candidates, now)


async def test_dialer_keeps_handling_calls_while_the_compliance_ledger_is_slow(
    tmp_path: Path,
) -> None:
    rig = await _rig(tmp_path, f"sqlite:///{tmp_path / 'd.db'}", [_sim()], debtors=20)
    clock = simulated_clock(business_afternoon(), SCALE)
    gate = _guarded(rig, _regf_guard(MemoryStore()), clock, SlowLedgerGate)
    assert isinstance(gate, SlowLedgerGate)

    async def heartbeat() -> None:
        while not gate.waiting.is_set():
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        gate.loop_alive.set()

    beating = asyncio.create_task(heartbeat())
    await _run_to_end(rig, 90)
    await beating
    assert gate.loop_alive.is_set()
    assert rig.sim.stats()["originates"] == len(gate.granted) - len(gate.released) > 0
