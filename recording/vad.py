"""Speech segments of one channel: WebRTC VAD frame decisions, smoothed into segments.

The recogniser is sent only these segments, never silence. Pure and deterministic: samples in,
segments out; a fresh VAD per call, so the same audio always gives the same segments.

How a segment is made (frame = `frame_ms` of audio, judged speech or not by WebRTC's VAD):

1. Runs of consecutive speech frames are found.
2. Runs separated by a gap of at most `hangover_ms` are joined: the pauses between words and
   the closures of plosives do not split an utterance.
3. A joined segment is kept only if it contains at least `min_speech_ms` of speech frames *in
   a row*: isolated clicks and noise bursts, which WebRTC sometimes calls speech for a frame
   or two, never start a segment however many of them there are.

Segment times are frame boundaries (multiples of `frame_ms`); the end is the end of the last
speech frame. A trailing partial frame (< `frame_ms`) is not judged.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import soxr
import webrtcvad

SUPPORTED_RATES = (8000, 16000, 32000, 48000)
FRAME_MS = (10, 20, 30)
DEFAULT_MIN_SPEECH_MS = 120
DEFAULT_HANGOVER_MS = 300


@dataclass(frozen=True, slots=True)
class Segment:
    """A stretch of speech, in seconds from the start of the channel."""

    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def to_dict(self) -> dict[str, float]:
        return {"start_s": round(self.start_s, 3), "end_s": round(self.end_s, 3)}


@dataclass(frozen=True, slots=True)
class Piece:
    """The samples of one segment (a view into the channel), with where it starts."""

    start_s: float
    end_s: float
    samples: npt.NDArray[np.int16]


def vad_rate(rate: int) -> int:
    """The rate the VAD runs at for audio sampled at `rate`: the rate itself when WebRTC takes
    it, else the highest rate WebRTC takes below it (speech needs nothing above 4 kHz).
    Below 8000 Hz there is not enough bandwidth for the VAD: `ValueError`."""
    if rate in SUPPORTED_RATES:
        return rate
    if rate < SUPPORTED_RATES[0]:
        raise ValueError(
            f"{rate} Hz audio cannot be segmented: WebRTC VAD needs at least 8000 Hz "
            f"(takes {', '.join(map(str, SUPPORTED_RATES))})"
        )
    return max(r for r in SUPPORTED_RATES if r <= rate)


def _check_samples(samples: npt.NDArray[np.int16], rate: int) -> None:
    if not isinstance(samples, np.ndarray) or samples.dtype != np.int16:
        got = samples.dtype if isinstance(samples, np.ndarray) else type(samples).__name__
        raise TypeError(f"samples must be a numpy int16 array, got {got}")
    if samples.ndim != 1:
        raise ValueError(f"samples must be one channel (1-D), got shape {samples.shape}")
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")


def speech_frames(
    samples: npt.NDArray[np.int16], rate: int, *, aggressiveness: int = 2, frame_ms: int = 30
) -> npt.NDArray[np.bool_]:
    """WebRTC's raw decision per frame (True = speech), before any smoothing."""
    _check_samples(samples, rate)
    if aggressiveness not in (0, 1, 2, 3):
        raise ValueError(f"aggressiveness must be 0..3, got {aggressiveness}")
    if frame_ms not in FRAME_MS:
        raise ValueError(f"frame_ms must be one of {FRAME_MS}, got {frame_ms}")
    run_rate = vad_rate(rate)
    audio = samples if run_rate == rate else soxr.resample(samples, rate, run_rate, "HQ")
    audio = np.ascontiguousarray(audio, dtype="<i2")
    step = run_rate * frame_ms // 1000
    count = len(audio) // step
    vad = webrtcvad.Vad(aggressiveness)
    raw = audio[: count * step].tobytes()
    width = step * 2
    return np.fromiter(
        (bool(vad.is_speech(raw[i * width : (i + 1) * width], run_rate)) for i in range(count)),
        dtype=np.bool_,
        count=count,
    )


def smooth(flags: npt.NDArray[np.bool_], min_run: int, max_gap: int) -> list[tuple[int, int]]:
    """Frame flags to segments `[start, end)` in frame indices (steps 1-3 of the module doc):
    runs joined across gaps of at most `max_gap` frames, kept when they hold a run of at least
    `min_run` speech frames in a row."""
    padded = np.concatenate(([False], np.asarray(flags, dtype=np.bool_), [False]))
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    runs = list(zip(edges[0::2].tolist(), edges[1::2].tolist(), strict=True))
    out: list[tuple[int, int]] = []
    start = end = longest = -1
    for run_start, run_end in runs:
        if start >= 0 and run_start - end <= max_gap:
            end, longest = run_end, max(longest, run_end - run_start)
            continue
        if start >= 0 and longest >= min_run:
            out.append((start, end))
        start, end, longest = run_start, run_end, run_end - run_start
    if start >= 0 and longest >= min_run:
        out.append((start, end))
    return out


def speech_segments(
    samples: npt.NDArray[np.int16],
    rate: int,
    *,
    aggressiveness: int = 2,
    frame_ms: int = 30,
    min_speech_ms: int = DEFAULT_MIN_SPEECH_MS,
    hangover_ms: int = DEFAULT_HANGOVER_MS,
) -> list[Segment]:
    """The speech segments of one channel of int16 samples at `rate` Hz.

    `aggressiveness` 0..3 is WebRTC's mode (3 rejects the most non-speech). Rates other than
    8/16/32/48 kHz are resampled (see `vad_rate`); below 8 kHz raises `ValueError`.
    `min_speech_ms` and `hangover_ms` are rounded up to whole frames."""
    flags = speech_frames(samples, rate, aggressiveness=aggressiveness, frame_ms=frame_ms)
    min_run = max(1, -(-min_speech_ms // frame_ms))
    max_gap = max(0, -(-hangover_ms // frame_ms))
    seconds = frame_ms / 1000
    return [
        Segment(round(s * seconds, 6), round(e * seconds, 6))
        for s, e in smooth(flags, min_run, max_gap)
    ]


def cut(
    samples: npt.NDArray[np.int16],
    rate: int,
    segments: Sequence[Segment],
    *,
    pad_s: float = 0.0,
) -> Iterator[Piece]:
    """Yields the samples of each segment (views, no copy) with their offsets in seconds,
    widened by `pad_s` on each side (clamped to the channel) so a recogniser hears word
    edges; widened pieces may overlap their neighbours."""
    _check_samples(samples, rate)
    total = len(samples)
    for seg in segments:
        lo = min(total, max(0, round((seg.start_s - pad_s) * rate)))
        hi = min(total, max(lo, round((seg.end_s + pad_s) * rate)))
        yield Piece(lo / rate, hi / rate, samples[lo:hi])
