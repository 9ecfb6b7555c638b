"""Word error rate: normalised words, a Levenshtein alignment over words, corpus totals.

WER = (substitutions + deletions + insertions) / reference words, summed over the corpus
(not averaged per utterance, so long prompts weigh what they contain).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_ONES = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
]  # fmt: skip
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = ((1_000_000_000, "billion"), (1_000_000, "million"), (1000, "thousand"))

_ANNOTATION = re.compile(r"\[[^\]]*\]|\([^)]*\)|<[^>]*>")  # [tone], (note: ...), <sil>
_ALT_PRON = re.compile(r"\(\d+\)$")  # pocketsphinx's "good(2)"
_ORDINAL = re.compile(r"^(\d+)(st|nd|rd|th)$")
_NON_WORD = re.compile(r"[^\w'\s]+")


def number_words(n: int) -> list[str]:
    """Cardinal number in English words: 2015 -> two thousand fifteen."""
    if n < 0:
        return ["minus", *number_words(-n)]
    if n < 20:
        return [_ONES[n]]
    if n < 100:
        tens, ones = divmod(n, 10)
        return [_TENS[tens]] + ([_ONES[ones]] if ones else [])
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return [_ONES[hundreds], "hundred"] + (number_words(rest) if rest else [])
    for value, name in _SCALES:
        if n >= value:
            high, rest = divmod(n, value)
            return [*number_words(high), name] + (number_words(rest) if rest else [])
    raise AssertionError("unreachable")


def normalise(text: str) -> list[str]:
    """Words to compare: lower case, annotations and punctuation dropped, digits spelt out.

    `[beep]`, `(10 seconds of silence)` and engine tokens like `<sil>` are not speech; a
    pronunciation variant `good(2)` is the word `good`; "Call-Forward" is two words; "1" is
    "one"; apostrophes inside words stay ("party's").
    """
    words: list[str] = []
    for raw in _ANNOTATION.sub(" ", text.lower()).replace("-", " ").replace("_", " ").split():
        token = _ALT_PRON.sub("", raw)
        for part in _NON_WORD.sub(" ", token).split():
            part = part.strip("'")
            if not part:
                continue
            if part.isdigit():
                words.extend(number_words(int(part)))
                continue
            ordinal = _ORDINAL.match(part)
            if ordinal:
                words.extend(number_words(int(ordinal.group(1))))
                continue
            words.append(part)
    return words


@dataclass(frozen=True, slots=True)
class EditCounts:
    """Result of aligning a hypothesis with its reference."""

    reference_words: int
    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float:
        """Errors over reference words (can exceed 1 with many insertions); 0 for 0 / 0."""
        if self.reference_words == 0:
            return 0.0 if self.errors == 0 else float("inf")
        return self.errors / self.reference_words

    def __add__(self, other: EditCounts) -> EditCounts:
        return EditCounts(
            self.reference_words + other.reference_words,
            self.substitutions + other.substitutions,
            self.deletions + other.deletions,
            self.insertions + other.insertions,
        )


def align(reference: Sequence[str], hypothesis: Sequence[str]) -> EditCounts:
    """Minimum edit distance over words (unit costs), with the kinds of edit counted.

    Dynamic programming over (reference prefix, hypothesis prefix); each cell keeps
    (cost, substitutions, deletions, insertions) and ties prefer the fewest edits overall,
    then substitutions over a deletion plus an insertion.
    """
    n, m = len(reference), len(hypothesis)
    # prev[j] = (cost, subs, dels, ins) aligning reference[:i-1] with hypothesis[:j]
    prev = [(j, 0, 0, j) for j in range(m + 1)]
    for i in range(1, n + 1):
        cur = [(i, 0, i, 0)]
        ref_word = reference[i - 1]
        for j in range(1, m + 1):
            diag = prev[j - 1]
            if ref_word == hypothesis[j - 1]:
                best = diag
            else:
                best = (diag[0] + 1, diag[1] + 1, diag[2], diag[3])
            up = prev[j]  # reference word left out: deletion
            if up[0] + 1 < best[0]:
                best = (up[0] + 1, up[1], up[2] + 1, up[3])
            left = cur[j - 1]  # hypothesis word extra: insertion
            if left[0] + 1 < best[0]:
                best = (left[0] + 1, left[1], left[2], left[3] + 1)
            cur.append(best)
        prev = cur
    cost, subs, dels, ins = prev[m]
    assert cost == subs + dels + ins
    return EditCounts(n, subs, dels, ins)


def corpus_wer(pairs: Iterable[tuple[str, str]]) -> EditCounts:
    """Total edit counts over (reference text, hypothesis text) pairs, both normalised."""
    total = EditCounts(0)
    for reference, hypothesis in pairs:
        total = total + align(normalise(reference), normalise(hypothesis))
    return total
