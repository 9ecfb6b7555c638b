"""The presets behave as the regulations say, on worked examples."""

from __future__ import annotations

from datetime import timedelta

from compliance_guard.models import Flag, FlagScope, Outcome, PhoneType
from tests.compliance_cases.helpers import (
    CN_MOBILE,
    NY_HOME,
    NY_MOBILE,
    NY_WORK,
    guard,
    ny,
    request,
    sh,
)

# Monday 2 March 2026; DST starts in the US on Sunday 8 March 2026.
MONDAY = (2026, 3, 2)


def _call(g, req, at, outcome=Outcome.NO_ANSWER):  # type: ignore[no-untyped-def]
    d = g.check_and_reserve(req, at)
    assert d.allowed, d.reasons
    assert d.reservation_id is not None
    g.record_outcome(d.reservation_id, outcome, at + timedelta(minutes=1))
    return d


# ---- Regulation F ----------------------------------------------------------------------------


def test_regf_eighth_call_in_seven_days_is_denied_until_day_one_leaves_the_window() -> None:
    g = guard("us-regf")
    for day in range(7):
        _call(g, request(), ny(2026, 3, 2 + day, 10, 0))
    denied = g.check_and_reserve(request(), ny(2026, 3, 8, 15, 0))
    assert not denied.allowed
    assert [r.rule for r in denied.reasons] == ["regf-7-in-7"]
    assert "7 of 7" in denied.reasons[0].message
    assert denied.reasons[0].citation == "12 CFR 1006.14(b)(2)(i)(A)"
    # Day 1 (Mon 2 March) leaves the 7-day period at local midnight of Mon 9 March; calling
    # hours open at 08:00 that day (EDT by then).
    assert denied.next_allowed_at == ny(2026, 3, 9, 8, 0)
    assert g.check_and_reserve(request(), ny(2026, 3, 9, 8, 0)).allowed


def test_regf_calls_to_different_numbers_of_the_same_person_add_up() -> None:
    g = guard("us-regf")
    phones = [NY_MOBILE] * 3 + [NY_HOME] * 2 + [NY_WORK] * 2
    for i, phone in enumerate(phones):
        _call(g, request(phone=phone), ny(2026, 3, 2, 9 + i, 0))
    assert not g.check_and_reserve(request(phone=NY_WORK), ny(2026, 3, 3, 9, 0)).allowed
    # The same person's other debt has its own seven.
    assert g.check_and_reserve(request(debt_ids=("d2",)), ny(2026, 3, 3, 9, 0)).allowed


def test_regf_calls_that_never_reach_the_network_do_not_count() -> None:
    g = guard("us-regf")
    for i in range(10):
        _call(g, request(), ny(2026, 3, 2, 9, i), Outcome.NETWORK_FAILURE)
    assert g.check_and_reserve(request(), ny(2026, 3, 2, 11, 0)).allowed


def test_regf_released_reservation_frees_its_place() -> None:
    g = guard("us-regf")
    held = [g.check_and_reserve(request(), ny(2026, 3, 2, 9, i)) for i in range(7)]
    assert all(d.allowed for d in held)
    assert not g.check_and_reserve(request(), ny(2026, 3, 2, 9, 30)).allowed
    assert g.release(held[0].reservation_id or "", ny(2026, 3, 2, 9, 31))
    assert g.check_and_reserve(request(), ny(2026, 3, 2, 9, 32)).allowed


def test_regf_conversation_day_is_day_one_of_the_seven_day_period() -> None:
    g = guard("us-regf")
    _call(g, request(), ny(2026, 3, 2, 10, 0), Outcome.CONVERSATION)
    for day in range(3, 9):  # Tuesday (day 2) to Sunday (day 7)
        d = g.check_and_reserve(request(), ny(2026, 3, day, 12, 0))
        assert not d.allowed
        assert d.reasons[0].rule == "regf-conversation-period"
        assert d.next_allowed_at == ny(2026, 3, 9, 8, 0)
    assert g.check_and_reserve(request(), ny(2026, 3, 9, 8, 0)).allowed


