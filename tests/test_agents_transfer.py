"""Transfer to a supervisor: the two AMI actions `transfer_actions` builds, byte for byte, and
what it refuses (the real thing: tests/test_asterisk_nailed.py, tests/test_sim_nailed.py)."""

from __future__ import annotations

import pytest

from dialer.agents.transfer import (
    TRANSFER_CONTEXT,
    TRANSFER_VARIABLE,
    TransferError,
    transfer_actions,
)
from dialer.ami.protocol import AmiParser, Message, encode_action
from dialer.asterisk_names import ACTION_CLASSES, NAILED_CONTEXTS, NAILED_VARIABLES


def wire(debtor: str, to: str) -> bytes:
    """The actions as the dialer's AMI connection writes them, ActionIDs 1 and 2."""
    return b"".join(
        encode_action(name, str(i), fields)
        for i, (name, fields) in enumerate(transfer_actions(debtor, to), 1)
    )


def test_setvar_then_redirect_byte_for_byte() -> None:
    assert wire("dlr-node1-3f9c0a1b2e", "PJSIP/1000") == (
        b"Action: Setvar\r\n"
        b"ActionID: 1\r\n"
        b"Channel: dlr-node1-3f9c0a1b2e\r\n"
        b"Variable: TRANSFER_TO\r\n"
        b"Value: PJSIP/1000\r\n"
        b"\r\n"
        b"Action: Redirect\r\n"
        b"ActionID: 2\r\n"
        b"Channel: dlr-node1-3f9c0a1b2e\r\n"
        b"Context: dialer-transfer\r\n"
        b"Exten: s\r\n"
        b"Priority: 1\r\n"
        b"\r\n"
    )


def test_the_lab_pair_by_channel_name_round_trips_through_the_parser() -> None:
    debtor = "Local/12125550108@debtor-sim-00000002;1"
    frames = AmiParser().feed(wire(debtor, "Local/supervisor1@agents"))
    assert all(isinstance(f, Message) for f in frames)
    setvar, redirect = (f.fields for f in frames if isinstance(f, Message))
    assert setvar == {
        "Action": "Setvar",
        "ActionID": "1",
        "Channel": debtor,
        "Variable": TRANSFER_VARIABLE,
        "Value": "Local/supervisor1@agents",
    }
    assert redirect == {
        "Action": "Redirect",
        "ActionID": "2",
        "Channel": debtor,
        "Context": TRANSFER_CONTEXT,
        "Exten": "s",
        "Priority": "1",
    }


def test_the_names_the_dialplan_and_check_config_share() -> None:
    assert (TRANSFER_CONTEXT, TRANSFER_VARIABLE) == ("dialer-transfer", "TRANSFER_TO")
    assert TRANSFER_CONTEXT in NAILED_CONTEXTS
    (variable,) = [v for v in NAILED_VARIABLES if v.name == TRANSFER_VARIABLE]
    assert variable.context == TRANSFER_CONTEXT and variable.drives_dialplan
    # Both actions are `call` class in Asterisk 20 (`manager show command Setvar`).
    assert {name for name, _ in transfer_actions("x", "PJSIP/1")} <= set(ACTION_CLASSES)
    assert ACTION_CLASSES["Setvar"] == ACTION_CLASSES["Redirect"] == ("call",)


@pytest.mark.parametrize(
    "to",
    [
        "PJSIP/1000",
        "PJSIP/1000@pbx-1",
        "PJSIP/supervisors/sip:1000@10.0.0.5:5060",
        "PJSIP/+12125550100@trunk",
        "Local/supervisor1@agents",
        "Local/supervisor1@agents/n",
        "SIP/sup_2",
        "IAX2/pbx/*99#",
    ],
)
def test_plausible_dial_strings_pass_unchanged(to: str) -> None:
    (_, setvar), _ = transfer_actions("PJSIP/trunk-0000002a", to)
    assert dict(setvar)["Value"] == to


@pytest.mark.parametrize(
    "debtor",
    ["PJSIP/trunk-0000002a", "Local/15550008@debtor-sim-00000002;1", "1796459753.6", "dlr-a-1"],
)
def test_a_debtor_by_channel_name_or_uniqueid(debtor: str) -> None:
    (_, setvar), (_, redirect) = transfer_actions(debtor, "PJSIP/1000")
    assert dict(setvar)["Channel"] == dict(redirect)["Channel"] == debtor


@pytest.mark.parametrize(
    "to, why",
    [
        ("", "is empty"),
        ("PJSIP/1000\r\nAction: Originate", "holds CR"),
        ("PJSIP/1000\nAction: Originate", "holds LF"),
        ("PJSIP/1000,,tT", "holds ','"),
        ("PJSIP/1000|30", "holds '|'"),
        ("PJSIP/1000&PJSIP/1001", "holds '&'"),
        ("PJSIP/1000 ", "holds a space"),
        ("PJSIP/10\x0000", "holds NUL"),
        ("PJSIP/10\t00", "holds a control character"),
        ("PJSIP/${EVIL}", "is not one Tech/resource dial string"),
        ("PJSIP/$[1+1]", "is not one Tech/resource dial string"),
        ("PJSIP/1000;transport=tcp", "is not one Tech/resource dial string"),
        ("1000", "is not one Tech/resource dial string"),
        ("PJSIP/", "is not one Tech/resource dial string"),
        ("PJSIP//1000", "is not one Tech/resource dial string"),
        ("/1000", "is not one Tech/resource dial string"),
        ("9JSIP/1000", "is not one Tech/resource dial string"),
        ("PJSIP/" + "1" * 200, "more than 200"),
    ],
)
def test_a_bad_dial_string_is_refused_naming_transfer_to(to: str, why: str) -> None:
    with pytest.raises(TransferError) as caught:
        transfer_actions("PJSIP/trunk-0000002a", to)
    assert caught.value.field == "transfer_to"
    assert str(caught.value).startswith("transfer_to: ") and why in str(caught.value)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    "debtor, why",
    [
        ("", "is empty"),  # Setvar without Channel would set a global variable
        ("PJSIP/trunk-1\r\nAction: Hangup", "holds CR"),
        ("PJSIP/trunk-1,x", "holds ','"),
        ("PJSIP/trunk-1|x", "holds '|'"),
        ("PJSIP/trunk 1", "holds a space"),
        ("/PJSIP/.*/", "is neither a channel name nor a Uniqueid"),  # Hangup's regex form
        ("PJSIP/${X}", "is neither a channel name nor a Uniqueid"),
        ("Local/15550008@debtor-sim-00000002;2", "the ;1 half is the one in the agent's"),
    ],
)
def test_a_bad_debtor_channel_is_refused_naming_debtor_channel(debtor: str, why: str) -> None:
    with pytest.raises(TransferError) as caught:
        transfer_actions(debtor, "PJSIP/1000")
    assert caught.value.field == "debtor_channel"
    assert why in str(caught.value)


def test_the_debtors_channel_is_checked_first_and_numbers_are_masked() -> None:
    with pytest.raises(TransferError) as caught:
        transfer_actions("Local/12125550108@debtor-sim-00000002;2", "")
    assert caught.value.field == "debtor_channel"
    assert "12125550108" not in str(caught.value)
    with pytest.raises(TransferError) as caught:
        transfer_actions("PJSIP/trunk-1", "PJSIP/+12125550100@trunk,30")
    assert "12125550100" not in str(caught.value)
