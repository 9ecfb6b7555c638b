"""What recognition produces: words with times and confidences, grouped in segments, per file."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Word:
    """One recognised word; times in seconds from the start of the audio, confidence in [0, 1]."""

    text: str
    start_s: float
    end_s: float
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "start_s": round(self.start_s, 3),
            "end_s": round(self.end_s, 3),
            "confidence": round(self.confidence, 4),
        }


@dataclass(frozen=True, slots=True)
class Segment:
    """A stretch of speech between pauses (an engine's utterance), on one channel of the audio.

    `confidence` is the mean of the words' confidences (0.0 for a segment without words).
    `channel` is the index of the audio channel (0 for mono; 0/1 for the two parties of a
    stereo recording).
    """

    start_s: float
    end_s: float
    text: str
    words: tuple[Word, ...]
    confidence: float
    channel: int = 0

    @classmethod
    def from_words(cls, words: tuple[Word, ...] | list[Word], *, channel: int = 0) -> Segment:
        ws = tuple(words)
        if not ws:
            raise ValueError("a segment needs at least one word")
        return cls(
            start_s=ws[0].start_s,
            end_s=ws[-1].end_s,
            text=" ".join(w.text for w in ws),
            words=ws,
            confidence=sum(w.confidence for w in ws) / len(ws),
            channel=channel,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "start_s": round(self.start_s, 3),
            "end_s": round(self.end_s, 3),
            "channel": self.channel,
            "text": self.text,
            "confidence": round(self.confidence, 4),
            "words": [w.to_dict() for w in self.words],
        }


@dataclass(frozen=True, slots=True)
class Transcript:
    """Everything recognised in one recording: which engine and model, and the segments in time order."""

    engine: str
    model: str
    language: str
    segments: tuple[Segment, ...]
    audio_s: float

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments if s.text)

    @property
    def words(self) -> tuple[Word, ...]:
        return tuple(w for s in self.segments for w in s.words)

    def channel_text(self, channel: int) -> str:
        return " ".join(s.text for s in self.segments if s.channel == channel and s.text)

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "model": self.model,
            "language": self.language,
            "audio_s": round(self.audio_s, 3),
            "text": self.text,
            "segments": [s.to_dict() for s in self.segments],
        }
