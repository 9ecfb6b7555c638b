"""Debtor models: seeded outcome frequencies, determinism per attempt, patience, AMI outcomes."""

from __future__ import annotations

import asyncio
import math
from collections import Counter

from sim.behaviour import Outcome, OutcomeMix, SeededDebtors, SuffixDebtors
from tests.test_sim_helpers import Probe, running_sim


def _within(count: int, n: int, p: float) -> bool:
    """Inside 5 binomial standard deviations (plus one call) of the expected count."""
    return abs(count - n * p) <= 5 * math.sqrt(n * p * (1 - p)) + 1


def test_outcome_frequencies_follow_the_mix() -> None:
    mix = OutcomeMix(human=0.4, machine=0.2, busy=0.1, congestion=0.05, unallocated=0.05)
    model = SeededDebtors(seed=11, mix=mix)
    n = 20_000
    counts = Counter(model.fate(f"1555{i:07d}", 1).outcome for i in range(n))
    for outcome in Outcome:
        assert _within(counts[outcome], n, mix.probability(outcome)), (outcome, counts)


def test_fate_depends_on_seed_number_and_attempt_never_on_call_order() -> None:
    model = SeededDebtors(seed=3)
    numbers = [f"1555{i:07d}" for i in range(200)]
    forwards = {(n, a): model.fate(n, a) for n in numbers for a in (1, 2)}
    backwards = {(n, a): model.fate(n, a) for n in reversed(numbers) for a in (2, 1)}
    assert forwards == backwards
    assert any(forwards[(n, 1)] != forwards[(n, 2)] for n in numbers)
    other = SeededDebtors(seed=4)
    assert any(other.fate(n, 1) != forwards[(n, 1)] for n in numbers)


def test_mix_rejects_probabilities_above_one() -> None:
    try:
        OutcomeMix(human=0.9, machine=0.2)
    except ValueError as exc:
        assert "sum" in str(exc)
    else:
        raise AssertionError("a mix summing to 1.1 was accepted")


def test_by_suffix_reproduces_the_capture_dialplan() -> None:
    model = SuffixDebtors()
    table = {
        "1": Outcome.HUMAN,
        "2": Outcome.BUSY,
        "3": Outcome.NO_ANSWER,
        "4": Outcome.MACHINE,
        "5": Outcome.CONGESTION,
        "6": Outcome.REJECTED,
        "7": Outcome.SHORT_CALL,
        "0": Outcome.UNALLOCATED,
    }
    assert {d: model.fate(f"1555000{d}", 1).outcome for d in table} == table
    assert model.fate("15550004", 1).amd_status == "MACHINE"


async def test_thousands_of_originates_over_ami_match_the_model() -> None:
    """2,000 calls at a huge time scale: OriginateResponse reasons follow the mix."""
    mix = OutcomeMix(human=0.35, machine=0.15, busy=0.1, congestion=0.05, unallocated=0.05)
    n = 2000
    async with running_sim(time_scale=100_000, debtors=SeededDebtors(seed=5, mix=mix)) as sim:
        probe = await Probe.connect(sim.port)
        await probe.login()
        for i in range(n):
            probe.send(
                "Originate",
                ("Channel", f"Local/1555{i:07d}@debtor-sim"),
                ("Context", "dialer-connect"),
                ("Exten", "s"),
                ("Timeout", "90000"),  # longer than any ring, so no-answer is the only Reason 3
                ("Async", "true"),
            )
        async with asyncio.timeout(30):
            await probe.wait_for(lambda m: m.response is not None and m.action_id == f"t-{n}")
            await sim.wait_calls_ended()
        await probe.action("Ping")
        reasons = Counter(m.get("Reason") for m in probe.messages if m.event == "OriginateResponse")
        await probe.close()
    assert sum(reasons.values()) == n
    expected = {
        "4": mix.human + mix.machine,
        "5": mix.busy,
        "8": mix.congestion,
        "0": mix.unallocated + mix.rejected,
        "3": mix.probability(Outcome.NO_ANSWER),
    }
    for reason, p in expected.items():
        assert _within(reasons[reason], n, p), (reason, reasons)
    assert sim.stats()["originates"] == n


async def test_a_live_person_left_waiting_hangs_up_after_their_patience() -> None:
    """FastAGI never routes the call: the debtor puts the phone down; AGISTATUS=HANGUP."""
    got_hangup = asyncio.Event()

    async def slow_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (await reader.readline()).strip():
            pass
        if (await reader.readline()).strip() == b"HANGUP":
            got_hangup.set()
        writer.close()

    server = await asyncio.start_server(slow_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    everyone_answers = OutcomeMix(
        human=1.0, machine=0.0, busy=0.0, congestion=0.0, unallocated=0.0, rejected=0.0
    )
    debtors = SeededDebtors(seed=1, mix=everyone_answers, patience_median_secs=5.0)
    async with running_sim(time_scale=100, debtors=debtors) as sim:
        probe = await Probe.connect(sim.port)
        await probe.login()
        probe.send(
            "Originate",
            ("Channel", "Local/15551234@debtor-sim"),
            ("Context", "dialer-connect"),
            ("Exten", "s"),
            ("Async", "true"),
            ("Variable", f"DIALER_AGI=agi://127.0.0.1:{port}"),
        )
        status = await probe.event("VarSet", Variable="AGISTATUS")
        assert status.get("Value") == "HANGUP"
        async with asyncio.timeout(5):
            await got_hangup.wait()
            await sim.wait_calls_ended()
        far_end = [m for m in probe.messages if m.event == "SoftHangupRequest"]
        assert far_end and (far_end[0].get("Channel") or "").endswith(";2")
        await probe.close()
    server.close()
