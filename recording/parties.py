"""Two-party recordings from MixMonitor's r()/t() files: found beside the mixed file, joined
into one two-channel WAV (agent left, debtor right) before the archive takes them in.

asterisk-conf records `MixMonitor(<stem>.wav,br(<stem>-in.wav)t(<stem>-out.wav))` on the
debtor's channel: r() is what that channel receives (the debtor), t() what it transmits to the
debtor (the agent, and anything played to them). Asterisk keeps the two in step (silence is
inserted unless option n). The join interleaves their samples unchanged, so each original is
recoverable exactly from its channel of the archived file; the mixed mono file, their sum, is
not kept. The manifest entry of the joined file names the originals with their hashes and the
hash of each party's samples (sources_of), so the chain vouches for what Asterisk wrote.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import numpy.typing as npt

from recording.archive import file_sha256, inspect_wav
from recording.audio_io import read_wav, write_wav
from recording.errors import BadRecording
from recording.manifest import SourceFile

RECEIVE_SUFFIX = "-in"  # r(): the debtor
TRANSMIT_SUFFIX = "-out"  # t(): the agent
JOINED_SUFFIX = "-2ch"


def party_paths(path: Path) -> tuple[Path, Path]:
    """(agent, debtor) = (t(), r()) file names beside the mixed file at `path`."""
    return (
        path.with_name(f"{path.stem}{TRANSMIT_SUFFIX}.wav"),
        path.with_name(f"{path.stem}{RECEIVE_SUFFIX}.wav"),
    )


def joined_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}{JOINED_SUFFIX}.wav")


def party_files(path: Path) -> tuple[Path, Path] | None:
    """The (agent, debtor) files of the recording at `path`, when both are there."""
    agent, debtor = party_paths(path)
    return (agent, debtor) if agent.exists() and debtor.exists() else None


def sources_of(path: Path, joined: Path) -> tuple[SourceFile, ...]:
    """What Asterisk wrote for the recording at `path`, for the manifest: each file's hash, and
    for the two party files the hash of their samples, checked here against the channel of the
    `joined` file that carries them (BadRecording if the join changed a sample)."""
    carried = read_wav(joined)
    out = []
    for channel, party in enumerate(party_paths(path)):
        _rate, samples = _mono(party)
        pcm = hashlib.sha256(samples.astype("<i2").tobytes()).hexdigest()
        kept = carried.channel(channel)[: len(samples)].astype("<i2").tobytes()
        if hashlib.sha256(kept).hexdigest() != pcm:
            raise BadRecording(joined, f"channel {channel} does not carry {party.name} unchanged")
        sha, size = file_sha256(party)
        out.append(SourceFile(party.name, sha, size, channel, len(samples), pcm))
    if path.exists():  # the mixed file: their sum, not kept, but entered as seen
        sha, size = file_sha256(path)
        out.append(SourceFile(path.name, sha, size))
    return tuple(out)


def join_parties(path: Path) -> Path | None:
    """Write `<stem>-2ch.wav` from the r()/t() files of the recording at `path` and return it;
    None when there are no party files. Deterministic (a re-run after a crash writes the same
    bytes, hence the same hash) and atomic (the joined file appears whole or not at all).
    BadRecording names a party file that is not a complete WAV or a pair that does not match."""
    found = party_files(path)
    if found is None:
        return None
    (agent_rate, agent), (debtor_rate, debtor) = (_mono(p) for p in found)
    if agent_rate != debtor_rate:
        raise BadRecording(
            found[0], f"{agent_rate} Hz, but its other party {found[1].name} is {debtor_rate} Hz"
        )
    both = np.zeros((max(len(agent), len(debtor)), 2), dtype=np.int16)
    both[: len(agent), 0] = agent
    both[: len(debtor), 1] = debtor
    target = joined_path(path)
    partial = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        write_wav(partial, both, agent_rate)
        with partial.open("rb") as f:
            os.fsync(f.fileno())
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def _mono(path: Path) -> tuple[int, npt.NDArray[np.int16]]:
    """(rate, samples) of a party file; a file with no audio (a call never bridged) is empty."""
    info = inspect_wav(path)
    if info.channels != 1 or info.sample_width != 2:
        raise BadRecording(
            path,
            f"a party file of {info.channels} channels, {8 * info.sample_width} bits "
            "(expected mono 16-bit)",
        )
    if info.frames == 0:
        return info.sample_rate, np.zeros(0, dtype=np.int16)
    return info.sample_rate, read_wav(path).channel(0)


def remove_sources(path: Path) -> None:
    """Once archived: the mixed file, the party files and the joined file leave the spool."""
    for name in (path, *party_paths(path), joined_path(path)):
        name.unlink(missing_ok=True)
