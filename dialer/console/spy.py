"""Listen, whisper, barge: the Originate that rings a supervisor's phone into ChanSpy.

Sans-I/O: builds the AMI fields; the caller sends them (once: an Originate is never repeated)
and audits the request. The dialplan (asterisk-conf/extensions.conf, [dialer-spy]) reads two
channel variables:

    SPY_TARGET  the agent's channel, its full name or Uniqueid (ChanSpy option u: exact match)
    SPY_MODE    listen | whisper (the agent hears the supervisor) | barge (both parties do)

Everything that reaches Asterisk is checked first. A line break would inject AMI headers; a comma
(or the old separator '|') would split a `Variable:` header into several variables and, inside
`ChanSpy(${SPY_TARGET},qESu)`, add ChanSpy options of the sender's choosing.
"""

from __future__ import annotations

import enum
import re

from dialer.console.errors import SpyError

__all__ = ["SPY_CONTEXT", "SpyError", "SpyMode", "caller_id_of", "spy_call_id", "spy_originate"]

SPY_CONTEXT = "dialer-spy"
# A person picks up a desk phone: give them the time the agent login gives.
RING_TIMEOUT_MS = 60_000
# agent_sessions.phone holds at most this many characters; no dial string needs more.
MAX_DIAL_STRING = 128


class SpyMode(enum.StrEnum):
    LISTEN = "listen"  # the supervisor hears both, nobody hears the supervisor
    WHISPER = "whisper"  # the agent hears the supervisor, the debtor does not
    BARGE = "barge"  # the agent and the debtor both hear the supervisor


# Tech/resource: PJSIP/1001, PJSIP/1001@trunk, SIP/peer/5551234, Local/supervisor1@agents,
# IAX2/user@host/ext, DAHDI/g1/5551234. Nothing that means something to AMI, to the Variable
# list, to dialplan substitution or to application arguments.
_DIAL_STRING = re.compile(r"[A-Za-z][A-Za-z0-9_-]*/[A-Za-z0-9_.@+#*:/=-]+")
# A channel name (PJSIP/1001-0000002a, Local/agent1@agents-00000000;1) or a Uniqueid
# (1712345678.42, or a ChannelId the dialer chose: lab1-agent-agent1-1).
_CHANNEL = re.compile(r"[A-Za-z0-9_.@+#*:/=;-]+")
_NODE = re.compile(r"[A-Za-z0-9_.-]+")


def _check_phone(phone: str) -> str:
    if not isinstance(phone, str) or not phone:
        raise SpyError("phone", "the supervisor's phone is empty")
    if len(phone) > MAX_DIAL_STRING:
        raise SpyError("phone", f"longer than {MAX_DIAL_STRING} characters")
    if _DIAL_STRING.fullmatch(phone) is None:
        raise SpyError(
            "phone",
            f"{phone[:40]!r} is not an Asterisk dial string such as PJSIP/1001 "
            f"(Tech/resource; letters, digits and _ . @ + # * : / = - only)",
        )
    return phone


def _check_target(target: str) -> str:
    if not isinstance(target, str) or not target:
        raise SpyError("target", "the agent's channel is empty")
    if len(target) > 200 or _CHANNEL.fullmatch(target) is None:
        raise SpyError("target", f"{target[:40]!r} is not an Asterisk channel name or Uniqueid")
    return target


def _check_mode(mode: SpyMode | str) -> SpyMode:
    try:
        return SpyMode(mode)
    except ValueError:
        known = ", ".join(m.value for m in SpyMode)
        raise SpyError("mode", f"{mode!r} is not one of {known}") from None


def spy_call_id(node_id: str, seq: int) -> str:
    """The ChannelId of the supervisor's channel (its Uniqueid in every event): `<node>-spy-<n>`."""
    if not isinstance(node_id, str) or _NODE.fullmatch(node_id) is None:
        raise SpyError("node_id", f"{node_id!r}: letters, digits, '_', '.' and '-' only")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise SpyError("seq", f"{seq!r} must be a whole number from 0")
    return f"{node_id}-spy-{seq}"


def caller_id_of(phone: str) -> str:
    """What the supervisor's phone displays: "Dialer" <resource> (Local/sup1@agents -> sup1)."""
    resource = phone.partition("/")[2]
    return f'"Dialer" <{re.split(r"[@/]", resource, maxsplit=1)[0]}>'


def spy_originate(
    node_id: str, seq: int, supervisor_phone: str, target_channel: str, mode: SpyMode | str
) -> list[tuple[str, str]]:
    """The Originate fields (without Action and ActionID) that ring `supervisor_phone` and,
    once answered, spy on `target_channel` in `mode`. SpyError before anything is built when
    an argument is unsafe or unknown."""
    spy_mode = _check_mode(mode)
    phone = _check_phone(supervisor_phone)
    target = _check_target(target_channel)
    call_id = spy_call_id(node_id, seq)
    return [
        ("Channel", phone),
        ("Context", SPY_CONTEXT),
        ("Exten", "s"),
        ("Priority", "1"),
        ("Timeout", str(RING_TIMEOUT_MS)),
        ("CallerID", caller_id_of(phone)),
        ("Async", "true"),
        ("ChannelId", call_id),
        # The far end of a Local/ pair (and the only id Asterisk would otherwise make up).
        ("OtherChannelId", f"{call_id}-2"),
        ("Variable", f"SPY_TARGET={target}"),
        ("Variable", f"SPY_MODE={spy_mode.value}"),
    ]
