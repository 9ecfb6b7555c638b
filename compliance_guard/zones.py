"""Where the debtor may be: the union of candidate time zones from every source, never one guess."""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import PhoneNumberType
from phonenumbers import timezone as pn_timezone

from compliance_guard.memo import BoundedMemo
from compliance_guard.models import AttemptRequest

# Every zone a state's territory observes; a state split between two zones yields both, so the
# window must hold in each (the debtor's exact county is not known from a ZIP prefix).
US_STATE_ZONES: dict[str, tuple[str, ...]] = {
    "AL": ("America/Chicago",),
    "AK": ("America/Anchorage", "America/Adak"),
    "AZ": ("America/Phoenix", "America/Denver"),  # the Navajo Nation observes DST
    "AR": ("America/Chicago",),
    "CA": ("America/Los_Angeles",),
    "CO": ("America/Denver",),
    "CT": ("America/New_York",),
    "DE": ("America/New_York",),
    "DC": ("America/New_York",),
    "FL": ("America/New_York", "America/Chicago"),
    "GA": ("America/New_York",),
    "HI": ("Pacific/Honolulu",),
    "ID": ("America/Boise", "America/Los_Angeles"),
    "IL": ("America/Chicago",),
    "IN": ("America/Indiana/Indianapolis", "America/Chicago"),
    "IA": ("America/Chicago",),
    "KS": ("America/Chicago", "America/Denver"),
    "KY": ("America/New_York", "America/Chicago"),
    "LA": ("America/Chicago",),
    "ME": ("America/New_York",),
    "MD": ("America/New_York",),
    "MA": ("America/New_York",),
    "MI": ("America/Detroit", "America/Menominee"),
    "MN": ("America/Chicago",),
    "MS": ("America/Chicago",),
    "MO": ("America/Chicago",),
    "MT": ("America/Denver",),
    "NE": ("America/Chicago", "America/Denver"),
    "NV": ("America/Los_Angeles", "America/Boise"),
    "NH": ("America/New_York",),
    "NJ": ("America/New_York",),
    "NM": ("America/Denver",),
    "NY": ("America/New_York",),
    "NC": ("America/New_York",),
    "ND": ("America/Chicago", "America/Denver"),
    "OH": ("America/New_York",),
    "OK": ("America/Chicago",),
    "OR": ("America/Los_Angeles", "America/Boise"),
    "PA": ("America/New_York",),
    "RI": ("America/New_York",),
    "SC": ("America/New_York",),
    "SD": ("America/Chicago", "America/Denver"),
    "TN": ("America/Chicago", "America/New_York"),
    "TX": ("America/Chicago", "America/Denver"),
    "UT": ("America/Denver",),
    "VT": ("America/New_York",),
    "VA": ("America/New_York",),
    "WA": ("America/Los_Angeles",),
    "WV": ("America/New_York",),
    "WI": ("America/Chicago",),
    "WY": ("America/Denver",),
    "PR": ("America/Puerto_Rico",),
    "VI": ("America/St_Thomas",),
    "GU": ("Pacific/Guam",),
}

# First three ZIP digits -> state, as inclusive ranges (USPS sectional centers).
_ZIP3_RANGES: tuple[tuple[int, int, str], ...] = (
    (5, 5, "NY"), (6, 7, "PR"), (8, 8, "VI"), (9, 9, "PR"), (10, 27, "MA"), (28, 29, "RI"),
    (30, 38, "NH"), (39, 49, "ME"), (50, 54, "VT"), (55, 55, "MA"), (56, 59, "VT"),
    (60, 69, "CT"), (70, 89, "NJ"), (100, 149, "NY"), (150, 196, "PA"), (197, 199, "DE"),
    (200, 200, "DC"), (201, 201, "VA"), (202, 205, "DC"), (206, 219, "MD"), (220, 246, "VA"),
    (247, 268, "WV"), (270, 289, "NC"), (290, 299, "SC"), (300, 319, "GA"), (320, 349, "FL"),
    (350, 369, "AL"), (370, 385, "TN"), (386, 397, "MS"), (398, 399, "GA"), (400, 427, "KY"),
    (430, 459, "OH"), (460, 479, "IN"), (480, 499, "MI"), (500, 528, "IA"), (530, 549, "WI"),
    (550, 567, "MN"), (570, 577, "SD"), (580, 588, "ND"), (590, 599, "MT"), (600, 629, "IL"),
    (630, 658, "MO"), (660, 679, "KS"), (680, 693, "NE"), (700, 715, "LA"), (716, 729, "AR"),
    (730, 749, "OK"), (750, 799, "TX"), (800, 816, "CO"), (820, 831, "WY"), (832, 838, "ID"),
    (840, 847, "UT"), (850, 865, "AZ"), (870, 884, "NM"), (885, 885, "TX"), (889, 898, "NV"),
    (900, 961, "CA"), (967, 968, "HI"), (969, 969, "GU"), (970, 979, "OR"), (980, 994, "WA"),
    (995, 999, "AK"),
)  # fmt: skip

