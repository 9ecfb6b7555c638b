"""The guard never allows by default: broken backend, missing rule set, unknown zone, stale data."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from compliance_guard.audit import MemoryAudit
from compliance_guard.errors import InvalidRequest, RuleSetError, RuleSetNotFound
from compliance_guard.rules import load_preset, load_ruleset, load_ruleset_file
from compliance_guard.service import Guard, RuleBook
from compliance_guard.store import MemoryStore
from compliance_guard.store_redis import RedisStore
from compliance_guard.store_sql import PG_DROP_RESERVE_FUNCTION, SqlStore, metadata
from tests.compliance_cases.helpers import guard, ny, request

NOON = ny(2026, 3, 2, 12, 0)


def test_redis_unreachable_denies_with_the_reason() -> None:
    store = RedisStore("redis://127.0.0.1:1/0", prefix="down:")  # nothing listens on port 1
    audit = MemoryAudit()
    d = guard("us-regf", store, audit=audit).check_and_reserve(request(), NOON)
    assert not d.allowed and d.reservation_id is None
    assert [r.rule for r in d.reasons] == ["backend-unavailable"]
    assert d.next_allowed_at is None
    assert audit.entries[-1]["body"]["failure"]  # the refusal is audited too


def test_database_unreachable_denies_with_the_reason() -> None:
    engine = sa.create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    d = guard("us-regf", SqlStore(engine)).check_and_reserve(request(), NOON)
    assert [r.rule for r in d.reasons] == ["backend-unavailable"]


def test_missing_ledger_tables_deny_instead_of_allowing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = SqlStore(f"sqlite:///{tmp_path / 'empty.db'}")
    d = guard("us-regf", store).check_and_reserve(request(), NOON)
    assert not d.allowed and d.reasons[0].rule == "backend-unavailable"


def test_campaign_without_rule_set_is_denied() -> None:
    rs = load_preset("us-regf")
    g = Guard(MemoryStore(), RuleBook({rs.name: rs}, by_tenant={"other-bank": rs.name}))
    d = g.check_and_reserve(request(), NOON)
    assert not d.allowed and d.reasons[0].rule == "ruleset-missing"
    assert d.next_allowed_at is None
    g2 = Guard(MemoryStore(), RuleBook({}, default="us-ma"))
    assert g2.check_and_reserve(request(), NOON).reasons[0].rule == "ruleset-missing"


def test_unknown_explicit_zone_is_denied_even_when_the_phone_zone_is_open() -> None:
    d = guard("us-regf").check_and_reserve(request(time_zones=("America/Nowhere",)), NOON)
    assert not d.allowed
    assert "America/Nowhere" in d.reasons[0].message and d.reasons[0].rule == "zone-unknown"


def test_stale_debtor_record_is_denied() -> None:
    g = guard("us-regf")
    fresh = request(facts_as_of=NOON - timedelta(hours=1))
    stale = request(facts_as_of=NOON - timedelta(days=2))
    assert g.check_and_reserve(fresh, NOON).allowed
    d = g.check_and_reserve(stale, NOON)
    assert not d.allowed and d.reasons[0].rule == "stale-data" and d.next_allowed_at is None


def test_naive_clock_and_malformed_requests_are_rejected_loudly() -> None:
    g = guard("us-regf")
    with pytest.raises(InvalidRequest, match="now"):
        g.check_and_reserve(request(), NOON.replace(tzinfo=None))
    with pytest.raises(InvalidRequest, match="debt_ids"):
        g.check_and_reserve(request(debt_ids=()), NOON)
    with pytest.raises(InvalidRequest, match="person_id"):
        g.check_and_reserve(request(person_id="a|b"), NOON)


def test_unknown_rule_set_name_is_an_error() -> None:
    with pytest.raises(RuleSetNotFound, match="us-tx"):
        load_ruleset("us-tx")


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('name = "x"\nversion = "1"\n[[caps]]\nid = "c"\ncitation = "c"\nscope = "debt"\n'
         "limit = 0\nwindow_days = 7\n", "caps[0].limit"),
        ('name = "x"\nversion = "1"\n[[caps]]\nid = "c"\ncitation = "c"\nscope = "galaxy"\n'
         "limit = 1\nwindow_days = 7\n", "caps[0].scope"),
        ('name = "x"\nversion = "1"\n[[windows]]\nid = "w"\ncitation = "c"\n'
         'hours = { mon = "25:00-26:00" }\n', "windows[0].hours.mon"),
        ('name = "x"\nversion = "1"\n[[windows]]\nid = "w"\ncitation = "c"\n'
         'hours = { mon = "21:00-08:00" }\n', "windows[0].hours.mon"),
        ('name = "x"\nversion = "1"\nunknown_zone = "fallback"\nfallback_zones = ["Mars/Base"]\n',
         "fallback_zones"),
        ('name = "x"\nversion = "1"\n[flags.be_nice]\nchannels = ["call"]\ncitation = "c"\n',
         "flags.be_nice"),
        ('name = "x"\nversion = "1"\ncolour = "red"\n', "colour"),
        ('version = "1"\n', "name"),
        ('name = "x"\nversion = "1"\nextends = "us-tx"\n', "extends"),
        ('name = "x"\nversion = "1"\n[[caps]]\nid = "c"\ncitation = "c"\nscope = "debt"\n'
         'limit = 1\nwindow_days = 7\ncounts = ["shouting"]\n', "caps[0].counts"),
    ],
)  # fmt: skip
def test_bad_custom_rule_set_names_the_file_and_the_key(tmp_path, toml: str, key: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "custom.toml"
    path.write_text(toml)
    with pytest.raises(RuleSetError) as err:
        load_ruleset_file(path)
    assert err.value.source == str(path)
    assert err.value.key == key
    assert str(path) in str(err.value) and key in str(err.value)


def test_custom_rule_set_extends_a_preset_and_tightens_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "strict.toml"
    path.write_text(
        'name = "strict"\nversion = "3"\nextends = "us-regf"\n'
        '[[windows]]\nid = "office-hours"\ncitation = "company policy"\n'
        'hours = { mon = "09:00-17:00", tue = "09:00-17:00" }\n'
        'holidays = { country = "US", hours = "" }\n'
    )
    rs = load_ruleset_file(path)
    g = guard(rs)
    assert g.check(request(), ny(2026, 3, 2, 10, 0)).allowed  # Monday
    d = g.check(request(), ny(2026, 3, 4, 10, 0))  # Wednesday: closed by the custom window
    assert [r.rule for r in d.reasons] == ["office-hours"]
    assert d.next_allowed_at == ny(2026, 3, 9, 9, 0)
    memorial_day = ny(2026, 5, 25, 10, 0)  # a Monday and a US holiday
    assert g.check(request(), memorial_day).reasons[0].rule == "office-hours"
    assert g.check(request(), memorial_day).next_allowed_at == ny(2026, 5, 26, 9, 0)
    assert {c.id for c in rs.caps} == {"regf-7-in-7"}  # inherited


@pytest.mark.postgres
def test_database_without_the_reserve_function_denies_and_says_to_upgrade(
    postgres_url: str,
) -> None:
    engine = sa.create_engine(postgres_url)
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql(PG_DROP_RESERVE_FUNCTION)  # a database left at migration 0003
    store = SqlStore(engine)
    try:
        d = guard("us-regf", store).check_and_reserve(request(), NOON)
        assert not d.allowed and d.reasons[0].rule == "backend-unavailable"
        assert "dialer db upgrade" in d.reasons[0].message
        assert store.ledger_keys() == []
    finally:
        engine.dispose()
