"""Append-only, hash-chained audit log of every decision; verification finds edits and deletions."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from compliance_guard.errors import AuditError

GENESIS = "0" * 64


def canonical(body: Mapping[str, Any]) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def chain_hash(prev: str, seq: int, body: Mapping[str, Any]) -> str:
    return _link_hash(prev, seq, canonical(body))


def _link_hash(prev: str, seq: int, canonical_body: str) -> str:
    return hashlib.sha256(f"{prev}\n{seq}\n{canonical_body}".encode()).hexdigest()


def _entry_line(seq: int, prev: str, h: str, canonical_body: str) -> str:
    """`canonical({"seq", "prev", "hash", "body"})`, reusing the body's encoding (keys sorted:
    body, hash, prev, seq; the hashes are hex digits, so nothing needs escaping)."""
    return f'{{"body":{canonical_body},"hash":"{h}","prev":"{prev}","seq":{seq}}}'


class AuditSink(Protocol):
    """Where decisions go. `append` must keep the chain: each entry hashes its predecessor."""

    def append(self, body: Mapping[str, Any]) -> str: ...


class NullAudit:
    """For benchmarks that measure the ledger alone; never use it in production."""

    def append(self, body: Mapping[str, Any]) -> str:
        return GENESIS


class MemoryAudit:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.entries: list[dict[str, Any]] = []
        self.head = GENESIS

    def append(self, body: Mapping[str, Any]) -> str:
        text = canonical(body)  # outside the lock
        with self._lock:
            seq = len(self.entries)
            h = _link_hash(self.head, seq, text)
            self.entries.append({"seq": seq, "prev": self.head, "hash": h, "body": dict(body)})
            self.head = h
            return h


class JsonlAudit:
    """One JSON object per line; reopening continues the chain from the last line."""

    def __init__(self, path: str | Path, fsync: bool = False) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._fsync = fsync
        self._seq = 0
        self.head = GENESIS
        if self.path.exists():
            last = None
            for entry in read_entries(self.path):
                last = entry
            if last is not None:
                self._seq = int(last["seq"]) + 1
                self.head = str(last["hash"])
        self._file = self.path.open("a", encoding="utf-8")

    def append(self, body: Mapping[str, Any]) -> str:
        text = canonical(body)  # encoded once, outside the lock: for the hash and the line
        with self._lock:
            h = _link_hash(self.head, self._seq, text)
            self._file.write(_entry_line(self._seq, self.head, h, text) + "\n")
            self._file.flush()
            if self._fsync:
                os.fsync(self._file.fileno())
            self._seq += 1
            self.head = h
            return h

    def close(self) -> None:
        self._file.close()


def read_entries(path: str | Path) -> Iterator[dict[str, Any]]:
    p = Path(path)
    try:
        with p.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise AuditError(f"{p}:{lineno}: not JSON ({exc.msg})") from None
                if (
                    not isinstance(entry, dict)
                    or not {"seq", "prev", "hash", "body"} <= entry.keys()
                ):
                    raise AuditError(f"{p}:{lineno}: not an audit entry")
                entry["_line"] = lineno
                yield entry
    except FileNotFoundError:
        raise AuditError(f"audit log not found: {p}") from None


@dataclass(frozen=True)
class Problem:
    line: int
    seq: int | None
    message: str


def verify(path: str | Path, expect_head: str | None = None) -> tuple[int, str, list[Problem]]:
    """Check every link; returns (entries, head hash, problems). Empty problems means intact.

    Deleting the newest entries leaves a valid shorter chain; anchor the head hash elsewhere
    (ticket, second system) and pass it as `expect_head` to detect that too.
    """
    problems: list[Problem] = []
    prev = GENESIS
    expected_seq = 0
    count = 0
    try:
        entries = list(read_entries(path))
    except AuditError as exc:
        return 0, GENESIS, [Problem(0, None, str(exc))]
    for e in entries:
        count += 1
        line, seq = int(e["_line"]), e["seq"]
        if seq != expected_seq:
            problems.append(
                Problem(
                    line, seq, f"sequence jumps from {expected_seq - 1} to {seq}: entry deleted"
                )
            )
        if e["prev"] != prev:
            problems.append(Problem(line, seq, "does not link to the previous entry"))
        if chain_hash(e["prev"], seq, e["body"]) != e["hash"]:
            problems.append(Problem(line, seq, "content does not match its hash: entry edited"))
        prev = e["hash"]
        expected_seq = seq + 1 if isinstance(seq, int) else expected_seq + 1
    if expect_head is not None and prev != expect_head:
        problems.append(Problem(0, None, "head hash differs from the anchored one: entries lost"))
    return count, prev, problems
