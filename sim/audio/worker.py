"""`python -m sim.audio.worker`: the process in which `CallRecorder` has its calls composed and
written. One JSON job per line on stdin, one JSON reply per line on stdout, in order; it ends
when stdin closes, after the jobs it has already been given (so the files of calls that ended
just before the simulator stopped are still written).

    job:   {"path": "...wav", "spec": {...CallSpec...}, "layout": "stereo", "sidecar": true,
            "cache_dir": ""}
    reply: {"error": null} or {"error": "why not"}

A process and not a thread: composing a call holds the GIL for milliseconds at a time, which at
the demo's x100 is a fraction of a simulated second taken from the PBX's event loop.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

from sim.audio.compose import CallSpec, compose_call
from sim.audio.corpus import Corpus
from sim.audio.errors import AudioError
from sim.audio.files import Layout, write_call


def run_job(job: dict[str, Any], corpora: dict[str, Corpus]) -> str | None:
    """Compose and write one call; None when done, else why not."""
    try:
        cache_dir = str(job.get("cache_dir") or "")
        corpus = corpora.get(cache_dir)
        if corpus is None:
            corpus = Corpus.open(cache_dir=Path(cache_dir) if cache_dir else None)
            corpora[cache_dir] = corpus
        call = compose_call(corpus, CallSpec.from_json(job["spec"]))
        write_call(
            call, Path(job["path"]), Layout(job["layout"]), sidecar=bool(job.get("sidecar", True))
        )
    except (AudioError, OSError, ValueError, KeyError, TypeError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def serve(jobs: TextIO, replies: TextIO) -> None:
    corpora: dict[str, Corpus] = {}  # one per cache folder: it keeps the phrases it has spoken
    for line in jobs:
        if not line.strip():
            continue
        try:
            job = json.loads(line)
        except json.JSONDecodeError as exc:
            error: str | None = f"not a JSON job: {exc}"
        else:
            error = run_job(job, corpora)
        if replies.closed:
            continue  # the simulator is gone; the files are still wanted
        try:
            replies.write(json.dumps({"error": error}) + "\n")
            replies.flush()
        except BrokenPipeError:
            replies.close()


if __name__ == "__main__":
    serve(sys.stdin, sys.stdout)
