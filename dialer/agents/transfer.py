"""Transfer to a supervisor: a debtor leaves the agent's conference for a supervisor's phone.

Sans-I/O: `transfer_actions` builds the two AMI actions, the caller sends them. The debtor's
channel is the one in the agent's conference (the PJSIP channel in production, the `;1` half
of a Local pair in the lab), by name or by Uniqueid (the dialer's call id, its ChannelId):

    Action: Setvar     Channel: <debtor>  Variable: TRANSFER_TO  Value: <dial string>
    Action: Redirect   Channel: <debtor>  Context: dialer-transfer  Exten: s  Priority: 1

Send them in this order on one AMI connection (Asterisk runs a session's actions one after
the other) and stop at the first `Response: Error`: without its TRANSFER_TO the dialplan
refuses the Redirect by hanging the debtor up. Nothing is re-sent on its own.

What Asterisk 20.20.1 then does (sim/traces/ami_nailed_transfer*.log): the debtor's channel
leaves the conference (ConfbridgeLeave, BridgeLeave, and CONFBRIDGE_RESULT=HANGUP although
nobody hung up); the agent's phone stays nailed up in its conference, in wrap-up.
`[dialer-transfer]` Dials TRANSFER_TO; the supervisor's channels carry the debtor's Linkedid,
so the call table keeps following the call; MixMonitor goes on recording on the debtor's
channel until it hangs up.
"""

from __future__ import annotations

import re

from dialer.asterisk_names import TRANSFER_CONTEXT, TRANSFER_VARIABLE
from dialer.logsafe import mask_phones_in

__all__ = ["TRANSFER_CONTEXT", "TRANSFER_VARIABLE", "TransferError", "transfer_actions"]

Fields = list[tuple[str, str]]

# Longer than any channel name (AST_CHANNEL_NAME is 80) or dial string a person would type.
MAX_LENGTH = 200
# A channel name (`PJSIP/trunk-0000002a`, `Local/12125550101@debtor-sim-00000000;1`) or a
# Uniqueid (`dlr-node1-3f9c0a1b2e`, `1796459753.6`). No separators AMI or the dialplan read.
_CHANNEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+@:;/-]*")
# Tech/resource as Dial() takes one destination: `PJSIP/1000`, `PJSIP/1000@pbx`,
# `PJSIP/sup/sip:1000@10.0.0.5:5060`, `Local/supervisor1@agents`. Without `,` (Dial's options
# follow it), `&` (more destinations), `|`, `;`, `$`, brackets or quotes.
_DIAL_STRING = re.compile(
    r"(?P<tech>[A-Za-z][A-Za-z0-9_]*)/(?P<resource>[A-Za-z0-9+*#][A-Za-z0-9_.+*#@:/=-]*)"
)
# Characters worth naming when one is refused.
_NAMED = {"\r": "CR", "\n": "LF", "\0": "NUL", ",": "','", "|": "'|'", "&": "'&'", " ": "a space"}


class TransferError(ValueError):
    """`transfer_actions` refused an argument; `field` names it, the message says why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def _refuse_characters(field: str, value: str) -> None:
    if not value:
        raise TransferError(field, "is empty")
    if len(value) > MAX_LENGTH:
        raise TransferError(field, f"is {len(value)} characters long, more than {MAX_LENGTH}")
    for char, name in _NAMED.items():
        if char in value:
            raise TransferError(field, f"{mask_phones_in(repr(value))} holds {name}")
    if any(not c.isprintable() for c in value):
        raise TransferError(field, f"{mask_phones_in(repr(value))} holds a control character")


def check_debtor_channel(channel: str) -> str:
    """The debtor's channel as given, or TransferError naming `debtor_channel`."""
    field = "debtor_channel"
    _refuse_characters(field, channel)
    if _CHANNEL.fullmatch(channel) is None:
        raise TransferError(
            field, f"{mask_phones_in(repr(channel))} is neither a channel name nor a Uniqueid"
        )
    if channel.startswith("Local/") and channel.endswith(";2"):
        raise TransferError(
            field,
            f"{mask_phones_in(repr(channel))} is the far end of a Local pair; the ;1 half is "
            "the one in the agent's conference",
        )
    return channel


def check_dial_string(dial_string: str) -> str:
    """The supervisor's dial string as given, or TransferError naming `transfer_to`."""
    field = "transfer_to"
    _refuse_characters(field, dial_string)
    if _DIAL_STRING.fullmatch(dial_string) is None:
        raise TransferError(
            field,
            f"{mask_phones_in(repr(dial_string))} is not one Tech/resource dial string "
            "(e.g. PJSIP/1000)",
        )
    return dial_string


def transfer_actions(debtor_channel: str, transfer_to: str) -> list[tuple[str, Fields]]:
    """The AMI actions that put the debtor through to `transfer_to`, in the order to send them:
    Setvar TRANSFER_TO on the debtor's channel, then Redirect it into dialer-transfer."""
    channel = check_debtor_channel(debtor_channel)
    target = check_dial_string(transfer_to)
    return [
        ("Setvar", [("Channel", channel), ("Variable", TRANSFER_VARIABLE), ("Value", target)]),
        (
            "Redirect",
            [
                ("Channel", channel),
                ("Context", TRANSFER_CONTEXT),
                ("Exten", "s"),
                ("Priority", "1"),
            ],
        ),
    ]
