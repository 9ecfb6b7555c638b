"""QA of a call from its transcripts: rules as data, matching tolerant of recognition errors,
a score with timestamped flags, a supervisor's verdict on each flag, each rule's precision.

Rule sets are TOML files (recording/presets/*.toml, or a path): forbidden phrases (threats,
insults, posing as a court or the police, telling a third party about the debt), mandatory
phrases within the first seconds of the agent's speech (identity, the mini-Miranda), and limits
on silence and overtalk. A tenant is checked against the rule set its configuration names.

Matching, English (and any spaced script): the party's words in time order are aligned with
each phrase, word by word, by a small dynamic programme that lets the recogniser drop a word or
add one (at a cost). Two words are as alike as the better of their spelling (rapidfuzz ratio)
and their sound (`phonetic_key`, 95% credit): "shoe" sounds like "sue", "see" does not. Content
words weigh three times a small word, and a content word less than 75% alike counts as missed,
so "I will see you" is not "I will sue you" though only one letter differs. A `*` in a phrase
stands for one to three words ("this is * from"). Chinese (and other unspaced scripts):
character-level fuzzy matching of the phrase against the party's text (rapidfuzz
partial_ratio), with no pinyin: a phrase of three characters or fewer must be exact, a longer
one may have about one character in five wrong.

Score: 100 minus each rule's weight once for each rule that fired (never below 0). Flags keep
the second where each finding is, so the player starts there.
"""

from __future__ import annotations

import itertools
import math
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from rapidfuzz import fuzz
from sqlalchemy import case, delete, func, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from dialer.errors import StoreError
from dialer.store.db import Store, error_reason
from dialer.store.models import Party, QaFlag, QaFlagKind, QaScore, QaVerdict
from recording.errors import RecordingError
from recording.metrics import intersect_spans, merge_spans
from recording.transcripts import (
    TranscriptIn,
    Word,
    _Kind,
    as_input,
    is_cjk,
    load_transcripts,
    mark_flagged,
    runs,
)

__all__ = [
    "CallScore",
    "Flag",
    "LimitRule",
    "PhraseRule",
    "QaResult",
    "QaRulesError",
    "RuleSet",
    "TalkNumbers",
    "check_call",
    "list_presets",
    "load_rules",
    "phonetic_key",
    "review",
    "review_queue",
    "rule_precision",
    "score_call",
]

CONTENT_WEIGHT = 3.0
SMALL_WEIGHT = 1.0
CONTENT_MIN = 75.0  # a content word less alike than this counts as not said
INSERT_COST = 0.5  # an extra word inside a phrase, in small-word weights
PHONETIC_CREDIT = 0.95
GAP_MAX = 3  # words a `*` stands for
SNIPPET_WORDS = 14

SMALL_WORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "i",
        "me",
        "my",
        "we",
        "us",
        "our",
        "you",
        "your",
        "he",
        "him",
        "his",
        "she",
        "her",
        "it",
        "its",
        "they",
        "them",
        "their",
        "this",
        "that",
        "is",
        "am",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "will",
        "would",
        "shall",
        "should",
        "can",
        "could",
        "may",
        "might",
        "must",
        "do",
        "does",
        "did",
        "have",
        "has",
        "had",
        "to",
        "of",
        "in",
        "on",
        "at",
        "by",
        "for",
        "from",
        "with",
        "and",
        "or",
        "but",
        "not",
        "no",
        "so",
        "if",
        "as",
        "about",
        "into",
        "up",
        "out",
        "just",
        "going",
        "gonna",
        "get",
        "got",
    ]
)
_CONTRACTIONS = (
    (re.compile(r"\bwon['’]t\b"), "will not"),
    (re.compile(r"\bcan['’]t\b"), "can not"),
    (re.compile(r"n['’]t\b"), " not"),
    (re.compile(r"['’]ll\b"), " will"),
    (re.compile(r"['’]re\b"), " are"),
    (re.compile(r"['’]ve\b"), " have"),
    (re.compile(r"['’]m\b"), " am"),
    (re.compile(r"['’]d\b"), " would"),
    (re.compile(r"\bgonna\b"), "going to"),
)


class QaRulesError(RecordingError):
    """A rule set cannot be found or read; the message names the file and the key."""


# ---------------------------------------------------------------------------------------------
# Rules


@dataclass(frozen=True, slots=True)
class PhraseRule:
    id: str
    kind: QaFlagKind  # FORBIDDEN or MISSING (a mandatory phrase)
    phrases: tuple[str, ...]
    party: str  # agent, debtor or any; a mixed transcript is checked against every party
    weight: float
    threshold: float  # 0..100: how alike the words must be
    category: str = ""
    within_s: float | None = None  # mandatory: from the party's first word
    after: tuple[str, ...] = ()  # forbidden only after the other party said one of these
    after_party: str = "debtor"


@dataclass(frozen=True, slots=True)
class LimitRule:
    id: str
    kind: QaFlagKind  # SILENCE or OVERTALK
    weight: float
    max_longest_s: float | None = None
    max_ratio: float | None = None  # silence: of the call; overtalk: of the talk
    max_total_s: float | None = None


