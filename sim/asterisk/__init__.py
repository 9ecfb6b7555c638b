"""A simulated Asterisk 20.20.1: AMI server, Local channels and the `dialer-connect` dialplan."""

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
