"""Names the dialer and the Asterisk configs share: channel variables, AMI classes, the AGI script."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class SetBy(Enum):
    ORIGINATE = "the dialer, as Originate Variable: headers"
    LOGIN = "the dialer, on an agent's login Originate"
    SPY = "the dialer, on a supervisor's listen/whisper/barge Originate"
    TRANSFER = "the dialer (AMI Setvar) before it redirects a debtor to a supervisor"
    CONNECT = "the dialer's FastAGI connect script"
    ASTERISK = "an Asterisk application in the dialplan"


@dataclass(frozen=True)
class ChannelVariable:
    name: str
    set_by: SetBy
    # True: dialer-connect must act on it (the call flow breaks without it); False: echoed in
    # logs only, so a dialplan that never reads it is merely less informative.
    drives_dialplan: bool
    # For SetBy.ASTERISK: the dialplan application that sets it.
    application: str = ""
    # The context that must read it; "" is dialer-connect (dialing.context).
    context: str = ""


CHANNEL_VARIABLES: tuple[ChannelVariable, ...] = (
    ChannelVariable("ATTEMPT_ID", SetBy.ORIGINATE, drives_dialplan=False),
    ChannelVariable("CAMPAIGN_ID", SetBy.ORIGINATE, drives_dialplan=False),
    ChannelVariable("LEAD_ID", SetBy.ORIGINATE, drives_dialplan=False),
    ChannelVariable("USE_AMD", SetBy.ORIGINATE, drives_dialplan=True),
    ChannelVariable("RECORD", SetBy.ORIGINATE, drives_dialplan=True),
    ChannelVariable("DIALER_AGI", SetBy.ORIGINATE, drives_dialplan=True),
    ChannelVariable("ROUTE", SetBy.CONNECT, drives_dialplan=True),
    ChannelVariable("TARGET_CHANNEL", SetBy.CONNECT, drives_dialplan=True),
    ChannelVariable("TARGET_AGENT", SetBy.CONNECT, drives_dialplan=False),
    ChannelVariable("RECORDING_FILE", SetBy.CONNECT, drives_dialplan=True),
    # With ROUTE=bridge: the agent's conference (their phone is nailed up in it).
    ChannelVariable("TARGET_BRIDGE", SetBy.CONNECT, drives_dialplan=True),
    # Read back by the dialer (VarSet events, Getvar after a reconnect).
    ChannelVariable("AMDSTATUS", SetBy.ASTERISK, drives_dialplan=True, application="AMD"),
    ChannelVariable(
        "MIXMONITOR_FILENAME", SetBy.ASTERISK, drives_dialplan=False, application="MixMonitor"
    ),
)

# Nailed-up agent phones (docs/agents-web.md): an agent's login call waits in the agent's own
# conference; debtors join it (ROUTE=bridge); supervisors spy on it; a debtor is transferred
# to a supervisor by AMI Setvar TRANSFER_TO + Redirect into TRANSFER_CONTEXT
# (dialer/agents/transfer.py).
AGENT_CONTEXT = "dialer-agent"
SPY_CONTEXT = "dialer-spy"
TRANSFER_CONTEXT = "dialer-transfer"
TRANSFER_VARIABLE = "TRANSFER_TO"
NAILED_VARIABLES: tuple[ChannelVariable, ...] = (
    ChannelVariable("AGENT_ID", SetBy.LOGIN, drives_dialplan=True, context=AGENT_CONTEXT),
    ChannelVariable("AGENT_CONF", SetBy.LOGIN, drives_dialplan=True, context=AGENT_CONTEXT),
    ChannelVariable("DIALER_NODE", SetBy.LOGIN, drives_dialplan=False, context=AGENT_CONTEXT),
    ChannelVariable("SPY_TARGET", SetBy.SPY, drives_dialplan=True, context=SPY_CONTEXT),
    ChannelVariable("SPY_MODE", SetBy.SPY, drives_dialplan=True, context=SPY_CONTEXT),
    ChannelVariable(
        TRANSFER_VARIABLE, SetBy.TRANSFER, drives_dialplan=True, context=TRANSFER_CONTEXT
    ),
)
# The contexts besides dialer-connect the dialer sends channels into (each by its `s`
# extension, priority 1), and what each is for; check-config requires each of them and that it
# reads the NAILED_VARIABLES naming it.
NAILED_CONTEXTS: dict[str, str] = {
    AGENT_CONTEXT: "where an agent's login call (nailed-up phone) waits in its conference",
    SPY_CONTEXT: "where a supervisor's listen/whisper/barge call runs ChanSpy",
    TRANSFER_CONTEXT: "where a debtor redirected to a supervisor (transfer) dials TRANSFER_TO",
}

# The dialer's side of the contract: what extensions.conf's header table documents.
DIALER_SET_VARIABLES: tuple[str, ...] = tuple(
    v.name for v in CHANNEL_VARIABLES + NAILED_VARIABLES if v.set_by is not SetBy.ASTERISK
)

# ConfBridge(<conference>,<bridge profile>,<user profile>) in dialer-agent and dialer-connect:
# the profiles of confbridge.conf, and the user profile flag each must have.
CONFERENCE_BRIDGE_PROFILE = "dialer_agent_bridge"
AGENT_USER_PROFILE = "dialer_agent"  # marked = yes
DEBTOR_USER_PROFILE = "dialer_debtor"  # end_marked = yes
# manager.conf [general] channelvars: every event of a channel shows these (ChanVariable).
MANAGER_CHANNEL_VARIABLES: tuple[str, ...] = ("AGENT_ID",)

# The FastAGI script dialer-connect runs: AGI(${DIALER_AGI}/connect?...).
CONNECT_SCRIPT = "connect"
# The [globals] variable dialer-connect falls back to when an Originate carries no DIALER_AGI.
AGI_DEFAULT_GLOBAL = "DIALER_AGI_DEFAULT"
FASTAGI_DEFAULT_PORT = 4573

# AMI actions the dialer sends -> the manager.conf write classes that allow each (any one of
# them; Asterisk 20 manager.c / res_pjsip*). The first class is the one manager.conf grants.
ACTION_CLASSES: dict[str, tuple[str, ...]] = {
    "Originate": ("originate",),
    "Hangup": ("call", "system"),
    "Getvar": ("call", "reporting"),
    "CoreShowChannels": ("reporting", "system"),
    # Transfer to a supervisor (dialer/agents/transfer.py)
    "Setvar": ("call",),
    "Redirect": ("call",),
    # `dialer doctor`: the trunk's contacts and registration
    "PJSIPShowEndpoint": ("system",),
    "PJSIPShowRegistrationsOutbound": ("system", "reporting"),
}

# AMI events the dialer acts on (dialer/ami/events.py, dialer/calls/table.py) -> read class.
# The nailed-up phones' ConfbridgeJoin/Leave and ChanSpyStart/Stop are `call` events too
# (read raw by dialer/agents/phones.py, not typed): no class beyond these.
EVENT_CLASSES: dict[str, str] = {
    "Newchannel": "call",
    "Newstate": "call",
    "DialState": "call",
    "DialEnd": "call",
    "OriginateResponse": "call",
    "BridgeEnter": "call",
    "Hangup": "call",
    "VarSet": "dialplan",
}


def required_write_classes() -> tuple[str, ...]:
    """The write= classes manager.conf grants the dialer's user: one per action, in order."""
    return tuple(dict.fromkeys(classes[0] for classes in ACTION_CLASSES.values()))


def required_read_classes() -> tuple[str, ...]:
    """The read= classes that let every event the dialer acts on through."""
    return tuple(dict.fromkeys(EVENT_CLASSES.values()))
