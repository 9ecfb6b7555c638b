"""A composed call on disk: its WAV file(s) in one of three layouts, and the truth sidecar.

- `stereo` (the default): one 2-channel WAV at the recording's path, the agent on the left
  (channel 0) and the debtor on the right (channel 1).
- `rt`: what `MixMonitor(<path>,b,r(<stem>-in.wav)t(<stem>-out.wav))` writes on the debtor's
  channel: the mixed mono file at the path, the debtor's side (what the channel *receives*,
  r()) in `<stem>-in.wav` and the agent's (what it *transmits* to the debtor, t()) in
  `<stem>-out.wav`, all three the same length (Asterisk 20 keeps r/t in step by default).
- `mixed`: one mono WAV, both sides summed: what asterisk-conf's `MixMonitor(...,b)` writes
  today.

The sidecar `<stem>.truth.json` beside the WAV says what was said, by whom, from which second
to which (`CallAudio.truth`).
"""

from __future__ import annotations

import enum
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt

from sim.audio.compose import CallAudio
from sim.audio.sources import write_wav


class Layout(enum.StrEnum):
    STEREO = "stereo"
    RT = "rt"
    MIXED = "mixed"


def sidecar_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.truth.json")


def rt_paths(path: Path) -> tuple[Path, Path]:
    """(receive, transmit) = (debtor, agent) files of the `rt` layout."""
    return path.with_name(f"{path.stem}-in.wav"), path.with_name(f"{path.stem}-out.wav")


def mix(call: CallAudio) -> npt.NDArray[np.int16]:
    both = call.agent.astype(np.int32) + call.debtor.astype(np.int32)
    return np.clip(both, -32768, 32767).astype(np.int16)


def write_call(
    call: CallAudio, path: Path, layout: Layout = Layout.STEREO, *, sidecar: bool = True
) -> list[Path]:
    """Write the call's file(s) at `path` (a `.wav` name); returns every path written, the
    sidecar last. Each file appears whole or not at all; the sidecar and, in `rt`, the party
    files are on disk before the file at `path`, so whoever sees that file sees all of them."""
    if layout is Layout.STEREO:
        files = {"stereo": path.name}
    elif layout is Layout.RT:
        receive, transmit = rt_paths(path)
        files = {"mixed": path.name, "debtor": receive.name, "agent": transmit.name}
    else:
        files = {"mixed": path.name}
    target = sidecar_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if sidecar:
        truth = call.truth(files, layout.value)
        if layout is Layout.STEREO:
            truth["channels"] = ["agent", "debtor"]
        _write_text(target, json.dumps(truth, ensure_ascii=False, indent=1) + "\n")
    written: list[Path] = []
    if layout is Layout.STEREO:
        write_wav(path, np.stack([call.agent, call.debtor], axis=1))
    elif layout is Layout.RT:
        write_wav(receive, call.debtor)
        write_wav(transmit, call.agent)
        write_wav(path, mix(call))
        written += [receive, transmit]
    else:
        write_wav(path, mix(call))
    written.append(path)
    if sidecar:
        written.append(target)
    return written


def _write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    done = False
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, path)
        done = True
    finally:
        if not done:
            Path(tmp).unlink(missing_ok=True)
