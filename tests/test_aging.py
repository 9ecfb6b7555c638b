"""Debts grow older by themselves: the nightly ageing moves every unpaid debt's days past due
on to today, once per day however often it runs, never for a settled debt, and a new file
states the figure afresh; the strategy run ages first, so a debt crosses into a stricter
strategy on the day it should. On SQLite and PostgreSQL."""

from __future__ import annotations

import csv
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from dialer.cases.aging import age_debts
from dialer.importer import COLUMNS, import_csv
from dialer.store import attempts as repo
from dialer.store.db import Store
from dialer.store.models import Case, Debt, DebtStatus
from tests.test_desk import T0, TENANT, _row

DAY0 = T0.date()


@pytest.fixture
def store(migrated_store: Store) -> Store:
    return migrated_store


def _import(store: Store, folder: Path, dpd: dict[str, int], at: datetime = T0) -> None:
    path = folder / f"book-{at.date()}.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.DictWriter(fh, COLUMNS)
        out.writeheader()
        for n, (debt, days) in enumerate(dpd.items()):
            row = _row(f"P{n}", f"Debtor {n}", debt, "100.00", f"+1212555{n:04d}")
            row["days_past_due"] = str(days)
            out.writerow(row)
    report = import_csv(store, path, TENANT, now=at)
    assert report.rejected == 0, report.errors


def _dpd(store: Store) -> dict[str, int]:
    with store.begin() as conn:
        rows = conn.execute(sa.select(Debt.external_id, Debt.days_past_due)).all()
    return {r[0]: int(r[1]) for r in rows}


def _age(store: Store, today: date) -> int:
    return age_debts(store, repo.ensure_tenant(store, TENANT), today).aged


def test_an_unpaid_debt_is_a_day_further_past_due_each_night_and_never_twice(
    store: Store, tmp_path: Path
) -> None:
    _import(store, tmp_path, {"A": 10, "B": 200})
    assert _age(store, DAY0) == 0  # imported today: already today's figure
    assert _age(store, DAY0 + timedelta(days=1)) == 2
    assert _dpd(store) == {"A": 11, "B": 201}
    assert _age(store, DAY0 + timedelta(days=1)) == 0  # the same night again
    assert _dpd(store) == {"A": 11, "B": 201}
    # Three nights missed (a holiday weekend): the next run catches up in one go.
    report = age_debts(store, repo.ensure_tenant(store, TENANT), DAY0 + timedelta(days=4))
    assert (report.aged, report.days) == (2, 3)
    assert _dpd(store) == {"A": 14, "B": 204}
    # A run for an earlier day never turns the calendar back.
    assert _age(store, DAY0 + timedelta(days=2)) == 0
    assert _dpd(store) == {"A": 14, "B": 204}


def test_a_settled_debt_stops_ageing_and_a_disputed_one_does_not(
    store: Store, tmp_path: Path
) -> None:
    _import(store, tmp_path, {"A": 10, "B": 10, "C": 10})
    with store.begin() as conn:
        for debt, status in (("A", DebtStatus.SETTLED), ("B", DebtStatus.DISPUTED)):
            conn.execute(
                sa.update(Debt).where(Debt.external_id == debt).values(status=status.value)
            )
    _age(store, DAY0 + timedelta(days=5))
    assert _dpd(store) == {"A": 10, "B": 15, "C": 15}


def test_a_new_file_states_days_past_due_afresh_and_ageing_goes_on_from_it(
    store: Store, tmp_path: Path
) -> None:
    _import(store, tmp_path, {"A": 10, "B": 40})
    _age(store, DAY0 + timedelta(days=3))
    # The creditor's next file, a week on: A was brought current to 2 days, B is not in it.
    _import(store, tmp_path, {"A": 2}, at=T0 + timedelta(days=7))
    assert _dpd(store) == {"A": 2, "B": 43}
    _age(store, DAY0 + timedelta(days=8))
    assert _dpd(store) == {"A": 3, "B": 48}


def test_the_strategy_run_ages_first_so_a_debt_crosses_into_a_stricter_strategy(
    store: Store,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from dialer.cli import main

    # 115 days past due on import; the rules put >= 120 on pre_legal.
    _import(store, tmp_path, {"A": 115})
    rules = tmp_path / "strategies.toml"
    rules.write_text(
        'default = "early"\n'
        '[[selection]]\nstrategy = "pre_legal"\nwhen = { days_past_due_min = 120 }\n'
        '[strategies.early]\ntitle = "Early"\nsteps = [{ kind = "call", campaign = "a" }]\n'
        '[strategies.pre_legal]\ntitle = "Pre-legal"\n'
        'steps = [{ kind = "call", campaign = "b" }]\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("DATABASE_URL", store.engine.url.render_as_string(False))
    monkeypatch.delenv("DIALER_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    later = (DAY0 + timedelta(days=6)).isoformat()
    argv = ["strategy", "run", "--tenant", TENANT, "--date", later, "--strategies", str(rules)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"ageing: 1 unpaid debts moved on to {later} (up to 6 days)" in out
    assert _dpd(store) == {"A": 121}
    with store.begin() as conn:
        assert conn.execute(sa.select(Case.strategy)).scalar() == "pre_legal"
