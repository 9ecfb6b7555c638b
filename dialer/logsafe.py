"""Logging helpers: phone numbers masked, per-call context, the `<` `>` `=` `x` markers."""

from __future__ import annotations

import logging
import re
from collections.abc import MutableMapping
from typing import Any

_DIGITS = re.compile(r"\+?\d[\d\-\s().]{5,}\d")


def mask_phone(number: str) -> str:
    """Keep the country/area prefix and the last two digits: +4479******34."""
    digits = [c for c in number if c.isdigit()]
    if len(digits) <= 4:
        return "*" * len(digits)
    keep_head = min(4, len(digits) - 4)
    masked = (
        "".join(digits[:keep_head]) + "*" * (len(digits) - keep_head - 2) + "".join(digits[-2:])
    )
    return ("+" if number.strip().startswith("+") else "") + masked


def mask_phones_in(text: str) -> str:
    """Mask every phone-like digit run inside free text (dial strings, channel names)."""
    return _DIGITS.sub(lambda m: mask_phone(m.group(0)), text)


class CallLog(logging.LoggerAdapter[logging.Logger]):
    """Logger adapter that prefixes campaign and attempt ids to every message."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = self.extra or {}
        return f"[campaign={extra.get('campaign')} attempt={extra.get('attempt')}] {msg}", kwargs


def call_log(logger: logging.Logger, campaign: object, attempt: object) -> CallLog:
    return CallLog(logger, {"campaign": campaign, "attempt": attempt})
