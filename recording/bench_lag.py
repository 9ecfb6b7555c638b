"""`dialer bench pipeline`: from hang-up to searchable transcript, with many calls ending at once.

`--calls` simulated calls (50 by default), each recorded as asterisk-conf records (MixMonitor's
r()/t() files and the mixed one, from the simulator's real prompts and espeak-ng voices), are
connected in the store; then all of them hang up in one transaction. The pipeline, as `dialer
run` starts it (recording/worker.py: collect, archive, transcribe, index, QA; polling every
`--poll-s` seconds), takes them in. The lag of a call is the time from its hang-up to the
moment its transcript and QA result are committed (searchable). Figures, never pass/fail.

Configurations, in one run: `script` (the text route: the pipeline's own overhead, no
recognition; the baseline the others are given as ratios to) and each recogniser engine at
each process count (pocketsphinx at 1 and 2 by default).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dialer.calls.models import AttemptStatus, Outcome
from dialer.importer import import_csv
from dialer.portfolio import write_sample_portfolio
from dialer.store import attempts as repo
from dialer.store.db import Store, open_store
from recording.archive import Archive, RetentionPolicy
from recording.qa import load_rules
from recording.worker import (
    Analyser,
    Finished,
    InlineAnalyser,
    PipelineWorker,
    PoolAnalyser,
    QaRules,
)


@dataclass(frozen=True)
class LagResult:
    engine: str
    processes: int
    calls: int
    done: int
    failed: int
    p50_s: float
    p95_s: float
    max_s: float
    wall_s: float  # from the hang-ups to the last call through
    cpu_s: float  # this process's CPU meanwhile (the dialer's share; pool workers apart)

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--calls", type=int, default=50, help="calls hanging up at once")
    parser.add_argument("--call-s", type=float, default=20.0, help="length of each call, s")
    parser.add_argument(
        "--engines",
        default="script,pocketsphinx",
        help="comma-separated: script (text route, the baseline), pocketsphinx, vosk",
    )
    parser.add_argument(
        "--processes", default="1,2", help="recogniser process counts (comma-separated)"
    )
    parser.add_argument("--model", help="model directory (vosk)")
    parser.add_argument("--poll-s", type=float, default=1.0, help="the pipeline's poll interval")
    parser.add_argument("--timeout-s", type=float, default=3600.0, help="per configuration")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _templates(folder: Path, count: int, call_s: float) -> list[Path]:
    """A few distinct two-party calls (English, some with a scripted violation), on disk."""
    from sim.audio import CallKind, CallSpec, Corpus, Layout, Rule, compose_call, write_call

    corpus = Corpus.open()
    rules = [None, Rule.THREAT, None, Rule.INSULT, None, Rule.MISSING_DISCLOSURE]
    paths = []
    for i in range(count):
        spec = CallSpec("en", CallKind.CONVERSATION, call_s, rules[i % len(rules)], seed=100 + i)
        path = folder / f"template-{i}.wav"
        write_call(compose_call(corpus, spec), path, Layout.RT)
        paths.append(path)
    return paths


def _connected_calls(store: Store, spool: Path, templates: list[Path], calls: int) -> list[int]:
    """`calls` attempts connected to an agent, each with its recording in the spool."""
    portfolio = spool.parent / "portfolio.csv"
    # Some sample debtors have no callable phone: more than enough of them.
    write_sample_portfolio(portfolio, debtors=2 * calls + 10, seed=7)
    import_csv(store, portfolio, tenant="default", progress=False)
    tenant_id = repo.ensure_tenant(store, "default")
    campaign_id = repo.ensure_campaign(store, tenant_id, "bench", "predictive")
    start = datetime.now(UTC) - timedelta(minutes=2)
    candidates = repo.next_candidates(store, campaign_id, limit=calls)
    if len(candidates) < calls:
        raise RuntimeError(f"only {len(candidates)} callable sample debtors for {calls} calls")
    ids = repo.create_attempts(
        store,
        [
            repo.NewAttempt(
                tenant_id=tenant_id,
                campaign_id=campaign_id,
                debtor_id=c.debtor_id,
                debt_id=c.debt_id,
                phone_id=c.phone_id,
                node_id="bench",
                server="sim",
                uniqueid=f"bench-{i}",
                dialed_at=start,
                reservation_id=None,
            )
            for i, c in enumerate(candidates)
        ],
    )
    changes = []
    for i, attempt_id in enumerate(ids):
        template = templates[i % len(templates)]
        path = spool / f"call-{attempt_id}.wav"
        stem = template.with_suffix("")
        for suffix in ("-in.wav", "-out.wav", ".truth.json", ".wav"):  # the mixed file last
            shutil.copyfile(f"{stem}{suffix}", f"{path.with_suffix('')}{suffix}")
        changes.append(
            (
                attempt_id,
                repo.AttemptChange(
                    status=AttemptStatus.CONNECTED,
                    answered_at=start,
                    connected_at=start + timedelta(seconds=2),
                    agent_id="agent1",
                    recording_path=str(path),
                ),
            )
        )
    repo.update_attempts(store, changes)
    return ids


def _analyser(engine: str, processes: int, model: str | None) -> Analyser:
    if engine == "script":
        return InlineAnalyser()
    from asr.engines import EngineSpec
    from asr.pool import RecognizerPool

    pool = RecognizerPool(EngineSpec(engine=engine, model=model), processes)
    pool.start()  # models load before the calls hang up: not part of the lag
    return PoolAnalyser(pool)


def measure(
    work: Path,
    templates: list[Path],
    *,
    engine: str,
    processes: int,
    calls: int,
    poll_s: float,
    timeout_s: float,
    model: str | None = None,
) -> LagResult:
    """One configuration in a fresh SQLite store under `work`."""
    spool = work / "spool"
    spool.mkdir(parents=True)
    store = open_store(f"sqlite:///{work / 'dialer.db'}")
    finished: dict[int, float] = {}
    failed: set[int] = set()
    all_in = threading.Event()

    def on_finished(item: Finished) -> None:
        if item.processed is None:
            failed.add(item.attempt_id)
        else:
            finished[item.attempt_id] = time.monotonic()
        if len(finished) + len(failed) >= calls:
            all_in.set()

    worker = None
    try:
        ids = _connected_calls(store, spool, templates, calls)
        worker = PipelineWorker(
            store,
            Archive(work / "archive"),
            RetentionPolicy(),
            QaRules(load_rules("us-collections"), {}),
            _analyser(engine, processes, model),
            node_id="bench",
            poll_s=poll_s,
            on_finished=on_finished,
        )
        worker.start()
        time.sleep(poll_s * 1.5)  # the pipeline idles, as in a running dialer
        hung = datetime.now(UTC)
        cpu = time.process_time()
        t0 = time.monotonic()
        repo.update_attempts(
            store,
            [
                (
                    a,
                    repo.AttemptChange(
                        status=AttemptStatus.ENDED, outcome=Outcome.ANSWERED, hungup_at=hung
                    ),
                )
                for a in ids
            ],
        )
        all_in.wait(timeout_s)
        wall = time.monotonic() - t0
        cpu = time.process_time() - cpu
    finally:
        if worker is not None:
            worker.stop()
        store.close()
    lags = [at - t0 for at in finished.values()]
    return LagResult(
        engine,
        processes,
        calls,
        len(finished),
        len(failed),
        round(_percentile(lags, 0.50), 3),
        round(_percentile(lags, 0.95), 3),
        round(max(lags, default=float("nan")), 3),
        round(wall, 3),
        round(cpu, 3),
    )


def run(args: argparse.Namespace) -> int:
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    try:
        counts = [int(p) for p in args.processes.split(",") if p.strip()]
    except ValueError:
        print(f"dialer bench pipeline: --processes {args.processes!r}: numbers", file=sys.stderr)
        return 2
    if args.calls < 1 or args.call_s <= 0 or not counts or min(counts) < 1:
        print("dialer bench pipeline: --calls, --call-s, --processes above 0", file=sys.stderr)
        return 2
    unknown = [e for e in engines if e not in ("script", "pocketsphinx", "vosk")]
    if unknown:
        print(f"dialer bench pipeline: unknown engine(s) {', '.join(unknown)}", file=sys.stderr)
        return 2
    results: list[LagResult] = []
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        root = Path(tmp)
        (root / "templates").mkdir()
        templates = _templates(root / "templates", min(args.calls, 6), args.call_s)
        configs = [(e, 1) if e == "script" else (e, n) for e in engines for n in counts]
        for i, (engine, processes) in enumerate(dict.fromkeys(configs)):
            if not args.json:
                print(
                    f"{engine} x{processes}: {args.calls} calls of {args.call_s:g} s hang up...",
                    file=sys.stderr,
                    flush=True,
                )
            results.append(
                measure(
                    root / f"run-{i}",
                    templates,
                    engine=engine,
                    processes=processes,
                    calls=args.calls,
                    poll_s=args.poll_s,
                    timeout_s=args.timeout_s,
                    model=args.model,
                )
            )
    base = next((r for r in results if r.engine == "script"), None)
    report = {
        "calls": args.calls,
        "call_s": args.call_s,
        "poll_s": args.poll_s,
        "cpus": os.cpu_count(),
        "results": [r.as_dict() for r in results],
        "baseline": "script" if base else None,
    }
    if args.json:
        print(json.dumps(report))
        return 0
    print(
        f"hang-up to searchable transcript: {args.calls} calls of {args.call_s:g} s ending at "
        f"once, poll {args.poll_s:g} s, {os.cpu_count()} CPUs"
    )
    print(
        f"{'engine':<14}{'procs':>6}{'done':>6}{'failed':>7}{'p50 s':>9}{'p95 s':>9}"
        f"{'max s':>9}{'p95 x base':>12}{'dialer CPU s':>14}"
    )
    for r in results:
        ratio = f"{r.p95_s / base.p95_s:.1f}" if base and base.p95_s > 0 else "-"
        print(
            f"{r.engine:<14}{r.processes:>6}{r.done:>6}{r.failed:>7}{r.p50_s:>9.2f}"
            f"{r.p95_s:>9.2f}{r.max_s:>9.2f}{ratio:>12}{r.cpu_s:>14.2f}"
        )
    if base is not None:
        print("script: the text route (no recognition): the pipeline's own overhead, the baseline")
    return 0 if all(r.done == r.calls for r in results) else 1
