"""The evidence archive: finished recordings checked, hashed, moved in by tenant and date,
entered in the manifest; verification of files against it; deletion for retention.

Layout: `<root>/<tenant>/<YYYY>/<MM>/<DD>/attempt-<id>-<sha8>.wav` (the call's UTC date), and
`<root>/manifest.jsonl` (see manifest.py). A move is copy + fsync + rename, then the source is
removed, so an interruption at any point leaves the recording in the source, in the archive,
or in both, never in neither; running the intake again finishes the move without a second
copy or a second manifest entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import struct
import wave
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from recording.errors import BadRecording, RecordingError, RecordingUnfinished
from recording.manifest import (
    LOCK_NAME,
    MANIFEST_NAME,
    Finding,
    FindingKind,
    Manifest,
    ManifestAction,
    ManifestEntry,
    SourceFile,
    verify_chain,
)

log = logging.getLogger(__name__)

_CHUNK = 1024 * 1024
PARTIAL_SUFFIX = ".partial"


class ArchiveError(RecordingError):
    """A recording could not be archived or deleted; the message says why. (A file that is not
    a complete WAV raises BadRecording instead: retrying will not help.)"""


class RecordingMissing(ArchiveError):
    """The recording is neither at its source nor in the archive (yet: it may still arrive)."""


@dataclass(frozen=True)
class WavInfo:
    sample_rate: int
    channels: int
    sample_width: int  # bytes per sample
    frames: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


def _data_chunk(path: Path) -> tuple[int, int]:
    """(offset of the audio bytes, size the data chunk declares), walking the RIFF chunks."""
    with path.open("rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise BadRecording(path, "not a RIFF/WAVE file")
        pos = 12
        while True:
            f.seek(pos)
            header = f.read(8)
            if len(header) < 8:
                raise BadRecording(path, "no data chunk")
            chunk_id, size = struct.unpack("<4sI", header)
            if chunk_id == b"data":
                return pos + 8, size
            pos += 8 + size + (size & 1)


def inspect_wav(path: Path) -> WavInfo:
    """The WAV's format, read with the `wave` module, after checking that the file holds all
    the audio its data chunk declares (a recorder that died mid-call leaves less)."""
    try:
        with wave.open(str(path), "rb") as w:
            info = WavInfo(w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes())
    except (wave.Error, EOFError) as exc:
        raise BadRecording(
            path, f"unreadable WAV header: {exc or 'the file ends inside the header'}"
        ) from None
    if info.sample_rate <= 0 or info.channels <= 0 or info.sample_width <= 0:
        raise BadRecording(
            path,
            f"impossible format: {info.sample_rate} Hz, {info.channels} channels, "
            f"{info.sample_width} bytes per sample",
        )
    offset, declared = _data_chunk(path)
    held = path.stat().st_size - offset
    if declared == 0 and held > 0:
        raise RecordingUnfinished(
            path,
            f"header not finalised: data size 0 but {held} bytes follow (still being written?)",
        )
    if held < declared:
        raise BadRecording(
            path,
            f"truncated: the data chunk declares {declared} bytes of audio, the file holds {held}",
        )
    if declared % (info.channels * info.sample_width):
        raise BadRecording(
            path,
            f"data chunk of {declared} bytes is not a whole number of "
            f"{info.channels * info.sample_width}-byte frames",
        )
    return info


def file_sha256(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def tenant_dir(tenant: str) -> str:
    """The tenant's folder name: the name itself where it is safe, else percent-encoded."""
    if not tenant:
        raise ArchiveError("empty tenant name")
    name = quote(tenant, safe="-_")  # '.' is never encoded by quote: guard '.' and '..'
    return name.replace(".", "%2E") if set(name) == {"."} else name


def archive_path(tenant: str, attempt_id: int, sha256: str, recorded_at: datetime) -> str:
    day = recorded_at.astimezone(UTC)
    return str(
        PurePosixPath(tenant_dir(tenant), f"{day:%Y}", f"{day:%m}", f"{day:%d}")
        / f"attempt-{attempt_id}-{sha256[:8]}.wav"
    )


