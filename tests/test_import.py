"""Portfolio CSV import: good rows go in once, bad rows are named by line, nothing duplicates."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from dialer.cli import main
from dialer.errors import ImportRowError
from dialer.importer import COLUMNS, ImportReport, import_csv
from dialer.portfolio import write_sample_portfolio
from dialer.store.attempts import ensure_tenant
from dialer.store.db import Store, open_store
from dialer.store.models import Address, Debt, Debtor, Phone, Tenant

SAMPLE = Path(__file__).parent / "data" / "portfolio_sample.csv"
HEADER = ",".join(COLUMNS)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    opened = open_store(database_url)
    yield opened
    opened.close()


def counts(store: Store) -> dict[str, int]:
    with store.session() as session:
        return {
            model.__tablename__: session.scalar(sa.select(sa.func.count()).select_from(model)) or 0
            for model in (Debtor, Debt, Phone, Address)
        }


def phones_of(store: Store, external_id: str) -> list[str]:
    with store.session() as session:
        return list(
            session.scalars(
                sa.select(Phone.e164)
                .join(Debtor, Debtor.id == Phone.debtor_id)
                .where(Debtor.external_id == external_id)
                .order_by(Phone.e164)
            )
        )


def row(**cells: str) -> str:
    values = {name: "" for name in COLUMNS}
    values.update(cells)
    return ",".join(values[name] for name in COLUMNS)


def debtor_row(debtor_id: str, phone: str = "2125550100", **more: str) -> str:
    cells = {
        "debtor_id": debtor_id,
        "name": f"Name {debtor_id}",
        "debt_id": f"acc-{debtor_id}",
        "principal": "100.00",
        "balance": "80.00",
        "currency": "USD",
        "days_past_due": "30",
        "phone": phone,
        "consent": "yes",
    }
    cells.update(more)
    return row(**cells)


def write(tmp_path: Path, *lines: str, name: str = "portfolio.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join((HEADER, *lines)) + "\n", encoding="utf-8")
    return path


def test_the_sample_file_imports_every_debtor_debt_and_phone(store: Store) -> None:
    report = import_csv(store, SAMPLE, "acme", "US", False)
    assert (report.rows_read, report.imported, report.rejected) == (9, 9, 0)
    assert counts(store) == {"debtors": 6, "debts": 7, "phones": 9, "addresses": 6}
    assert phones_of(store, "C-1001") == ["+12125550142", "+12125550143", "+16465550150"]
    with store.session() as session:
        debt = session.scalars(sa.select(Debt).where(Debt.external_id == "ACC-5003")).one()
        assert (debt.balance, debt.currency, debt.days_past_due) == (
            Decimal("16250.75"),
            "CNY",
            210,
        )
        address = session.scalars(sa.select(Address).order_by(Address.id)).first()
        assert address is not None and address.line1 == "12 Maple Dr, Apt 4"


def test_chinese_names_and_addresses_come_back_exactly_as_written(store: Store) -> None:
    import_csv(store, SAMPLE, "acme", "US", False)
    with store.session() as session:
        names = {
            r.external_id: r.full_name
            for r in session.execute(sa.select(Debtor.external_id, Debtor.full_name))
        }
        cities = set(session.scalars(sa.select(Address.city)))
    assert names["C-1002"] == "王秀英"
    assert names["C-1003"] == "欧阳娜娜"
    assert names["C-1001"] == "María José Núñez"
    assert "北京" in cities


def test_importing_the_same_file_again_changes_nothing(store: Store) -> None:
    first = import_csv(store, SAMPLE, "acme", "US", False)
    before = counts(store)
    second = import_csv(store, SAMPLE, "acme", "US", False)
    assert counts(store) == before
    assert (second.imported, second.updated, second.unchanged) == (0, 0, first.rows_read)
    assert second.debtors_created == second.debts_created == second.phones_created == 0


def test_a_changed_balance_updates_the_debt_instead_of_adding_one(
    store: Store, tmp_path: Path
) -> None:
    import_csv(store, write(tmp_path, debtor_row("d1", balance="80.00")), "acme", "US", False)
    report = import_csv(
        store, write(tmp_path, debtor_row("d1", balance="55.10"), name="b.csv"), "acme", "US", False
    )
    assert (report.imported, report.updated) == (0, 1)
    with store.session() as session:
        assert list(session.scalars(sa.select(Debt.balance))) == [Decimal("55.10")]


def test_broken_rows_are_reported_by_line_and_the_good_rows_still_go_in(
    store: Store, tmp_path: Path
) -> None:
    lines = [
        debtor_row("ok1"),  # line 2
        debtor_row("badphone", phone="12345"),  # line 3
        debtor_row("badamount", balance='"12,50"'),  # line 4
        debtor_row("", name="Nobody"),  # line 5: missing id
        debtor_row("late", days_past_due="-3"),  # line 6
        debtor_row("ok2", phone="3125550101"),  # line 7
    ]
    path = tmp_path / "broken.csv"
    body = "\n".join((HEADER, *lines)).encode("utf-8") + b"\n"
    # line 8 is Latin-1, not UTF-8: it alone must be rejected
    body += debtor_row("legacy", name="Fran\xe7ois").encode("latin-1") + b"\n"
    body += debtor_row("ok3", phone="2065550102").encode("utf-8") + b"\n"  # line 9
    path.write_bytes(body)

    report = import_csv(store, path, "acme", "US", False)

    reasons = {e.line: e.reason for e in report.errors}
    assert sorted(reasons) == [3, 4, 5, 6, 8]
    assert "phone" in reasons[3]
    assert "balance" in reasons[4]
    assert "debtor_id" in reasons[5]
    assert "days_past_due" in reasons[6] and "negative" in reasons[6]
    assert "UTF-8" in reasons[8]
    assert (report.rows_read, report.imported, report.rejected) == (8, 3, 5)
    with store.session() as session:
        stored = sorted(session.scalars(sa.select(Debtor.external_id)))
    assert stored == ["ok1", "ok2", "ok3"]


def test_rejection_reasons_do_not_print_the_whole_phone_number(
    store: Store, tmp_path: Path
) -> None:
    report = import_csv(
        store, write(tmp_path, debtor_row("x", phone="212555019")), "acme", "US", False
    )
    assert report.rejected == 1
    assert "212555019" not in report.errors[0].reason


@pytest.mark.parametrize(
    ("written", "country", "default_region", "stored"),
    [
        ("(212) 555-0123", "", "US", "+12125550123"),
        ("212.555.0123", "US", "US", "+12125550123"),
        ("+1 212 555 0123", "CN", "US", "+12125550123"),
        ("1-212-555-0123", "", "US", "+12125550123"),
        ("138 0013 8000", "CN", "US", "+8613800138000"),
        ("020 7946 0018", "", "GB", "+442079460018"),
    ],
)
def test_phone_numbers_are_stored_in_e164(
    store: Store, tmp_path: Path, written: str, country: str, default_region: str, stored: str
) -> None:
    path = write(tmp_path, debtor_row("d1", phone=f'"{written}"', country=country))
    report = import_csv(store, path, "acme", default_region, False)
    assert report.rejected == 0, report.errors
    assert phones_of(store, "d1") == [stored]


def test_the_same_number_written_two_ways_is_one_phone(store: Store, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        debtor_row("d1", phone="(212) 555-0123"),
        debtor_row("d1", phone="+12125550123"),
    )
    report = import_csv(store, path, "acme", "US", False)
    assert report.rejected == 0
    assert phones_of(store, "d1") == ["+12125550123"]


def test_a_byte_order_mark_and_windows_line_ends_are_accepted(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    text = "\r\n".join((HEADER, debtor_row("d1", name="李娜"))) + "\r\n"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    report = import_csv(store, path, "acme", "US", False)
    assert (report.imported, report.rejected) == (1, 0)
    with store.session() as session:
        assert session.scalars(sa.select(Debtor.full_name)).one() == "李娜"


def test_a_file_missing_a_column_is_refused_as_a_whole(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "short.csv"
    path.write_text("debtor_id,name,phone\nd1,Ann,2125550100\n", encoding="utf-8")
    with pytest.raises(ImportRowError, match="header lacks column"):
        import_csv(store, path, "acme", "US", False)
    assert counts(store)["debtors"] == 0


def test_do_not_call_set_by_an_agent_survives_a_reimport(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, debtor_row("d1"))
    import_csv(store, path, "acme", "US", False)
    with store.session() as session:
        session.execute(sa.update(Phone).values(do_not_call=True))
    report = import_csv(store, path, "acme", "US", False)
    assert report.unchanged == 1
    with store.session() as session:
        assert session.scalars(sa.select(Phone.do_not_call)).one() is True


def test_tenants_keep_separate_debtors_with_the_same_ids(store: Store) -> None:
    import_csv(store, SAMPLE, "bank-a", "US", False)
    second = import_csv(store, SAMPLE, "bank-b", "US", False)
    assert second.debtors_created == 6
    assert counts(store)["debtors"] == 12


def test_a_debt_already_owned_by_another_debtor_is_rejected(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, debtor_row("d1", debt_id="shared"), debtor_row("d2", debt_id="shared"))
    report = import_csv(store, path, "acme", "US", False)
    assert [(e.line, "belongs to debtor 'd1'" in e.reason) for e in report.errors] == [(3, True)]


def _links(store: Store, tenant: str) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """Which debts and which phones each debtor of the tenant has, by external id and number."""
    with store.session() as session:
        tenant_debtors = (
            sa.select(Debtor.id, Debtor.external_id)
            .join(Tenant, Tenant.id == Debtor.tenant_id)
            .where(Tenant.name == tenant)
            .subquery()
        )
        debts = session.execute(
            sa.select(tenant_debtors.c.external_id, Debt.external_id).join(
                Debt, Debt.debtor_id == tenant_debtors.c.id
            )
        )
        phones = session.execute(
            sa.select(tenant_debtors.c.external_id, Phone.e164).join(
                Phone, Phone.debtor_id == tenant_debtors.c.id
            )
        )
        return {(a, b) for a, b in debts}, {(a, b) for a, b in phones}


def test_batches_of_any_size_link_every_debt_and_phone_to_the_same_debtor(
    store: Store, tmp_path: Path
) -> None:
    sample = tmp_path / "sample.csv"
    write_sample_portfolio(sample, 60, seed=3)
    small = import_csv(store, sample, "small-batches", "US", False, batch_rows=7)
    large = import_csv(store, sample, "one-batch", "US", False)
    assert small.rejected == large.rejected == 0
    assert (small.imported, small.debtors_created, small.phones_created) == (
        large.imported,
        large.debtors_created,
        large.phones_created,
    )
    small_debts, small_phones = _links(store, "small-batches")
    assert (small_debts, small_phones) == _links(store, "one-batch")
    assert len(small_debts) == small.debts_created
    assert len(small_phones) == small.phones_created


def test_rows_the_database_refuses_are_reported_and_the_rest_of_the_batch_goes_in(
    store: Store, database_url: str, tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        debtor_row("d1"),
        debtor_row("d2", phone="3125550101"),
        debtor_row("d3", phone="2065550102"),
    )
    tenant_id = ensure_tenant(store, "acme")
    rival = sa.create_engine(database_url)
    fired: list[bool] = []

    def rival_import_commits_first(
        conn: object, cursor: object, statement: str, *rest: object
    ) -> None:
        # Another import creates debtor d2 just before our batch writes its debtors.
        if not fired and statement.lstrip().upper().startswith("INSERT INTO DEBTORS"):
            fired.append(True)
            with rival.begin() as other:
                other.execute(
                    sa.insert(Debtor).values(
                        tenant_id=tenant_id,
                        external_id="d2",
                        full_name="Rival",
                        created_at=datetime.now(UTC),
                    )
                )

    sa.event.listen(store.engine, "before_cursor_execute", rival_import_commits_first)
    try:
        report = import_csv(store, path, "acme", "US", False)
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", rival_import_commits_first)
        rival.dispose()

    assert fired
    assert [(e.line, "database refused the row" in e.reason) for e in report.errors] == [(3, True)]
    assert (report.imported, report.rejected) == (2, 1)
    with store.session() as session:
        names = {d.external_id: d.full_name for d in session.scalars(sa.select(Debtor))}
    assert names == {"d1": "Name d1", "d2": "Rival", "d3": "Name d3"}
    assert phones_of(store, "d2") == []


def test_the_generated_portfolio_is_reproducible_and_imports_cleanly(
    store: Store, tmp_path: Path
) -> None:
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    write_sample_portfolio(first, 150, seed=42)
    write_sample_portfolio(second, 150, seed=42)
    assert first.read_bytes() == second.read_bytes()
    report = import_csv(store, first, "demo", "US", False)
    assert report.rejected == 0, report.errors[:3]
    assert report.debtors_created == 150
    assert 150 <= report.debts_created <= 300
    assert 150 <= report.phones_created <= 450
    with store.session() as session:
        names = list(session.scalars(sa.select(Debtor.full_name)))
    assert any("\u4e00" <= ch <= "\u9fff" for name in names for ch in name)  # some Chinese names
    assert any(name.isascii() for name in names)


def test_import_command_prints_one_json_summary(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert main(["import", str(SAMPLE), "--tenant", "acme", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["imported"] == 9 and summary["rejected"] == 0
    assert main(["import", str(SAMPLE), "--tenant", "acme"]) == 0
    assert "unchanged 9" in capsys.readouterr().out


def test_import_command_exits_1_and_lists_rejections(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    path = write(tmp_path, debtor_row("d1"), debtor_row("d2", currency="dollars"))
    assert main(["import", str(path)]) == 1
    assert "line 3: currency" in capsys.readouterr().out


def test_report_totals_add_up(store: Store) -> None:
    report: ImportReport = import_csv(store, SAMPLE, "acme", "US", False)
    assert report.imported + report.updated + report.unchanged + report.rejected == report.rows_read


def test_withdrawn_consent_in_a_newer_file_updates_the_phone_in_place(
    store: Store, tmp_path: Path
) -> None:
    import_csv(store, write(tmp_path, debtor_row("d1", consent="yes")), "acme", "US", False)
    newer = write(tmp_path, debtor_row("d1", consent="no"), name="newer.csv")
    report = import_csv(store, newer, "acme", "US", False)
    assert (report.imported, report.updated, report.phones_created) == (0, 1, 0)
    with store.session() as session:
        assert session.scalars(sa.select(Phone.consent)).all() == [False]


def test_an_empty_optional_cell_keeps_the_stored_value(store: Store, tmp_path: Path) -> None:
    first = write(tmp_path, debtor_row("d1", national_id="900-11-2222", timezone="America/Chicago"))
    import_csv(store, first, "acme", "US", False)
    report = import_csv(store, write(tmp_path, debtor_row("d1"), name="b.csv"), "acme", "US", False)
    assert report.unchanged == 1
    with store.session() as session:
        debtor = session.scalars(sa.select(Debtor)).one()
        assert (debtor.national_id, debtor.timezone) == ("900-11-2222", "America/Chicago")
