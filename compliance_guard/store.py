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

    @property
    def retention_days(self) -> int:
        """How long ledger entries are kept: the guard refuses rules that look back further."""
        ...


# Every preset looks back at most 30 days; 40 leaves room for custom rules and time zones.
DEFAULT_RETENTION_DAYS = 40


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
        # `present & fc.blocking` without building the intersection (usually nothing is set)
        if (present and not present.isdisjoint(fc.blocking)) or not fc.required <= present:
            return False
    return True


class _Ledger:
    """One ledger's entries, oldest first, as two parallel lists (times, members).

    Parallel lists rather than (time, member) pairs: the window bisects plain integers, and an
    entry costs no tuple of its own. Entries of the same time may be in any order: a count and
    its pivot time do not depend on it.
    """

    __slots__ = ("members", "times")

    def __init__(self) -> None:
        self.times: list[int] = []
        self.members: list[str] = []


class _Held:
    """A granted reservation: the ledgers it was written to, until its outcome is known."""

    __slots__ = ("at_us", "checks", "conversation_keys", "member", "state")

    def __init__(
        self,
        checks: tuple[LedgerCheck, ...],
        conversation_keys: tuple[str, ...],
        member: str,
        at_us: int,
    ) -> None:
        # The checks of the call (shared with the plan, so nothing is copied per reservation);
        # those with `record` set are the ledgers written.
        self.checks = checks
        self.conversation_keys = conversation_keys
        self.member = member
        self.at_us = at_us
        self.state = "pending"

    def written(self) -> dict[str, frozenset[str]]:
        """Each ledger written, with the outcomes that keep the entry there."""
        return {c.key: c.counts for c in self.checks if c.record}


class MemoryStore:
    """Single-process ledger: sorted lists under one lock. The embedded default."""

    def __init__(self, retention_days: int = DEFAULT_RETENTION_DAYS) -> None:
        self.retention_days = retention_days
        self._lock = threading.Lock()
        self._ledgers: dict[str, _Ledger] = {}
        self._flags: dict[str, set[str]] = {}
        self._held: dict[str, _Held] = {}
        self._retention_us = retention_days * 86_400_000_000

    def _insert(self, key: str, at_us: int, member: str) -> None:
        ledger = self._ledgers.get(key)
        if ledger is None:
            ledger = self._ledgers[key] = _Ledger()
        times = ledger.times
        if not times or times[-1] <= at_us:
            times.append(at_us)  # the usual case: time moves forward
            ledger.members.append(member)
        else:
            i = bisect.bisect_right(times, at_us)
            times.insert(i, at_us)
            ledger.members.insert(i, member)
        # Forget what no rule can look back to, so memory stays bounded.
        horizon = times[-1] - self._retention_us
        if times[0] < horizon:
            cut = bisect.bisect_left(times, horizon)
            del times[:cut]
            del ledger.members[:cut]

    def reserve(self, call: ReserveCall) -> Observation:
        with self._lock:
            return self._reserve(call)

    def _reserve(self, call: ReserveCall) -> Observation:
        counts, counts_pass = self._counts(call.checks)
        flags, flags_pass = self._flags_seen(call.flag_checks)
        # What `grants` decides, from the passes just made.
        ok = counts_pass and flags_pass and call.reservation is not None
        if ok and call.reservation is not None:
            self._grant(call.checks, call.reservation)
        return Observation(counts, flags, ok)

    def _counts(self, checks: Sequence[LedgerCheck]) -> tuple[tuple[LedgerCount, ...], bool]:
        """Each ledger's count in its window, and whether every one is under its limit."""
        ledgers = self._ledgers
        counts = []
        passed = True
        for c in checks:
            ledger = ledgers.get(c.key)
            times = ledger.times if ledger is not None else None
            if not times:
                counts.append(_UNDER[0])
                passed = passed and c.limit > 0
                continue
            total = len(times)
            n = total - bisect.bisect_left(times, c.window_start_us)
            if n < c.limit:
                counts.append(under_limit(n))
            else:
                counts.append(LedgerCount(n, times[total - c.limit]))
                passed = False
        return tuple(counts), passed

    def _flags_seen(
        self, flag_checks: Sequence[FlagCheck]
    ) -> tuple[tuple[frozenset[str], ...], bool]:
        """The flags on each target, and whether none blocks and none required is missing."""
        get = self._flags.get
        seen = []
        passed = True
        for f in flag_checks:
            present = get(f.target)
            if present:
                flags = frozenset(present)
                # `flags & f.blocking` without building the intersection
                passed = passed and flags.isdisjoint(f.blocking)
            else:
                flags = NO_FLAGS  # the usual case: nothing set, nothing to copy
            seen.append(flags)
            passed = passed and f.required <= flags
        return tuple(seen), passed

    def _grant(self, checks: tuple[LedgerCheck, ...], r: NewReservation) -> None:
        for c in checks:
            if c.record:
                self._insert(c.key, r.at_us, r.reservation_id)
        self._held[r.reservation_id] = _Held(checks, r.conversation_keys, r.reservation_id, r.at_us)
        if len(self._held) % 10_000 == 0:
            # Reservations older than any window can no longer change a count.
            horizon = r.at_us - self._retention_us
            for rid in [k for k, h in self._held.items() if h.at_us < horizon]:
                del self._held[rid]

    def reserve_many(self, calls: Sequence[ReserveCall]) -> list[Observation]:
        with self._lock:
            return [self._reserve(c) for c in calls]

    def _remove(self, key: str, member: str) -> None:
        ledger = self._ledgers.get(key)
        if ledger is None:
            return
        try:
            i = ledger.members.index(member)
        except ValueError:
            return
        del ledger.times[i]
        del ledger.members[i]

    def release(self, reservation_id: str) -> bool:
        with self._lock:
            held = self._held.get(reservation_id)
            if held is None or held.state != "pending":
                return False
            for key in held.written():
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
            for key, counted in held.written().items():
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
            ledger = self._ledgers.get(key)
            return list(ledger.times) if ledger is not None else []

    def close(self) -> None:
        pass