@dataclass(frozen=True)
class ArchivedFile:
    path: str  # relative to the archive root
    sha256: str
    bytes: int
    wav: WavInfo
    entry: ManifestEntry
    # True when this intake found the work already done (a re-run after a crash or lost ack).
    already: bool = False


@dataclass(frozen=True)
class RetentionPolicy:
    """How long a tenant's recordings are kept after the call (see RETENTION_PRESETS in
    dialer.config: China 730 days, US 1095)."""

    default_days: int = 1095
    per_tenant: Mapping[str, int] = field(default_factory=dict)

    def days_for(self, tenant: str) -> int:
        return self.per_tenant.get(tenant, self.default_days)

    def keep_until(self, tenant: str, recorded_at: datetime) -> datetime:
        return recorded_at + timedelta(days=self.days_for(tenant))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs(root: Path, relative: PurePosixPath) -> Path:
    """mkdir -p, with each new directory's entry made durable in its parent."""
    root.mkdir(parents=True, exist_ok=True)
    current = root
    for part in relative.parts:
        child = current / part
        if not child.is_dir():
            child.mkdir(exist_ok=True)
            _fsync_dir(current)
        current = child
    return current


def _copy_hashing(source: Path, target: Path) -> tuple[str, int]:
    """Copy `source` to the new file `target`, fsync it; the SHA-256 and size of what was copied."""
    digest = hashlib.sha256()
    size = 0
    with source.open("rb") as src, target.open("xb") as dst:
        while block := src.read(_CHUNK):
            digest.update(block)
            dst.write(block)
            size += len(block)
        dst.flush()
        os.fsync(dst.fileno())
    return digest.hexdigest(), size


