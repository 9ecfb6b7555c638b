"""The run summary: what this run did, apart from the campaign's totals over every run."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import io
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dialer.calls.models import SUMMARY_OUTCOMES
from dialer.config import AmiServerConfig, Config, Secret
from dialer.demo import demo_config
from dialer.gates import UnguardedGate
from dialer.importer import import_csv
from dialer.portfolio import write_sample_portfolio
from dialer.run import run_campaign
from dialer.store import attempts as repo
from dialer.store.db import Store, open_store
from dialer.summary import CampaignSummary, print_summary
from sim.asterisk import AsteriskSim
from tests.test_engine import SCALE, _sim

CAMPAIGN = "rerun"


@pytest.fixture(autouse=True)
def _unfreeze_gc() -> Iterator[None]:
    # run_campaign freezes what is loaded out of the collector's reach, as `dialer run` should;
    # within the test process, give it back.
    yield
    gc.unfreeze()


@pytest.fixture
async def sim() -> AsyncIterator[AsteriskSim]:
    server = _sim(seed=5)
    await server.start()
    yield server
    await server.close()


@pytest.fixture
def store(tmp_path: Path, database_url: str) -> Iterator[Store]:
    store = open_store(database_url)
    write_sample_portfolio(tmp_path / "portfolio.csv", debtors=12, seed=5)
    import_csv(store, tmp_path / "portfolio.csv", tenant="default")
    yield store
    store.close()


def _config(tmp_path: Path, sim: AsteriskSim) -> Config:
    config = demo_config(ami_port=sim.port, agents=3, data_dir=tmp_path, time_scale=SCALE)
    return dataclasses.replace(
        config,
        node_id="n1",
        ami=dataclasses.replace(
            config.ami,
            servers=(AmiServerConfig(name="sim", port=sim.port, secret=Secret("dialer")),),
        ),
        campaign=dataclasses.replace(config.campaign, name=CAMPAIGN, dial_mode="progressive"),
    )


async def _run(config: Config, store: Store) -> CampaignSummary:
    async with asyncio.timeout(90):
        return await run_campaign(
            config,
            store,
            campaign_name=CAMPAIGN,
            stop=asyncio.Event(),
            show_progress=False,
            gate=UnguardedGate(),
        )


def _table(summary: CampaignSummary) -> dict[str, list[str]]:
    out = io.StringIO()
    print_summary(summary, as_json=False, out=out)
    rows: dict[str, list[str]] = {}
    for line in out.getvalue().splitlines():
        label, _, rest = line.partition("  ")
        rows[label.strip()] = rest.split()
    return rows


async def test_a_rerun_of_a_finished_campaign_reports_nothing_placed_and_the_same_totals(
    tmp_path: Path, sim: AsteriskSim, store: Store
) -> None:
    config = _config(tmp_path, sim)
    first = await _run(config, store)
    assert first.attempts > 0
    assert sum(first.outcomes.values()) + first.unknown == first.attempts
    assert first.campaign_totals.attempts == first.attempts
    assert first.campaign_totals.outcomes == first.outcomes
    assert first.campaign_totals.abandoned == first.abandoned
    originates = sim.stats()["originates"]

    second = await _run(config, store)
    assert sim.stats()["originates"] == originates, "the list was exhausted: nobody is dialled"
    assert second.attempts == 0
    assert second.answered == second.connected == second.abandoned == second.unknown == 0
    assert second.abandon_rate == 0.0
    assert second.outcomes == {o.value: 0 for o in SUMMARY_OUTCOMES}
    assert second.talk_minutes == 0.0
    assert second.campaign_totals == first.campaign_totals

    # --json: this run's figures at the top level (the keys scripts read), the totals apart.
    doc = json.loads(second.to_json())
    assert doc["attempts"] == 0 and doc["outcomes"] == second.outcomes
    assert doc["campaign_totals"]["attempts"] == first.attempts
    assert doc["campaign_totals"]["outcomes"] == first.outcomes

    # The table: a column for this run, one for the campaign over every run.
    table = _table(second)
    assert table[f"campaign {CAMPAIGN}"] == ["this", "run", "campaign", "total"]
    assert table["attempts placed"] == ["0", str(first.attempts)]
    assert table["answered (live)"] == ["0", str(first.answered)]


async def test_attempts_a_killed_run_left_count_in_the_totals_not_in_this_run(
    tmp_path: Path, sim: AsteriskSim, store: Store
) -> None:
    """What `dialer run` does after a SIGKILL: the rows the dead run left in progress are closed
    by this run, but this run did not place them."""
    config = _config(tmp_path, sim)
    tenant_id = repo.ensure_tenant(store, config.campaign.tenant)
    campaign_id = repo.ensure_campaign(store, tenant_id, CAMPAIGN, "progressive")
    left = repo.next_candidates(store, campaign_id, 2)
    for candidate in left:
        repo.create_attempt(
            store,
            repo.NewAttempt(
                tenant_id=tenant_id,
                campaign_id=campaign_id,
                debtor_id=candidate.debtor_id,
                debt_id=candidate.debt_id,
                phone_id=candidate.phone_id,
                node_id=config.node_id,
                server="sim",
                uniqueid=f"dlr-n1-gone{candidate.phone_id}",
                dialed_at=datetime.now(UTC),
            ),
        )

    summary = await _run(config, store)
    assert summary.attempts == sim.stats()["originates"] > 0
    assert summary.campaign_totals.attempts == summary.attempts + len(left)
    # Asterisk no longer had their channels: closed as unknown, in the campaign's books only.
    assert summary.unknown == 0
    assert summary.campaign_totals.unknown == len(left)
    assert repo.attempts_in_progress(store) == []
