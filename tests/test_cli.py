"""The `dialer` command as a user types it."""

from __future__ import annotations

import json
import subprocess
import sys

import dialer
from dialer.cli import main


def test_version(capsys: object) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "dialer.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == f"dialer {dialer.__version__}"


def test_demo_json_reports_every_outcome_class_over_300_debtors() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dialer.cli",
            "demo",
            "--debtors",
            "300",
            "--agents",
            "10",
            "--time-scale",
            "300",
            "--json",
            # the recordings' side of the demo is tests/test_pipeline_demo.py's
            "--transcribe",
            "off",
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in (
        "attempts",
        "answered",
        "connected",
        "abandoned",
        "outcomes",
        "agent_occupancy",
        "duration_s",
    ):
        assert key in summary
    assert summary["attempts"] > 0 and summary["connected"] > 0
    outcomes = summary["outcomes"]
    assert set(outcomes) == {
        "answered",
        "busy",
        "no_answer",
        "congestion",
        "invalid_number",
        "machine",
        "failed",
    }
    assert all(count > 0 for count in outcomes.values()), outcomes
    assert sum(outcomes.values()) + summary["unknown"] == summary["attempts"]
    assert 0 < summary["agent_occupancy"] <= 1
    assert "attempts" in proc.stderr  # live progress went to stderr


def test_bad_demo_arguments_are_refused_with_a_message(capsys: object) -> None:
    assert main(["demo", "--agents", "0"]) == 2
