"""What VAD saves: the share of call audio never sent to the recogniser, on simulated calls.

The calls come from `sim.audio` (two-party recordings of real prompts and espeak-ng, with line
noise, holds and pauses, answering machines and short calls); each channel is segmented as the
recording pipeline does (`recording.vad.speech_segments`, default settings, no padding), and
the time outside the segments is what the recogniser never hears. The truth sidecar says where
speech really was, so the share of real speech the segments keep is reported beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from recording.vad import Segment, speech_segments


@dataclass(frozen=True, slots=True)
class VadSavings:
    calls: int
    channel_s: float  # audio of every channel of every call
    sent_s: float  # what the VAD segments hold: all the recogniser hears
    speech_s: float  # scripted speech (the truth sidecar)
    speech_kept_s: float  # scripted speech inside a segment

    @property
    def saved(self) -> float:
        """Share of channel audio never sent to the recogniser."""
        return 1.0 - self.sent_s / self.channel_s if self.channel_s else 0.0

    @property
    def speech_kept(self) -> float:
        """Share of the scripted speech that a segment covers."""
        return self.speech_kept_s / self.speech_s if self.speech_s else 1.0

    def to_dict(self) -> dict[str, float | int]:
        return {
            "calls": self.calls,
            "channel_s": round(self.channel_s, 1),
            "sent_s": round(self.sent_s, 1),
            "saved": round(self.saved, 4),
            "speech_kept": round(self.speech_kept, 4),
        }


def overlap_s(spans: Sequence[tuple[float, float]], segments: Sequence[Segment]) -> float:
    """Seconds of `spans` (start, end) that fall inside any segment (segments do not overlap)."""
    total = 0.0
    for start, end in spans:
        for seg in segments:
            total += max(0.0, min(end, seg.end_s) - max(start, seg.start_s))
    return total


def measure_calls(count: int, *, seed: int = 1, duration_s: float = 60.0) -> VadSavings:
    """`count` simulated calls (English and Mandarin, conversations with and without a scripted
    violation, answering machines, short calls), seeded. Raises sim.audio.AudioUnavailable when
    the prompts or espeak-ng are missing."""
    from sim.audio import SAMPLE_RATE, CallKind, CallSpec, Corpus, Rule, compose_call

    corpus = Corpus.open()
    kinds = [CallKind.CONVERSATION, CallKind.CONVERSATION, CallKind.MACHINE, CallKind.SHORT]
    rules = [None, Rule.THREAT, Rule.MISSING_DISCLOSURE, None]
    channel_s = sent_s = speech_s = kept_s = 0.0
    for n in range(count):
        kind = kinds[n % len(kinds)]
        spec = CallSpec(
            language=("en", "zh")[(n // len(kinds)) % 2],
            kind=kind,
            duration_s=duration_s if kind is not CallKind.SHORT else min(duration_s, 12.0),
            violation=rules[n % len(rules)] if kind is CallKind.CONVERSATION else None,
            seed=seed * 1000 + n,
        )
        call = compose_call(corpus, spec)
        for name, samples in (("agent", call.agent), ("debtor", call.debtor)):
            segments = speech_segments(samples, SAMPLE_RATE)
            truth = [(u.start_s, u.end_s) for u in call.utterances if u.channel == name]
            channel_s += len(samples) / SAMPLE_RATE
            sent_s += sum(s.duration_s for s in segments)
            speech_s += sum(end - start for start, end in truth)
            kept_s += overlap_s(truth, segments)
    return VadSavings(count, channel_s, sent_s, speech_s, kept_s)
