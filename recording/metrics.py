"""Per-call conversation measures from the two channels of a recording: who talked how long, the
silences, the overtalk, and the moments a party raised their voice.

These are the seed's "emotion cues", measured, not guessed. Every figure comes from the speech
segments of each channel (`recording.vad`: WebRTC VAD, smoothed) and, for raised voice, from
short-term energy and pitch computed here with numpy. The definitions:

talk_s (per party)
    The total length of that party's speech segments. Pauses shorter than the VAD's hangover
    (300 ms by default) inside an utterance count as talk.
silence_s, silence_ratio
    Time when *neither* channel is in a speech segment, leading and trailing silence included;
    the ratio is silence_s / duration_s. duration_s is the longer channel's length.
overtalk_s, overtalk
    Time when *both* channels are in a speech segment, and each such stretch as an interval (a
    backchannel "uh-huh" under the other party's sentence is overtalk too).
longest_silence
    The longest stretch of silence as above (the earliest if several are equally long), with
    where it starts; `None` only when the call has no length.
raised_voice (per party)
    Stretches of at least `min_raised_s` where the speaker's short-term energy AND short-term
    pitch are both well above *their own* baseline in this call:

    * Analysis frames every `hop_s` (10 ms) of `window_s` (30 ms). Energy is the frame's RMS in
      dBFS. Pitch is estimated by YIN (cumulative mean normalised difference, absolute
      threshold `yin_threshold`, parabolic refinement) between `fmin_hz` and `fmax_hz`; a frame
      with no dip below the threshold is unvoiced.
    * Voiced frames inside that party's speech segments are its "speech frames".
    * Short-term values at a frame: energy = mean dB, pitch = median in semitones (robust to
      the tracker's odd octave error) over the speech frames within `short_term_s` centred on
      it; none where fewer than `min_voiced_share` of that window are speech frames.
    * Baseline = median of the short-term values at the party's speech frames; spread = MAD
      x 1.4826 (the MAD scaled to a standard deviation for normal data).
    * A frame inside a speech segment is raised when its short-term energy > baseline +
      max(`energy_k` x spread, `min_energy_db`) AND its short-term pitch > baseline +
      max(`pitch_k` x spread, `min_pitch_semitones`). The floors keep a very even speaker's
      small wobble from counting. Judging every frame of a segment by its neighbourhood keeps
      the unvoiced sounds between raised syllables from breaking a moment.
    * Raised frames closer than `raised_gap_s` join into a stretch, trimmed to its first and
      last speech frame; a stretch shorter than `min_raised_s` is dropped. Each reports
      `energy_ratio` (RMS amplitude over the baseline's: 2.0 is +6 dB) and `pitch_ratio`
      (fundamental frequency over the baseline's: 1.26 is +4 semitones), from the medians of
      the raw (not short-term) values of its speech frames against those of all speech frames.
    * A party with less than `min_baseline_s` of speech frames has no baseline and no raised
      moments: too little speech to know what "raised" means for them.

Pure functions of the samples (`measure_call`); `measure_stereo` and `measure_pair` read the
files first and raise `recording.errors.BadRecording` for unusable ones.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from recording.audio_io import read_wav
from recording.errors import BadRecording
from recording.vad import DEFAULT_HANGOVER_MS, DEFAULT_MIN_SPEECH_MS, Segment, speech_segments

_MAD_TO_SIGMA = 1.4826
_DBFS_FLOOR = -120.0

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


class Party(StrEnum):
    AGENT = "agent"
    DEBTOR = "debtor"


@dataclass(frozen=True)
class MetricsConfig:
    """How speech is found and what counts as a raised voice (see the module doc)."""

    # speech segments (recording.vad)
    aggressiveness: int = 2  # WebRTC mode 0..3
    frame_ms: int = 30
    min_speech_ms: int = DEFAULT_MIN_SPEECH_MS  # a segment needs this much speech in a row
    hangover_ms: int = DEFAULT_HANGOVER_MS  # pauses up to this long stay inside a segment
    # analysis frames and pitch
    window_s: float = 0.03
    hop_s: float = 0.01
    fmin_hz: float = 60.0
    fmax_hz: float = 500.0
    yin_threshold: float = 0.15  # lower: fewer frames called voiced, fewer pitch errors
    # raised voice
    short_term_s: float = 0.5
    min_voiced_share: float = 0.2  # of the short-term window, for a short-term value to exist
    energy_k: float = 2.0
    pitch_k: float = 1.5
    min_energy_db: float = 4.0
    min_pitch_semitones: float = 2.0
    min_raised_s: float = 0.3
    raised_gap_s: float = 0.5
    min_baseline_s: float = 2.0  # of speech frames before a party has a baseline


def _r(value: float) -> float:
    return round(value, 3)


@dataclass(frozen=True)
class Interval:
    """A stretch of the call, in seconds from its start."""

    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def to_dict(self) -> dict[str, float]:
        return {
            "start_s": _r(self.start_s),
            "end_s": _r(self.end_s),
            "duration_s": _r(self.duration_s),
        }


@dataclass(frozen=True)
class RaisedVoice:
    """A moment a party spoke louder and higher than their own baseline."""

    start_s: float
    end_s: float
    party: Party
    energy_ratio: float
    pitch_ratio: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "start_s": _r(self.start_s),
            "end_s": _r(self.end_s),
            "party": self.party.value,
            "energy_ratio": _r(self.energy_ratio),
            "pitch_ratio": _r(self.pitch_ratio),
        }


@dataclass(frozen=True)
class Baseline:
    """A party's own usual level and pitch in this call (medians of short-term values)."""

    energy_dbfs: float
    energy_spread_db: float
    pitch_hz: float
    pitch_spread_semitones: float
    voiced_s: float

    def to_dict(self) -> dict[str, float]:
        return {
            "energy_dbfs": _r(self.energy_dbfs),
            "energy_spread_db": _r(self.energy_spread_db),
            "pitch_hz": _r(self.pitch_hz),
            "pitch_spread_semitones": _r(self.pitch_spread_semitones),
            "voiced_s": _r(self.voiced_s),
        }


