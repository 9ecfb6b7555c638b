"""Log hygiene for the guard: phone numbers masked before they reach a log line."""

from __future__ import annotations


def mask_phone(number: str) -> str:
    """Keep the country/area prefix and the last two digits, e.g. +1212*****34."""
    digits = [c for c in number if c.isdigit()]
    if len(digits) <= 4:
        return "*" * len(digits)
    head = min(4, len(digits) - 4)
    masked = "".join(digits[:head]) + "*" * (len(digits) - head - 2) + "".join(digits[-2:])
    return ("+" if number.strip().startswith("+") else "") + masked
