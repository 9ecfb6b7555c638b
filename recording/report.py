"""What became of a run's recordings: recorded, archived, verified, transcribed, searchable,
flagged; and, for simulated calls, each scripted violation flagged or missed."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from dialer.store.db import Store
from dialer.store.models import (
    QaFlag,
    QaFlagKind,
    Recording,
    RecordingStatus,
    Transcript,
    TranscriptSegment,
)
from recording.archive import Archive
from recording.script_text import load_truth, truth_path
from recording.search import search

# The flag kind that catches each of the simulator's scripted violations.
CAUGHT_BY: dict[str, QaFlagKind] = {
    "threat": QaFlagKind.FORBIDDEN,
    "insult": QaFlagKind.FORBIDDEN,
    "impersonation": QaFlagKind.FORBIDDEN,
    "third_party_disclosure": QaFlagKind.FORBIDDEN,
    "missing_disclosure": QaFlagKind.MISSING,
}
_CJK = re.compile(r"[\u3400-\u9fff]+")
_WORD = re.compile(r"[A-Za-z']+")


@dataclass(frozen=True)
class Missed:
    attempt_id: int
    violation: str


@dataclass
class PipelineReport:
    recorded: int = 0  # recordings collected from finished calls
    archived: int = 0
    failed: int = 0  # recordings that could not be archived (corrupt, missing)
    verified: bool = False  # `dialer recordings verify` would pass
    manifest_entries: int = 0
    findings: int = 0
    transcribed: int = 0  # calls with a stored transcript
    searchable: int = 0  # transcribed calls that a search for their own words finds
    flagged: int = 0  # calls with QA flags
    by_language: dict[str, int] = field(default_factory=dict)  # transcribed calls
    scripted_violations: int = 0  # simulated calls in which a scripted violation was said
    violations_flagged: int = 0
    missed: list[Missed] = field(default_factory=list)
    not_found: list[int] = field(default_factory=list)  # transcribed but not found by search
    examples: dict[str, str] = field(default_factory=dict)  # language -> a query that finds calls

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _probe(language: str, text: str) -> str | None:
    """A query that should find the call a segment belongs to: a few of its own words."""
    if language.startswith("zh"):
        runs = _CJK.findall(text)
        run = max(runs, key=len, default="")
        return run[:4] if len(run) >= 2 else None
    words = _WORD.findall(text)
    if len(words) < 2:
        return words[0] if words and len(words[0]) > 3 else None
    return '"' + " ".join(words[:3]) + '"'


def pipeline_report(store: Store, tenant_id: int, archive: Archive) -> PipelineReport:
    """Counts over the tenant's recordings; searches each transcribed call by its own words."""
    report = PipelineReport()
    with store.session() as session:
        rows = session.execute(
            select(Recording.status, func.count())
            .where(Recording.tenant_id == tenant_id)
            .group_by(Recording.status)
        ).all()
        counts = {str(s): int(n) for s, n in rows}
        sources = dict(
            session.execute(
                select(Recording.attempt_id, Recording.source_path).where(
                    Recording.tenant_id == tenant_id
                )
            ).all()
        )
        longest = session.execute(
            select(Transcript.attempt_id, Transcript.language, TranscriptSegment.text)
            .join(TranscriptSegment, TranscriptSegment.transcript_id == Transcript.id)
            .where(Transcript.tenant_id == tenant_id)
            .order_by(Transcript.attempt_id, func.length(TranscriptSegment.text).desc())
        ).all()
        flags: dict[int, set[str]] = {}
        for attempt_id, kind in session.execute(
            select(QaFlag.attempt_id, QaFlag.kind).where(QaFlag.tenant_id == tenant_id)
        ):
            flags.setdefault(int(attempt_id), set()).add(str(kind))
    report.recorded = sum(counts.values())
    report.archived = counts.get(RecordingStatus.ARCHIVED.value, 0)
    report.failed = counts.get(RecordingStatus.FAILED.value, 0)
    checked = archive.verify()
    report.verified, report.manifest_entries = checked.ok, checked.entries
    report.findings = len(checked.findings)
    report.flagged = len(flags)
    probes: dict[int, tuple[str, str | None]] = {}
    for attempt_id, language, text in longest:
        if attempt_id not in probes:  # the call's longest segment comes first
            probes[int(attempt_id)] = (str(language), _probe(str(language), str(text)))
    report.transcribed = len(probes)
    for attempt_id, (language, probe) in probes.items():
        report.by_language[language] = report.by_language.get(language, 0) + 1
        found = probe is not None and any(
            h.attempt_id == attempt_id for h in search(store, tenant_id, probe, limit=1000)
        )
        if found and probe is not None:
            report.searchable += 1
            report.examples.setdefault(language, probe)
        else:
            report.not_found.append(attempt_id)
    for attempt_id, source in sources.items():
        sidecar = truth_path(Path(source))
        if not sidecar.exists():
            continue
        try:
            said = load_truth(sidecar).get("violations") or []
        except ValueError:
            continue
        # What was said: a violation scripted past the call's end never happened.
        violation = next((v.get("rule") for v in said if isinstance(v, dict)), None)
        if not violation:
            continue
        report.scripted_violations += 1
        want = CAUGHT_BY.get(str(violation), QaFlagKind.FORBIDDEN)
        if want.value in flags.get(int(attempt_id), set()):
            report.violations_flagged += 1
        else:
            report.missed.append(Missed(int(attempt_id), str(violation)))
    return report


def report_lines(report: PipelineReport, search_hint: str) -> list[str]:
    """The report for people; `search_hint`: how to run a search on this data."""
    languages = ", ".join(f"{n} {lang}" for lang, n in sorted(report.by_language.items()))
    lines = [
        f"recordings: {report.recorded} recorded, {report.archived} archived"
        + (f", {report.failed} failed" if report.failed else ""),
        f"evidence manifest: {report.manifest_entries} entries, verify "
        + ("clean" if report.verified else f"{report.findings} findings"),
        f"transcribed: {report.transcribed} calls ({languages or 'none'}), "
        f"{report.searchable} found by searching their own words",
        f"QA: {report.flagged} calls flagged; scripted violations {report.scripted_violations}, "
        f"flagged {report.violations_flagged}, missed {len(report.missed)}",
    ]
    lines += [f"  missed: call {m.attempt_id} ({m.violation})" for m in report.missed]
    for language, probe in sorted(report.examples.items()):
        lines.append(f"search ({language}): {search_hint} {_shell_quote(probe)}")
    return lines


def _shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"
