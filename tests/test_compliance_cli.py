"""`dialer compliance check|verify|replay`: the JSON contract users script against, and the audit."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from compliance_guard.audit import JsonlAudit, chain_hash
from compliance_guard.models import Flag, FlagScope, Outcome
from dialer.cli import main
from tests.compliance_cases.helpers import guard, ny, request


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = main(["compliance", *argv])
    out = capsys.readouterr().out
    return code, json.loads(out) if "--json" in argv else out


def write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_check_prints_the_documented_json_object_as_a_subprocess() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "dialer.cli", "compliance", "check", "--ruleset", "us-regf",
         "--phone", "+12125551234", "--at", "2026-03-02T22:30:00-05:00", "--json"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out) == {"allowed", "reasons", "next_allowed_at", "zones"}
    assert out["allowed"] is False
    assert out["reasons"][0]["rule"] == "regf-convenient-hours"
    assert {"rule", "message"} <= set(out["reasons"][0])
    assert out["next_allowed_at"] == "2026-03-03T13:00:00+00:00"
    assert out["zones"] == ["America/New_York"]


def test_check_allowed_has_no_reasons_and_exit_zero(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_cli(capsys, "check", "--ruleset", "us-regf", "--phone", "+12125551234",
                        "--at", "2026-03-02T10:00:00-05:00", "--json")  # fmt: skip
    assert code == 0
    assert out == {"allowed": True, "reasons": [], "next_allowed_at": None,
                   "zones": ["America/New_York"]}  # fmt: skip


def test_check_history_seven_attempts_deny_the_eighth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    history = [
        {"at": f"2026-03-0{2 + i}T10:00:00-05:00", "debt_ids": ["D-1"],
         "phone": "+12125551234" if i % 2 else "+12125550000", "kind": "attempt",
         "outcome": "no_answer"}
        for i in range(7)
    ]  # fmt: skip
    path = write(tmp_path / "history.json", history)
    argv = ["check", "--ruleset", "us-regf", "--phone", "+12125551234", "--debt-id", "D-1",
            "--at", "2026-03-08T12:00:00-04:00", "--history", str(path), "--json"]  # fmt: skip
    code, out = run_cli(capsys, *argv)
    assert code == 1
    assert [r["rule"] for r in out["reasons"]] == ["regf-7-in-7"]
    assert out["next_allowed_at"] == "2026-03-09T12:00:00+00:00"
    # the same history about another debt says nothing
    argv[argv.index("D-1")] = "D-2"
    assert run_cli(capsys, *argv)[1]["allowed"] is True


def test_check_history_inbound_and_conversation_over_two_debts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path / "h.json",
        [
            {"at": "2026-03-02T10:00:00-05:00", "debt_ids": ["A", "B"], "phone": "+12125551234",
             "kind": "attempt", "outcome": "conversation"},
            {"at": "2026-03-03T10:00:00-05:00", "debt_ids": ["C"], "phone": "+12125551234",
             "kind": "inbound", "outcome": "conversation"},
        ],
    )  # fmt: skip
    for debt, allowed in (("A", False), ("B", False), ("C", False), ("D", True)):
        code, out = run_cli(capsys, "check", "--ruleset", "us-regf", "--phone", "+12125551234",
                            "--debt-id", debt, "--at", "2026-03-05T10:00:00-05:00",
                            "--history", str(path), "--json")  # fmt: skip
        assert out["allowed"] is allowed, debt
        assert code == (0 if allowed else 1)


def test_check_cn_third_party_and_explicit_zone(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_cli(capsys, "check", "--ruleset", "cn", "--phone", "+8613800138000",
                        "--at", "2026-03-02T10:00:00+08:00", "--third-party", "--json")  # fmt: skip
    assert code == 1
    assert out["reasons"][0]["rule"] == "third-party" and out["next_allowed_at"] is None
    code, out = run_cli(capsys, "check", "--ruleset", "cn", "--phone", "+8613800138000",
                        "--timezone", "Asia/Urumqi", "--at", "2026-03-02T08:30:00+08:00",
                        "--json")  # fmt: skip
    assert code == 1  # 08:30 in Beijing is 06:30 in Urumqi: the stricter reading wins
    assert out["zones"] == ["Asia/Shanghai", "Asia/Urumqi"] and out["allowed"] is False


@pytest.mark.parametrize(
    ("history", "where"),
    [
        ([{"at": "2026-03-02T10:00:00", "debt_ids": ["A"], "phone": "+1"}], "[0].at"),
        ([{"at": "2026-03-02T10:00:00Z", "debt_ids": [], "phone": "+1"}], "[0].debt_ids"),
        ([{}, {"at": "2026-03-02T10:00:00Z", "debt_ids": ["A"], "phone": "+1",
               "outcome": "angry"}], "[0].at"),
        ([{"at": "2026-03-02T10:00:00Z", "debt_ids": ["A"], "phone": "+1",
           "outcome": "angry"}], "[0].outcome"),
        ({"at": "x"}, "expected a JSON list"),
    ],
)  # fmt: skip
def test_check_bad_history_names_the_entry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], history: Any, where: str
) -> None:
    path = write(tmp_path / "bad.json", history)
    code = main(["compliance", "check", "--ruleset", "us-regf", "--phone", "+12125551234",
                 "--at", "2026-03-02T10:00:00-05:00", "--history", str(path), "--json"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert str(path) in err and where in err


def _audited_day(log: Path) -> None:
    g = guard("us-regf", audit=JsonlAudit(log))
    start = ny(2026, 3, 2, 7, 0)
    for i in range(12):
        d = g.check_and_reserve(request(), start + timedelta(hours=i))
        if d.allowed:
            g.record_outcome(d.reservation_id or "", Outcome.NO_ANSWER, start + timedelta(hours=i))
    g.set_flag("bank", Flag.DISPUTE, FlagScope.DEBT, "d1", start + timedelta(hours=12))
    g.check_and_reserve(request(), start + timedelta(hours=12, minutes=1))
    g.check_and_reserve(request(debt_ids=("d2",), facts_as_of=start - timedelta(days=3)), start)


def test_verify_and_replay_accept_an_untouched_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "audit.jsonl"
    _audited_day(log)
    code, out = run_cli(capsys, "verify", str(log), "--json")
    assert code == 0 and out["intact"] and out["entries"] > 12
    code, out = run_cli(capsys, "replay", str(log), "--json")
    assert code == 0 and out == {"decisions": 14, "mismatches": []}


def test_verify_detects_an_edited_entry(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "audit.jsonl"
    _audited_day(log)
    lines = log.read_text().splitlines()
    entry = json.loads(lines[0])
    assert entry["body"]["decision"]["allowed"] is False  # 07:00 is too early
    entry["body"]["decision"]["allowed"] = True
    lines[0] = json.dumps(entry)
    log.write_text("\n".join(lines) + "\n")
    code, out = run_cli(capsys, "verify", str(log), "--json")
    assert code == 1 and out["problems"][0]["line"] == 1
    assert "edited" in out["problems"][0]["message"]


def test_verify_detects_a_deleted_entry(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "audit.jsonl"
    _audited_day(log)
    lines = log.read_text().splitlines()
    del lines[4]
    log.write_text("\n".join(lines) + "\n")
    code, out = run_cli(capsys, "verify", str(log), "--json")
    assert code == 1 and out["problems"][0]["line"] == 5
    assert "deleted" in out["problems"][0]["message"]


def test_verify_with_anchored_head_detects_a_lost_tail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "audit.jsonl"
    _audited_day(log)
    head = run_cli(capsys, "verify", str(log), "--json")[1]["head"]
    log.write_text("\n".join(log.read_text().splitlines()[:-1]) + "\n")
    code, out = run_cli(capsys, "verify", str(log), "--expect-head", head, "--json")
    assert code == 1 and "head" in out["problems"][0]["message"]


def test_replay_catches_a_rewritten_chain_whose_decision_contradicts_the_rules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "audit.jsonl"
    _audited_day(log)
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    entries[0]["body"]["decision"]["allowed"] = True  # 07:00 call claimed as allowed
    entries[0]["body"]["decision"]["reasons"] = []
    prev = "0" * 64
    for e in entries:  # a forger who recomputes every hash passes `verify`...
        e["prev"] = prev
        e["hash"] = prev = chain_hash(prev, e["seq"], e["body"])
    log.write_text("".join(json.dumps(e) + "\n" for e in entries))
    assert run_cli(capsys, "verify", str(log), "--json")[0] == 0
    code, out = run_cli(capsys, "replay", str(log), "--json")  # ...but not `replay`
    assert code == 1 and [m["seq"] for m in out["mismatches"]] == [0]


def test_reopened_log_continues_the_chain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "audit.jsonl"
    _audited_day(log)
    _audited_day(log)
    code, out = run_cli(capsys, "verify", str(log), "--json")
    lines = len(log.read_text().splitlines())
    assert code == 0 and out["entries"] == lines and lines % 2 == 0