@dataclass(frozen=True)
class PartyMetrics:
    party: Party
    talk_s: float
    segments: tuple[Segment, ...]
    baseline: Baseline | None
    raised_voice: tuple[RaisedVoice, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "party": self.party.value,
            "talk_s": _r(self.talk_s),
            "segments": [s.to_dict() for s in self.segments],
            "baseline": None if self.baseline is None else self.baseline.to_dict(),
            "raised_voice": [r.to_dict() for r in self.raised_voice],
        }


@dataclass(frozen=True)
class CallMetrics:
    """The measures of one call; definitions in the module doc."""

    duration_s: float
    agent: PartyMetrics
    debtor: PartyMetrics
    silence_s: float
    silence_ratio: float
    overtalk_s: float
    overtalk: tuple[Interval, ...]
    longest_silence: Interval | None
    silences: tuple[Interval, ...] = field(repr=False)

    @property
    def longest_silence_s(self) -> float:
        return 0.0 if self.longest_silence is None else self.longest_silence.duration_s

    @property
    def raised_voice(self) -> tuple[RaisedVoice, ...]:
        """Both parties' raised-voice moments in time order."""
        return tuple(
            sorted(self.agent.raised_voice + self.debtor.raised_voice, key=lambda r: r.start_s)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "duration_s": _r(self.duration_s),
            "talk_s": {"agent": _r(self.agent.talk_s), "debtor": _r(self.debtor.talk_s)},
            "silence_s": _r(self.silence_s),
            "silence_ratio": round(self.silence_ratio, 4),
            "overtalk_s": _r(self.overtalk_s),
            "overtalk": [i.to_dict() for i in self.overtalk],
            "longest_silence": (
                None if self.longest_silence is None else self.longest_silence.to_dict()
            ),
            "agent": self.agent.to_dict(),
            "debtor": self.debtor.to_dict(),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True)


# --- intervals --------------------------------------------------------------------------------


