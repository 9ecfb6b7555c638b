"""`dialer recordings collect|archive|verify|retention|process`: the evidence archive and the
recording pipeline from a shell."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dialer.config import Config, load_config
from dialer.store.db import Store, open_store
from dialer.store.models import JobKind
from recording.archive import Archive, RetentionPolicy, verify
from recording.service import archive_pending, collect_finished, retention_run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, help="TOML config file")
    sub = parser.add_subparsers(dest="recordings_command", required=True, metavar="ACTION")
    collect = sub.add_parser(
        "collect", help="queue an archive job for each finished call's recording"
    )
    archive = sub.add_parser(
        "archive", help="collect, then run the archive jobs that are due ([recordings] workers)"
    )
    archive.add_argument("--workers", type=int, help="worker threads (default: from the config)")
    check = sub.add_parser(
        "verify", help="check every archived file and the manifest's chain (non-zero on findings)"
    )
    check.add_argument("--expect-head", help="the manifest head hash anchored elsewhere")
    check.add_argument("--archive-dir", type=Path, help="the archive root (default: the config's)")
    retention = sub.add_parser("retention", help="delete the recordings whose keeping is over")
    process = sub.add_parser(
        "process",
        help="collect, archive, then measure, transcribe, index and QA-check each new recording",
    )
    process.add_argument("--engine", choices=("pocketsphinx", "vosk"), default="pocketsphinx")
    process.add_argument("--model", help="model directory (vosk: required, or $DIALER_VOSK_MODEL)")
    process.add_argument(
        "--rules", default="us-collections", help="QA rule set: a preset name or a TOML path"
    )
    process.add_argument("--max", type=int, help="at most this many recordings this run")
    for p in (collect, archive, check, retention, process):
        p.add_argument("--json", action="store_true", help="print one JSON object")
        # Accepted after the action too; SUPPRESS keeps an absent one from hiding the outer one.
        p.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="TOML config file")


def _now() -> datetime:
    return datetime.now(UTC)


def _print(args: argparse.Namespace, obj: dict[str, Any], lines: list[str]) -> None:
    if args.json:
        print(json.dumps(obj, ensure_ascii=False))
    else:
        for line in lines:
            print(line)


def _archive(config: Config) -> Archive:
    return Archive(config.recordings.archive_root(config.data_dir))


def _retention(config: Config) -> RetentionPolicy:
    return RetentionPolicy(
        config.recordings.default_retention_days, dict(config.recordings.retention_days)
    )


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.recordings_command == "verify":
        return _verify(args, config)
    store = open_store(config.effective_database_url)
    try:
        if args.recordings_command == "collect":
            found = collect_finished(store, _now())
            _print(
                args,
                {"recordings": found.recordings, "jobs": found.jobs},
                [f"{found.recordings} finished recordings found, {found.jobs} archive jobs queued"],
            )
            return 0
        if args.recordings_command == "process":
            return _process(args, config, store)
        if args.recordings_command == "archive":
            found = collect_finished(store, _now())
            workers = args.workers or config.recordings.workers
            run_ = archive_pending(
                store,
                _archive(config),
                _retention(config),
                now=_now,
                workers=workers,
                worker_prefix=config.node_id,
            )
            archived, failed, retry = (run_.count(r) for r in ("archived", "failed", "retry"))
            lines = [
                f"{found.recordings} new recordings queued; {run_.jobs} jobs run: "
                f"{archived} archived, {failed} failed, {retry} to retry later"
            ]
            lines += [
                f"recording {o.recording_id} (attempt {o.attempt_id}): {o.result}: {o.detail}"
                for o in run_.outcomes
                if o.result in ("failed", "retry")
            ]
            _print(
                args,
                {
                    "queued": found.recordings,
                    "jobs": run_.jobs,
                    "archived": archived,
                    "failed": failed,
                    "retry": retry,
                    "outcomes": [o.__dict__ for o in run_.outcomes],
                },
                lines,
            )
            return 1 if failed else 0
        result = retention_run(store, _archive(config), _retention(config), _now())
        lines = [
            f"{len(result.deleted)} recordings deleted, {result.extended} kept longer, "
            f"{len(result.errors)} errors"
        ]
        lines += [f"deleted: {d.path} (attempt {d.attempt_id})" for d in result.deleted]
        lines += [f"error: {e}" for e in result.errors]
        _print(
            args,
            {
                "deleted": [d.__dict__ for d in result.deleted],
                "extended": result.extended,
                "errors": result.errors,
            },
            lines,
        )
        return 1 if result.errors else 0
    finally:
        store.close()


def _verify(args: argparse.Namespace, config: Config) -> int:
    root = args.archive_dir or config.recordings.archive_root(config.data_dir)
    report = verify(root, args.expect_head)
    summary = (
        f"{root}: {report.entries} manifest entries, {report.files} files, "
        f"head {report.head}: {'ok' if report.ok else f'{len(report.findings)} findings'}"
    )
    _print(
        args,
        {
            "ok": report.ok,
            "root": str(root),
            "entries": report.entries,
            "files": report.files,
            "head": report.head,
            "findings": [f.as_dict() for f in report.findings],
        },
        [str(f) for f in report.findings] + [summary],
    )
    return 0 if report.ok else 1


def _process(args: argparse.Namespace, config: Config, store: Store) -> int:
    from tqdm import tqdm

    from asr.engines import EngineSpec, build_recognizer
    from recording.pipeline import process_pending
    from recording.qa import load_rules

    rules = load_rules(args.rules)
    recognizer = build_recognizer(EngineSpec(engine=args.engine, model=args.model))
    found = collect_finished(store, _now())
    archived = archive_pending(
        store,
        _archive(config),
        _retention(config),
        now=_now,
        workers=config.recordings.workers,
        worker_prefix=config.node_id,
        then=(JobKind.TRANSCRIBE,),
    )
    with tqdm(desc="transcribing", unit="call", disable=args.json) as bar:
        run_ = process_pending(
            store,
            _archive(config),
            recognizer,
            rules,
            now=_now,
            max_jobs=args.max,
            on_done=lambda _done: bar.update(1),
        )
    audio = sum(d.audio_s for d in run_.done)
    speech = sum(d.speech_s for d in run_.done)
    flagged = [d for d in run_.done if d.qa.flags]
    lines = [
        f"{found.recordings} new recordings, {archived.count('archived')} archived; "
        f"{len(run_.done)} transcribed ({audio:.0f} s of audio, {speech:.0f} s of it speech "
        f"sent to {args.engine}), {len(flagged)} with QA flags, {len(run_.failed)} failed"
    ]
    lines += [f"recording {rid}: {why}" for rid, why in run_.failed]
    _print(
        args,
        {
            "collected": found.recordings,
            "archived": archived.count("archived"),
            "transcribed": len(run_.done),
            "audio_s": round(audio, 1),
            "speech_s": round(speech, 1),
            "flagged": [
                {"attempt_id": d.attempt_id, "score": d.qa.score, "flags": len(d.qa.flags)}
                for d in flagged
            ],
            "failed": [{"recording_id": r, "error": w} for r, w in run_.failed],
        },
        lines,
    )
    return 1 if run_.failed else 0
