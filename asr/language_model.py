"""Collection-call language models for pocketsphinx: our own text, built into an ARPA file.

The text is ours (asr/lm/<name>.txt: what agents, debtors and answering machines say on
collection calls), never the prompts the benchmark measures nor the simulator's scripts built
from them. The ARPA file is built with `pocketsphinx.lm.ArpaBoLM` (the trigram builder that
ships with pocketsphinx: fixed-discount back-off), so no other dependency is needed.

A model built from a few hundred sentences knows only their words, and real calls say more.
`generic_words` adds the most frequent words of pocketsphinx's own en-us model as unigrams,
weighted by their en-us probabilities: the decoder can still say them, and the collection
phrases keep their bigrams and trigrams.

Built files are cached by the SHA-256 of everything that made them, so each worker process
reuses the same file and a changed text builds a new one.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from asr.errors import AsrError
from asr.wer import normalise

LM_DIR = Path(__file__).with_name("lm")
CACHE_ENV = "DIALER_ASR_CACHE"
BUILD_VERSION = "1"  # bump when the way a file is built changes


@dataclass(frozen=True, slots=True)
class LmRecipe:
    """What a built model is made of: a corpus, how many generic words, the discount."""

    corpus: str  # a name in asr/lm/ ("collection-en") or a path to a text file
    generic_words: int = 0
    generic_share: float = 1.0  # generic pseudo-counts, as a multiple of the corpus's words
    discount_mass: float = 0.5


def default_cache_dir() -> Path:
    """DIALER_ASR_CACHE, else ~/.cache/collection-dialer/asr (XDG_CACHE_HOME)."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "collection-dialer" / "asr"


def corpus_path(corpus: str) -> Path:
    """A corpus name in asr/lm/ ("collection-en") or a path; AsrError if there is no such file."""
    named = LM_DIR / f"{corpus}.txt"
    if "/" not in corpus and named.is_file():
        return named
    path = Path(corpus)
    if path.is_file():
        return path
    known = ", ".join(sorted(p.stem for p in LM_DIR.glob("*.txt")))
    raise AsrError(f"language model corpus {corpus!r}: no such file (built-in: {known})")


def read_corpus(path: Path) -> list[list[str]]:
    """Normalised sentences of a corpus file: one per line, '#' comments and blanks skipped."""
    sentences: list[list[str]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        words = normalise(line)
        if words:
            sentences.append(words)
    return sentences


def dictionary_words(dictionary: Path) -> set[str]:
    """Words a pocketsphinx dictionary can say (pronunciation variants `word(2)` folded)."""
    words: set[str] = set()
    with dictionary.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            head = line.split(maxsplit=1)[0] if line.strip() else ""
            if head:
                words.add(head.split("(", 1)[0])
    return words


def generic_words(lm_file: Path, dictionary: Path, count: int) -> dict[str, float]:
    """The `count` most probable words of a pocketsphinx n-gram model that the dictionary has,
    with their unigram probabilities, most probable first (ties by spelling)."""
    if count <= 0:
        return {}
    import pocketsphinx

    logmath = pocketsphinx.LogMath()
    model = pocketsphinx.NGramModel(None, logmath, str(lm_file))
    scored = [
        (model.prob([w]), w)
        for w in dictionary_words(dictionary)
        if w.replace("'", "").isalpha()  # no "<s>", "a.", "2"; "'cause" stays
    ]
    scored.sort(key=lambda pair: (-pair[0], pair[1]))
    return {w: logmath.exp(score) for score, w in scored[:count]}


def build_arpa(
    sentences: Sequence[Sequence[str]],
    extra_words: Mapping[str, float] | None = None,
    *,
    extra_share: float = 1.0,
    discount_mass: float = 0.5,
) -> str:
    """ARPA text of a trigram model of the sentences (with <s> and </s>).

    `extra_words` (word -> probability) not in the sentences join as unigrams, with pseudo
    counts that share out `extra_share` times the sentences' word count in proportion to
    their probabilities (at least 1 each): a unigram-level mix of the collection text with a
    general model. Raises AsrError when there is no sentence."""
    from pocketsphinx.lm import ArpaBoLM

    if not sentences:
        raise AsrError("a language model needs at least one sentence")
    text = "\n".join(" ".join(words) for words in sentences) + "\n"
    model = ArpaBoLM(text=text, add_start=True, discount_mass=discount_mass)
    extra = {w: p for w, p in (extra_words or {}).items() if w and w not in model.grams_1}
    if extra:
        tokens = sum(len(words) for words in sentences)
        scale = extra_share * tokens / sum(extra.values())
        for word, prob in extra.items():
            model.grams_1[word] = max(1, round(prob * scale))
    model.compute()
    out = io.StringIO()
    model.write(out)
    return out.getvalue()


def ensure_lm(
    recipe: LmRecipe,
    *,
    lm_file: Path,
    dictionary: Path,
    cache_dir: Path | None = None,
) -> Path:
    """The ARPA file of `recipe`, built into the cache when missing (atomically: workers that
    build at once each write a whole file and the last rename wins, with the same bytes).

    Words the dictionary cannot say are left out (pocketsphinx would refuse the model)."""
    source = corpus_path(recipe.corpus)
    text = source.read_bytes()
    key = hashlib.sha256(
        b"\0".join(
            [
                BUILD_VERSION.encode(),
                text,
                str(recipe.generic_words).encode(),
                repr(recipe.generic_share).encode(),
                repr(recipe.discount_mass).encode(),
                str(lm_file.resolve()).encode(),
                str(dictionary.resolve()).encode(),
            ]
        )
    ).hexdigest()[:16]
    folder = cache_dir or default_cache_dir()
    target = folder / f"{source.stem}-g{recipe.generic_words}-{key}.arpa"
    if target.is_file():
        return target
    known = dictionary_words(dictionary)
    sentences = [
        kept for words in read_corpus(source) if (kept := [w for w in words if w in known])
    ]
    extra = generic_words(lm_file, dictionary, recipe.generic_words)
    arpa = build_arpa(
        sentences, extra, extra_share=recipe.generic_share, discount_mass=recipe.discount_mass
    )
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".lm-", suffix=".arpa")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(arpa)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def out_of_vocabulary(path: Path, dictionary: Path) -> list[str]:
    """Words of a corpus the dictionary cannot say, sorted."""
    known = dictionary_words(dictionary)
    return sorted({w for words in read_corpus(path) for w in words if w not in known})
