"""A simulated Asterisk 20.20.1: AMI server, Local channels, the `dialer-connect` dialplan and
the nailed-up agent contexts (`dialer-agent`, `dialer-spy`, ConfBridge)."""

from sim.asterisk.ami import AmiConfig, AsteriskSim
from sim.asterisk.pbx import OriginateRequest, OriginateResult, Pbx, PbxConfig, SimClock

__all__ = [
    "AmiConfig",
    "AsteriskSim",
    "OriginateRequest",
    "OriginateResult",
    "Pbx",
    "PbxConfig",
    "SimClock",
]
