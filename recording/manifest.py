"""The evidence manifest: an append-only, hash-chained JSONL log of what entered and left the
archive.

`<root>/manifest.jsonl` holds one JSON object per line: seq, at, action (archived|deleted),
tenant, attempt_id, path (relative to the root), sha256, bytes, prev_hash, hash; and, for a file
the archive made from Asterisk's own (two parties joined), `sources`: each original's name,
sha256 and bytes, and for a party file its channel in the archived file, its frames and the
SHA-256 of its samples, which the archived channel reproduces exactly. `hash` is the
SHA-256 of the entry's other fields in canonical JSON (keys sorted, no spaces), `prev_hash` the
hash of the entry before it (64 zeros for the first). Editing, removing or reordering an entry
therefore breaks the chain at that entry, which `verify_chain` names by seq.

Writers on one machine (threads, processes) take an exclusive `flock` on `<root>/.manifest.lock`
around each append; several machines may share the archive only on a file system whose locks
they all see (NFSv4, not NFSv3 without lockd).
"""

from __future__ import annotations

import enum
import fcntl
import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recording.errors import RecordingError

log = logging.getLogger(__name__)

GENESIS = "0" * 64
MANIFEST_NAME = "manifest.jsonl"
LOCK_NAME = ".manifest.lock"
_BLOCK = 64 * 1024


class ManifestError(RecordingError):
    """The manifest cannot be read or written, or an append would contradict it."""


class ManifestAction(enum.StrEnum):
    ARCHIVED = "archived"
    DELETED = "deleted"


class FindingKind(enum.StrEnum):
    CHANGED = "changed"  # a file's content differs from its manifest hash
    MISSING = "missing"  # a file the manifest says is archived is not there
    ADDED = "added"  # a file no manifest entry accounts for
    PARTIAL = "partial"  # an unfinished copy left by an interrupted archive job
    CHAIN = "chain"  # the manifest itself: an entry edited, removed, reordered or unreadable


@dataclass(frozen=True)
class Finding:
    """One thing wrong with the archive, with what it is about (a path or a manifest seq)."""

    kind: FindingKind
    message: str
    path: str | None = None
    seq: int | None = None

    def __str__(self) -> str:
        return f"{self.kind.value}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "path": self.path,
            "seq": self.seq,
            "message": self.message,
        }


_FIELDS: Mapping[str, type] = {
    "seq": int,
    "at": str,
    "action": str,
    "tenant": str,
    "attempt_id": int,
    "path": str,
    "sha256": str,
    "bytes": int,
    "prev_hash": str,
    "hash": str,
}


def canonical(body: Mapping[str, Any]) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(body: Mapping[str, Any]) -> str:
    """The hash of an entry: SHA-256 of its fields other than `hash`, in canonical JSON."""
    return hashlib.sha256(
        canonical({k: v for k, v in body.items() if k != "hash"}).encode()
    ).hexdigest()


@dataclass(frozen=True)
class SourceFile:
    """A file Asterisk wrote that went into an archived one (and then left the spool)."""

    name: str
    sha256: str
    bytes: int
    # For a party file: its channel in the archived file, frames and the samples' SHA-256.
    channel: int | None = None
    frames: int | None = None
    pcm_sha256: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, raw: Any) -> SourceFile:
        if not isinstance(raw, dict):
            raise ValueError("a source is not a JSON object")
        for key, kind in (("name", str), ("sha256", str), ("bytes", int)):
            if not isinstance(raw.get(key), kind):
                raise ValueError(f"source {key} is not {kind.__name__}")
        for key, kind in (("channel", int), ("frames", int), ("pcm_sha256", str)):
            if key in raw and not isinstance(raw[key], kind):
                raise ValueError(f"source {key} is not {kind.__name__}")
        return cls(
            raw["name"],
            raw["sha256"],
            raw["bytes"],
            raw.get("channel"),
            raw.get("frames"),
            raw.get("pcm_sha256"),
        )