def test_regf_conversation_about_several_debts_blocks_each_of_them() -> None:
    g = guard("us-regf")
    _call(g, request(debt_ids=("d1", "d2")), ny(2026, 3, 2, 10, 0), Outcome.CONVERSATION)
    assert not g.check_and_reserve(request(debt_ids=("d1",)), ny(2026, 3, 4, 10, 0)).allowed
    assert not g.check_and_reserve(request(debt_ids=("d2",)), ny(2026, 3, 4, 10, 0)).allowed
    assert g.check_and_reserve(request(debt_ids=("d3",)), ny(2026, 3, 4, 10, 0)).allowed


def test_regf_wrong_party_conversation_does_not_start_a_period() -> None:
    g = guard("us-regf")
    _call(g, request(), ny(2026, 3, 2, 10, 0), Outcome.WRONG_PARTY)
    assert g.check_and_reserve(request(), ny(2026, 3, 2, 11, 0)).allowed


def test_regf_inbound_call_from_debtor_starts_the_period_without_counting_as_attempt() -> None:
    g = guard("us-regf")
    g.record_inbound("bank", "p1", ["d1"], ny(2026, 3, 2, 16, 0))
    d = g.check_and_reserve(request(), ny(2026, 3, 3, 10, 0))
    assert [r.rule for r in d.reasons] == ["regf-conversation-period"]
    assert g.check_and_reserve(request(debt_ids=("d2",)), ny(2026, 3, 3, 10, 0)).allowed


def test_regf_window_end_leaves_a_minute_to_ring() -> None:
    g = guard("us-regf")
    assert g.check(request(), ny(2026, 3, 2, 20, 59, 0)).allowed
    late = g.check(request(), ny(2026, 3, 2, 20, 59, 1))
    assert not late.allowed and late.reasons[0].rule == "regf-convenient-hours"
    assert late.next_allowed_at == ny(2026, 3, 3, 8, 0)
    assert not g.check(request(), ny(2026, 3, 2, 7, 59, 59)).allowed


def test_regf_area_code_spanning_two_zones_needs_the_window_open_in_both() -> None:
    g = guard("us-regf")
    idaho = request(phone="+12085551234")  # 208 covers Mountain and Pacific Idaho
    at = ny(2026, 3, 2, 10, 30)  # 08:30 in Boise, 07:30 in Los Angeles
    d = g.check(idaho, at)
    assert not d.allowed
    assert d.zones == ("America/Boise", "America/Los_Angeles")
    assert "America/Los_Angeles" in d.reasons[0].message
    assert d.next_allowed_at == ny(2026, 3, 2, 11, 0)


def test_regf_address_and_phone_zones_are_united() -> None:
    g = guard("us-regf")
    # New York mobile number, but the debtor lives in El Paso (ZIP 799, Texas: Central+Mountain).
    moved = request(postal_code="79901", country="US")
    d = g.check(moved, ny(2026, 3, 2, 9, 30))  # 07:30 in Denver
    assert not d.allowed
    assert set(d.zones) == {"America/New_York", "America/Chicago", "America/Denver"}


def test_regf_toll_free_number_has_no_zone_and_is_denied_by_default() -> None:
    g = guard("us-regf")
    d = g.check(request(phone="+18005551234"), ny(2026, 3, 2, 12, 0))
    assert not d.allowed
    assert d.zones == ()
    assert d.reasons[0].rule == "zone-undetermined"
    assert d.next_allowed_at is None
    assert g.check(
        request(phone="+18005551234", time_zones=("America/Chicago",)), ny(2026, 3, 2, 12, 0)
    ).allowed


