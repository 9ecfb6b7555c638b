"""`dialer bench web` at a tiny size: it runs end to end and every page gets what it should."""

from __future__ import annotations

import pytest

from dialer.bench_web import Settings, measure


@pytest.mark.slow
def test_every_agent_gets_both_pops_and_every_supervisor_the_live_feed() -> None:
    report = measure(Settings(agents=5, supervisors=2, seconds=2.0, wave=3, debtors=40))
    assert report["agents_connected"] == 5
    # Each agent took one call read ahead and one cold, and each page got both pops.
    assert report["pop_prefetch_received"] == 5
    assert report["pop_cold_received"] == 5
    assert report["pop_prefetch_missing"] == report["pop_cold_missing"] == 0
    assert report["baseline_received"] == 5
    for name in ("baseline_ms", "pop_prefetch_ms", "pop_cold_ms", "pop_cold_server_ms"):
        for stat in ("p50", "p99", "max"):
            assert report[f"{name}_{stat}"] >= 0, name
    for key in (
        "pop_prefetch_p99_vs_baseline",
        "pop_cold_p99_vs_baseline",
        "pop_prefetch_p99_under_100_ms",
        "pop_size_bytes_mean",
        "server_idle_cores",
        "server_supervised_cores",
        "live_cpu_ms_per_message",
        "live_message_bytes_mean",
    ):
        assert key in report, key
    # Both supervisors' pages were fed by the app's loop during the window.
    assert report["supervisors_connected"] == 2
    assert report["live_messages_per_page_min"] >= 1
    assert report["live_messages_dropped"] == 0
