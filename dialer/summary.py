"""The end-of-campaign summary printed by `dialer demo` and `dialer run` (table or one JSON line).

A summary tells what this run did (the attempts it placed, their outcomes, its abandonment)
apart from the campaign's totals over every run, so that running a finished campaign again
says "0 placed" instead of repeating what earlier runs did.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from typing import TextIO

from dialer.calls.models import SUMMARY_OUTCOMES, Outcome
from dialer.engine import CampaignEngine, Snapshot
from dialer.store import attempts as repo
from dialer.store.db import Store


@dataclass(frozen=True)
class RunStart:
    """Where a run begins among the attempt rows: every attempt this node writes from now on
    gets a larger id than `last_attempt_id` (ids only grow), so the run's own attempts are told
    apart from earlier runs' (including those of a killed run that this one adopts or closes)."""

    campaign_id: int
    node_id: str
    last_attempt_id: int


@dataclass(frozen=True)
class AttemptCounts:
    """Attempts and what became of them, counted from the attempt rows."""

    attempts: int
    answered: int  # outcome `answered`: a live person picked up
    connected: int  # reached an agent
    abandoned: int
    abandon_rate: float  # abandoned / live answers
    outcomes: dict[str, int]  # the SUMMARY_OUTCOMES, 0 when none
    unknown: int  # attempts whose outcome could not be learned (crash, lost events)


@dataclass(frozen=True)
class CampaignTotals(AttemptCounts):
    """The campaign over every run (and every node), as stored."""

    # From the stored connect and hang-up times, i.e. on the dialer's wall clock (the demo's is
    # simulated): unlike this run's `talk_minutes`, not multiplied by a `time_scale`.
    talk_minutes: float


@dataclass(frozen=True)
class CampaignSummary:
    """What this run did; the campaign's totals over every run are under `campaign_totals`.

    The top-level figures are this run's alone, so a run of a campaign whose list is already
    exhausted reports 0 attempts; calls of an earlier (killed) run that this one closed or
    finished count in `campaign_totals` only."""

    campaign: str
    attempts: int  # placed by this run
    answered: int
    connected: int
    abandoned: int
    abandon_rate: float  # abandoned / live answers, of this run
    outcomes: dict[str, int]
    unknown: int
    agent_occupancy: float  # talk time / logged-in time
    talk_minutes: float  # in simulated minutes when a time scale is set
    duration_s: float  # wall-clock seconds of the run
    originate_errors: int
    denied_by_compliance: int
    campaign_totals: CampaignTotals

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def mark_run_start(store: Store, campaign_id: int, node_id: str) -> RunStart:
    """Call before the engine writes its first attempt: what `summarize` counts from."""
    return RunStart(campaign_id, node_id, repo.last_attempt_id(store))


def _abandon_rate(abandoned: int, answered: int) -> float:
    return round(abandoned / answered, 4) if answered else 0.0


def _counts(
    attempts: int, connected: int, abandoned: int, by_outcome: dict[str, int]
) -> AttemptCounts:
    answered = by_outcome.get(Outcome.ANSWERED.value, 0)
    return AttemptCounts(
        attempts=attempts,
        answered=answered,
        connected=connected,
        abandoned=abandoned,
        abandon_rate=_abandon_rate(abandoned, answered),
        outcomes={o.value: by_outcome.get(o.value, 0) for o in SUMMARY_OUTCOMES},
        unknown=by_outcome.get(Outcome.UNKNOWN.value, 0),
    )


def run_counts(store: Store, start: RunStart) -> AttemptCounts:
    """The attempts of the run that began at `start`: this node's, in this campaign, since."""
    totals = repo.campaign_totals(
        store, start.campaign_id, node_id=start.node_id, after_attempt_id=start.last_attempt_id
    )
    return _counts(totals.attempts, totals.connected, totals.abandoned, dict(totals.outcomes))


