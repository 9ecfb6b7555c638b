"""PocketSphinx 5 behind the Recognizer protocol: the bundled US English model, no download.

Word confidence is the word's posterior probability, computed by pocketsphinx from the word
lattice by forward-backward (`ps_seg_prob`, on because we keep `bestpath` on). Where there is no
lattice (a caller who turns `bestpath` off for speed) pocketsphinx reports 1.0 for every word;
we then derive a relative confidence from the acoustic fit instead: the logistic of how much
better (or worse) the word's acoustic log-likelihood per frame is than the median word of the
same utterance. In keyword-spotting mode the detection score pocketsphinx gives is used as is.

Hooks for later, all off by default: a keyword list (`kws`: pocketsphinx's keyword spotting,
one phrase per line with its threshold), extra dictionary words (`add_words`), and another
language model or dictionary (`lm`, `dict`). Any other decoder parameter passes through
`options`.
"""

from __future__ import annotations

import itertools
import math
import re
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from asr.errors import AsrError, BadAudio, ModelNotFound
from asr.models import Segment, Word
from asr.protocol import Samples

OptionValue = str | int | float | bool
NON_WORDS = frozenset({"<s>", "</s>", "<sil>", "[NOISE]", "[SPEECH]"})
_ALT_PRON = re.compile(r"\(\d+\)$")


@dataclass(frozen=True, slots=True)
class PocketsphinxSettings:
    """How to build the decoder.

    `model`: an acoustic model folder (the one holding `mdef`), or a bundle folder laid out
    like pocketsphinx's own (`en-us/`, `en-us.lm.bin`, `cmudict-en-us.dict`); None: bundled.
    `pause_s`: a silence at least this long ends a segment. `max_utterance_s`: longer audio is
    decoded in pieces cut at the quietest 10 ms near this length (a whole call in one
    utterance makes lattices that grow without bound). `dither`: add ±1 LSB of deterministic
    noise first. `band_fill`: see `fill_band` (0 turns it off: the plain baseline).
    """

    model: str | None = None
    language: str = "en"
    lm: str | None = None
    dictionary: str | None = None
    kws: str | None = None
    add_words: tuple[tuple[str, str], ...] = ()
    options: tuple[tuple[str, OptionValue], ...] = ()
    pause_s: float = 0.3
    max_utterance_s: float = 30.0
    dither: bool = False
    band_fill: float = 0.2


def _bundled_model_dir() -> Path:
    import pocketsphinx

    return Path(pocketsphinx.get_model_path())


def model_files(model: str | None) -> dict[str, str]:
    """hmm / lm / dict paths for a model argument (see PocketsphinxSettings.model)."""
    bundled = _bundled_model_dir()
    default = {
        "hmm": str(bundled / "en-us" / "en-us"),
        "lm": str(bundled / "en-us" / "en-us.lm.bin"),
        "dict": str(bundled / "en-us" / "cmudict-en-us.dict"),
    }
    if not Path(default["hmm"]).is_dir():  # older wheels: model/en-us, model/en-us.lm.bin
        default = {
            "hmm": str(bundled / "en-us"),
            "lm": str(bundled / "en-us.lm.bin"),
            "dict": str(bundled / "cmudict-en-us.dict"),
        }
    if model is None:
        return default
    root = Path(model)
    if not root.is_dir():
        raise ModelNotFound(model, "no such directory")
    if (root / "mdef").is_file():
        return {**default, "hmm": str(root)}
    hmms = sorted(p.parent for p in root.glob("*/mdef"))
    if not hmms:
        raise ModelNotFound(model, "no acoustic model in it (no mdef file, nor */mdef)")
    files = {**default, "hmm": str(hmms[0])}
    lms = sorted(root.glob("*.lm.bin")) or sorted(root.glob("*.lm"))
    dicts = sorted(root.glob("*.dict")) or sorted(root.glob("*.dic"))
    if lms:
        files["lm"] = str(lms[0])
    if dicts:
        files["dict"] = str(dicts[0])
    return files


def _word_text(raw: str) -> str:
    return _ALT_PRON.sub("", raw)


