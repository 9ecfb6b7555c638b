"""Use cases: transcribe samples, channels or a WAV file with a recogniser, resampling on the way."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from asr.models import Segment, Transcript
from asr.protocol import Recognizer, Samples
from asr.resample import Quality, read_wav, resample


def transcribe_samples(
    recognizer: Recognizer,
    samples: Samples,
    sample_rate: int,
    *,
    channel: int = 0,
    offset_s: float = 0.0,
    quality: Quality = "HQ",
) -> list[Segment]:
    """Segments of mono int16 audio at any rate: resampled (soxr) to what the model wants."""
    audio = resample(samples, sample_rate, recognizer.sample_rate, quality=quality)
    segments = recognizer.transcribe(audio, recognizer.sample_rate, offset_s=offset_s)
    if channel:
        segments = [dataclasses.replace(s, channel=channel) for s in segments]
    return segments


def transcribe_channels(
    recognizer: Recognizer,
    channels: Sequence[Samples],
    sample_rate: int,
    *,
    quality: Quality = "HQ",
) -> Transcript:
    """Each channel on its own (agent and debtor of a stereo recording), merged in time order."""
    segments: list[Segment] = []
    for index, samples in enumerate(channels):
        segments.extend(
            transcribe_samples(recognizer, samples, sample_rate, channel=index, quality=quality)
        )
    segments.sort(key=lambda s: (s.start_s, s.channel))
    audio_s = max((len(c) for c in channels), default=0) / sample_rate
    return Transcript(
        engine=recognizer.engine,
        model=recognizer.model,
        language=recognizer.language,
        segments=tuple(segments),
        audio_s=audio_s,
    )


def transcribe_file(
    recognizer: Recognizer, path: str | Path, *, quality: Quality = "HQ"
) -> Transcript:
    """A WAV file (PCM 8/16-bit, A-law, µ-law; mono or one channel per party).

    Raises BadAudio naming the file and what is wrong with it.
    """
    channels, rate = read_wav(path)
    return transcribe_channels(recognizer, channels, rate, quality=quality)