@dataclass(frozen=True, slots=True)
class RuleSet:
    name: str
    language: str
    phrase_rules: tuple[PhraseRule, ...]
    limit_rules: tuple[LimitRule, ...] = ()
    description: str = ""

    def all_rules(self) -> list[PhraseRule | LimitRule]:
        return [*self.phrase_rules, *self.limit_rules]

    def rule(self, rule_id: str) -> PhraseRule | LimitRule | None:
        for r in self.all_rules():
            if r.id == rule_id:
                return r
        return None


def _need(table: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in table:
        raise QaRulesError(f"{where}: missing {key!r}")
    value = table[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind):
        raise QaRulesError(f"{where}.{key}: expected {kind.__name__}, got {value!r}")
    return value


def _opt_float(table: Mapping[str, Any], key: str, where: str) -> float | None:
    return None if key not in table else float(_need(table, key, float, where))


def _strings(table: Mapping[str, Any], key: str, where: str, *, required: bool) -> tuple[str, ...]:
    if key not in table and not required:
        return ()
    value = _need(table, key, list, where)
    if (required and not value) or not all(isinstance(v, str) and v.strip() for v in value):
        raise QaRulesError(f"{where}.{key}: expected a list of non-empty phrases")
    return tuple(value)


_PHRASE_KEYS = {
    "id",
    "category",
    "phrases",
    "party",
    "weight",
    "threshold",
    "within_s",
    "after",
    "after_party",
}
_LIMIT_KEYS = {"id", "weight", "max_longest_s", "max_ratio", "max_total_s"}


def parse_rules(data: Mapping[str, Any], source: str) -> RuleSet:
    """A rule set from its TOML table; `source` names it in errors."""
    known = {
        "name",
        "language",
        "description",
        "defaults",
        "forbidden",
        "mandatory",
        "silence",
        "overtalk",
    }
    for key in data:
        if key not in known:
            raise QaRulesError(f"{source}: unknown key {key!r}")
    defaults = data.get("defaults", {})
    default_threshold = float(defaults.get("threshold", 85.0))
    default_weight = float(defaults.get("weight", 20.0))
    default_within = float(defaults.get("within_s", 30.0))
    rules: list[PhraseRule] = []
    seen: set[str] = set()
    for section, kind in (("forbidden", QaFlagKind.FORBIDDEN), ("mandatory", QaFlagKind.MISSING)):
        for n, table in enumerate(data.get(section, [])):
            where = f"{source}: {section}[{n}]"
            for key in table:
                if key not in _PHRASE_KEYS:
                    raise QaRulesError(f"{where}: unknown key {key!r}")
            rule_id = _need(table, "id", str, where)
            if rule_id in seen:
                raise QaRulesError(f"{where}: rule id {rule_id!r} used twice")
            seen.add(rule_id)
            party = table.get("party", "agent")
            if party not in ("agent", "debtor", "any"):
                raise QaRulesError(f"{where}.party: agent, debtor or any, not {party!r}")
            rules.append(
                PhraseRule(
                    id=rule_id,
                    kind=kind,
                    phrases=_strings(table, "phrases", where, required=True),
                    party=party,
                    weight=_opt_float(table, "weight", where) or default_weight,
                    threshold=_opt_float(table, "threshold", where) or default_threshold,
                    category=str(table.get("category", "")),
                    within_s=(
                        (_opt_float(table, "within_s", where) or default_within)
                        if kind is QaFlagKind.MISSING
                        else None
                    ),
                    after=_strings(table, "after", where, required=False),
                    after_party=str(table.get("after_party", "debtor")),
                )
            )
    limits: list[LimitRule] = []
    for section, kind in (("silence", QaFlagKind.SILENCE), ("overtalk", QaFlagKind.OVERTALK)):
        if section not in data:
            continue
        table = data[section]
        where = f"{source}: {section}"
        for key in table:
            if key not in _LIMIT_KEYS:
                raise QaRulesError(f"{where}: unknown key {key!r}")
        limits.append(
            LimitRule(
                id=str(table.get("id", section)),
                kind=kind,
                weight=_opt_float(table, "weight", where) or default_weight,
                max_longest_s=_opt_float(table, "max_longest_s", where),
                max_ratio=_opt_float(table, "max_ratio", where),
                max_total_s=_opt_float(table, "max_total_s", where),
            )
        )
    return RuleSet(
        name=str(data.get("name", source)),
        language=str(data.get("language", "")),
        phrase_rules=tuple(rules),
        limit_rules=tuple(limits),
        description=str(data.get("description", "")),
    )


def list_presets() -> list[str]:
    """Names of the rule sets shipped in recording/presets/."""
    folder = resources.files("recording") / "presets"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_rules(name_or_path: str | Path) -> RuleSet:
    """A shipped rule set by name (us-collections, cn-collections) or a TOML file by path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        source = str(path)
        try:
            raw = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise QaRulesError(f"{path}: {exc.strerror or exc}") from exc
    else:
        name = str(name_or_path)
        resource = resources.files("recording") / "presets" / f"{name}.toml"
        if not re.fullmatch(r"[a-z0-9-]+", name) or not resource.is_file():
            raise QaRulesError(
                f"no QA rule set {name!r} (shipped: {', '.join(list_presets())}; or a .toml path)"
            )
        source = f"preset {name}"
        raw = resource.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(raw)
    except tomllib.TOMLDecodeError as exc:
        raise QaRulesError(f"{source}: {exc}") from exc
    return parse_rules(data, source)


# ---------------------------------------------------------------------------------------------
# Words: normal form, sound, likeness


def normal_words(text: str) -> list[str]:
    """Lower-case words with contractions spelled out ("I'll" -> "i", "will")."""
    lowered = text.lower()
    for pattern, spelled in _CONTRACTIONS:
        lowered = pattern.sub(spelled, lowered)
    return [run for kind, run in runs(lowered) if kind is _Kind.WORD]


_DIGRAPHS = (
    ("tch", "J"), ("sch", "SK"), ("ch", "J"), ("sh", "S"), ("ph", "F"), ("th", "T"),
    ("gh", ""), ("ck", "K"), ("qu", "KW"), ("wh", "W"), ("wr", "R"), ("dg", "J"),
)  # fmt: skip
_CONSONANT = {
    "b": "P", "p": "P", "d": "T", "t": "T", "g": "K", "k": "K", "c": "K", "q": "K",
    "f": "F", "v": "F", "s": "S", "z": "S", "x": "KS", "j": "J", "m": "N", "n": "N",
    "l": "L", "r": "R", "w": "W", "y": "Y", "h": "",
}  # fmt: skip
_VOWEL_GROUPS = {
    "ee": "I", "ea": "I", "ie": "I", "ei": "I", "ey": "I", "oo": "U", "ue": "U", "ew": "U",
    "ou": "U", "ui": "U", "oe": "U", "oa": "O", "ow": "O", "au": "O", "aw": "O", "ai": "A",
    "ay": "A",
}  # fmt: skip
_VOWEL = {"a": "A", "e": "E", "i": "I", "y": "I", "o": "O", "u": "U"}


@lru_cache(maxsize=65_536)
def phonetic_key(word: str) -> str:
    """A rough key of how an English word sounds, kept short for fuzzy comparison.

    Like Metaphone it folds spellings of one sound (ph/f, ck/k, c before e/i/y = s, silent
    initial k of kn, silent final e) and, unlike it, merges consonants a telephone recogniser
    confuses (s/sh/z, ch/j, p/b, t/d/th, k/g, f/v, m/n) and keeps the vowels as five classes,
    so that "sue" and "shoe" share a key and "see" does not.
    """
    w = "".join(ch for ch in word.lower() if "a" <= ch <= "z")
    if not w:
        return ""
    if w.startswith(("kn", "gn", "pn", "wr")):
        w = w[1:]
    if len(w) > 2 and w.endswith("e") and w[-2] not in "aeiouy":
        w = w[:-1]
    out: list[str] = []
    i = 0
    while i < len(w):
        ch = w[i]
        if ch in "aeiou" or (ch == "y" and i > 0):
            j = i + 1
            while j < len(w) and w[j] in "aeiou":
                j += 1
            if j < len(w) and w[j] in "wy" and (j + 1 >= len(w) or w[j + 1] not in "aeiou"):
                j += 1  # ow, aw, ew, ay, ey, oy: the w or y closes the vowel
            group = w[i:j]
            sound = _VOWEL_GROUPS.get(group[:2], "") or _VOWEL.get(group[0], "")
            out.append(sound)
            i = j
            continue
        for spelling, sound in _DIGRAPHS:
            if w.startswith(spelling, i):
                out.append(sound)
                i += len(spelling)
                break
        else:
            nxt = w[i + 1] if i + 1 < len(w) else ""
            if ch == "c" and nxt in ("e", "i", "y"):
                out.append("S")
            elif ch == "g" and nxt in ("e", "i", "y"):
                out.append("J")
            else:
                out.append(_CONSONANT.get(ch, ""))
            i += 1
    key: list[str] = []
    for sound in "".join(out):
        if not key or key[-1] != sound:
            key.append(sound)
    return "".join(key)


@lru_cache(maxsize=262_144)
def word_likeness(said: str, expected: str) -> float:
    """0..100: the better of spelling and (at PHONETIC_CREDIT) sound."""
    if said == expected:
        return 100.0
    spelling = fuzz.ratio(said, expected)
    a, b = phonetic_key(said), phonetic_key(expected)
    sound = fuzz.ratio(a, b) * PHONETIC_CREDIT if a and b else 0.0
    return float(max(spelling, sound))


# ---------------------------------------------------------------------------------------------
# Finding phrases


@dataclass(frozen=True, slots=True)
class Found:
    score: float  # 0..100
    start: int  # index of the first word in the stream
    end: int  # index past the last word


def _is_cjk_phrase(phrase: str) -> bool:
    return any(is_cjk(ch) for ch in phrase)


def align_phrase(phrase: Sequence[str], stream: Sequence[str]) -> Found | None:
    """The best alignment of the phrase's words anywhere in the stream of words (see the module
    docstring), or None if no content word of it is there at all."""
    n = len(phrase)
    if n == 0 or not stream:
        return None
    weights = [
        0.0 if p == "*" else CONTENT_WEIGHT if p not in SMALL_WORDS else SMALL_WEIGHT
        for p in phrase
    ]
    total = sum(weights) or 1.0
    anchors = [p for p, wt in zip(phrase, weights, strict=True) if wt == CONTENT_WEIGHT] or [
        p for p in phrase if p != "*"
    ]
    # Only look near words that could be one of the phrase's anchors.
    hits = [
        j for j, s in enumerate(stream) if any(word_likeness(s, a) >= CONTENT_MIN for a in anchors)
    ]
    if not hits:
        return None
    reach = n + GAP_MAX + 2
    windows: list[tuple[int, int]] = []
    for j in hits:
        lo, hi = max(0, j - reach), min(len(stream), j + reach)
        if windows and lo <= windows[-1][1]:
            windows[-1] = (windows[-1][0], hi)
        else:
            windows.append((lo, hi))
    best: Found | None = None
    for lo, hi in windows:
        found = _align_window(phrase, weights, total, stream, lo, hi)
        if found is not None and (best is None or found.score > best.score):
            best = found
    return best


def _align_window(
    phrase: Sequence[str],
    weights: Sequence[float],
    total: float,
    stream: Sequence[str],
    lo: int,
    hi: int,
) -> Found | None:
    neg = -math.inf
    m = hi - lo
    # prev[j]: best (score, start) with phrase[:i] aligned and ending before stream[lo + j]
    prev: list[tuple[float, int]] = [(0.0, lo + j) for j in range(m + 1)]
    for i, (p, wt) in enumerate(zip(phrase, weights, strict=True)):
        cur: list[tuple[float, int]] = [(neg, lo)] * (m + 1)
        cur[0] = (prev[0][0], prev[0][1]) if i > 0 else (0.0, lo)
        for j in range(1, m + 1):
            options: list[tuple[float, int]] = [prev[j]]  # the recogniser dropped p
            if p == "*":
                for k in range(1, GAP_MAX + 1):
                    if j - k >= 0 and prev[j - k][0] > neg:
                        options.append(prev[j - k])
            else:
                said = stream[lo + j - 1]
                like = word_likeness(said, p)
                if wt == CONTENT_WEIGHT and like < CONTENT_MIN:
                    like = 0.0
                if prev[j - 1][0] > neg:
                    options.append((prev[j - 1][0] + wt * like / 100.0, prev[j - 1][1]))
                if i > 0 and cur[j - 1][0] > neg:
                    options.append((cur[j - 1][0] - INSERT_COST, cur[j - 1][1]))
            cur[j] = max(options, key=lambda o: o[0])
        prev = cur
    best_j = max(range(m + 1), key=lambda j: prev[j][0])
    score, start = prev[best_j]
    if score <= 0:
        return None
    return Found(score=100.0 * score / total, start=start, end=lo + best_j)


def find_cjk(phrase: str, text: str, threshold: float) -> tuple[float, int] | None:
    """(score, character offset) of the phrase in unspaced text, or None below the threshold
    (a phrase of up to three characters must be there exactly)."""
    needle = "".join(ch for ch in phrase if not ch.isspace())
    if not needle or not text:
        return None
    if len(needle) <= 3:
        pos = text.find(needle)
        return None if pos < 0 else (100.0, pos)
    found = fuzz.partial_ratio_alignment(needle, text, score_cutoff=min(threshold, 80.0))
    if found is None:
        return None
    return float(found.score), found.dest_start


# ---------------------------------------------------------------------------------------------
# Talk numbers (silence, overtalk)


def _spans(obj: Any) -> list[tuple[float, float]]:
    out = []
    for item in obj or ():
        if isinstance(item, Mapping):
            out.append((float(item["start_s"]), float(item["end_s"])))
        else:
            out.append((float(item.start_s), float(item.end_s)))
    return out


def _get(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


@dataclass(frozen=True, slots=True)
class TalkNumbers:
    """What the silence and overtalk limits need. From recording/metrics.py's CallMetrics (or
    any object or mapping with its names: silence_ratio, longest_silence with start_s/end_s,
    overtalk_s, overtalk as intervals), else estimated from the transcripts' segments."""

    silence_ratio: float | None = None
    longest_silence_s: float | None = None
    longest_silence_at_s: float | None = None
    overtalk_s: float | None = None
    overtalk_ratio: float | None = None
    longest_overtalk_s: float | None = None
    longest_overtalk_at_s: float | None = None

    @classmethod
    def from_metrics(cls, metrics: Any) -> TalkNumbers:
        silence = _get(metrics, "longest_silence")
        longest: tuple[float, float] | None = None
        if silence is not None:
            longest = _spans([silence])[0]
        elif _get(metrics, "longest_silence_s") is not None:
            longest = (float(_get(metrics, "longest_silence_at_s") or 0.0), 0.0)
            longest = (longest[0], longest[0] + float(_get(metrics, "longest_silence_s")))
        overtalk = _spans(_get(metrics, "overtalk"))
        top = max(overtalk, key=lambda s: s[1] - s[0], default=None)
        talk = _get(metrics, "talk_s")
        overtalk_s = _get(metrics, "overtalk_s")
        agent_talk = _get(_get(metrics, "agent"), "talk_s")
        debtor_talk = _get(_get(metrics, "debtor"), "talk_s")
        if talk is None and agent_talk is not None and debtor_talk is not None:
            talk = float(agent_talk) + float(debtor_talk)
        return cls(
            silence_ratio=None
            if _get(metrics, "silence_ratio") is None
            else float(_get(metrics, "silence_ratio")),
            longest_silence_s=None if longest is None else longest[1] - longest[0],
            longest_silence_at_s=None if longest is None else longest[0],
            overtalk_s=None if overtalk_s is None else float(overtalk_s),
            overtalk_ratio=(
                float(overtalk_s) / float(talk) if overtalk_s is not None and talk else None
            ),
            longest_overtalk_s=None if top is None else top[1] - top[0],
            longest_overtalk_at_s=None if top is None else top[0],
        )

    @classmethod
    def from_transcripts(cls, transcripts: Sequence[TranscriptIn]) -> TalkNumbers:
        """Estimated from segment times: speech is a segment, silence the gaps between
        everyone's segments, overtalk where agent and debtor segments overlap."""
        by_party: dict[Party, list[tuple[float, float]]] = {}
        for t in transcripts:
            by_party.setdefault(Party(t.party), []).extend(
                (s.start_s, s.end_s) for s in t.segments if s.end_s > s.start_s
            )
        every = merge_spans([s for spans in by_party.values() for s in spans])
        if not every:
            return cls()
        gaps = [(a[1], b[0]) for a, b in itertools.pairwise(every)]
        span = every[-1][1] - every[0][0]
        top_gap = max(gaps, key=lambda g: g[1] - g[0], default=None)
        numbers: dict[str, float | None] = {
            "silence_ratio": sum(b - a for a, b in gaps) / span if span > 0 else 0.0,
            "longest_silence_s": 0.0 if top_gap is None else top_gap[1] - top_gap[0],
            "longest_silence_at_s": None if top_gap is None else top_gap[0],
        }
        if Party.AGENT in by_party and Party.DEBTOR in by_party:
            agent, debtor = merge_spans(by_party[Party.AGENT]), merge_spans(by_party[Party.DEBTOR])
            both = intersect_spans(agent, debtor)
            talk = sum(b - a for a, b in agent) + sum(b - a for a, b in debtor)
            top = max(both, key=lambda s: s[1] - s[0], default=None)
            overtalk_s = sum(b - a for a, b in both)
            numbers["overtalk_s"] = overtalk_s
            numbers["overtalk_ratio"] = overtalk_s / talk if talk else 0.0
            numbers["longest_overtalk_s"] = 0.0 if top is None else top[1] - top[0]
            numbers["longest_overtalk_at_s"] = None if top is None else top[0]
        return cls(**numbers)


