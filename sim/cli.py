"""`dialer sim`: run the simulated Asterisk standalone (AMI over TCP, optional control port), or
with `--sip` the PSTN behind a real Asterisk's trunk (SIPp playing sim/sip/carrier.xml)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from types import FrameType

from sim.asterisk import AmiConfig, AsteriskSim, PbxConfig
from sim.behaviour import AgentModel, DebtorModel, OutcomeMix, SeededDebtors, SuffixDebtors
from sim.control import ControlServer
from sim.sip.carrier import BEHAVIOURS, CARRIER_SCENARIO, CarrierError, SippCarrier

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=5038, help="AMI port (0: any free port)")
    parser.add_argument("--username", default="dialer", help="AMI user the dialer logs in as")
    parser.add_argument("--secret", default="dialer", help="AMI secret")
    parser.add_argument("--seed", type=int, default=0, help="seed of the debtor population")
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="simulated seconds per real second (60: an hour of calls per minute)",
    )
    parser.add_argument(
        "--debtors",
        choices=("seeded", "by-suffix"),
        default="seeded",
        help="seeded random population, or the capture's last-digit dialplan",
    )
    parser.add_argument(
        "--mix",
        default="",
        help="seeded outcome probabilities, e.g. human=0.3,machine=0.15,busy=0.08,"
        "congestion=0.02,unallocated=0.05,rejected=0.05 (the rest: no answer)",
    )
    parser.add_argument("--agent-answer-secs", type=float, default=0.5)
    parser.add_argument("--control-port", type=int, default=None, help="JSON-lines control port")
    parser.add_argument(
        "--verbose-events",
        action="store_true",
        help="also emit cosmetic events (NewCallerid, DeviceStateChange, ...)",
    )
    sip = parser.add_argument_group(
        "SIP carrier", "instead of the simulator: the PSTN behind a real Asterisk's trunk (SIPp)"
    )
    sip.add_argument(
        "--sip",
        action="store_true",
        help="run the SIPp carrier that answers the calls of Asterisk's `trunk` by number",
    )
    sip.add_argument("--sip-port", type=int, default=5090, help="UDP port of the carrier")
    sip.add_argument(
        "--sip-logs",
        type=Path,
        default=None,
        help="folder for SIPp's per-call log, statistics and errors (default: a temporary one)",
    )


def parse_mix(text: str) -> OutcomeMix:
    """`human=0.3,busy=0.1` -> OutcomeMix; unnamed outcomes keep their defaults."""
    if not text.strip():
        return OutcomeMix()
    values: dict[str, float] = {}
    names = set(OutcomeMix.__dataclass_fields__)
    for item in text.split(","):
        name, eq, value = item.partition("=")
        name = name.strip()
        if not eq or name not in names:
            raise ValueError(f"--mix: {item!r} is not one of {sorted(names)}=<probability>")
        try:
            values[name] = float(value)
        except ValueError:
            raise ValueError(f"--mix: {value!r} for {name} is not a number") from None
    return OutcomeMix(**values)


def build(args: argparse.Namespace) -> AsteriskSim:
    debtors: DebtorModel = (
        SuffixDebtors()
        if args.debtors == "by-suffix"
        else SeededDebtors(seed=args.seed, mix=parse_mix(args.mix))
    )
    return AsteriskSim(
        AmiConfig(host=args.host, port=args.port, username=args.username, secret=args.secret),
        PbxConfig(time_scale=args.time_scale, verbose_events=args.verbose_events, seed=args.seed),
        debtors=debtors,
        agents=AgentModel(answer_secs=args.agent_answer_secs),
    )


async def serve(args: argparse.Namespace, ready: asyncio.Event | None = None) -> None:
    """Run until cancelled."""
    sim = build(args)
    await sim.start()
    control = None
    if args.control_port is not None:
        control = ControlServer(sim, args.host, args.control_port)
        await control.start()
    print(
        f"simulated Asterisk 20.20.1: AMI on {args.host}:{sim.port}"
        + (f", control on {args.host}:{control.port}" if control else ""),
        flush=True,
    )
    if ready is not None:
        ready.set()
    try:
        await asyncio.Event().wait()
    finally:
        if control is not None:
            await control.close()
        await sim.close()


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_carrier(args: argparse.Namespace) -> int:
    """`dialer sim --sip`: SIPp on loopback until SIGINT (Ctrl-C), SIGTERM or SIGHUP; then SIPp
    is stopped too."""
    carrier = SippCarrier(args.sip_port, host=args.host, workdir=args.sip_logs, stats_every_s=60)
    # SIGINT too: a shell that starts us in the background leaves SIGINT ignored
    stop_on = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in stop_on}
    try:
        carrier.start()
        print(
            f"SIP carrier (SIPp, {CARRIER_SCENARIO.name}) on udp {carrier.host}:{carrier.port}\n"
            f"  point Asterisk's trunk at it: remote_hosts = {carrier.host}:{carrier.port} "
            "(asterisk-conf/pjsip_wizard.conf),\n"
            '  and the dialer at the trunk: channel_template = "PJSIP/{number}@trunk"\n'
            f"  per-call log: {carrier.log_path}\n"
            "what a number does (its last digits; E.164 without '+'):",
            flush=True,
        )
        width = max(len(pattern) for pattern, _ in BEHAVIOURS)
        for pattern, behaviour in BEHAVIOURS:
            print(f"  {pattern:<{width}}  {behaviour}", flush=True)
        code = carrier.wait()
        log.error("x SIP carrier: sipp exited (%s); see %s", code, carrier.workdir)
        return 1
    except CarrierError as exc:
        log.error("x SIP carrier: %s", exc)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        carrier.stop()
        stats = carrier.stats()
        if stats:
            print(
                f"calls: {stats.get('TotalCallCreated', '?')} created, "
                f"{stats.get('SuccessfulCall(C)', '?')} completed, "
                f"{stats.get('FailedCall(C)', '?')} failed",
                flush=True,
            )


def run(args: argparse.Namespace) -> int:
    if args.sip:
        return run_carrier(args)
    if args.time_scale <= 0:
        log.error("x --time-scale must be > 0, got %s", args.time_scale)
        return 2
    try:
        parse_mix(args.mix)
    except ValueError as exc:
        log.error("x %s", exc)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))
    return 0
