"""Segments on SQLite and PostgreSQL: a saved filter selects exactly the cases its keys say, a
bad filter is refused naming the key, and a campaign whose call list is loaded from a segment
dials exactly the debtors of those cases, through the real engine and the Asterisk simulator."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa

from dialer.cases import assignment_service
from dialer.cases import segments as seg
from dialer.cases.config_files import ConfigFileError
from dialer.cases.errors import CaseError
from dialer.cases.models import Actor
from dialer.cli import main
from dialer.store import attempts as repo
from dialer.store.db import Store
from dialer.store.models import CallAttempt, Case, Debtor
from tests.test_assignment import NOW, _debtor, _import, _rules, _staff, _tenant
from tests.test_desk import TENANT
from tests.test_engine import _rig, _sim

MANAGER = Actor.user("mei")


@pytest.fixture
def store(migrated_store: Store) -> Store:
    return migrated_store


def _world(store: Store, tmp_path: Path) -> None:
    """Seven debtors, one case each, placed by rules; D6 and D7 queued by a strategy's call
    step for campaign spring (as dialer/cases/strategy_run.py records it on the case)."""
    _import(
        store,
        tmp_path,
        [
            _debtor("D1", days_past_due="10", balance="100.00"),
            _debtor("D2", days_past_due="45", balance="900.00", product="card"),
            _debtor("D3", days_past_due="95", balance="3000.00", product="auto"),
            _debtor("D4", days_past_due="200", balance="12000.00", risk_score="900"),
            _debtor("D5", country="CN", region="Beijing", phone="+8613800138005"),
            _debtor("D6", region="CA", city="Los Angeles", postal_code="90001"),
            _debtor("D7", days_past_due="60"),
        ],
    )
    _staff(store, ("a1", "early", "junior", 10, []), ("b1", "late", "senior", 10, []))
    assignment_service.run_assignment(
        store,
        _tenant(store),
        _rules(
            {"name": "late", "when": {"days_past_due_min": 90}, "team": "late"},
            {"name": "early", "when": {"days_past_due_max": 30}, "team": "early"},
        ),
        NOW,
    )
    with store.begin() as conn:
        conn.execute(
            sa.update(Case)
            .where(Case.debtor_id.in_(sa.select(Debtor.id).where(Debtor.external_id.in_(["D6", "D7"]))))
            .values(
                strategy="gentle",
                strategy_step=0,
                queued_campaign="spring",
                queued_step=0,
                queued_since=date(2026, 5, 4),
            )
        )  # fmt: skip


def _selected(store: Store, **keys: object) -> list[str]:
    f = seg.filter_from_mapping(keys, "test")
    with store.begin() as conn:
        chosen = seg.segment_cases(_tenant(store), f).subquery()
        return sorted(
            conn.execute(
                sa.select(Debtor.external_id).join(chosen, chosen.c.debtor_id == Debtor.id)
            ).scalars()
        )


def test_each_filter_key_selects_its_worked_example(store: Store, tmp_path: Path) -> None:
    _world(store, tmp_path)
    assert _selected(store) == [f"D{i}" for i in range(1, 8)]
    assert _selected(store, days_past_due_min=46, days_past_due_max=90) == ["D7"]
    assert _selected(store, days_past_due_min=31, days_past_due_max=45) == ["D2", "D5", "D6"]
    assert _selected(store, balance_min=1000) == ["D3", "D4"]
    assert _selected(store, balance_max=100) == ["D1"]
    assert _selected(store, product=["card", "auto"]) == ["D2", "D3"]
    assert _selected(store, region=["CA"]) == ["D6"]
    assert _selected(store, language=["zh-CN"]) == ["D5"]
    assert len(_selected(store, language=["en"])) == 6
    assert _selected(store, team=["late"]) == ["D3", "D4"]
    assert _selected(store, collector=["a1"]) == ["D1"]
    assert _selected(store, unassigned=False) == ["D1", "D3", "D4"]
    assert _selected(store, status=["new"], unassigned=True) == ["D2", "D5", "D6", "D7"]
    assert _selected(store, strategy=["gentle"], strategy_step=[0]) == ["D6", "D7"]
    assert _selected(store, queued_for="spring") == ["D6", "D7"]
    assert _selected(store, queued_for="spring", region=["CA"]) == ["D6"]
    assert _selected(store, status=["closed"]) == []


def test_a_bad_filter_is_refused_naming_each_key(store: Store) -> None:
    with pytest.raises(ConfigFileError) as raised:
        seg.save_segment(
            store,
            _tenant(store),
            "bad",
            {"days_past_due_min": 90, "days_past_due_max": 30, "colour": "red", "status": ["x"]},
            MANAGER,
            NOW,
        )
    message = str(raised.value)
    assert message.startswith("segment bad: ")
    assert "colour: Extra inputs are not permitted" in message
    assert "status[0]: Input should be 'new'" in message
    assert seg.list_segments(store, _tenant(store)) == []


def test_a_saved_segment_shows_its_count_and_a_sample(store: Store, tmp_path: Path) -> None:
    _world(store, tmp_path)
    tenant = _tenant(store)
    saved = seg.save_segment(
        store, tenant, "queued-spring", {"queued_for": "spring"}, MANAGER, NOW, description="x"
    )
    assert (saved.name, saved.filter, saved.created_by) == (
        "queued-spring",
        {"queued_for": "spring"},
        "user:mei",
    )
    shown = seg.preview(store, tenant, seg.filter_from_mapping(saved.filter, "x"), sample=1)
    assert shown.count == 2
    [first] = shown.sample
    assert first.debtor_external_id == "D6"
    assert [s.name for s in seg.list_segments(store, tenant)] == ["queued-spring"]


def _debtors_of(store: Store, candidates: list[repo.DialCandidate]) -> list[str]:
    ids = {c.debtor_id for c in candidates}
    with store.begin() as conn:
        return sorted(
            conn.execute(sa.select(Debtor.external_id).where(Debtor.id.in_(ids))).scalars()
        )


def test_a_campaign_loaded_from_a_segment_offers_only_its_debtors_to_the_hopper(
    store: Store, tmp_path: Path
) -> None:
    _world(store, tmp_path)
    tenant = _tenant(store)
    spring = repo.ensure_campaign(store, tenant, "spring", "predictive")
    other = repo.ensure_campaign(store, tenant, "other", "predictive")
    seg.save_segment(store, tenant, "queued-spring", {"queued_for": "spring"}, MANAGER, NOW)
    assert seg.load_campaign_list(store, tenant, "spring", "queued-spring", MANAGER, NOW) == 2
    assert _debtors_of(store, repo.next_candidates(store, spring, 100)) == ["D6", "D7"]
    # A campaign with no segment dials the whole portfolio, as before.
    assert len(_debtors_of(store, repo.next_candidates(store, other, 100))) == 7
    # The next night's strategy run queues D1 too; the refresh puts it on the list.
    with store.begin() as conn:
        conn.execute(
            sa.update(Case)
            .where(Case.debtor_id == sa.select(Debtor.id).where(Debtor.external_id == "D1").scalar_subquery())
            .values(queued_campaign="spring")
        )  # fmt: skip
    assert seg.refresh_campaign_lists(store, tenant, MANAGER, NOW) == {"spring": 3}
    assert _debtors_of(store, repo.next_candidates(store, spring, 100)) == ["D1", "D6", "D7"]
    # A segment selecting nobody leaves the campaign nobody to dial (not everybody).
    seg.save_segment(store, tenant, "nobody", {"status": ["closed"]}, MANAGER, NOW)
    assert seg.load_campaign_list(store, tenant, "spring", "nobody", MANAGER, NOW) == 0
    assert repo.next_candidates(store, spring, 100) == []
    seg.detach_campaign(store, tenant, "spring")
    assert len(repo.next_candidates(store, spring, 100)) == 7
    with pytest.raises(CaseError, match="no segment 'ghost'"):
        seg.load_campaign_list(store, tenant, "spring", "ghost", MANAGER, NOW)


def test_dialer_segments_commands_add_show_and_load(
    store: Store,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _world(store, tmp_path)
    repo.ensure_campaign(store, _tenant(store), "spring", "predictive")
    monkeypatch.setenv("DATABASE_URL", store.engine.url.render_as_string(False))
    base = ["--tenant", TENANT]
    assert main(["segments", "add", "late", "--filter", '{"team": ["late"]}', *base]) == 0
    assert main(["segments", "show", "late", *base]) == 0
    out = capsys.readouterr().out
    assert "2 cases" in out and "D3" in out
    assert main(["segments", "load", "spring", "late", *base]) == 0
    assert "spring: 2 cases on its call list from segment late" in capsys.readouterr().out
    assert main(["segments", "add", "bad", "--filter", '{"dpd": 3}', *base]) == 2
    assert "dpd: Extra inputs are not permitted" in capsys.readouterr().err


async def test_the_engine_dials_exactly_the_debtors_of_the_segment_it_was_loaded_from(
    tmp_path: Path, database_url: str
) -> None:
    rig = await _rig(tmp_path, database_url, [_sim()], debtors=30)
    try:
        store = rig.store
        tenant = repo.ensure_tenant(store, "default")
        # The ten largest balances: a segment by balance the sample portfolio splits cleanly.
        with store.begin() as conn:
            balances = sorted(
                conn.execute(
                    sa.text("SELECT sum(balance) FROM debts GROUP BY debtor_id")
                ).scalars(),
                reverse=True,
            )
        floor = float(balances[9])
        seg.save_segment(store, tenant, "top", {"balance_min": floor}, MANAGER, NOW)
        loaded = seg.load_campaign_list(store, tenant, "t", "top", MANAGER, NOW)
        assert loaded >= 10
        with store.begin() as conn:
            listed = set(conn.execute(sa.text("SELECT debtor_id FROM campaign_list")).scalars())
        async with asyncio.timeout(90):
            await rig.engine.run(asyncio.Event())
        with store.begin() as conn:
            dialled = set(conn.execute(sa.select(CallAttempt.debtor_id).distinct()).scalars())
            dialable = set(
                conn.execute(
                    sa.text(
                        "SELECT DISTINCT p.debtor_id FROM phones p WHERE p.consent"
                        " AND NOT p.do_not_call AND EXISTS (SELECT 1 FROM debts d WHERE"
                        " d.debtor_id = p.debtor_id AND d.status = 'open' AND d.balance > 0)"
                    )
                ).scalars()
            )
        assert dialled == listed & dialable
        assert dialled, "the campaign dialled nobody"
        assert dialable - listed, "the segment left out nobody: the test proves nothing"
    finally:
        rig.store.close()
        await rig.sim.close()
