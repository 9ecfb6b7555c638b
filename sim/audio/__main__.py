"""`python -m sim.audio OUT_DIR`: a QA sample set, each language once per kind of call and
once per violation, every call a WAV plus its `.truth.json`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sim.audio.compose import CallKind, CallSpec, Rule, compose_call
from sim.audio.corpus import Corpus
from sim.audio.errors import AudioError
from sim.audio.files import Layout, write_call


def sample_specs(languages: list[str], duration_s: float, seed: int) -> list[tuple[str, CallSpec]]:
    specs: list[tuple[str, CallSpec]] = []
    for language in languages:
        kinds: list[tuple[str, CallKind, Rule | None]] = [
            ("clean", CallKind.CONVERSATION, None),
            ("machine", CallKind.MACHINE, None),
            ("short", CallKind.SHORT, None),
            *((rule.value, CallKind.CONVERSATION, rule) for rule in Rule),
        ]
        for name, kind, rule in kinds:
            length = {CallKind.MACHINE: 25.0, CallKind.SHORT: 8.0}.get(kind, duration_s)
            seed += 1
            specs.append((f"{language}-{name}", CallSpec(language, kind, length, rule, seed)))
    return specs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim.audio", description=__doc__)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--language", action="append", help="en, zh (default: every script)")
    parser.add_argument("--duration", type=float, default=75.0, help="seconds per conversation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layout", choices=[x.value for x in Layout], default="stereo")
    parser.add_argument("--cache-dir", type=Path, help="espeak-ng renders (default: ~/.cache)")
    args = parser.parse_args(argv)
    try:
        corpus = Corpus.open(cache_dir=args.cache_dir)
        languages = args.language or list(corpus.languages)
        for name, spec in sample_specs(languages, args.duration, args.seed):
            call = compose_call(corpus, spec)
            write_call(call, args.out_dir / f"{name}.wav", Layout(args.layout))
            found = ", ".join(f"{v.rule.value} at {v.start_s:.1f} s" for v in call.violations)
            print(f"{name:32} {call.duration_s:6.1f} s  {found or '-'}")
    except AudioError as exc:
        print(f"python -m sim.audio: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
