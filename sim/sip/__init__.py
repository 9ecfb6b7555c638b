"""The PSTN behind the dialer's SIP trunk, played by SIPp: scenarios, RTP audio, a runner."""

from sim.sip.carrier import (
    BEHAVIOURS,
    CALLER_SCENARIO,
    CARRIER_SCENARIO,
    CarrierCall,
    CarrierError,
    SippCarrier,
    parse_calls,
    sipp_available,
)

__all__ = [
    "BEHAVIOURS",
    "CALLER_SCENARIO",
    "CARRIER_SCENARIO",
    "CarrierCall",
    "CarrierError",
    "SippCarrier",
    "parse_calls",
    "sipp_available",
]
