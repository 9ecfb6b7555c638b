"""The collection-call language model (our own text, never the measured prompts) and the VAD
savings figure of `dialer bench asr`."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from asr.bench import TEXT_CANDIDATES, read_listing
from asr.engines import COLLECTION_LM, EngineSpec, build_recognizer
from asr.errors import AsrError
from asr.language_model import (
    LmRecipe,
    build_arpa,
    corpus_path,
    ensure_lm,
    out_of_vocabulary,
    read_corpus,
)
from asr.pocketsphinx_engine import model_files
from asr.service import transcribe_file
from asr.vad_savings import measure_calls, overlap_s
from asr.wer import normalise
from recording.vad import Segment

from .conftest import REPO, REQUIRE_SERVICES

SOUNDS = Path("/usr/share/asterisk/sounds/en")
FILES = model_files(None)
DICTIONARY = Path(FILES["dict"])
EN_US_LM = Path(FILES["lm"])
# Wording set by law (FDCPA 807(11)): every collection text has it, the simulator's too.
STATUTORY = {"this is an attempt to collect a debt"}


def _need(condition: bool, reason: str) -> None:
    if condition:
        return
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} and DIALER_REQUIRE_SERVICES=1")
    pytest.skip(reason)


def _ngrams(words: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def _arpa_unigram(arpa: str, word: str) -> float:
    match = re.search(rf"^(-?\d+\.\d+) {re.escape(word)}(?: |$)", arpa, re.MULTILINE)
    assert match, f"{word} is not a unigram"
    return float(match.group(1))


def test_every_word_of_the_collection_text_is_in_the_pocketsphinx_dictionary() -> None:
    assert out_of_vocabulary(corpus_path("collection-en"), DICTIONARY) == []
    assert len(read_corpus(corpus_path("collection-en"))) > 300


def test_the_collection_text_is_not_built_from_the_prompts_the_wer_is_measured_on() -> None:
    listing = next((p for p in TEXT_CANDIDATES if p.is_file()), None)
    _need(listing is not None, "asterisk-core-sounds-en (its listing) is not installed")
    assert listing is not None
    prompt_grams: set[tuple[str, ...]] = set()
    for text in read_listing(listing).values():
        prompt_grams |= _ngrams(normalise(text), 5)
    # the simulator's English script is made of those prompts: no long run of it either
    script = tomllib.loads((REPO / "sim" / "audio" / "scripts" / "en.toml").read_text())
    phrases: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, str):
            phrases.append(re.sub(r"\[[^\]]*\]", " ", node))
        elif isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            for item in node.values():
                walk(item)

    walk(script)
    script_grams = {g for p in phrases for g in _ngrams(normalise(p), 8)}
    for words in read_corpus(corpus_path("collection-en")):
        assert not _ngrams(words, 5) & prompt_grams, " ".join(words)
        if " ".join(words) not in STATUTORY:
            assert not _ngrams(words, 8) & script_grams, " ".join(words)


def test_a_built_model_prefers_collection_phrases_and_pocketsphinx_loads_it(
    tmp_path: Path,
) -> None:
    import pocketsphinx

    path = ensure_lm(
        LmRecipe("collection-en", generic_words=300),
        lm_file=EN_US_LM,
        dictionary=DICTIONARY,
        cache_dir=tmp_path,
    )
    arpa = path.read_text()
    declared = dict(re.findall(r"^ngram (\d)=(\d+)$", arpa, re.MULTILINE))
    sections = re.split(r"^\\(\d)-grams:$", arpa, flags=re.MULTILINE)
    for order, body in zip(sections[1::2], sections[2::2], strict=True):
        rows = [line for line in body.splitlines() if line.strip() and not line.startswith("\\")]
        assert len(rows) == int(declared[order]), f"{order}-grams"
    logmath = pocketsphinx.LogMath()
    model = pocketsphinx.NGramModel(None, logmath, str(path))
    # prob(words): the first word given the ones after it (most recent first)
    assert model.prob(["pay", "to", "promise"]) > model.prob(["collect", "to", "promise"])
    assert model.prob(["balance", "the"]) > model.prob(["people", "the"])
    # generic English words are still sayable (not in the text), common ones more than rarer
    assert not {"people", "between"} & {
        w for s in read_corpus(corpus_path("collection-en")) for w in s
    }
    assert _arpa_unigram(arpa, "people") > _arpa_unigram(arpa, "between")


def test_a_built_model_is_cached_and_rebuilt_when_its_text_changes(tmp_path: Path) -> None:
    text = tmp_path / "mine.txt"
    text.write_text("# a comment\nwe can take a payment today\n\ncall me back tomorrow\n")
    recipe = LmRecipe(str(text))
    cache = tmp_path / "cache"
    first = ensure_lm(recipe, lm_file=EN_US_LM, dictionary=DICTIONARY, cache_dir=cache)
    stamp = first.stat().st_mtime_ns
    assert ensure_lm(recipe, lm_file=EN_US_LM, dictionary=DICTIONARY, cache_dir=cache) == first
    assert first.stat().st_mtime_ns == stamp
    text.write_text("we can take a payment on friday\n")
    second = ensure_lm(recipe, lm_file=EN_US_LM, dictionary=DICTIONARY, cache_dir=cache)
    assert second != first and "friday" in second.read_text()
    assert [p.name for p in cache.iterdir() if p.name.startswith(".")] == []  # no leftovers


def test_bad_language_model_input_is_named() -> None:
    with pytest.raises(AsrError, match=r"'no-such-text'.*built-in: collection-en"):
        corpus_path("no-such-text")
    with pytest.raises(AsrError, match="at least one sentence"):
        build_arpa([])


def test_extra_words_are_weighted_by_their_probability() -> None:
    arpa = build_arpa([["pay", "today"]], {"alpha": 0.9, "beta": 0.1, "pay": 0.5})
    assert _arpa_unigram(arpa, "alpha") > _arpa_unigram(arpa, "beta")
    assert _arpa_unigram(arpa, "pay") == _arpa_unigram(arpa, "today")  # corpus counts kept


def test_pocketsphinx_with_the_collection_model_hears_a_real_prompt(tmp_path: Path) -> None:
    _need((SOUNDS / "auth-thankyou.wav").is_file(), "asterisk-core-sounds-en-wav is missing")
    spec = EngineSpec("pocketsphinx", options=COLLECTION_LM)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DIALER_ASR_CACHE", str(tmp_path))
        recognizer = build_recognizer(spec)
    transcript = transcribe_file(recognizer, SOUNDS / "auth-thankyou.wav")
    assert transcript.text == "thank you"
    assert transcript.model.startswith("en-us+lm:collection-en")


def test_overlap_counts_only_time_inside_segments() -> None:
    segments = [Segment(1.0, 2.0), Segment(3.0, 5.0)]
    assert overlap_s([(0.0, 1.5), (1.8, 3.5), (6.0, 7.0)], segments) == pytest.approx(1.2)


def test_vad_keeps_the_speech_of_simulated_calls_and_drops_much_of_the_rest() -> None:
    from sim.audio import unavailable

    reason = unavailable()
    _need(reason is None, f"simulated call audio cannot be made: {reason}")
    savings = measure_calls(4, seed=3, duration_s=40.0)
    assert savings.calls == 4
    assert savings.channel_s == pytest.approx(2 * (40 + 40 + 40 + 12), abs=0.1)
    assert 0.3 < savings.saved < 0.95  # a two-party call is mostly one side listening
    assert savings.speech_kept > 0.95
    assert savings.to_dict()["saved"] == round(savings.saved, 4)


def test_cli_names_the_built_in_models_for_an_unknown_lm_and_keeps_lm_to_pocketsphinx() -> None:
    import subprocess
    import sys

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dialer.cli", "asr", "transcribe", "x.wav", *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )

    unknown = cli("--lm", "no-such-text")
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert "'no-such-text'" in unknown.stderr and "built-in: collection-en" in unknown.stderr
    vosk = cli("--engine", "vosk", "--model", "/nonexistent", "--lm", "collection-en")
    assert vosk.returncode == 2 and "--lm is for pocketsphinx" in vosk.stderr


def test_the_qa_rules_forbidden_phrases_become_a_keyword_list(tmp_path: Path) -> None:
    from asr.keywords import ensure_kws, spotting_list

    spotting = spotting_list("us-collections", DICTIONARY)
    phrases = {k.phrase: k.category for k in spotting.phrases}
    assert phrases["we will have you arrested"] == "threat"
    assert phrases["you are a deadbeat"] == "insult"
    assert all(k.rule_id for k in spotting.phrases)
    path = ensure_kws("us-collections", DICTIONARY, cache_dir=tmp_path)
    lines = path.read_text().splitlines()
    assert "we will have you arrested /1e-20/" in lines  # five words: 1e-4 each
    assert len(lines) == len(phrases)
    rules = tmp_path / "mine.toml"
    rules.write_text(
        'name = "mine"\nlanguage = "en"\n[[forbidden]]\nid = "x"\n'
        'phrases = ["you * idiot", "blorfx the debt", "pay up now"]\n'
    )
    mine = spotting_list(str(rules), DICTIONARY)
    assert [k.phrase for k in mine.phrases] == ["pay up now"]
    assert any("wildcard" in s for s in mine.skipped)
    assert any("blorfx" in s for s in mine.skipped)
    with pytest.raises(AsrError, match="keyword list from QA rules"):
        spotting_list(str(tmp_path / "missing.toml"), DICTIONARY)
