"""The ledger seam: what every backend must do atomically, and the in-process memory backend."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from compliance_guard.errors import ReservationClosed, UnknownReservation

# The values exchanged with a backend are named tuples: immutable like frozen dataclasses, and
# cheaper to build, which matters because every decision builds a dozen of them.


class LedgerCheck(NamedTuple):
    """Deny when `limit` or more entries of ledger `key` are at or after `window_start_us`."""

    key: str
    limit: int
    window_start_us: int
    record: bool  # the reservation is added to this ledger when granted
    counts: frozenset[str]  # outcomes that keep the entry once the outcome is known


class FlagCheck(NamedTuple):
    """Deny when any `blocking` flag is set on `target`, or a `required` one is missing."""

    target: str
    blocking: frozenset[str]
    required: frozenset[str] = frozenset()


class NewReservation(NamedTuple):
    """The reservation written when every check passes."""

    reservation_id: str
    at_us: int
    # Ledgers that receive the conversation if the outcome turns out to be one.
    conversation_keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LedgerCount:
    """How many entries one ledger holds in its window, and when the blocking one leaves.

    A dataclass, not a named tuple (`count` would shadow `tuple.count`); the counts under a
    limit are shared instances, so few are built.
    """

    count: int
    # When count >= limit: time of the (count - limit + 1)-th oldest entry in the window, i.e.
    # the entry whose leaving the window brings the count back under the limit.
    pivot_us: int | None


class Observation(NamedTuple):
    """What the backend saw inside the atomic step, in the order of the checks given."""

    counts: tuple[LedgerCount, ...]
    flags: tuple[frozenset[str], ...]
    reserved: bool


class ReserveCall(NamedTuple):
    """One atomic check-and-reserve asked of a backend."""

    checks: tuple[LedgerCheck, ...]
    flag_checks: tuple[FlagCheck, ...]
    reservation: NewReservation | None  # None: look only, write nothing


NO_FLAGS: frozenset[str] = frozenset()
# Counts under the limit carry no pivot; the common ones are shared instead of rebuilt.
_UNDER = tuple(LedgerCount(n, None) for n in range(64))


class ComplianceStore(Protocol):
    """A ledger backend. `reserve` is one atomic step: observe every check, grant only if all pass."""

    def reserve(self, call: ReserveCall) -> Observation: ...

    def reserve_many(self, calls: Sequence[ReserveCall]) -> list[Observation]: ...

    def release(self, reservation_id: str) -> bool: ...

    def record_outcome(self, reservation_id: str, outcome: str, at_us: int) -> None: ...

    def append(self, entries: Sequence[tuple[str, int, str]]) -> None: ...

    def set_flag(self, target: str, flag: str, at_us: int) -> None: ...

    def clear_flag(self, target: str, flag: str) -> bool: ...

    def flags(self, target: str) -> frozenset[str]: ...

    def entries(self, key: str) -> list[int]: ...

    def close(self) -> None: ...


def count_and_pivot(times: Sequence[int], limit: int) -> LedgerCount:
    """Times already restricted to the window, oldest first."""
    n = len(times)
    if n < limit:
        return under_limit(n)
    return LedgerCount(n, times[n - limit])


def under_limit(n: int) -> LedgerCount:
    """The count of a ledger under its limit (no pivot)."""
    return _UNDER[n] if n < 64 else LedgerCount(n, None)


def grants(
    call: ReserveCall, counts: Sequence[LedgerCount], flags: Sequence[frozenset[str]]
) -> bool:
    if call.reservation is None:
        return False
    for c, chk in zip(counts, call.checks, strict=True):
        if c.count >= chk.limit:
            return False
    for present, fc in zip(flags, call.flag_checks, strict=True):
        if present & fc.blocking or not fc.required <= present:
            return False
    return True


@dataclass(slots=True)
class _Held:
    keys: dict[str, frozenset[str]]
    conversation_keys: tuple[str, ...]
    member: str
    at_us: int
    state: str = "pending"


class MemoryStore:
    """Single-process ledger: sorted lists under one lock. The embedded default."""

    def __init__(self, retention_us: int = 40 * 86_400_000_000) -> None:
        self._lock = threading.Lock()
        self._ledgers: dict[str, list[tuple[int, str]]] = {}
        self._flags: dict[str, set[str]] = {}
        self._held: dict[str, _Held] = {}
        self._retention_us = retention_us

    def _count(self, key: str, start_us: int, limit: int) -> LedgerCount:
        rows = self._ledgers.get(key)
        if not rows:
            return _UNDER[0]
        total = len(rows)
        n = total - bisect.bisect_left(rows, (start_us, ""))
        if n < limit:
            return under_limit(n)
        return LedgerCount(n, rows[total - limit][0])

    def _insert(self, key: str, at_us: int, member: str) -> None:
        rows = self._ledgers.get(key)
        if rows is None:
            self._ledgers[key] = [(at_us, member)]
            return
        bisect.insort(rows, (at_us, member))
        # Forget what no rule can look back to, so memory stays bounded.
        horizon = rows[-1][0] - self._retention_us
        if rows[0][0] < horizon:
            del rows[: bisect.bisect_left(rows, (horizon, ""))]

    def reserve(self, call: ReserveCall) -> Observation:
        with self._lock:
            return self._reserve(call)

    def _reserve(self, call: ReserveCall) -> Observation:
        count = self._count
        counts = tuple([count(c.key, c.window_start_us, c.limit) for c in call.checks])
        get = self._flags.get
        flags = tuple([frozenset(get(f.target) or NO_FLAGS) for f in call.flag_checks])
        ok = grants(call, counts, flags)
        r = call.reservation
        if ok and r is not None:
            held = _Held({}, r.conversation_keys, r.reservation_id, r.at_us)
            for c in call.checks:
                if c.record:
                    self._insert(c.key, r.at_us, r.reservation_id)
                    held.keys[c.key] = c.counts
            self._held[r.reservation_id] = held
            if len(self._held) % 10_000 == 0:
                # Reservations older than any window can no longer change a count.
                horizon = r.at_us - self._retention_us
                for rid in [k for k, h in self._held.items() if h.at_us < horizon]:
                    del self._held[rid]
        return Observation(counts, flags, ok)

    def reserve_many(self, calls: Sequence[ReserveCall]) -> list[Observation]:
        with self._lock:
            return [self._reserve(c) for c in calls]

    def _remove(self, key: str, member: str) -> None:
        rows = self._ledgers.get(key, [])
        for i, (_, m) in enumerate(rows):
            if m == member:
                del rows[i]
                return

    def release(self, reservation_id: str) -> bool:
        with self._lock:
            held = self._held.get(reservation_id)
            if held is None or held.state != "pending":
                return False
            for key in held.keys:
                self._remove(key, held.member)
            held.state = "released"
            return True

    def record_outcome(self, reservation_id: str, outcome: str, at_us: int) -> None:
        with self._lock:
            held = self._held.get(reservation_id)
            if held is None:
                raise UnknownReservation(f"no reservation {reservation_id!r}")
            if held.state != "pending":
                raise ReservationClosed(f"reservation {reservation_id!r} is {held.state}")
            for key, counted in held.keys.items():
                if outcome not in counted:
                    self._remove(key, held.member)
            if outcome == "conversation":
                for key in held.conversation_keys:
                    self._insert(key, at_us, held.member)
            held.state = outcome

    def append(self, entries: Sequence[tuple[str, int, str]]) -> None:
        with self._lock:
            for key, at_us, member in entries:
                self._insert(key, at_us, member)

    def set_flag(self, target: str, flag: str, at_us: int) -> None:
        with self._lock:
            self._flags.setdefault(target, set()).add(flag)

    def clear_flag(self, target: str, flag: str) -> bool:
        with self._lock:
            present = self._flags.get(target, set())
            if flag not in present:
                return False
            present.discard(flag)
            return True

    def flags(self, target: str) -> frozenset[str]:
        with self._lock:
            return frozenset(self._flags.get(target, ()))

    def entries(self, key: str) -> list[int]:
        with self._lock:
            return [t for t, _ in self._ledgers.get(key, [])]

    def close(self) -> None:
        pass
