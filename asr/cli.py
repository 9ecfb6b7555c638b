"""`dialer asr transcribe PATH...`: offline speech recognition of WAV files from a shell."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from asr.engines import (
    COLLECTION_LM,
    ENGINES,
    EngineSpec,
    OptionValue,
    build_recognizer,
    resolve_vosk_model,
)
from asr.errors import AsrError
from asr.language_model import corpus_path
from asr.models import Transcript
from asr.pool import Outcome, RecognizerPool, TranscribeFile, run_inline


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="asr_command", required=True, metavar="ACTION")
    t = sub.add_parser(
        "transcribe",
        help="transcribe WAV files (8/16-bit PCM, A-law, µ-law; mono, or one party per channel)",
        description="Transcribe WAV files offline. A file that cannot be read is reported with "
        "its reason and the others go on; the exit code is 1 if any file failed.",
    )
    t.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    t.add_argument(
        "--engine",
        choices=ENGINES,
        default="pocketsphinx",
        help="pocketsphinx (default: its bundled US English model, no download) or vosk",
    )
    t.add_argument(
        "--model",
        metavar="DIR",
        help="model directory; required for vosk (or DIALER_VOSK_MODEL); pocketsphinx: an "
        "acoustic model folder instead of the bundled en-us",
    )
    t.add_argument("--language", help="BCP 47 language of the model (default: guessed, en)")
    t.add_argument(
        "--lm",
        metavar="NAME|FILE",
        help="pocketsphinx language model: a text in asr/lm/ (collection-en: collection calls, "
        "plus the 20000 commonest en-us words) or an ARPA / .lm.bin file",
    )
    t.add_argument(
        "--processes",
        type=int,
        default=None,
        metavar="N",
        help="worker processes, one model each (default: one per CPU, at most one per file)",
    )
    t.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    t.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def run(args: argparse.Namespace) -> int:
    try:
        return _transcribe(args)
    except AsrError as exc:
        print(f"dialer asr: error: {exc}", file=sys.stderr)
        return 2


def _transcribe(args: argparse.Namespace) -> int:
    model = resolve_vosk_model(args.model) if args.engine == "vosk" else args.model
    spec = EngineSpec(
        engine=args.engine, model=model, language=args.language, options=_lm_options(args)
    )
    paths = [str(p) for p in args.paths]
    processes = min(len(paths), os.cpu_count() or 1) if args.processes is None else args.processes
    if processes < 1:
        raise AsrError(f"--processes must be at least 1, not {processes}")
    jobs = [TranscribeFile(p) for p in paths]
    files: list[dict[str, Any]] = []
    errors: list[dict[str, str]] = []
    progress = tqdm(
        total=len(jobs),
        unit="file",
        desc="transcribing",
        file=sys.stderr,
        disable=True if args.no_progress else None,  # None: only on a terminal
        leave=False,
    )
    with progress, contextlib.ExitStack() as stack:
        if processes == 1:
            outcomes = run_inline(build_recognizer(spec), jobs)
        else:
            outcomes = stack.enter_context(RecognizerPool(spec, processes)).imap(jobs)
        for outcome in outcomes:  # in the order of the paths
            path = paths[outcome.index]
            if outcome.value is not None:
                files.append({"path": path, **outcome.value.to_dict()})
            else:
                errors.append({"path": path, "error": outcome.error or "unknown error"})
            if not args.json:
                progress.clear()
                _print_text(path, outcome)
            progress.update(1)
    if args.json:
        print(json.dumps({"files": files, "errors": errors}, ensure_ascii=False))
    return 1 if errors else 0


def _lm_options(args: argparse.Namespace) -> tuple[tuple[str, OptionValue], ...]:
    if not args.lm:
        return ()
    if args.engine != "pocketsphinx":
        raise AsrError(f"--lm is for pocketsphinx; {args.engine} models carry their own")
    if Path(args.lm).is_file():
        return (("lm", str(Path(args.lm).resolve())),)
    corpus_path(args.lm)  # an unknown name fails here, naming the built-in ones
    return tuple((k, args.lm if k == "lm_corpus" else v) for k, v in COLLECTION_LM)


def _print_text(path: str, outcome: Outcome[Transcript]) -> None:
    if outcome.value is None:
        error = outcome.error or "unknown error"
        print(error if error.startswith(path) else f"{path}: {error}", file=sys.stderr)
        return
    t = outcome.value
    print(f"{path} ({t.engine} {t.model}, {t.audio_s:.1f} s of audio)")
    channels = {s.channel for s in t.segments}
    for s in t.segments:
        who = f" ch{s.channel}" if len(channels) > 1 else ""
        print(f"  [{s.start_s:7.2f} - {s.end_s:7.2f}]{who} {s.text}")
    if not t.segments:
        print("  (no speech recognised)")
