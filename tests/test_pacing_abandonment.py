"""Abandonment accounting: live answers left unconnected, over 30 days, 24 hours and today."""

from __future__ import annotations

import pytest

from pacing import AbandonmentLedger, AnswerKind, SnapshotError

DAY = 86_400.0
MIDNIGHT = 20_000 * DAY  # a UTC midnight


def answers(ledger: AbandonmentLedger, at: float, live: int, abandoned: int) -> None:
    for i in range(live):
        ledger.record(at + i * 0.01, AnswerKind.LIVE, abandoned=i < abandoned)


def test_rate_is_abandoned_over_live_answers_and_machines_are_not_counted() -> None:
    ledger = AbandonmentLedger()
    answers(ledger, MIDNIGHT + 10 * 3600, live=100, abandoned=3)
    for i in range(400):
        ledger.record(MIDNIGHT + 10 * 3600 + i, AnswerKind.MACHINE, abandoned=False)
        ledger.record(MIDNIGHT + 10 * 3600 + i, AnswerKind.NONE, abandoned=False)
    today = ledger.today(MIDNIGHT + 11 * 3600)
    assert (today.live, today.abandoned) == (100, 3)
    assert today.rate == pytest.approx(0.03)


def test_uk_option_counts_estimated_amd_false_positives_as_abandoned_live_answers() -> None:
    ledger = AbandonmentLedger(amd_false_positive_rate=0.05)
    answers(ledger, MIDNIGHT + 3600, live=100, abandoned=1)
    for i in range(200):
        ledger.record(MIDNIGHT + 3600 + i, AnswerKind.MACHINE, abandoned=False)
    today = ledger.today(MIDNIGHT + 7200)
    # 200 machine verdicts × 5% wrong = 10 people hung up on by the AMD
    assert today.live == pytest.approx(110)
    assert today.abandoned == pytest.approx(11)


def test_rolling_24_hours_forgets_yesterday_morning_but_30_days_remembers() -> None:
    ledger = AbandonmentLedger()
    answers(ledger, MIDNIGHT - 20 * 3600, live=50, abandoned=5)  # yesterday 04:00
    answers(ledger, MIDNIGHT + 9 * 3600, live=50, abandoned=0)  # today 09:00
    report = ledger.report(MIDNIGHT + 10 * 3600)
    assert (report.rolling_24h.live, report.rolling_24h.abandoned) == (50, 0)
    assert (report.rolling_30d.live, report.rolling_30d.abandoned) == (100, 5)
    assert report.worst_rate == pytest.approx(0.05)


def test_rolling_30_days_drops_calls_older_than_30_days() -> None:
    ledger = AbandonmentLedger()
    answers(ledger, MIDNIGHT - 31 * DAY, live=10, abandoned=10)
    answers(ledger, MIDNIGHT - 29 * DAY, live=10, abandoned=1)
    window = ledger.report(MIDNIGHT).rolling_30d
    assert (window.live, window.abandoned) == (10, 1)


def test_today_starts_at_local_midnight() -> None:
    paris_summer = AbandonmentLedger(utc_offset_s=2 * 3600)
    # 23:30 UTC is already tomorrow in Paris: today there holds only that call.
    answers(paris_summer, MIDNIGHT - 3 * 3600, live=20, abandoned=2)  # 23:00 Paris
    answers(paris_summer, MIDNIGHT - 1800, live=10, abandoned=0)  # 01:30 Paris, next day
    today = paris_summer.today(MIDNIGHT)
    assert (today.live, today.abandoned) == (10, 0)
    assert paris_summer.report(MIDNIGHT).rolling_24h.live == 30


def test_late_report_counts_in_the_latest_minute_and_totals_only_grow() -> None:
    ledger = AbandonmentLedger()
    ledger.record(MIDNIGHT + 600, AnswerKind.LIVE, abandoned=False)
    ledger.record(MIDNIGHT + 500, AnswerKind.LIVE, abandoned=True)  # arrived late
    assert (ledger.live_total, ledger.abandoned_total) == (2, 1)
    assert ledger.window(MIDNIGHT + 600, 60).abandoned == 1


def test_ledger_round_trips_through_json_and_refuses_garbage() -> None:
    ledger = AbandonmentLedger()
    answers(ledger, MIDNIGHT + 3600, live=40, abandoned=2)
    copy = AbandonmentLedger.from_json(ledger.to_json())
    assert copy.report(MIDNIGHT + 7200) == ledger.report(MIDNIGHT + 7200)
    with pytest.raises(SnapshotError, match="not increasing"):
        AbandonmentLedger.from_json(
            '{"minutes":[5,4],"live":[1,2],"abandoned":[0,0],"machine":[0,0]}'
        )
    with pytest.raises(SnapshotError, match="not JSON"):
        AbandonmentLedger.from_json("{")