def test_regf_offset_is_computed_at_the_dial_across_the_dst_change() -> None:
    g = guard("us-regf")
    from datetime import UTC, datetime

    # 12:30 UTC is 07:30 EST on Saturday 7 March but 08:30 EDT on Sunday 8 March.
    assert not g.check(request(), datetime(2026, 3, 7, 12, 30, tzinfo=UTC)).allowed
    assert g.check(request(), datetime(2026, 3, 8, 12, 30, tzinfo=UTC)).allowed


def test_debtor_preferences_not_before_noon_and_not_sundays() -> None:
    from datetime import time

    from compliance_guard.models import Preferences

    g = guard("us-regf")
    picky = request(preferences=Preferences(not_before=time(12, 0), no_weekdays=frozenset({6})))
    d = g.check(picky, ny(2026, 3, 7, 10, 0))  # Saturday morning
    assert [r.rule for r in d.reasons] == ["debtor-preference"]
    assert d.next_allowed_at == ny(2026, 3, 7, 12, 0)
    d = g.check(picky, ny(2026, 3, 7, 20, 0))  # Saturday evening: Sunday excluded
    assert d.allowed
    d = g.check(picky, ny(2026, 3, 8, 13, 0))  # Sunday
    assert not d.allowed and d.next_allowed_at == ny(2026, 3, 9, 12, 0)


def test_flag_denies_every_attempt_until_cleared_with_no_next_time() -> None:
    g = guard("us-regf")
    g.set_flag("bank", Flag.ATTORNEY_REPRESENTED, FlagScope.PERSON, "p1", ny(2026, 3, 2, 9, 0))
    d = g.check_and_reserve(request(), ny(2026, 3, 2, 10, 0))
    assert not d.allowed and d.next_allowed_at is None
    assert d.reasons[0].rule == "flag:attorney_represented"
    g.clear_flag("bank", Flag.ATTORNEY_REPRESENTED, FlagScope.PERSON, "p1", ny(2026, 3, 2, 11, 0))
    assert g.check_and_reserve(request(), ny(2026, 3, 2, 12, 0)).allowed


def test_sms_opt_out_blocks_texts_but_not_calls() -> None:
    from compliance_guard.models import Channel

    g = guard("us-regf")
    g.set_flag("bank", Flag.OPT_OUT_SMS, FlagScope.PHONE, NY_MOBILE, ny(2026, 3, 2, 9, 0))
    assert not g.check(request(channel=Channel.SMS), ny(2026, 3, 2, 10, 0)).allowed
    assert g.check(request(), ny(2026, 3, 2, 10, 0)).allowed


def test_dispute_on_one_debt_blocks_calls_about_that_debt_only() -> None:
    g = guard("us-regf")
    g.set_flag("bank", Flag.DISPUTE, FlagScope.DEBT, "d1", ny(2026, 3, 2, 9, 0))
    assert not g.check(request(debt_ids=("d1", "d2")), ny(2026, 3, 2, 10, 0)).allowed
    assert g.check(request(debt_ids=("d2",)), ny(2026, 3, 2, 10, 0)).allowed


# ---- Massachusetts ---------------------------------------------------------------------------


def test_ma_third_call_to_a_cell_in_seven_days_is_denied_even_unanswered() -> None:
    g = guard("us-ma")
    _call(g, request(), ny(2026, 3, 2, 10, 0), Outcome.NO_ANSWER)
    _call(g, request(phone=NY_HOME, phone_type=PhoneType.HOME), ny(2026, 3, 3, 10, 0))
    d = g.check_and_reserve(request(), ny(2026, 3, 4, 10, 0))
    assert [r.rule for r in d.reasons] == ["ma-2-in-7-personal"]
    assert d.reasons[0].citation == "940 CMR 7.04(1)(f)"
    assert d.next_allowed_at == ny(2026, 3, 9, 8, 0)


