"""Masking of phone numbers in what the AGI layer logs (channel names carry the debtor's number)."""

from __future__ import annotations

import re

# Six or more digits make a phone number; a run right after `-` is Asterisk's channel sequence
# suffix (`...-00000012;1`), which is harmless and useful when reading logs.
_NUMBER = re.compile(r"(?<![-\d])\+?\d{6,}")


def mask_numbers(text: str) -> str:
    """`Local/15550001@debtor-sim-00000000;1` -> `Local/15****01@debtor-sim-00000000;1`."""
    return _NUMBER.sub(_mask, text)


def _mask(match: re.Match[str]) -> str:
    number = match.group(0)
    digits = number.lstrip("+")
    return number[: len(number) - len(digits)] + digits[:2] + "*" * (len(digits) - 4) + digits[-2:]