# Countries that keep a single civil time across their territory.
SINGLE_ZONE_COUNTRIES: dict[str, str] = {
    "CN": "Asia/Shanghai",
    "HK": "Asia/Hong_Kong",
    "GB": "Europe/London",
    "DE": "Europe/Berlin",
    "FR": "Europe/Paris",
    "IN": "Asia/Kolkata",
    "JP": "Asia/Tokyo",
    "IT": "Europe/Rome",
    "PL": "Europe/Warsaw",
    "NL": "Europe/Amsterdam",
    "PH": "Asia/Manila",
    "SG": "Asia/Singapore",
}

# Number types that say nothing about where the subscriber is (toll-free lists every zone).
_NON_GEOGRAPHIC = {
    PhoneNumberType.TOLL_FREE,
    PhoneNumberType.PREMIUM_RATE,
    PhoneNumberType.SHARED_COST,
    PhoneNumberType.UAN,
    PhoneNumberType.VOIP,
    PhoneNumberType.PERSONAL_NUMBER,
    PhoneNumberType.PAGER,
    PhoneNumberType.VOICEMAIL,
}


@dataclass(frozen=True, slots=True)
class ZoneResolution:
    """Candidate zones with the source of each, and the names that could not be used."""

    zones: tuple[str, ...]  # sorted, de-duplicated
    sources: tuple[tuple[str, str], ...]  # (source, zone)
    unknown: tuple[str, ...]  # explicit zone names that are not IANA zones


def zones_for_postal(country: str | None, postal_code: str | None, region: str | None) -> set[str]:
    cc = (country or "").strip().upper()
    if not cc:
        return set()
    if cc == "US":
        state = (region or "").strip().upper()
        if state in US_STATE_ZONES:
            return set(US_STATE_ZONES[state])
        digits = "".join(c for c in (postal_code or "") if c.isdigit())
        if len(digits) >= 3:
            zip3 = int(digits[:3])
            for lo, hi, st in _ZIP3_RANGES:
                if lo <= zip3 <= hi:
                    return set(US_STATE_ZONES[st])
        return set()
    single = SINGLE_ZONE_COUNTRIES.get(cc)
    return {single} if single else set()


def zones_for_phone(e164: str) -> set[str]:
    """Zones of the number's geography; none for toll-free and other non-geographic numbers."""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return set()
    kind = phonenumbers.number_type(number)  # the costly step: classify it only once
    if kind in _NON_GEOGRAPHIC or kind == PhoneNumberType.UNKNOWN:
        return set()
    cc = number.country_code
    if cc is not None and phonenumbers.is_number_type_geographical(kind, cc):
        # What `time_zones_for_number` does for this type, without classifying again.
        found = pn_timezone.time_zones_for_geographical_number(number)
    else:
        found = pn_timezone.time_zones_for_number(number)
    return {z for z in found if z != pn_timezone.UNKNOWN_TIMEZONE}


def is_known_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


class ZoneResolver:
    """Resolves candidate zones; resolutions are cached per instance (bounded).

    A resolution is a pure function of the request's phone, explicit zones and address (the
    zone database and numbering plan are fixed for the life of the process), so it is cached
    under exactly those fields. The number's classification (`phonenumbers`: parse, number
    type, zone prefix) is the costly part of a first sight and is cached on its own, under the
    E.164 string, so a number seen with another address is not classified again.
    """

    def __init__(self, cache_size: int = 100_000) -> None:
        self._phones: BoundedMemo[str, frozenset[str]] = BoundedMemo(cache_size)
        self._zone_sets: dict[frozenset[str], frozenset[str]] = {}
        self._resolutions: BoundedMemo[
            tuple[str, tuple[str, ...], str | None, str | None, str | None], ZoneResolution
        ] = BoundedMemo(cache_size)

    def sizes(self) -> dict[str, int]:
        """How many entries each bounded table holds."""
        return {"phones": len(self._phones), "resolutions": len(self._resolutions)}

    def phone_zones(self, e164: str) -> frozenset[str]:
        """`zones_for_phone`, remembered."""
        hit = self._phones.get(e164)
        if hit is None:
            found = frozenset(zones_for_phone(e164))
            # Numbers share a few hundred zone sets at most: keep one copy of each.
            hit = self._phones.put(e164, self._zone_sets.setdefault(found, found))
        return hit

    def resolve(self, request: AttemptRequest) -> ZoneResolution:
        key = (
            request.phone,
            tuple(request.time_zones),
            request.postal_code,
            request.country,
            request.region,
        )
        hit = self._resolutions.get(key)
        if hit is None:
            hit = self._resolutions.put(key, self._resolve(request))
        return hit

    def _resolve(self, request: AttemptRequest) -> ZoneResolution:
        sources: list[tuple[str, str]] = []
        unknown: list[str] = []
        for z in request.time_zones:
            if is_known_zone(z):
                sources.append(("explicit", z))
            else:
                unknown.append(z)
        for z in sorted(zones_for_postal(request.country, request.postal_code, request.region)):
            sources.append(("address", z))
        if request.phone.startswith("+"):
            for z in sorted(self.phone_zones(request.phone)):
                sources.append(("phone", z))
        zones = tuple(sorted({z for _, z in sources}))
        return ZoneResolution(zones, tuple(sources), tuple(unknown))
