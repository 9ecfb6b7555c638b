"""The seam between what needs speech recognised and the engines that do it."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from asr.models import Segment

Samples = npt.NDArray[np.int16]


@runtime_checkable
class Recognizer(Protocol):
    """An offline speech recogniser holding one loaded model.

    `transcribe` takes mono 16-bit samples at exactly `sample_rate` (what the model wants; the
    caller resamples, see `asr.service.transcribe_samples`) and returns the segments it heard,
    with word times in seconds counted from `offset_s` (the position of `samples[0]` in the
    whole recording). Silence gives an empty list. A recogniser is used by one thread at a
    time; a process pool (`asr.pool`) runs one per process.
    """

    @property
    def engine(self) -> str:
        """Engine name: "vosk", "pocketsphinx"."""
        ...

    @property
    def model(self) -> str:
        """Name of the loaded model (stored with every transcript)."""
        ...

    @property
    def language(self) -> str:
        """BCP 47 language of the model ("en", "ko", "zh"), "und" when unknown."""
        ...

    @property
    def sample_rate(self) -> int:
        """The sample rate the model wants, in Hz."""
        ...

    def transcribe(
        self, samples: Samples, sample_rate: int, *, offset_s: float = 0.0
    ) -> list[Segment]: ...