# ---------------------------------------------------------------------------------------------
# Scoring


@dataclass(frozen=True, slots=True)
class Flag:
    rule_id: str
    kind: QaFlagKind
    party: Party | None
    at_s: float
    snippet: str
    score: float  # how sure, 0..100


@dataclass(frozen=True, slots=True)
class QaResult:
    score: float  # 0..100, 100: nothing found
    flags: tuple[Flag, ...]


@dataclass(slots=True)
class _Stream:
    """One party's words in time order, normalised for matching."""

    party: Party
    words: list[Word] = field(default_factory=list)
    norm: list[str] = field(default_factory=list)  # spaced-script words
    owner: list[int] = field(default_factory=list)  # norm index -> words index
    cjk: str = ""  # unspaced-script characters
    cjk_owner: list[int] = field(default_factory=list)

    @classmethod
    def of(cls, transcripts: Sequence[TranscriptIn], party: Party) -> _Stream:
        stream = cls(party)
        timed = sorted(
            (
                w
                for t in transcripts
                if Party(t.party) is party
                for s in t.segments
                for w in s.timed_words()
            ),
            key=lambda w: w.s,
        )
        for i, word in enumerate(timed):
            stream.words.append(word)
            for piece in normal_words(word.w):
                stream.norm.append(piece)
                stream.owner.append(i)
            for kind, run in runs(word.w):
                if kind is _Kind.CJK:
                    stream.cjk += run
                    stream.cjk_owner.extend([i] * len(run))
        return stream

    def first_s(self) -> float | None:
        return self.words[0].s if self.words else None

    def snippet(self, first: int, last: int) -> str:
        lo = max(0, first - 3)
        hi = min(len(self.words), max(last, first + 1) + 3, lo + SNIPPET_WORDS)
        sep = "" if any(is_cjk(ch) for w in self.words[lo:hi] for ch in w.w[:1]) else " "
        return sep.join(w.w for w in self.words[lo:hi])

    def find(
        self, phrase: str, threshold: float, until_s: float | None = None
    ) -> tuple[float, int, int] | None:
        """(score, first word, past last word) of the phrase's best match at or above the
        threshold, only among words starting before `until_s` if given."""
        if _is_cjk_phrase(phrase):
            text, owner = self.cjk, self.cjk_owner
            if until_s is not None:
                cut = sum(1 for i in owner if self.words[i].s < until_s)
                text, owner = text[:cut], owner[:cut]
            found = find_cjk(phrase, text, threshold)
            if found is None or found[0] < threshold:
                return None
            first = owner[found[1]]
            length = len("".join(phrase.split()))
            last = owner[min(found[1] + length, len(owner)) - 1] + 1
            return found[0], first, last
        norm, owner = self.norm, self.owner
        if until_s is not None:
            cut = sum(1 for i in owner if self.words[i].s < until_s)
            norm, owner = norm[:cut], owner[:cut]
        aligned = align_phrase(
            normal_words(phrase) if "*" not in phrase else _starred(phrase), norm
        )
        if aligned is None or aligned.score < threshold or aligned.start >= len(owner):
            return None
        return aligned.score, owner[aligned.start], owner[max(aligned.end - 1, aligned.start)] + 1


