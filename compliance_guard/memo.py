"""A bounded memo for pure functions: what every cache of the guard is built on."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedMemo(Generic[K, V]):
    """Remembers at most `max_entries` results of a pure function, dropping the least used.

    Two generations of at most half the size each: entries go into the recent one; when it is
    full it becomes the older one and the previous older one is dropped whole. A hit in the
    older generation moves the entry back to the recent one. So a hit costs one dict lookup,
    memory stays bounded, and the entries still in use survive a turnover (a table emptied when
    full would make a large portfolio pay every classification again each time it fills).

    Shared by threads without a lock: every step is one dict operation, and the values are pure
    functions of their keys, so a lost race can only drop an entry (computed again later) or
    let a generation outgrow its half by the few entries put at that very moment.
    """

    def __init__(self, max_entries: int) -> None:
        if max_entries < 2:
            raise ValueError(f"max_entries must be at least 2, got {max_entries}")
        self._half = max_entries // 2
        self._recent: dict[K, V] = {}
        self._older: dict[K, V] = {}

    def get(self, key: K) -> V | None:
        """The remembered value, or None (so values must never be None)."""
        hit = self._recent.get(key)
        if hit is None and self._older:
            hit = self._older.pop(key, None)
            if hit is not None:
                self.put(key, hit)
        return hit

    def put(self, key: K, value: V) -> V:
        """Remember `value` under `key`, and return it."""
        if len(self._recent) >= self._half:
            self._older = self._recent
            self._recent = {}
        self._recent[key] = value
        return value

    def __len__(self) -> int:
        return len(self._recent) + len(self._older)
