"""The corpus: core prompts + espeak-ng + scripts, speaking one phrase at a time."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sim.audio.errors import ScriptError
from sim.audio.script import Phrase, Script, load_scripts
from sim.audio.sources import (
    SAMPLE_RATE,
    CoreSounds,
    Espeak,
    RenderCache,
    Samples,
    default_cache_dir,
    normalise,
    trim,
)

log = logging.getLogger(__name__)

PART_GAP_S = 0.08  # between the pieces of one phrase (a prompt, then espeak-ng's words)


@dataclass(frozen=True, slots=True)
class Spoken:
    """One phrase as said: its audio (trimmed, at speech level), words and where they came from."""

    samples: Samples
    text: str
    sources: tuple[str, ...]  # "core:hello", "espeak:en-us+f3"
    tone: bool  # nothing but a tone (`[beep]`)

    @property
    def seconds(self) -> float:
        return len(self.samples) / SAMPLE_RATE


class Corpus:
    """Everything a simulated call is made of. Open it once and keep it: phrases are kept in
    memory once spoken, and espeak-ng renders go through the on-disk cache."""

    def __init__(self, sounds: CoreSounds, tts: Espeak, scripts: dict[str, Script]) -> None:
        for script in scripts.values():
            missing = sorted(name for name in script.prompts() if name not in sounds)
            if missing:
                raise ScriptError(
                    f"{script.path}: no core prompt {', '.join(missing)} in {sounds.directory}"
                )
        self.sounds = sounds
        self.tts = tts
        self.scripts = scripts
        self._spoken: dict[tuple[str, str, int], Spoken] = {}

    @classmethod
    def open(
        cls,
        *,
        cache_dir: Path | None = None,
        sounds_dir: Path | None = None,
        scripts_dir: Path | None = None,
    ) -> Corpus:
        """Raises `AudioUnavailable` when the prompts or espeak-ng are not installed."""
        sounds = CoreSounds.open(sounds_dir)
        cache = RenderCache(cache_dir or default_cache_dir())
        return cls(sounds, Espeak.find(cache), load_scripts(scripts_dir))

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(sorted(self.scripts))

    def script(self, language: str) -> Script:
        try:
            return self.scripts[language]
        except KeyError:
            raise ScriptError(
                f"no script for language {language!r} (have {', '.join(self.languages)})"
            ) from None

    def speak(self, phrase: Phrase, voice: str, script: Script) -> Spoken:
        key = (phrase.source, voice, script.speed)
        spoken = self._spoken.get(key)
        if spoken is None:
            spoken = self._speak(phrase, voice, script)
            self._spoken[key] = spoken
        return spoken

    def _speak(self, phrase: Phrase, voice: str, script: Script) -> Spoken:
        gap = np.zeros(int(PART_GAP_S * SAMPLE_RATE), dtype=np.float32)
        pieces: list[Samples] = []
        texts: list[str] = []
        sources: list[str] = []
        tones = 0
        for part in phrase.parts:
            if part.kind == "mark":  # "?" after a prompt: in the words, not in the audio
                if texts:
                    texts[-1] += part.value
                continue
            if part.kind == "prompt":
                audio = self.sounds.load(part.value)
                words = self.sounds.text(part.value)
                source = f"core:{part.value}"
            else:
                audio = self.tts.render(part.value, voice, script.speed)
                words = part.value
                source = f"espeak:{voice}"
            audio = normalise(trim(audio))
            if len(audio) == 0:
                log.warning("x sim audio: %s said nothing for %r", source, part.value)
                continue
            if pieces:
                pieces.append(gap)
            pieces.append(audio)
            if words:
                texts.append(words)
            else:
                tones += 1
            sources.append(source)
        if not pieces:
            raise ScriptError(f"{script.path}: phrase {phrase.source!r} renders to silence")
        text = script.joiner.join(texts)
        return Spoken(np.concatenate(pieces), text, tuple(sources), tone=tones > 0 and not texts)