def merge_spans(spans: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """Overlapping or touching (start, end) spans joined, in order; empty ones dropped."""
    out: list[tuple[float, float]] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        elif end > start:
            out.append((start, end))
    return out


def intersect_spans(
    a: Sequence[tuple[float, float]], b: Sequence[tuple[float, float]]
) -> list[tuple[float, float]]:
    """Where two ordered, disjoint span lists overlap (say, both parties talking)."""
    out: list[tuple[float, float]] = []
    i = j = 0
    while i < len(a) and j < len(b):
        start, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if end > start:
            out.append((start, end))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def _gaps(spans: Sequence[tuple[float, float]], duration: float) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    cursor = 0.0
    for start, end in spans:
        if start > cursor:
            out.append((cursor, min(start, duration)))
        cursor = max(cursor, end)
    if duration > cursor:
        out.append((cursor, duration))
    return out


# --- energy and pitch -------------------------------------------------------------------------


@dataclass(frozen=True)
class Prosody:
    """Frame-wise measures of one channel: `times_s` are frame centres; `f0_hz` is NaN where
    the frame is unvoiced."""

    times_s: FloatArray
    energy_dbfs: FloatArray
    f0_hz: FloatArray


def _yin(
    frames: FloatArray, window: int, tau_min: int, tau_max: int, threshold: float
) -> FloatArray:
    """YIN on a block of frames (rows of `window + tau_max` samples): f0 period in samples
    (fractional), NaN where unvoiced."""
    n_frames, width = frames.shape
    nfft = 1 << int(np.ceil(np.log2(width)))
    head = np.zeros_like(frames)
    head[:, :window] = frames[:, :window]
    acf = np.fft.irfft(np.conj(np.fft.rfft(head, nfft)) * np.fft.rfft(frames, nfft), nfft)
    acf = acf[:, : tau_max + 1]
    sq = np.concatenate((np.zeros((n_frames, 1)), np.cumsum(frames**2, axis=1)), axis=1)
    taus = np.arange(tau_max + 1)
    energy_head = sq[:, window][:, None]
    energy_lag = sq[:, taus + window] - sq[:, taus]
    diff = np.maximum(energy_head + energy_lag - 2.0 * acf, 0.0)
    running = np.cumsum(diff[:, 1:], axis=1)
    cmndf = np.ones_like(diff)
    with np.errstate(divide="ignore", invalid="ignore"):
        cmndf[:, 1:] = np.where(running > 0, diff[:, 1:] * taus[1:] / running, 1.0)

    region = cmndf[:, tau_min : tau_max + 1]
    below = region < threshold
    voiced = below.any(axis=1)
    first = np.argmax(below, axis=1)
    # The dip that first crosses the threshold: its minimum is the period (YIN step 4).
    run_id = np.cumsum(~below, axis=1)
    in_dip = below & (run_id == np.take_along_axis(run_id, first[:, None], axis=1))
    best = np.argmin(np.where(in_dip, region, np.inf), axis=1) + tau_min
    rows = np.arange(n_frames)
    left = cmndf[rows, np.maximum(best - 1, 0)]
    mid = cmndf[rows, best]
    right = cmndf[rows, np.minimum(best + 1, tau_max)]
    denom = left - 2.0 * mid + right
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(np.abs(denom) > 1e-12, 0.5 * (left - right) / denom, 0.0)
    period = best + np.clip(shift, -0.5, 0.5)
    return np.where(voiced, period, np.nan)


def prosody(
    samples: npt.NDArray[np.int16],
    rate: int,
    config: MetricsConfig | None = None,
    segments: Sequence[Segment] | None = None,
) -> Prosody:
    """Energy (dBFS) and YIN pitch (Hz) every `hop_s`; with `segments`, only the frames whose
    centre lies in one are analysed (the others are NaN), which is most of the cost saved."""
    cfg = config or MetricsConfig()
    window = max(1, round(cfg.window_s * rate))
    hop = max(1, round(cfg.hop_s * rate))
    tau_min = max(2, int(rate / cfg.fmax_hz))
    tau_max = int(np.ceil(rate / cfg.fmin_hz))
    width = window + tau_max + 1
    x = samples.astype(np.float64) / 32768.0
    n_frames = max(0, -(-len(x) // hop))
    x = np.concatenate((x, np.zeros(n_frames * hop + width - len(x))))
    times = (np.arange(n_frames) * hop + window / 2) / rate
    energy = np.full(n_frames, np.nan)
    f0 = np.full(n_frames, np.nan)
    wanted = np.flatnonzero(_inside(times, segments)) if segments is not None else None
    chosen = np.arange(n_frames) if wanted is None else wanted
    view = np.lib.stride_tricks.sliding_window_view(x, width)[::hop]
    for lo in range(0, len(chosen), 2048):
        rows = chosen[lo : lo + 2048]
        block = view[rows]
        block -= block.mean(axis=1, keepdims=True)
        rms = np.sqrt(np.mean(block[:, :window] ** 2, axis=1))
        energy[rows] = np.maximum(20 * np.log10(rms + 1e-12), _DBFS_FLOOR)
        f0[rows] = rate / _yin(block, window, tau_min, tau_max, cfg.yin_threshold)
    return Prosody(times, energy, f0)


def _inside(times: FloatArray, segments: Sequence[Segment]) -> BoolArray:
    if not segments:
        return np.zeros(len(times), dtype=np.bool_)
    starts = np.array([s.start_s for s in segments])
    ends = np.array([s.end_s for s in segments])
    idx = np.searchsorted(starts, times, side="right") - 1
    ok = idx >= 0
    result = np.zeros(len(times), dtype=np.bool_)
    result[ok] = times[ok] < ends[idx[ok]]
    return result


def _moving_mean(values: FloatArray, mask: BoolArray, width: int) -> FloatArray:
    """Mean of `values` over masked frames within a centred window of `width` frames."""
    kernel = np.ones(width)
    total = np.convolve(np.where(mask, values, 0.0), kernel, mode="same")
    count = np.convolve(mask.astype(np.float64), kernel, mode="same")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _moving_median(values: FloatArray, mask: BoolArray, width: int) -> FloatArray:
    """Median of `values` over masked frames within a centred window of `width` frames (odd);
    NaN where the window holds none. Robust to the odd octave error of a pitch tracker."""
    half = width // 2
    padded = np.concatenate(
        (np.full(half, np.nan), np.where(mask, values, np.nan), np.full(half, np.nan))
    )
    out = np.full(len(values), np.nan)
    windows = np.lib.stride_tricks.sliding_window_view(padded, width)
    for lo in range(0, len(values), 8192):
        block = windows[lo : lo + 8192]
        some = ~np.all(np.isnan(block), axis=1)
        out[lo : lo + len(block)][some] = np.nanmedian(block[some], axis=1)
    return out


def _median_spread(values: FloatArray) -> tuple[float, float]:
    median = float(np.median(values))
    return median, float(np.median(np.abs(values - median))) * _MAD_TO_SIGMA


def raised_voice(
    samples: npt.NDArray[np.int16],
    rate: int,
    segments: Sequence[Segment],
    party: Party,
    config: MetricsConfig | None = None,
) -> tuple[Baseline | None, tuple[RaisedVoice, ...]]:
    """One party's baseline and raised-voice moments (definition in the module doc)."""
    cfg = config or MetricsConfig()
    track = prosody(samples, rate, cfg, segments)
    talking = _inside(track.times_s, segments)
    speech = talking & np.isfinite(track.f0_hz)
    if speech.sum() * cfg.hop_s < cfg.min_baseline_s:
        return None, ()
    semitones = 12.0 * np.log2(np.where(speech, track.f0_hz, 1.0))
    width = max(1, round(cfg.short_term_s / cfg.hop_s)) | 1
    st_energy = _moving_mean(track.energy_dbfs, speech, width)
    st_pitch = _moving_median(semitones, speech, width)
    voiced_share = np.convolve(speech.astype(np.float64), np.ones(width), mode="same") / width
    e_med, e_spread = _median_spread(st_energy[speech])
    p_med, p_spread = _median_spread(st_pitch[speech])
    baseline = Baseline(
        energy_dbfs=e_med,
        energy_spread_db=e_spread,
        pitch_hz=float(2.0 ** (p_med / 12.0)),
        pitch_spread_semitones=p_spread,
        voiced_s=float(speech.sum() * cfg.hop_s),
    )
    e_margin = max(cfg.energy_k * e_spread, cfg.min_energy_db)
    p_margin = max(cfg.pitch_k * p_spread, cfg.min_pitch_semitones)
    # Every frame of speech is judged by its neighbourhood, so the unvoiced sounds between
    # raised syllables do not break a moment; a stretch is then trimmed to voiced frames.
    with np.errstate(invalid="ignore"):
        hot = (
            talking
            & (voiced_share >= cfg.min_voiced_share)
            & (st_energy > e_med + e_margin)
            & (st_pitch > p_med + p_margin)
        )
    idx = np.flatnonzero(hot)
    if not len(idx):
        return baseline, ()
    max_gap = max(1, round(cfg.raised_gap_s / cfg.hop_s))
    breaks = np.flatnonzero(np.diff(idx) > max_gap)
    firsts = np.concatenate(([idx[0]], idx[breaks + 1]))
    lasts = np.concatenate((idx[breaks], [idx[-1]]))
    # Raw medians over a stretch, against the per-frame medians of the speech frames.
    raw_e = float(np.median(track.energy_dbfs[speech]))
    raw_p = float(np.median(semitones[speech]))
    half = cfg.hop_s / 2
    moments: list[RaisedVoice] = []
    for first, last in zip(firsts.tolist(), lasts.tolist(), strict=True):
        span = np.zeros_like(speech)
        span[first : last + 1] = True
        span &= speech
        voiced = np.flatnonzero(span)
        if not len(voiced):
            continue
        start = track.times_s[voiced[0]] - half
        end = track.times_s[voiced[-1]] + half
        if end - start < cfg.min_raised_s:
            continue
        moments.append(
            RaisedVoice(
                start_s=float(start),
                end_s=float(end),
                party=party,
                energy_ratio=float(10.0 ** ((np.median(track.energy_dbfs[span]) - raw_e) / 20)),
                pitch_ratio=float(2.0 ** ((np.median(semitones[span]) - raw_p) / 12)),
            )
        )
    return baseline, tuple(moments)


# --- one call ---------------------------------------------------------------------------------


def _party(
    samples: npt.NDArray[np.int16], rate: int, party: Party, cfg: MetricsConfig
) -> PartyMetrics:
    segments = speech_segments(
        samples,
        rate,
        aggressiveness=cfg.aggressiveness,
        frame_ms=cfg.frame_ms,
        min_speech_ms=cfg.min_speech_ms,
        hangover_ms=cfg.hangover_ms,
    )
    baseline, raised = raised_voice(samples, rate, segments, party, cfg)
    return PartyMetrics(
        party=party,
        talk_s=sum(s.duration_s for s in segments),
        segments=tuple(segments),
        baseline=baseline,
        raised_voice=raised,
    )


def measure_call(
    agent: npt.NDArray[np.int16],
    debtor: npt.NDArray[np.int16],
    rate: int,
    config: MetricsConfig | None = None,
) -> CallMetrics:
    """The measures of a call from its two channels (int16, same rate; the shorter channel is
    taken as silent after its end)."""
    cfg = config or MetricsConfig()
    duration = max(len(agent), len(debtor)) / rate
    a = _party(agent, rate, Party.AGENT, cfg)
    d = _party(debtor, rate, Party.DEBTOR, cfg)
    a_spans = [(s.start_s, s.end_s) for s in a.segments]
    d_spans = [(s.start_s, s.end_s) for s in d.segments]
    overtalk = [Interval(s, e) for s, e in intersect_spans(a_spans, d_spans)]
    silences = [Interval(s, e) for s, e in _gaps(merge_spans(a_spans + d_spans), duration)]
    silence_s = sum(i.duration_s for i in silences)
    longest = max(silences, key=lambda i: i.duration_s, default=None)
    return CallMetrics(
        duration_s=duration,
        agent=a,
        debtor=d,
        silence_s=silence_s,
        silence_ratio=silence_s / duration if duration > 0 else 0.0,
        overtalk_s=sum(i.duration_s for i in overtalk),
        overtalk=tuple(overtalk),
        longest_silence=longest,
        silences=tuple(silences),
    )


def measure_stereo(path: str | Path, config: MetricsConfig | None = None) -> CallMetrics:
    """Measures one stereo recording: left channel the agent, right the debtor."""
    wav = read_wav(path)
    if wav.channels != 2:
        raise BadRecording(
            wav.path,
            f"{wav.channels} channel(s); a stereo file (agent left, debtor right) expected",
        )
    return measure_call(wav.channel(0), wav.channel(1), wav.rate, config)


def measure_pair(
    agent_path: str | Path, debtor_path: str | Path, config: MetricsConfig | None = None
) -> CallMetrics:
    """Measures a call recorded as two mono files, one per party. MixMonitor runs on the
    debtor's channel (the `connect` script), so its `r()` file (audio read from that channel)
    is the debtor and its `t()` file (audio written to it) the agent. Both must have the same
    rate; the shorter is taken as silent after its end."""
    agent = read_wav(agent_path)
    debtor = read_wav(debtor_path)
    for wav in (agent, debtor):
        if wav.channels != 1:
            raise BadRecording(
                wav.path, f"{wav.channels} channels; one mono file per party expected"
            )
    if agent.rate != debtor.rate:
        raise BadRecording(
            debtor.path,
            f"{debtor.rate} Hz, but the agent's file {agent.path.name} is {agent.rate} Hz",
        )
    return measure_call(agent.channel(0), debtor.channel(0), agent.rate, config)
