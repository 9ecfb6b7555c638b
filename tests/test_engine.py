"""The dialer engine against the Asterisk simulator: campaigns end consistent, whatever happens."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from dialer.calls.models import AttemptStatus
from dialer.config import AmiServerConfig, Config, Secret
from dialer.demo import demo_config
from dialer.engine import CampaignEngine
from dialer.gates import UnguardedGate
from dialer.importer import import_csv
from dialer.portfolio import write_sample_portfolio
from dialer.store import attempts as repo
from dialer.store.db import Store, open_store
from dialer.store.models import CallAttempt
from pacing.service import make_pacer
from sim.asterisk import AmiConfig, AsteriskSim, PbxConfig
from sim.behaviour import OutcomeMix, SeededDebtors

SCALE = 200.0


@dataclasses.dataclass
class Rig:
    sim: AsteriskSim
    store: Store
    config: Config
    engine: CampaignEngine
    gate: UnguardedGate


def _sim(seed: int = 3, out_of_order: float = 0.02) -> AsteriskSim:
    return AsteriskSim(
        AmiConfig(port=0, auth_failure_delay=0.05),
        PbxConfig(time_scale=SCALE, seed=seed, agi_grace_secs=0.2),
        debtors=SeededDebtors(seed=seed, mix=OutcomeMix(out_of_order=out_of_order)),
    )


async def _rig(
    tmp_path: Path, url: str, sims: list[AsteriskSim], *, debtors: int = 40, agents: int = 4
) -> Rig:
    for sim in sims:
        await sim.start()
    config = demo_config(ami_port=sims[0].port, agents=agents, data_dir=tmp_path, time_scale=SCALE)
    servers = tuple(
        AmiServerConfig(name=f"pbx{i}", port=sim.port, secret=Secret("dialer"))
        for i, sim in enumerate(sims)
    )
    config = dataclasses.replace(
        config,
        database_url=url,
        ami=dataclasses.replace(
            config.ami, servers=servers, reconnect_min_s=0.05, reconnect_max_s=0.2
        ),
    )
    store = open_store(url)
    portfolio = tmp_path / "portfolio.csv"
    write_sample_portfolio(portfolio, debtors=debtors, seed=5)
    import_csv(store, portfolio, tenant="default")
    tenant_id = repo.ensure_tenant(store, "default")
    campaign_id = repo.ensure_campaign(store, tenant_id, "t", "progressive")
    gate = UnguardedGate()
    engine = CampaignEngine(
        config,
        store,
        tenant_id=tenant_id,
        campaign_id=campaign_id,
        pacer=make_pacer("progressive"),
        gate=gate,
    )
    return Rig(sims[0], store, config, engine, gate)


@pytest.fixture
async def rig(tmp_path: Path, database_url: str) -> AsyncIterator[Rig]:
    """The same campaign rig on SQLite and on PostgreSQL."""
    r = await _rig(tmp_path, database_url, [_sim()])
    yield r
    r.store.close()
    await r.sim.close()


async def _run(
    rig: Rig, during: Callable[[], object] | None = None, after_attempts: int = 10
) -> None:
    stop = asyncio.Event()
    async with asyncio.timeout(90):
        task = asyncio.create_task(rig.engine.run(stop))
        if during is not None:
            while rig.engine.stats.originates_sent < after_attempts and not task.done():
                await asyncio.sleep(0.01)
            result = during()
            if asyncio.iscoroutine(result):
                await result
        await task


def _attempt_rows(store: Store) -> list[sa.Row[tuple[int, str, str | None, int]]]:
    with store.engine.connect() as conn:
        return list(
            conn.execute(sa.text("SELECT id, status, outcome, phone_id FROM call_attempts"))
        )


def _assert_consistent(rig: Rig) -> list[sa.Row[tuple[int, str, str | None, int]]]:
    rows = _attempt_rows(rig.store)
    assert rows, "the campaign dialled nobody"
    assert [r for r in rows if r.status != AttemptStatus.ENDED.value] == [], (
        "attempts left in progress"
    )
    assert all(r.outcome for r in rows)
    dialled_twice = [phone for phone, n in Counter(r.phone_id for r in rows).items() if n > 1]
    assert dialled_twice == []
    return rows


def _dialable_phones(store: Store) -> int:
    """Phones a campaign must dial: consent, not do-not-call, their debtor owing."""
    with store.engine.connect() as conn:
        return int(
            conn.execute(
                sa.text(
                    "SELECT count(*) FROM phones p WHERE p.consent AND NOT p.do_not_call AND "
                    "EXISTS (SELECT 1 FROM debts d WHERE d.debtor_id = p.debtor_id AND "
                    "d.status = 'open' AND d.balance > 0)"
                )
            ).scalar_one()
        )


async def test_campaign_dials_every_phone_once_and_ends_with_nothing_in_progress(rig: Rig) -> None:
    await _run(rig)
    rows = _assert_consistent(rig)
    assert len(rows) == rig.sim.stats()["originates"]
    totals = repo.campaign_totals(rig.store, rig.engine.campaign_id)
    assert totals.connected > 0
    assert totals.attempts == len(rows)
    # Only live answers reach agents or count as abandoned (a late connection is both).
    assert totals.connected <= totals.answered
    assert totals.abandoned <= totals.answered
    assert rig.engine.stats.resyncs == 0
    # Each attempt row names its own reservation, the one its outcome was booked against.
    with rig.store.engine.connect() as conn:
        reservations = list(conn.execute(sa.select(CallAttempt.reservation_id)).scalars())
    assert len(set(reservations)) == len(rows)
    assert set(reservations) == {r for r, _, _ in rig.gate.outcomes}
    # The dialer named recordings relative to Asterisk's monitor folder; the rows hold the
    # absolute path MixMonitor reported back.
    with rig.store.engine.connect() as conn:
        paths = conn.execute(
            sa.select(CallAttempt.recording_path).where(CallAttempt.connected_at.is_not(None))
        ).scalars()
        paths = list(paths)
        assert paths, "no connected call"
        assert all(p and "/campaign-" in p and p.endswith(".wav") for p in paths), paths
    # The list is exhausted: every dialable phone (consent, not do-not-call, debtor owing) got
    # its one attempt, including the second and third phones of debtors called before.
    assert len(rows) == _dialable_phones(rig.store)


async def test_ami_drop_mid_campaign_pauses_reconnects_and_never_redials(rig: Rig) -> None:
    await _run(rig, during=lambda: rig.sim.drop_connections(reset=True))
    rows = _assert_consistent(rig)
    conn = rig.engine.connections["pbx0"]
    assert conn.reconnects >= 1
    assert rig.engine.stats.resyncs >= 1
    # Not one Originate more than attempts written: nothing was re-sent after the reconnect.
    # (An Originate written into the dying socket may never arrive; its row is closed honestly.)
    received = rig.sim.stats()["originates"]
    assert isinstance(received, int) and received <= len(rows)
    unsure = [r for r in rows if r.outcome in ("unknown", "failed")]
    assert len(rows) - received <= len(unsure)


async def test_malformed_frame_is_skipped_and_the_connection_survives(rig: Rig) -> None:
    await _run(rig, during=lambda: rig.sim.send_garbage(truncated=False))
    _assert_consistent(rig)
    conn = rig.engine.connections["pbx0"]
    assert conn.bad_frames >= 1
    assert conn.reconnects == 0


async def test_asterisk_restart_closes_vanished_calls_and_the_campaign_goes_on(rig: Rig) -> None:
    await _run(rig, during=lambda: rig.sim.restart(down_seconds=0.1), after_attempts=8)
    rows = _assert_consistent(rig)
    assert rig.engine.connections["pbx0"].reconnects >= 1
    # Calls cut by the restart end as unknown (or answered if we had seen the answer).
    assert {r.outcome for r in rows} - {"unknown"}
    assert len(rows) > 8


async def test_asterisk_shutting_down_burns_no_debtor(tmp_path: Path) -> None:
    # No number of this portfolio is out of order: a `failed` row could only be a refusal.
    rig = await _rig(tmp_path, f"sqlite:///{tmp_path / 'd.db'}", [_sim(out_of_order=0.0)])
    try:
        # A real Asterisk 20 refuses every action for about a second before `Event: Shutdown`.
        # Those refusals say nothing about the debtors' numbers: no attempt may end `failed`,
        # every reservation taken for them is given back, and the phones are dialled later.
        await _run(
            rig,
            during=lambda: rig.sim.restart(down_seconds=0.3, shutdown_notice_s=0.6),
            after_attempts=8,
        )
        assert rig.engine.stats.originate_errors >= 1, "the shutdown should have refused a dial"
        rows = _assert_consistent(rig)
        assert [r for r in rows if r.outcome == "failed"] == []
        # Every phone that qualifies was dialled once in the end (the refused ones included).
        assert len(rows) == _dialable_phones(rig.store)
        # Each reservation was either released (a refusal) or booked, never both.
        booked = {reservation for reservation, _, _ in rig.gate.outcomes}
        assert booked.isdisjoint(rig.gate.released)
        assert len(booked) == len(rows)
    finally:
        rig.store.close()
        await rig.sim.close()


async def test_calls_longer_than_the_maximum_are_hung_up(tmp_path: Path) -> None:
    rig = await _rig(tmp_path, f"sqlite:///{tmp_path / 'd.db'}", [_sim()], debtors=20)
    # 20 simulated seconds: far shorter than the simulated debtors' conversations.
    rig.engine.config = dataclasses.replace(
        rig.config, dialing=dataclasses.replace(rig.config.dialing, max_call_s=20.0)
    )
    try:
        await _run(rig)
        _assert_consistent(rig)
        assert rig.engine.stats.hung_up_too_long > 0
        a = CallAttempt
        with rig.store.engine.connect() as conn:
            talks = conn.execute(
                sa.select(a.answered_at, a.hungup_at).where(a.connected_at.is_not(None))
            ).all()
        assert talks
        # Answered + 20 simulated seconds is 0.1 s here; the debtors would talk minutes (>0.5 s).
        longest = max((end - start).total_seconds() for start, end in talks)
        assert longest < 0.45, longest
    finally:
        rig.store.close()
        await rig.sim.close()


async def test_originates_never_exceed_the_carriers_call_setup_cap(tmp_path: Path) -> None:
    rig = await _rig(tmp_path, f"sqlite:///{tmp_path / 'd.db'}", [_sim()], debtors=15, agents=12)
    # 0.02 setups per simulated second is 4 per wall second at this time scale.
    rig.engine.config = dataclasses.replace(
        rig.config, dialing=dataclasses.replace(rig.config.dialing, max_originates_per_s=0.02)
    )
    try:
        await _run(rig)
        _assert_consistent(rig)
        with rig.store.engine.connect() as conn:
            dialed = sorted(conn.execute(sa.select(CallAttempt.dialed_at)).scalars())
    finally:
        rig.store.close()
        await rig.sim.close()
    assert len(dialed) >= 10
    # Twelve agents ready at once would take twelve calls in the first tick without the cap.
    busiest = max(
        sum(1 for t in dialed if start <= t < start + timedelta(seconds=1)) for start in dialed
    )
    assert busiest <= 5, busiest


async def test_calls_are_spread_over_every_asterisk_server(tmp_path: Path) -> None:
    sims = [_sim(3), _sim(4)]
    rig = await _rig(tmp_path, f"sqlite:///{tmp_path / 'd.db'}", sims, debtors=30)
    try:
        await _run(rig)
        _assert_consistent(rig)
        per_server = [s.stats()["originates"] for s in sims]
        assert all(n > 0 for n in per_server), per_server
    finally:
        rig.store.close()
        for sim in sims:
            await sim.close()


async def test_stop_request_stops_dialling_and_lets_calls_finish(rig: Rig) -> None:
    stop = asyncio.Event()
    async with asyncio.timeout(60):
        task = asyncio.create_task(rig.engine.run(stop))
        while rig.engine.stats.originates_sent < 5:
            await asyncio.sleep(0.01)
        stop.set()
        sent = rig.engine.stats.originates_sent
        await task
    rows = _assert_consistent(rig)
    assert len(rows) == sent
    assert len(rows) < 40


async def test_secrets_and_phone_numbers_never_reach_the_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sim = AsteriskSim(
        AmiConfig(port=0, secret="s3cr3t-pa55"),
        PbxConfig(time_scale=SCALE, seed=3),
        debtors=SeededDebtors(seed=3),
    )
    rig = await _rig(tmp_path, f"sqlite:///{tmp_path / 'd.db'}", [sim], debtors=10, agents=2)
    servers = tuple(
        dataclasses.replace(s, secret=Secret("s3cr3t-pa55")) for s in rig.config.ami.servers
    )
    rig.engine.config = dataclasses.replace(
        rig.config, ami=dataclasses.replace(rig.config.ami, servers=servers)
    )
    caplog.set_level(logging.DEBUG)
    try:
        await _run(rig)
    finally:
        rig.store.close()
        await sim.close()
    _assert_consistent(rig)
    text = caplog.text
    assert "s3cr3t-pa55" not in text
    with rig.store.engine.connect() as conn:
        numbers = [r[0] for r in conn.execute(sa.text("SELECT e164 FROM phones"))]
    assert numbers
    leaked = [n for n in numbers if n.lstrip("+") in text]
    assert leaked == []
    assert "Originate" in text  # the log does talk about the calls


def test_config_repr_hides_the_ami_secret() -> None:
    config = Config(
        ami=dataclasses.replace(Config().ami, servers=(AmiServerConfig(secret=Secret("hunter2")),))
    )
    assert "hunter2" not in repr(config)
    assert "hunter2" not in str(config.ami.servers[0])


def test_live_calls_keep_per_server_and_per_debtor_counts_as_calls_start_and_end() -> None:
    from dialer.calls.state import Call
    from dialer.engine import LiveCall, LiveCalls

    def live(attempt: int, server: str, debtor: int, phone: int) -> LiveCall:
        candidate = repo.DialCandidate(debtor, None, phone, "+15550100", "mobile", None, "x")
        return LiveCall(Call(attempt, f"dlr-{attempt}", server, 0.0), candidate, None)

    calls = LiveCalls()
    calls.add(1, live(1, "pbx-a", debtor=7, phone=70))
    calls.add(2, live(2, "pbx-a", debtor=8, phone=80))
    calls.add(3, live(3, "pbx-b", debtor=7, phone=71))
    assert (calls.on_server("pbx-a"), calls.on_server("pbx-b"), len(calls)) == (2, 1, 3)
    assert calls.has_debtor(7) and calls.phone_ids() == {70, 71, 80}
    calls.pop(1)
    assert calls.has_debtor(7)  # still on the line through another phone
    calls.pop(3)
    calls.pop(3)  # an end reported twice changes nothing
    assert not calls.has_debtor(7) and calls.on_server("pbx-b") == 0
    assert calls.phone_ids() == {80} and len(calls) == 1


async def test_dialer_keeps_handling_calls_while_the_database_is_slow_to_commit(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    committing, loop_alive = threading.Event(), threading.Event()
    write_rows = repo.create_attempts

    def slow_commit(store: Store, new: list[repo.NewAttempt]) -> list[int]:
        if not committing.is_set():
            committing.set()
            # Set only by a coroutine of the dialer's event loop: it must run meanwhile.
            assert loop_alive.wait(10), "the dialer froze while the database committed"
        return write_rows(store, new)

    monkeypatch.setattr(repo, "create_attempts", slow_commit)

    async def heartbeat() -> None:
        while not committing.is_set():
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        loop_alive.set()

    beating = asyncio.create_task(heartbeat())
    await _run(rig)
    await asyncio.wait_for(beating, 5)
    # Every row written, every update applied by the time the run returns.
    rows = _assert_consistent(rig)
    assert len(rows) == rig.sim.stats()["originates"]
