"""The text route: a `Recognizer` that "hears" what a simulated call's script says was spoken.

For the simulator's calls only: `sim.audio` writes `<stem>.truth.json` beside each recording
(who said what, from which second to which). This recogniser returns the utterances whose
middle lies in the piece of audio it is handed, so the VAD, the parties, the offsets, the
index and QA all run as for real recognition while the words are exact. It is how the demo's
Chinese calls become searchable (no Chinese model can be installed here) and how `dialer bench
pipeline` measures the pipeline's own overhead apart from recognition.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from asr.models import Segment, Word
from asr.protocol import Samples

ENGINE = "script"


def truth_path(recording: Path) -> Path:
    """The sidecar of a simulated recording (`sim.audio.files.sidecar_path`)."""
    return recording.with_name(f"{recording.stem}.truth.json")


def load_truth(path: Path) -> dict[str, Any]:
    """A sidecar, checked enough to use: ValueError names the file and what is wrong."""
    try:
        truth = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable script sidecar: {exc}") from exc
    if not isinstance(truth, dict) or not isinstance(truth.get("utterances"), list):
        raise ValueError(f"{path}: a script sidecar needs a list of utterances")
    return truth


class ScriptRecognizer:
    """Hears the sidecar's utterances; with no sidecar (`truth` None) it hears nothing."""

    engine = ENGINE
    model = "sim-truth"
    sample_rate = 8000

    def __init__(self, truth: dict[str, Any] | None = None) -> None:
        self.truth = truth or {"utterances": []}
        self.language = str(self.truth.get("language") or "und")

    def transcribe(
        self, samples: Samples, sample_rate: int, *, offset_s: float = 0.0
    ) -> list[Segment]:
        start, end = offset_s, offset_s + len(samples) / sample_rate
        heard = []
        for u in self.truth["utterances"]:
            begin, until, text = float(u["start_s"]), float(u["end_s"]), str(u["text"])
            if not text or not start <= (begin + until) / 2 < end:
                continue
            words = text.split()
            step = (until - begin) / len(words)
            heard.append(
                Segment.from_words(
                    [
                        Word(w, begin + i * step, begin + (i + 1) * step, 1.0)
                        for i, w in enumerate(words)
                    ]
                )
            )
        return heard