def is_narrowband(samples: Samples, threshold_db: float = -40.0) -> bool:
    """True when the upper half of the band holds (almost) nothing: upsampled telephone audio.

    8 kHz audio resampled to 16 kHz has no energy between 4 and 8 kHz; wideband audio has
    some (fricatives, breath, noise) well above -40 dB of the total.
    """
    if samples.size < 256:
        return False
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64))) ** 2
    total = float(spectrum.sum())
    if total <= 0.0:
        return False  # digital silence: nothing to fill
    upper = float(spectrum[len(spectrum) // 2 :].sum())
    return upper <= total * math.pow(10.0, threshold_db / 10.0)


def fill_band(samples: Samples, gain: float) -> Samples:
    """Narrowband audio with an attenuated mirror image of its band above the original Nyquist.

    The en-us model was trained on 16 kHz speech; its filterbank reaches 6.8 kHz. Upsampled
    telephone audio leaves the filters above 4 kHz nearly empty, and their log energies (far
    below anything seen in training) push the decoder towards wrong phones. Multiplying by
    (-1)^n mirrors the 0-4 kHz band onto 4-8 kHz (what upsampling without an anti-imaging
    filter would leave); adding it at `gain` gives those filters speech-shaped energy. On the
    core-sounds prompts this cuts pocketsphinx's WER by about a sixth (README figures). The
    gain was chosen on one seeded sample of prompts and is reported on others.
    """
    sign = np.where(np.arange(samples.size) % 2 == 0, 1.0, -1.0)
    x = samples.astype(np.float64)
    return np.clip(np.round(x + gain * x * sign), -32768, 32767).astype(np.int16)


def split_points(samples: Samples, sample_rate: int, max_s: float) -> list[int]:
    """Sample indexes at which to cut audio longer than `max_s` into pieces of at most `max_s`.

    Each cut is at the quietest 10 ms frame in the last third of the window, so a cut falls in
    a pause when there is one.
    """
    limit = int(max_s * sample_rate)
    if limit <= 0 or len(samples) <= limit:
        return []
    frame = max(1, sample_rate // 100)
    cuts: list[int] = []
    start = 0
    while len(samples) - start > limit:
        lo = start + (2 * limit) // 3
        hi = start + limit
        n = (hi - lo) // frame
        window = samples[lo : lo + n * frame].astype(np.float64).reshape(n, frame)
        quietest = int(np.argmin(np.mean(window * window, axis=1)))
        cut = lo + quietest * frame + frame // 2
        cuts.append(cut)
        start = cut
    return cuts


class PocketsphinxRecognizer:
    """One pocketsphinx Decoder (model loaded once); utterances decoded one after another."""

    def __init__(self, settings: PocketsphinxSettings | None = None) -> None:
        import pocketsphinx

        self._settings = settings = settings or PocketsphinxSettings()
        files = model_files(settings.model)
        for key in ("hmm", "lm", "dict"):
            if key == "lm" and (settings.lm or settings.kws):
                continue
            if not Path(files[key]).exists():
                raise ModelNotFound(files[key], f"pocketsphinx {key} not found")
        params: dict[str, Any] = {"hmm": files["hmm"], "dict": files["dict"], "loglevel": "ERROR"}
        if settings.dictionary:
            params["dict"] = settings.dictionary
        if settings.kws:
            params["kws"] = settings.kws
        else:
            params["lm"] = settings.lm or files["lm"]
            params["bestpath"] = True
        params.update(dict(settings.options))
        try:
            self._decoder = pocketsphinx.Decoder(**params)
        except (RuntimeError, ValueError, KeyError) as exc:
            raise ModelNotFound(files["hmm"], f"pocketsphinx refused it: {exc}") from exc
        for word, phones in settings.add_words:
            try:
                self._decoder.add_word(word, phones, update=True)
            except RuntimeError as exc:
                raise AsrError(f"cannot add word {word!r} ({phones}): {exc}") from exc
        # The cepstral mean and the noise-removal estimate carry over from one utterance to
        # the next; resetting both before each (0.5 ms) makes a result independent of what the
        # decoder heard before: the pool's workers see files in any order, and must agree
        # with a single process.
        self._initial_cmn = self._decoder.get_cmn(False)
        config = self._decoder.config
        self._rate = int(float(config["samprate"]))
        self._frate = int(config["frate"])
        self._posteriors = bool(config["bestpath"]) and not settings.kws
        self._kws = bool(settings.kws)
        # the acoustic model's name, and what replaces the bundled language model if anything
        self._model = Path(files["hmm"]).name
        if settings.kws:
            self._model += f"+kws:{Path(settings.kws).name}"
        elif settings.lm:
            self._model += f"+lm:{Path(settings.lm).name}"

    @property
    def engine(self) -> str:
        return "pocketsphinx"

    @property
    def model(self) -> str:
        return self._model

    @property
    def language(self) -> str:
        return self._settings.language

    @property
    def sample_rate(self) -> int:
        return self._rate

    def decoder_config(self) -> Mapping[str, Any]:
        """The decoder's effective configuration (for reports and tests)."""
        config = self._decoder.config
        return {key: config[key] for key in ("hmm", "lm", "dict", "samprate", "frate", "bestpath")}

    def transcribe(
        self, samples: Samples, sample_rate: int, *, offset_s: float = 0.0
    ) -> list[Segment]:
        if sample_rate != self._rate:
            raise BadAudio(
                "<samples>", f"{sample_rate} Hz given, the model wants {self._rate} Hz: resample"
            )
        pcm = np.asarray(samples, dtype=np.int16)
        if pcm.ndim != 1:
            raise BadAudio("<samples>", f"mono samples expected, got shape {pcm.shape}")
        segments: list[Segment] = []
        bounds = [0, *split_points(pcm, self._rate, self._settings.max_utterance_s), len(pcm)]
        for start, end in itertools.pairwise(bounds):
            if end - start < self._rate // 10:  # under 100 ms: nothing to decode
                continue
            piece = self._prepare(pcm[start:end])
            segments.extend(self._decode(piece, offset_s + start / self._rate))
        return segments

    def _prepare(self, pcm: Samples) -> Samples:
        if self._settings.band_fill > 0 and is_narrowband(pcm):
            pcm = fill_band(pcm, self._settings.band_fill)
        if self._settings.dither:
            noise = np.random.default_rng(pcm.size).integers(-1, 2, size=pcm.size)
            pcm = np.clip(pcm.astype(np.int32) + noise, -32768, 32767).astype(np.int16)
        return pcm

    def _decode(self, pcm: Samples, offset_s: float) -> list[Segment]:
        d = self._decoder
        d.reinit_feat()
        d.set_cmn(self._initial_cmn)
        d.start_utt()
        d.process_raw(pcm.tobytes(), no_search=False, full_utt=True)
        d.end_utt()
        raw = [  # seg() is None when keyword spotting found nothing
            (s.word.strip(), s.start_frame, s.end_frame, float(s.prob), float(s.ascore))
            for s in d.seg() or ()
        ]
        confidences = self._confidences(raw)
        segments: list[Segment] = []
        current: list[Word] = []
        for (word, sf, ef, _prob, _ascore), confidence in zip(raw, confidences, strict=True):
            start_s = offset_s + sf / self._frate
            end_s = offset_s + (ef + 1) / self._frate  # end frame is inclusive
            if word in NON_WORDS or word.startswith("++"):
                if current and end_s - start_s >= self._settings.pause_s:
                    segments.append(Segment.from_words(current))
                    current = []
                continue
            current.append(Word(_word_text(word), start_s, end_s, confidence))
        if current:
            segments.append(Segment.from_words(current))
        return segments

    def _confidences(self, raw: list[tuple[str, int, int, float, float]]) -> list[float]:
        if self._posteriors or self._kws:
            return [min(1.0, max(0.0, prob)) for _w, _s, _e, prob, _a in raw]
        # No lattice: relative acoustic fit (see the module docstring).
        per_frame = [
            math.log(max(ascore, 1e-300)) / max(1, e - s + 1) for _w, s, e, _p, ascore in raw
        ]
        words = [pf for (w, *_rest), pf in zip(raw, per_frame, strict=True) if w not in NON_WORDS]
        if not words:
            return [0.0 for _ in raw]
        median = statistics.median(words)
        return [1.0 / (1.0 + math.exp(-(pf - median))) for pf in per_frame]