def _starred(phrase: str) -> list[str]:
    out: list[str] = []
    for piece in phrase.split():
        out.extend(["*"] if piece == "*" else normal_words(piece))
    return out


def _parties(rule_party: str, present: Iterable[Party]) -> list[Party]:
    present = list(present)
    if Party.MIXED in present and rule_party != "any":
        # One mono recording: both voices are in it, so every party's rule applies to it.
        return [p for p in present if p in (Party(rule_party), Party.MIXED)]
    return present if rule_party == "any" else [p for p in present if p.value == rule_party]


def score_call(transcripts: Sequence[TranscriptIn], metrics: Any, rules: RuleSet) -> QaResult:
    """Check one call's transcripts (its parties' segments with words) against a rule set.

    `metrics`: recording/metrics.py's CallMetrics, or any object or mapping with its names, or
    a TalkNumbers, or None (then estimated from the segments)."""
    present = sorted({Party(t.party) for t in transcripts})
    streams = {p: _Stream.of(transcripts, p) for p in present}
    flags: list[Flag] = []
    fired: set[str] = set()
    for rule in rules.phrase_rules:
        parties = _parties(rule.party, present)
        if rule.kind is QaFlagKind.FORBIDDEN:
            for party in parties:
                stream = streams[party]
                since: float | None = None
                if rule.after:
                    since = _first_trigger(rule, streams, party)
                    if since is None:
                        continue
                for phrase in rule.phrases:
                    found = stream.find(phrase, rule.threshold)
                    if found is None:
                        continue
                    score, first, last = found
                    if since is not None and stream.words[first].s < since:
                        # said before the trigger: look again in what came after it
                        found = _find_after(stream, phrase, rule.threshold, since)
                        if found is None:
                            continue
                        score, first, last = found
                    flags.append(
                        Flag(
                            rule.id,
                            rule.kind,
                            party,
                            round(stream.words[first].s, 2),
                            stream.snippet(first, last),
                            round(score, 1),
                        )
                    )
                    fired.add(rule.id)
                    break  # one flag per rule and party: the supervisor hears the rest
        else:
            satisfied = False
            late: tuple[Party, float, int, int] | None = None
            start_of: float | None = None
            for party in parties:
                stream = streams[party]
                first_s = stream.first_s()
                if first_s is None:
                    continue
                start_of = first_s if start_of is None else min(start_of, first_s)
                until = first_s + (rule.within_s or 0.0)
                for phrase in rule.phrases:
                    if stream.find(phrase, rule.threshold, until_s=until) is not None:
                        satisfied = True
                        break
                    anywhere = stream.find(phrase, rule.threshold)
                    if anywhere is not None and late is None:
                        late = (party, anywhere[0], anywhere[1], anywhere[2])
                if satisfied:
                    break
            if satisfied or not parties:
                continue
            if late is not None:
                party, score, first, last = late
                stream = streams[party]
                word = stream.words[first]
                note = f"said at {word.s:.1f} s, after the first {rule.within_s:g} s: "
                flags.append(
                    Flag(
                        rule.id,
                        rule.kind,
                        party,
                        round(word.s, 2),
                        note + stream.snippet(first, last),
                        round(score, 1),
                    )
                )
            else:
                party = parties[0]
                at = (start_of or 0.0) + (rule.within_s or 0.0)
                flags.append(
                    Flag(
                        rule.id,
                        rule.kind,
                        party,
                        round(at, 2),
                        f"not said in the first {rule.within_s:g} s of the {party.value}'s speech",
                        100.0,
                    )
                )
            fired.add(rule.id)
    numbers = metrics if isinstance(metrics, TalkNumbers) else None
    if numbers is None:
        numbers = (
            TalkNumbers.from_metrics(metrics)
            if metrics is not None
            else TalkNumbers.from_transcripts(transcripts)
        )
    for limit in rules.limit_rules:
        flag = _check_limit(limit, numbers)
        if flag is not None:
            flags.append(flag)
            fired.add(limit.id)
    weights = {r.id: r.weight for r in rules.all_rules()}
    score = max(0.0, 100.0 - sum(weights[r] for r in fired))
    return QaResult(score=score, flags=tuple(sorted(flags, key=lambda f: f.at_s)))


