"""Call scripts: pools of phrases per speaker and purpose, loaded from sim/audio/scripts/*.toml.

A phrase is text in which `[name]` stands for a human-recorded core prompt (`[hello]`,
`[digits/50]`, `[beep]`); everything else is spoken by espeak-ng in the speaker's voice.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

from sim.audio.errors import ScriptError

PROMPT = re.compile(r"\[([A-Za-z0-9_/-]+)\]")

# Every pool a script must fill: (section, name).
POOLS: tuple[tuple[str, str], ...] = (
    *(
        ("agent", name)
        for name in (
            "greeting",
            "verify",
            "disclosure",
            "balance",
            "payment",
            "hold",
            "hold_back",
            "closing",
            "goodbye",
            "voicemail",
            "third_party_ask",
        )
    ),
    *(
        ("debtor", name)
        for name in (
            "answer",
            "objection",
            "promise",
            "reply",
            "closing",
            "third_party_answer",
            "third_party_reply",
            "short",
        )
    ),
    ("machine", "greeting"),
    *(
        ("violation", name)
        for name in ("threat", "insult", "impersonation", "third_party_disclosure")
    ),
)
ROLES = ("agent", "debtor", "machine")


@dataclass(frozen=True, slots=True)
class Part:
    """A piece of a phrase: a core prompt by name, text for espeak-ng, or a mark."""

    kind: Literal["prompt", "tts", "mark"]  # mark: punctuation alone, written but not said
    value: str


@dataclass(frozen=True, slots=True)
class Phrase:
    source: str  # as written in the script
    parts: tuple[Part, ...]

    @classmethod
    def parse(cls, source: str) -> Phrase:
        parts: list[Part] = []
        at = 0
        for match in PROMPT.finditer(source):
            parts += _text(source[at : match.start()])
            parts.append(Part("prompt", match.group(1)))
            at = match.end()
        parts += _text(source[at:])
        if not parts:
            raise ScriptError(f"empty phrase {source!r}")
        return cls(source, tuple(parts))

    def prompts(self) -> list[str]:
        return [p.value for p in self.parts if p.kind == "prompt"]


def _text(chunk: str) -> list[Part]:
    chunk = chunk.strip()
    if not chunk:
        return []
    return [Part("tts" if re.search(r"\w", chunk) else "mark", chunk)]


@dataclass(frozen=True, slots=True)
class Script:
    """One language's pools; `pool("agent", "greeting")` is a tuple of phrases."""

    language: str
    joiner: str  # between the texts of a phrase's parts: " " in English, "" in Chinese
    speed: int  # espeak-ng words per minute
    voices: Mapping[str, tuple[str, ...]]  # role -> espeak-ng voices
    pools: Mapping[tuple[str, str], tuple[Phrase, ...]]
    path: str

    def pool(self, section: str, name: str) -> tuple[Phrase, ...]:
        return self.pools[(section, name)]

    def prompts(self) -> set[str]:
        return {name for phrases in self.pools.values() for p in phrases for name in p.prompts()}


def parse_script(text: str, path: str) -> Script:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScriptError(f"{path}: {exc}") from exc
    language = data.get("language")
    if not isinstance(language, str) or not language:
        raise ScriptError(f"{path}: `language` must be a non-empty string")
    joiner = data.get("joiner", " ")
    speed = data.get("speed", 160)
    if not isinstance(joiner, str) or not isinstance(speed, int) or not 80 <= speed <= 400:
        raise ScriptError(f"{path}: `joiner` must be a string and `speed` 80..400 words/min")
    voices_table = data.get("voices")
    if not isinstance(voices_table, dict):
        raise ScriptError(f"{path}: missing [voices]")
    voices: dict[str, tuple[str, ...]] = {}
    for role in ROLES:
        listed = voices_table.get(role)
        if (
            not isinstance(listed, list)
            or not listed
            or not all(isinstance(v, str) for v in listed)
        ):
            raise ScriptError(f"{path}: voices.{role} must be a non-empty list of voice names")
        voices[role] = tuple(listed)
    pools: dict[tuple[str, str], tuple[Phrase, ...]] = {}
    for section, name in POOLS:
        table = data.get(section)
        phrases = table.get(name) if isinstance(table, dict) else None
        if (
            not isinstance(phrases, list)
            or not phrases
            or not all(isinstance(p, str) for p in phrases)
        ):
            raise ScriptError(f"{path}: {section}.{name} must be a non-empty list of phrases")
        pools[(section, name)] = tuple(Phrase.parse(p) for p in phrases)
    return Script(language, joiner, speed, voices, pools, path)


def load_scripts(directory: Path | None = None) -> dict[str, Script]:
    """Every `*.toml` script, by language: the shipped ones, or those of `directory`."""
    scripts: dict[str, Script] = {}
    if directory is not None:
        files = [(p.name, p.read_text(encoding="utf-8")) for p in sorted(directory.glob("*.toml"))]
    else:
        shipped = resources.files("sim.audio.scripts")
        files = [
            (entry.name, entry.read_text(encoding="utf-8"))
            for entry in sorted(shipped.iterdir(), key=lambda e: e.name)
            if entry.name.endswith(".toml")
        ]
    for name, text in files:
        script = parse_script(text, name)
        if script.language in scripts:
            raise ScriptError(f"{name}: a second script for language {script.language!r}")
        scripts[script.language] = script
    if not scripts:
        raise ScriptError(f"no scripts in {directory or 'sim/audio/scripts'}")
    return scripts