class Archive:
    """One archive root: intake, deletion and verification of the files under it."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.manifest = Manifest(self.root)

    def intake(
        self,
        *,
        tenant: str,
        attempt_id: int,
        source: Path,
        recorded_at: datetime,
        now: datetime,
        sources: tuple[SourceFile, ...] = (),
    ) -> ArchivedFile:
        """Move a finished recording into the archive and enter it in the manifest.

        Idempotent: run again after an interruption anywhere (or after the caller lost the
        result), it finishes what is left and returns the same file and entry.
        Raises BadRecording (the source is not a complete WAV), RecordingMissing,
        ArchiveError, OSError.
        """
        day_dir = PurePosixPath(archive_path(tenant, attempt_id, "0" * 64, recorded_at)).parent
        if not source.exists():
            return self._already_archived(tenant, attempt_id, source, day_dir)
        wav = inspect_wav(source)
        directory = _make_dirs(self.root, day_dir)
        for stale in directory.glob(f".attempt-{attempt_id}.*{PARTIAL_SUFFIX}"):
            stale.unlink(missing_ok=True)  # an earlier run's unfinished copy
        partial = directory / f".attempt-{attempt_id}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}"
        try:
            sha, size = _copy_hashing(source, partial)
            relative = archive_path(tenant, attempt_id, sha, recorded_at)
            target = self.root / relative
            existed = target.exists()
            if existed and file_sha256(target)[0] != sha:
                raise ArchiveError(f"{relative} exists with other content; left as it is")
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        _fsync_dir(directory)
        # Only a crash after the rename can have entered it already: look only then.
        entry = self.manifest.append(
            action=ManifestAction.ARCHIVED,
            tenant=tenant,
            attempt_id=attempt_id,
            path=relative,
            sha256=sha,
            size=size,
            at=now,
            unless_entered=existed,
            sources=sources,
        )
        try:
            source.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning(
                "x archived %s but could not remove its source %s: %s", relative, source, exc
            )
        else:
            with contextlib.suppress(OSError):
                _fsync_dir(source.parent)
        return ArchivedFile(relative, sha, size, wav, entry, already=existed)

    def _already_archived(
        self, tenant: str, attempt_id: int, source: Path, day_dir: PurePosixPath
    ) -> ArchivedFile:
        """The source is gone: an earlier run moved it (and its result was lost), or it never
        arrived. The rename precedes the manifest entry, so no archived file means no entry."""
        directory = self.root / day_dir
        if not any(directory.glob(f"attempt-{attempt_id}-*.wav")):
            raise RecordingMissing(f"{source}: no such file, and not in the archive")
        entry = self.manifest.find(attempt_id, ManifestAction.ARCHIVED)
        if entry is None or entry.tenant != tenant:
            raise RecordingMissing(
                f"{source}: no such file; the archive holds a file for attempt {attempt_id} "
                "that the manifest does not (run verify)"
            )
        target = self.root / entry.path
        sha, size = file_sha256(target)
        if sha != entry.sha256:
            raise ArchiveError(f"{entry.path} does not match its manifest hash (run verify)")
        return ArchivedFile(entry.path, sha, size, inspect_wav(target), entry, already=True)

    def delete(
        self,
        *,
        tenant: str,
        attempt_id: int,
        path: str,
        sha256: str,
        size: int,
        now: datetime,
    ) -> ManifestEntry:
        """Delete an archived file and enter the deletion in the manifest (retention only).

        The file goes first: a crash in between leaves it missing without a `deleted` entry,
        which verify reports until the retention run is repeated (it then writes the entry).
        Idempotent.
        """
        target = self.root / path
        present = target.exists()
        if present:
            target.unlink()
            _fsync_dir(target.parent)
        return self.manifest.append(
            action=ManifestAction.DELETED,
            tenant=tenant,
            attempt_id=attempt_id,
            path=path,
            sha256=sha256,
            size=size,
            at=now,
            unless_entered=not present,
        )

    def verify(self, expect_head: str | None = None) -> VerifyReport:
        return verify(self.root, expect_head)


@dataclass(frozen=True)
class VerifyReport:
    entries: int  # manifest entries read
    files: int  # files found under the root (manifest aside)
    head: str  # hash of the manifest's last entry: anchor it elsewhere to detect a lost tail
    findings: list[Finding]

    @property
    def ok(self) -> bool:
        return not self.findings


def verify(root: Path, expect_head: str | None = None) -> VerifyReport:
    """Check the manifest's chain, then every file against it.

    Findings: a file whose content changed (hash mismatch), a file the manifest holds as
    archived that is missing, a file no entry accounts for (added), an unfinished copy, and
    every break of the chain (an entry edited, removed or reordered), each naming its path or
    seq. A file entered as deleted is expected to be absent.
    """
    root = Path(root)
    chain = verify_chain(root / MANIFEST_NAME, expect_head)
    findings = list(chain.findings)
    expected: dict[str, ManifestEntry] = {}
    for entry in chain.entries:
        if entry.action is ManifestAction.ARCHIVED:
            expected[entry.path] = entry
        else:
            expected.pop(entry.path, None)
    on_disk: set[str] = set()
    if root.is_dir():
        for dirpath, _dirs, names in os.walk(root):
            for name in names:
                full = Path(dirpath) / name
                relative = full.relative_to(root).as_posix()
                if relative in (MANIFEST_NAME, LOCK_NAME):
                    continue
                on_disk.add(relative)
    for relative in sorted(on_disk):
        known = expected.get(relative)
        if relative.endswith(PARTIAL_SUFFIX):
            findings.append(
                Finding(
                    FindingKind.PARTIAL,
                    f"{relative}: an unfinished copy (an archive job was interrupted; it is "
                    "removed when the job runs again)",
                    path=relative,
                )
            )
        elif known is None:
            findings.append(
                Finding(FindingKind.ADDED, f"{relative}: not in the manifest", path=relative)
            )
        else:
            sha, size = file_sha256(root / relative)
            if sha != known.sha256:
                findings.append(
                    Finding(
                        FindingKind.CHANGED,
                        f"{relative}: content changed (sha256 {sha[:16]}…, {size} bytes; the "
                        f"manifest's seq {known.seq} says {known.sha256[:16]}…, {known.bytes} bytes)",
                        path=relative,
                        seq=known.seq,
                    )
                )
    for relative in sorted(expected.keys() - on_disk):
        entry = expected[relative]
        findings.append(
            Finding(
                FindingKind.MISSING,
                f"{relative}: missing (archived at seq {entry.seq}, attempt {entry.attempt_id}, "
                "never entered as deleted)",
                path=relative,
                seq=entry.seq,
            )
        )
    return VerifyReport(len(chain.entries), len(on_disk), chain.head, findings)