def test_ma_other_numbers_have_two_per_thirty_days() -> None:
    g = guard("us-ma")
    work = request(phone=NY_WORK, phone_type=PhoneType.WORK)
    _call(g, work, ny(2026, 3, 2, 10, 0))
    _call(g, work, ny(2026, 3, 10, 10, 0))
    d = g.check_and_reserve(work, ny(2026, 3, 20, 10, 0))
    assert [r.rule for r in d.reasons] == ["ma-2-in-30-other"]
    assert d.next_allowed_at == ny(2026, 4, 1, 8, 0)
    # calls to the cell phone have their own two per seven days
    assert g.check_and_reserve(request(), ny(2026, 3, 20, 10, 0)).allowed


def test_ma_keeps_the_federal_conversation_period() -> None:
    g = guard("us-ma")
    _call(g, request(), ny(2026, 3, 2, 10, 0), Outcome.CONVERSATION)
    d = g.check(request(), ny(2026, 3, 3, 10, 0))
    assert "regf-conversation-period" in [r.rule for r in d.reasons]


# ---- China ------------------------------------------------------------------------------------


def _cn(**kw):  # type: ignore[no-untyped-def]
    return request(**{"phone": CN_MOBILE, **kw})


def test_cn_fourth_connected_call_of_the_day_is_denied_across_agencies() -> None:
    from compliance_guard.store import MemoryStore

    shared = MemoryStore()
    agencies = [guard("cn", store=shared, prefix=name) for name in ("a", "b", "c")]
    _call(agencies[0], _cn(tenant="agency-a"), sh(2026, 3, 2, 9, 0), Outcome.CONVERSATION)
    _call(agencies[0], _cn(tenant="agency-a", phone="+8613900139000"), sh(2026, 3, 2, 10, 0),
          Outcome.VOICEMAIL)  # fmt: skip
    _call(agencies[1], _cn(tenant="agency-b"), sh(2026, 3, 2, 11, 0), Outcome.WRONG_PARTY)
    d = agencies[2].check_and_reserve(_cn(tenant="agency-c"), sh(2026, 3, 2, 12, 0))
    assert [r.rule for r in d.reasons] == ["cn-3-connected-per-debtor-day"]
    assert d.next_allowed_at == sh(2026, 3, 3, 8, 0)


def test_cn_six_dials_per_number_per_day_unanswered_ones_included() -> None:
    g = guard("cn")
    for i in range(6):
        _call(g, _cn(), sh(2026, 3, 2, 9 + i, 0), Outcome.NO_ANSWER)
    d = g.check_and_reserve(_cn(), sh(2026, 3, 2, 16, 0))
    assert [r.rule for r in d.reasons] == ["cn-6-dials-per-number-day"]
    # unanswered calls used no connected call: another number of the debtor is fine
    assert g.check_and_reserve(_cn(phone="+8613900139000"), sh(2026, 3, 2, 16, 0)).allowed


def test_cn_no_collection_between_22_and_08() -> None:
    g = guard("cn")
    assert g.check(_cn(), sh(2026, 3, 2, 21, 59)).allowed
    night = g.check(_cn(), sh(2026, 3, 2, 22, 0))
    assert not night.allowed and night.next_allowed_at == sh(2026, 3, 3, 8, 0)
    assert not g.check(_cn(), sh(2026, 3, 3, 7, 59)).allowed


def test_cn_unknown_zone_falls_back_to_beijing_time() -> None:
    g = guard("cn")
    d = g.check(_cn(phone="+864008123456"), sh(2026, 3, 2, 10, 0))  # 400 numbers are not geographic
    assert d.zones == ("Asia/Shanghai",)
    assert d.allowed


def test_cn_contacts_only_when_debtor_is_unreachable() -> None:
    g = guard("cn")
    contact = _cn(phone="+8613700137000", third_party=True)
    d = g.check_and_reserve(contact, sh(2026, 3, 2, 10, 0))
    assert not d.allowed and d.reasons[0].rule == "third-party"
    g.set_flag("bank", Flag.DEBTOR_UNREACHABLE, FlagScope.PERSON, "p1", sh(2026, 3, 2, 10, 0))
    assert g.check_and_reserve(contact, sh(2026, 3, 2, 10, 5)).allowed