@dataclass(frozen=True)
class ManifestEntry:
    seq: int
    at: str  # ISO 8601, UTC
    action: ManifestAction
    tenant: str
    attempt_id: int
    path: str  # relative to the archive root, '/'-separated
    sha256: str
    bytes: int
    prev_hash: str
    hash: str
    # Absent (not empty) in entries without: older lines hash as they were written.
    sources: tuple[SourceFile, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["action"] = self.action.value
        if self.sources:
            d["sources"] = [s.as_dict() for s in self.sources]
        else:
            del d["sources"]
        return d

    def line(self) -> str:
        return canonical(self.as_dict()) + "\n"

    @classmethod
    def from_dict(cls, raw: Any) -> ManifestEntry:
        """An entry from a parsed line; ValueError names what is wrong with it."""
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        missing = [k for k in _FIELDS if k not in raw]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        for key, kind in _FIELDS.items():
            value = raw[key]
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ValueError(f"{key} is not {kind.__name__}")
        try:
            action = ManifestAction(raw["action"])
        except ValueError:
            raise ValueError(f"unknown action {raw['action']!r}") from None
        listed = raw.get("sources", [])
        if not isinstance(listed, list):
            raise ValueError("sources is not a list")
        return cls(
            seq=raw["seq"],
            at=raw["at"],
            action=action,
            tenant=raw["tenant"],
            attempt_id=raw["attempt_id"],
            path=raw["path"],
            sha256=raw["sha256"],
            bytes=raw["bytes"],
            prev_hash=raw["prev_hash"],
            hash=raw["hash"],
            sources=tuple(SourceFile.from_dict(x) for x in listed),
        )


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _lines_backwards(fd: int, end: int) -> Iterator[bytes]:
    """The complete lines of the file's first `end` bytes, last first, without their newline."""
    pos = end
    tail = b""
    while pos > 0:
        step = min(_BLOCK, pos)
        pos -= step
        block = os.pread(fd, step, pos) + tail
        parts = block.split(b"\n")
        tail = parts[0]  # may continue in the block before
        for part in reversed(parts[1:]):
            if part.strip():
                yield part
    if tail.strip():
        yield tail


class Manifest:
    """Appends to `<root>/manifest.jsonl` under the lock, continuing the chain from its last line."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.path = self.root / MANIFEST_NAME
        self._lock = threading.Lock()

    @contextmanager
    def _locked(self) -> Iterator[int]:
        """The manifest opened for appending, held exclusively by this thread and process."""
        with self._lock:
            self.root.mkdir(parents=True, exist_ok=True)
            lock_fd = os.open(self.root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX)
                created = not self.path.exists()
                fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    if created:
                        _fsync_dir(self.root)
                    self._drop_torn_tail(fd)
                    yield fd
                finally:
                    os.close(fd)
            finally:
                os.close(lock_fd)  # releases the flock

    def _drop_torn_tail(self, fd: int) -> None:
        """A crash during a write can leave a last line without its newline: that entry was
        never complete (its writer had not returned), so it is cut off before the next append."""
        size = os.fstat(fd).st_size
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return
        keep = 0
        pos = size
        while pos > 0:
            step = min(_BLOCK, pos)
            pos -= step
            at = os.pread(fd, step, pos).rfind(b"\n")
            if at >= 0:
                keep = pos + at + 1
                break
        log.warning(
            "x manifest %s: dropping a torn last line (%d bytes) left by a crash",
            self.path,
            size - keep,
        )
        os.ftruncate(fd, keep)
        os.fsync(fd)

    def _last(self, fd: int) -> ManifestEntry | None:
        for raw in _lines_backwards(fd, os.fstat(fd).st_size):
            try:
                return ManifestEntry.from_dict(json.loads(raw))
            except ValueError as exc:
                raise ManifestError(
                    f"{self.path}: the last entry is unreadable ({exc}); run verify"
                ) from None
        return None

    def _find(self, fd: int, attempt_id: int, action: ManifestAction) -> ManifestEntry | None:
        # Canonical JSON sorts keys: "attempt_id" is always followed by "bytes".
        needle = f'"attempt_id":{attempt_id},'.encode()
        for raw in _lines_backwards(fd, os.fstat(fd).st_size):
            if needle not in raw:
                continue
            try:
                entry = ManifestEntry.from_dict(json.loads(raw))
            except ValueError:
                continue
            if entry.attempt_id == attempt_id and entry.action is action:
                return entry
        return None

    def find(self, attempt_id: int, action: ManifestAction) -> ManifestEntry | None:
        """The newest entry of `action` for the attempt; reads the whole manifest backwards, so
        only the recovery paths call it."""
        if not self.path.exists():
            return None
        with self._locked() as fd:
            return self._find(fd, attempt_id, action)

    def append(
        self,
        *,
        action: ManifestAction,
        tenant: str,
        attempt_id: int,
        path: str,
        sha256: str,
        size: int,
        at: datetime,
        unless_entered: bool = False,
        sources: tuple[SourceFile, ...] = (),
    ) -> ManifestEntry:
        """Append one entry, durably (fsync) before returning.

        With `unless_entered`, an entry of the same action for the same attempt and hash is
        returned instead of writing a second one (a re-run after a crash); the same attempt
        entered with another hash is an error.
        """
        if at.tzinfo is None:
            raise ValueError("naive datetime: pass a timezone-aware value")
        with self._locked() as fd:
            if unless_entered:
                found = self._find(fd, attempt_id, action)
                if found is not None:
                    if found.sha256 != sha256 or found.path != path:
                        raise ManifestError(
                            f"attempt {attempt_id} is already {action.value} as {found.path} "
                            f"(seq {found.seq}, sha256 {found.sha256[:12]}…), not as {path}"
                        )
                    return found
            last = self._last(fd)
            body: dict[str, Any] = {
                "seq": 0 if last is None else last.seq + 1,
                "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
                "action": action.value,
                "tenant": tenant,
                "attempt_id": attempt_id,
                "path": path,
                "sha256": sha256,
                "bytes": size,
                "prev_hash": GENESIS if last is None else last.hash,
            }
            if sources:
                body["sources"] = [x.as_dict() for x in sources]
            body["hash"] = entry_hash(body)
            entry = ManifestEntry.from_dict(body)
            data = entry.line().encode()
            written = 0
            while written < len(data):  # O_APPEND: each write lands at the end
                written += os.write(fd, data[written:])
            os.fsync(fd)
            return entry


@dataclass(frozen=True)
class ChainReport:
    """What the manifest says, and where its chain is broken."""

    entries: list[ManifestEntry]
    head: str  # hash of the last readable entry (GENESIS when empty)
    findings: list[Finding]


def verify_chain(path: Path, expect_head: str | None = None) -> ChainReport:
    """Walk the chain from the first line: each entry must carry the next seq, link to the
    previous entry's hash and match its own hash. A break is named by the seq where it is.

    Removing the newest entries leaves a valid shorter chain; pass the head hash anchored
    elsewhere (a ticket, another system) as `expect_head` to detect that too.
    """
    findings: list[Finding] = []
    entries: list[ManifestEntry] = []
    prev = GENESIS
    expected = 0
    resync = False  # after an unreadable line, take the next entry's seq and link as given
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return ChainReport([], GENESIS, [])
    with handle:
        for lineno, raw in enumerate(handle, 1):
            if not raw.strip():
                continue
            try:
                body = json.loads(raw)
                entry = ManifestEntry.from_dict(body)
            except ValueError as exc:
                why = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
                torn = "" if raw.endswith(b"\n") else ", a torn last line"
                findings.append(
                    Finding(
                        FindingKind.CHAIN,
                        f"chain break at seq {expected}: line {lineno} is not a manifest "
                        f"entry ({why}{torn})",
                        seq=expected,
                    )
                )
                expected += 1
                resync = True
                continue
            seq = entry.seq
            if not resync and seq != expected:
                findings.append(
                    Finding(
                        FindingKind.CHAIN,
                        f"chain break at seq {expected}: line {lineno} holds seq {seq} "
                        "(entries removed or reordered)",
                        seq=expected,
                    )
                )
            elif not resync and entry.prev_hash != prev:
                findings.append(
                    Finding(
                        FindingKind.CHAIN,
                        f"chain break at seq {seq}: its prev_hash is not the hash of seq "
                        f"{seq - 1} (seq {seq - 1} edited and re-hashed, or replaced)",
                        seq=seq,
                    )
                )
            if entry_hash(body) != entry.hash:  # the line as written: an added key counts
                findings.append(
                    Finding(
                        FindingKind.CHAIN,
                        f"chain break at seq {seq}: the entry does not match its hash "
                        f"(entry edited: {entry.action.value} {entry.path})",
                        seq=seq,
                        path=entry.path,
                    )
                )
            entries.append(entry)
            prev = entry.hash
            expected = seq + 1
            resync = False
    if expect_head is not None and prev != expect_head:
        findings.append(
            Finding(
                FindingKind.CHAIN,
                f"chain break at seq {expected}: the head hash differs from the anchored one "
                "(newest entries removed)",
                seq=expected,
            )
        )
    return ChainReport(entries, prev, findings)