def _first_trigger(
    rule: PhraseRule, streams: Mapping[Party, _Stream], party: Party
) -> float | None:
    """When the other party first said one of the rule's `after` phrases (None: never)."""
    earliest: float | None = None
    for other, stream in streams.items():
        if other is party and other is not Party.MIXED:
            continue
        if other is not Party.MIXED and other.value != rule.after_party:
            continue
        for phrase in rule.after:
            found = stream.find(phrase, rule.threshold)
            if found is not None:
                at = stream.words[found[1]].s
                earliest = at if earliest is None else min(earliest, at)
    return earliest


def _find_after(
    stream: _Stream, phrase: str, threshold: float, since: float
) -> tuple[float, int, int] | None:
    tail = _Stream(stream.party)
    skip = next((i for i, w in enumerate(stream.words) if w.s >= since), len(stream.words))
    for k, i in enumerate(stream.owner):
        if i >= skip:
            tail.norm.append(stream.norm[k])
            tail.owner.append(i)
    for k, i in enumerate(stream.cjk_owner):
        if i >= skip:
            tail.cjk += stream.cjk[k]
            tail.cjk_owner.append(i)
    tail.words = stream.words
    return tail.find(phrase, threshold)


def _check_limit(limit: LimitRule, n: TalkNumbers) -> Flag | None:
    if limit.kind is QaFlagKind.SILENCE:
        longest, at, ratio, total = (
            n.longest_silence_s,
            n.longest_silence_at_s,
            n.silence_ratio,
            None,
        )
        what = "silence"
    else:
        longest, at, ratio, total = (
            n.longest_overtalk_s,
            n.longest_overtalk_at_s,
            n.overtalk_ratio,
            n.overtalk_s,
        )
        what = "overtalk"
    reasons = []
    if limit.max_longest_s is not None and longest is not None and longest > limit.max_longest_s:
        reasons.append(f"longest {what} {longest:.1f} s > {limit.max_longest_s:g} s")
    if limit.max_ratio is not None and ratio is not None and ratio > limit.max_ratio:
        reasons.append(f"{what} {ratio:.0%} > {limit.max_ratio:.0%}")
    if limit.max_total_s is not None and total is not None and total > limit.max_total_s:
        reasons.append(f"{what} {total:.1f} s in all > {limit.max_total_s:g} s")
    if not reasons:
        return None
    return Flag(limit.id, limit.kind, None, round(at or 0.0, 2), "; ".join(reasons), 100.0)


