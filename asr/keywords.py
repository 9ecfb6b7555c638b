"""Keyword spotting for QA: the forbidden phrases of a QA rule set as a pocketsphinx kws list.

A QA aid beside the full transcript, not a replacement: spotting searches only for the listed
phrases, so it finds "we will have you arrested" in audio the large-vocabulary decoder garbles,
and says nothing else. Phrases with a wildcard (`*`) or a word the dictionary cannot say are
left out (and listed by `spotting_list`); each kept phrase gets a detection threshold that
falls with its length (pocketsphinx compares a phrase's score with its threshold, and a longer
phrase scores lower for the same fit). On simulated calls it finds few of the scripted
violations (README figures from `dialer bench asr`): a hook to build on, off by default.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from asr.errors import AsrError
from asr.language_model import default_cache_dir, dictionary_words
from asr.wer import normalise


@dataclass(frozen=True, slots=True)
class Keyphrase:
    rule_id: str
    category: str
    phrase: str  # normalised words, space-separated

    @property
    def words(self) -> int:
        return len(self.phrase.split())


@dataclass(frozen=True, slots=True)
class SpottingList:
    phrases: tuple[Keyphrase, ...]
    skipped: tuple[str, ...]  # phrases left out, with why

    def category_of(self, phrase: str) -> str:
        for k in self.phrases:
            if k.phrase == phrase:
                return k.category
        return ""


def spotting_list(rules_name: str, dictionary: Path) -> SpottingList:
    """The forbidden phrases of a QA rule set (recording.qa: a preset name or a TOML path)."""
    from dialer.store.models import QaFlagKind
    from recording.errors import RecordingError
    from recording.qa import load_rules

    try:
        rules = load_rules(rules_name)
    except RecordingError as exc:
        raise AsrError(f"keyword list from QA rules: {exc}") from exc
    known = dictionary_words(dictionary)
    kept: dict[str, Keyphrase] = {}
    skipped: list[str] = []
    for rule in rules.phrase_rules:
        if rule.kind is not QaFlagKind.FORBIDDEN:
            continue
        for text in rule.phrases:
            if "*" in text:
                skipped.append(f"{text!r} ({rule.id}): has a wildcard")
                continue
            words = normalise(text)
            missing = [w for w in words if w not in known]
            if missing or not words:
                skipped.append(f"{text!r} ({rule.id}): not in the dictionary: {missing}")
                continue
            phrase = " ".join(words)
            kept.setdefault(phrase, Keyphrase(rule.id, rule.category or rule.id, phrase))
    return SpottingList(tuple(kept.values()), tuple(skipped))


def threshold(words: int, per_word_exp: float = 4.0) -> float:
    """Detection threshold for a phrase of `words` words: 1e-(per_word_exp x words), the same
    bar per word whatever the length (a phrase's score is a product over its words)."""
    return float(10.0 ** -(per_word_exp * max(1, words)))


def kws_text(phrases: Iterable[Keyphrase], per_word_exp: float = 4.0) -> str:
    """pocketsphinx's keyword file: one `phrase /threshold/` per line."""
    lines = [f"{k.phrase} /{threshold(k.words, per_word_exp):.0e}/" for k in phrases]
    if not lines:
        raise AsrError("no keyphrase to spot (every phrase was left out)")
    return "\n".join(lines) + "\n"


def ensure_kws(
    rules_name: str,
    dictionary: Path,
    *,
    per_word_exp: float = 4.0,
    cache_dir: Path | None = None,
) -> Path:
    """The keyword file of a QA rule set, written into the cache (named by its content)."""
    text = kws_text(spotting_list(rules_name, dictionary).phrases, per_word_exp)
    key = hashlib.sha256(text.encode()).hexdigest()[:16]
    folder = cache_dir or default_cache_dir()
    target = folder / f"kws-{Path(rules_name).stem}-{key}.txt"
    if not target.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".kws-", suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, target)
    return target
