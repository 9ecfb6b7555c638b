"""The end-of-campaign summary printed by `dialer demo` and `dialer run` (table or one JSON line)."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from typing import TextIO

from dialer.calls.models import SUMMARY_OUTCOMES
from dialer.engine import CampaignEngine, Snapshot
from dialer.store import attempts as repo


@dataclass(frozen=True)
class CampaignSummary:
    campaign: str
    attempts: int
    answered: int
    connected: int
    abandoned: int
    abandon_rate: float  # abandoned / live answers
    outcomes: dict[str, int]
    unknown: int  # attempts whose outcome could not be learned (crash, lost events)
    agent_occupancy: float  # talk time / logged-in time
    talk_minutes: float  # in simulated minutes when a time scale is set
    duration_s: float  # wall-clock seconds of the run
    originate_errors: int
    denied_by_compliance: int

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def summarize(engine: CampaignEngine, campaign_name: str) -> CampaignSummary:
    totals = repo.campaign_totals(engine.store, engine.campaign_id)
    outcomes = {o.value: totals.outcomes.get(o.value, 0) for o in SUMMARY_OUTCOMES}
    return CampaignSummary(
        campaign=campaign_name,
        attempts=totals.attempts,
        answered=totals.answered,
        connected=totals.connected,
        abandoned=totals.abandoned,
        abandon_rate=round(totals.abandoned / totals.answered, 4) if totals.answered else 0.0,
        outcomes=outcomes,
        unknown=totals.outcomes.get("unknown", 0),
        agent_occupancy=round(engine.agents.occupancy(engine.finished_at), 4),
        talk_minutes=round(engine.stats.talk_seconds / 60, 2),
        duration_s=round(engine.finished_at - engine.started_at, 2),
        originate_errors=engine.stats.originate_errors,
        denied_by_compliance=engine.stats.denied_by_gate,
    )


def print_summary(summary: CampaignSummary, as_json: bool, out: TextIO = sys.stdout) -> None:
    if as_json:
        # The contract: exactly one JSON object, on the last line of stdout.
        print(summary.to_json(), file=out)
        return
    rows = [
        ("campaign", summary.campaign),
        ("attempts", summary.attempts),
        ("answered (live)", summary.answered),
        ("connected to agent", summary.connected),
        ("abandoned", f"{summary.abandoned} ({summary.abandon_rate:.1%} of live answers)"),
        *((f"  {name}", count) for name, count in summary.outcomes.items()),
        ("unknown outcome", summary.unknown),
        ("agent occupancy", f"{summary.agent_occupancy:.1%}"),
        ("talk minutes", summary.talk_minutes),
        ("duration", f"{summary.duration_s:.1f} s"),
        ("originate errors", summary.originate_errors),
        ("denied by compliance", summary.denied_by_compliance),
    ]
    width = max(len(k) for k, _ in rows)
    print("-" * (width + 20), file=out)
    for key, value in rows:
        print(f"{key:<{width}}  {value}", file=out)
    print("-" * (width + 20), file=out)


def progress_line(snap: Snapshot, err: TextIO = sys.stderr) -> None:
    line = (
        f"attempts {snap.attempts:5d}  ringing {snap.ringing:3d}  answered {snap.answered_waiting:3d}  "
        f"connected {snap.connected:3d}  agents ready/busy/wrap {snap.agents_ready}/{snap.agents_busy}/"
        f"{snap.agents_wrap_up}  ended {snap.ended:5d}  servers up {snap.servers_up}"
    )
    if err.isatty():
        print(f"\r{line}", end="", file=err, flush=True)
    else:
        print(line, file=err, flush=True)