# ---------------------------------------------------------------------------------------------
# The store: flags, scores, reviews, precision


@dataclass(frozen=True, slots=True)
class StoredFlag:
    id: int
    attempt_id: int
    rule_id: str
    kind: QaFlagKind
    party: Party | None
    at_s: float
    snippet: str
    score: float
    verdict: QaVerdict | None
    reviewed_by: str | None
    reviewed_at: datetime | None

    def as_json(self) -> dict[str, object]:
        """The flag as the CLI's --json and the pages show it (times in UTC, ISO 8601)."""
        reviewed_at = self.reviewed_at
        if reviewed_at is not None and reviewed_at.tzinfo is None:
            reviewed_at = reviewed_at.replace(tzinfo=UTC)  # SQLite hands back naive UTC
        return {
            "id": self.id,
            "rule": self.rule_id,
            "kind": self.kind.value,
            "party": None if self.party is None else self.party.value,
            "second": self.at_s,
            "snippet": self.snippet,
            "score": self.score,
            "verdict": None if self.verdict is None else self.verdict.value,
            "reviewed_by": self.reviewed_by,
            "reviewed_at": None if reviewed_at is None else reviewed_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class CallScore:
    attempt_id: int
    score: float
    flags: int  # standing: not judged wrong
    scored_at: datetime


def _fail(what: str, exc: SQLAlchemyError) -> StoreError:
    return StoreError(f"{what}: {error_reason(exc)}")


def save_result(
    store: Store, tenant_id: int, attempt_id: int, result: QaResult, *, now: datetime | None = None
) -> list[int]:
    """Keep a call's QA result, replacing an earlier one; a verdict already given on a flag of
    the same rule, party and second is kept. The new flags' ids."""
    when = now or datetime.now(UTC)
    try:
        with store.begin() as conn:
            earlier = {
                (r.rule_id, r.party, round(r.at_s, 1)): (r.verdict, r.reviewed_by, r.reviewed_at)
                for r in conn.execute(
                    select(QaFlag).where(
                        QaFlag.attempt_id == attempt_id, QaFlag.verdict.is_not(None)
                    )
                )
            }
            conn.execute(delete(QaFlag).where(QaFlag.attempt_id == attempt_id))
            rows = []
            for f in result.flags:
                party = None if f.party is None else f.party.value
                verdict, by, at = earlier.get(
                    (f.rule_id, party, round(f.at_s, 1)), (None, None, None)
                )
                rows.append(
                    {
                        "tenant_id": tenant_id,
                        "attempt_id": attempt_id,
                        "rule_id": f.rule_id,
                        "kind": f.kind.value,
                        "party": party,
                        "at_s": f.at_s,
                        "snippet": f.snippet,
                        "score": f.score,
                        "verdict": verdict,
                        "reviewed_by": by,
                        "reviewed_at": at,
                    }
                )
            ids: list[int] = []
            if rows:
                ids = [
                    int(i)
                    for i in conn.execute(
                        insert(QaFlag).returning(QaFlag.id, sort_by_parameter_order=True), rows
                    ).scalars()
                ]
            standing = sum(1 for r in rows if r["verdict"] != QaVerdict.WRONG.value)
            conn.execute(delete(QaScore).where(QaScore.attempt_id == attempt_id))
            conn.execute(
                insert(QaScore).values(
                    attempt_id=attempt_id,
                    tenant_id=tenant_id,
                    score=result.score,
                    flags=standing,
                    scored_at=when,
                )
            )
            mark_flagged(conn, attempt_id, standing > 0)
            return ids
    except SQLAlchemyError as exc:
        raise _fail(f"QA result of attempt {attempt_id}", exc) from exc


def check_call(
    store: Store, tenant_id: int, attempt_id: int, rules: RuleSet, metrics: Any = None
) -> QaResult:
    """Score a stored call against `rules` and keep the result (the pipeline's last step)."""
    stored = load_transcripts(store, attempt_id, tenant_id=tenant_id)
    result = score_call([as_input(t) for t in stored], metrics, rules)
    save_result(store, tenant_id, attempt_id, result)
    return result


def _stored_flag(r: Any) -> StoredFlag:
    return StoredFlag(
        id=int(r.id),
        attempt_id=int(r.attempt_id),
        rule_id=r.rule_id,
        kind=QaFlagKind(r.kind),
        party=None if r.party is None else Party(r.party),
        at_s=float(r.at_s),
        snippet=r.snippet,
        score=float(r.score),
        verdict=None if r.verdict is None else QaVerdict(r.verdict),
        reviewed_by=r.reviewed_by,
        reviewed_at=r.reviewed_at,
    )


def flags_of(store: Store, tenant_id: int, attempt_id: int) -> list[StoredFlag]:
    """A call's flags in time order."""
    try:
        with store.begin() as conn:
            rows = conn.execute(
                select(QaFlag)
                .where(QaFlag.tenant_id == tenant_id, QaFlag.attempt_id == attempt_id)
                .order_by(QaFlag.at_s, QaFlag.id)
            ).all()
    except SQLAlchemyError as exc:
        raise _fail(f"QA flags of attempt {attempt_id}", exc) from exc
    return [_stored_flag(r) for r in rows]


def review(
    store: Store,
    flag_id: int,
    verdict: QaVerdict | str,
    user: str,
    *,
    tenant_id: int | None = None,
    now: datetime | None = None,
) -> StoredFlag:
    """A supervisor's verdict on a flag (right: the rule was right to fire). The call's count
    of standing flags follows. Raises StoreError for a flag that is not there (or not the
    tenant's)."""
    verdict = QaVerdict(verdict)
    try:
        with store.begin() as conn:
            query = select(QaFlag).where(QaFlag.id == flag_id)
            if tenant_id is not None:
                query = query.where(QaFlag.tenant_id == tenant_id)
            row = conn.execute(query).first()
            if row is None:
                raise StoreError(f"no QA flag {flag_id}")
            conn.execute(
                update(QaFlag)
                .where(QaFlag.id == flag_id)
                .values(
                    verdict=verdict.value, reviewed_by=user, reviewed_at=now or datetime.now(UTC)
                )
            )
            standing = conn.execute(
                select(func.count()).where(
                    QaFlag.attempt_id == row.attempt_id,
                    (QaFlag.verdict.is_(None)) | (QaFlag.verdict != QaVerdict.WRONG.value),
                )
            ).scalar_one()
            conn.execute(
                update(QaScore).where(QaScore.attempt_id == row.attempt_id).values(flags=standing)
            )
            mark_flagged(conn, int(row.attempt_id), standing > 0)
            updated = conn.execute(select(QaFlag).where(QaFlag.id == flag_id)).one()
    except SQLAlchemyError as exc:
        raise _fail(f"review of QA flag {flag_id}", exc) from exc
    return _stored_flag(updated)


def rule_precision(store: Store, tenant_id: int) -> dict[str, tuple[int, int, float | None]]:
    """Per rule: (flags judged right, judged wrong, right / judged), None before any verdict."""
    right = func.sum(case((QaFlag.verdict == QaVerdict.RIGHT.value, 1), else_=0))
    wrong = func.sum(case((QaFlag.verdict == QaVerdict.WRONG.value, 1), else_=0))
    try:
        with store.begin() as conn:
            rows = conn.execute(
                select(QaFlag.rule_id, right, wrong)
                .where(QaFlag.tenant_id == tenant_id)
                .group_by(QaFlag.rule_id)
                .order_by(QaFlag.rule_id)
            ).all()
    except SQLAlchemyError as exc:
        raise _fail(f"QA rule precision of tenant {tenant_id}", exc) from exc
    out: dict[str, tuple[int, int, float | None]] = {}
    for rule_id, r, w in rows:
        r, w = int(r or 0), int(w or 0)
        out[rule_id] = (r, w, r / (r + w) if r + w else None)
    return out


def review_queue(
    store: Store, tenant_id: int, *, limit: int = 50, offset: int = 0
) -> list[CallScore]:
    """The tenant's scored calls for supervisors: calls with standing flags first, lowest score
    first, then the newest."""
    try:
        with store.begin() as conn:
            rows = conn.execute(
                select(QaScore)
                .where(QaScore.tenant_id == tenant_id)
                .order_by(
                    case((QaScore.flags > 0, 0), else_=1), QaScore.score, QaScore.attempt_id.desc()
                )
                .limit(limit)
                .offset(offset)
            ).all()
    except SQLAlchemyError as exc:
        raise _fail(f"QA queue of tenant {tenant_id}", exc) from exc
    return [CallScore(int(r.attempt_id), float(r.score), int(r.flags), r.scored_at) for r in rows]
