"""A supervisor changes pacing while the campaign runs; the live dialer obeys on its next tick."""

from __future__ import annotations

import asyncio
from pathlib import Path

from dialer.cli import main
from dialer.store import campaigns
from pacing.service import make_pacer
from tests.test_engine import _rig, _sim


async def test_changed_target_and_pause_take_effect_within_one_tick(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    rig = await _rig(tmp_path, url, [_sim()], debtors=60)
    config_file = tmp_path / "dialer.toml"
    config_file.write_text(f'database_url = "{url}"\n', encoding="utf-8")
    engine = rig.engine
    tick = min(0.25, max(0.02, 1.0 / engine.scale))
    stop = asyncio.Event()
    try:
        async with asyncio.timeout(60):
            task = asyncio.create_task(engine.run(stop))
            while engine.stats.originates_sent < 5:
                await asyncio.sleep(0.01)
            assert engine.pacer.settings.target_abandon_rate == 0.03
            # The supervisor's command, exactly as typed at a shell.
            assert (
                main(
                    [
                        "campaign",
                        "set",
                        "t",
                        "--target-abandon",
                        "0.015",
                        "--pause",
                        "--config",
                        str(config_file),
                    ]
                )
                == 0
            )
            await asyncio.sleep(tick * 2)
            assert engine.pacer.settings.target_abandon_rate == 0.015
            assert engine.pacer.settings.paused
            paused_at = engine.stats.originates_sent
            await asyncio.sleep(tick * 10)
            assert engine.stats.originates_sent == paused_at, "dialled while paused"
            assert main(["campaign", "set", "t", "--resume", "--config", str(config_file)]) == 0
            await task
    finally:
        rig.store.close()
        await rig.sim.close()
    assert engine.stats.originates_sent > paused_at
    assert campaigns.pacing_overrides(rig.store, engine.campaign_id).revision == 2


async def test_pacing_statistics_survive_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    rig = await _rig(tmp_path, url, [_sim()], debtors=15)
    try:
        async with asyncio.timeout(60):
            await rig.engine.run(asyncio.Event())
        saved = campaigns.load_pacing_snapshot(rig.store, rig.engine.campaign_id)
    finally:
        rig.store.close()
        await rig.sim.close()
    assert saved is not None
    cold = make_pacer("progressive")
    restored = make_pacer("progressive")
    restored.restore(saved)
    # The resumed campaign knows every call of the first run and its talk times.
    attempts = rig.engine.stats.ended
    assert attempts > 0
    assert restored.statistics.outcomes == attempts
    assert restored.statistics.talk.total > 0
    assert cold.statistics.outcomes == 0
