"""Inbound replies that opt a number out (STOP, 退订 and their common variants), and which guard
flags an opt-out sets under each rule set."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping

from compliance_guard.models import Channel, Flag
from compliance_guard.rules import RuleSet

# The whole reply, once folded, is one of these (the CTIA keywords and the FCC's 2024 list of
# reasonable revocation words; Chinese operators' "reply T / TD to unsubscribe").
_WHOLE_WORDS = frozenset(
    {
        "stop",
        "stopall",
        "stop all",
        "unsubscribe",
        "cancel",
        "end",
        "quit",
        "revoke",
        "opt out",
        "optout",
        "opt-out",
        "t",
        "td",
        "n",
    }
)
# Anywhere in the reply ("退订谢谢", "请退订"): no ordinary answer to a reminder contains them.
_CONTAINED = ("退订", "退定", "取消订阅", "停止发送", "不要再发", "别再发")

# Which flags an opt-out sets, by rule set name. A text "STOP" is an opt-out from texts
# everywhere. In the US it is also a revocation of consent to autodialled calls (TCPA, FCC
# 2024 revocation order: revoking by any reasonable means covers calls and texts alike), which
# the us presets bind to calls and SMS through `consent_revoked`. Chinese rules tie 退订 to the
# SMS channel (MIIT commercial SMS rules), so calls stay governed by their own rules.
DEFAULT_OPT_OUT_FLAGS: Mapping[str, tuple[Flag, ...]] = {
    "cn": (Flag.OPT_OUT_SMS,),
    "us-regf": (Flag.OPT_OUT_SMS, Flag.CONSENT_REVOKED),
    "us-ma": (Flag.OPT_OUT_SMS, Flag.CONSENT_REVOKED),
}


def fold(text: str) -> str:
    """Lower case, full-width folded, punctuation dropped, spaces squeezed."""
    text = unicodedata.normalize("NFKC", text).casefold()
    kept = "".join(c if not unicodedata.category(c).startswith(("P", "S")) else " " for c in text)
    return " ".join(kept.split())


def is_opt_out(text: str) -> bool:
    folded = fold(text)
    return folded in _WHOLE_WORDS or any(word in folded for word in _CONTAINED)


def opt_out_flags(ruleset: RuleSet, table: Mapping[str, tuple[Flag, ...]]) -> tuple[Flag, ...]:
    return table.get(ruleset.name, (Flag.OPT_OUT_SMS,))


def channels_refused(ruleset: RuleSet, flags: tuple[Flag, ...]) -> tuple[Channel, ...]:
    """The channels the rule set refuses once these flags are set."""
    blocked: set[Channel] = set()
    for rule in ruleset.flags:
        if rule.flag in flags:
            blocked |= rule.channels
    return tuple(c for c in Channel if c in blocked)
