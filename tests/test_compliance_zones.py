"""Candidate zones come from every source and are never narrowed to one library's single guess."""

from __future__ import annotations

from compliance_guard.zones import ZoneResolver, zones_for_phone, zones_for_postal
from tests.compliance_cases.helpers import request


def test_toll_free_numbers_have_no_zone() -> None:
    assert zones_for_phone("+18005551234") == set()
    assert zones_for_phone("+18885550101") == set()


def test_area_code_spanning_two_zones_gives_both() -> None:
    assert zones_for_phone("+12085551234") == {"America/Boise", "America/Los_Angeles"}


def test_unparseable_number_gives_no_zone_rather_than_an_error() -> None:
    assert zones_for_phone("+1") == set()
    assert zones_for_phone("not a number") == set()


def test_us_zip_prefix_gives_every_zone_of_its_state() -> None:
    assert zones_for_postal("US", "79901", None) == {"America/Chicago", "America/Denver"}
    assert zones_for_postal("us", "02110-1234", None) == {"America/New_York"}
    assert zones_for_postal("US", None, "FL") == {"America/New_York", "America/Chicago"}
    assert zones_for_postal("US", "1", None) == set()


def test_single_zone_countries_and_unknown_countries() -> None:
    assert zones_for_postal("CN", "100000", None) == {"Asia/Shanghai"}
    assert zones_for_postal("BR", "01000-000", None) == set()  # several zones: not guessed
    assert zones_for_postal(None, "10001", None) == set()


def test_resolution_unites_explicit_address_and_phone_and_keeps_the_sources() -> None:
    res = ZoneResolver().resolve(
        request(phone="+12125551234", postal_code="98101", country="US",
                time_zones=("Pacific/Honolulu", "Not/AZone"))
    )  # fmt: skip
    assert res.zones == ("America/Los_Angeles", "America/New_York", "Pacific/Honolulu")
    assert ("phone", "America/New_York") in res.sources
    assert ("address", "America/Los_Angeles") in res.sources
    assert ("explicit", "Pacific/Honolulu") in res.sources
    assert res.unknown == ("Not/AZone",)