def _campaign_totals(store: Store, campaign_id: int) -> CampaignTotals:
    totals = repo.campaign_totals(store, campaign_id)
    counts = _counts(totals.attempts, totals.connected, totals.abandoned, dict(totals.outcomes))
    return CampaignTotals(**asdict(counts), talk_minutes=round(totals.talk_seconds / 60, 2))


def summarize(engine: CampaignEngine, campaign_name: str, start: RunStart) -> CampaignSummary:
    """This run's figures (attempts written since `start`) and the campaign's totals."""
    run = run_counts(engine.store, start)
    return CampaignSummary(
        campaign=campaign_name,
        attempts=run.attempts,
        answered=run.answered,
        connected=run.connected,
        abandoned=run.abandoned,
        abandon_rate=run.abandon_rate,
        outcomes=run.outcomes,
        unknown=run.unknown,
        agent_occupancy=round(engine.agents.occupancy(engine.finished_at), 4),
        talk_minutes=round(engine.stats.talk_seconds / 60, 2),
        duration_s=round(engine.finished_at - engine.started_at, 2),
        originate_errors=engine.stats.originate_errors,
        denied_by_compliance=engine.stats.denied_by_gate,
        campaign_totals=_campaign_totals(engine.store, engine.campaign_id),
    )


def _abandoned(abandoned: int, rate: float) -> str:
    return f"{abandoned} ({rate:.1%})"


def print_summary(summary: CampaignSummary, as_json: bool, out: TextIO = sys.stdout) -> None:
    if as_json:
        # The contract: exactly one JSON object, on the last line of stdout.
        print(summary.to_json(), file=out)
        return
    total = summary.campaign_totals
    # (label, this run, campaign total over every run; "" where only this run's is known)
    rows: list[tuple[str, object, object]] = [
        ("attempts placed", summary.attempts, total.attempts),
        ("answered (live)", summary.answered, total.answered),
        ("connected to agent", summary.connected, total.connected),
        (
            "abandoned (of live answers)",
            _abandoned(summary.abandoned, summary.abandon_rate),
            _abandoned(total.abandoned, total.abandon_rate),
        ),
        *(
            (f"  {name}", count, total.outcomes.get(name, 0))
            for name, count in summary.outcomes.items()
        ),
        ("unknown outcome", summary.unknown, total.unknown),
        ("talk minutes", summary.talk_minutes, total.talk_minutes),
        ("agent occupancy", f"{summary.agent_occupancy:.1%}", ""),
        ("duration", f"{summary.duration_s:.1f} s", ""),
        ("originate errors", summary.originate_errors, ""),
        ("denied by compliance", summary.denied_by_compliance, ""),
    ]
    head = ("campaign " + summary.campaign, "this run", "campaign total")
    cells = [(label, str(run), str(all_runs)) for label, run, all_runs in rows]
    widths = [max(len(row[i]) for row in [head, *cells]) for i in range(3)]
    rule = "-" * (sum(widths) + 4)
    print(rule, file=out)
    print(f"{head[0]:<{widths[0]}}  {head[1]:>{widths[1]}}  {head[2]:>{widths[2]}}", file=out)
    print(rule, file=out)
    for label, run, all_runs in cells:
        line = f"{label:<{widths[0]}}  {run:>{widths[1]}}  {all_runs:>{widths[2]}}"
        print(line.rstrip(), file=out)
    print(rule, file=out)


def progress_line(snap: Snapshot, err: TextIO = sys.stderr) -> None:
    """Live figures of this run (`attempts`: placed by this run so far)."""
    line = (
        f"attempts {snap.attempts:5d}  ringing {snap.ringing:3d}  answered {snap.answered_waiting:3d}  "
        f"connected {snap.connected:3d}  agents ready/busy/wrap {snap.agents_ready}/{snap.agents_busy}/"
        f"{snap.agents_wrap_up}  ended {snap.ended:5d}  servers up {snap.servers_up}"
    )
    if err.isatty():
        print(f"\r{line}", end="", file=err, flush=True)
    else:
        print(line, file=err, flush=True)
