"""The supervisor console's body: live figures, campaign controls, listen / whisper / barge."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from dialer.ami.protocol import encode_action
from dialer.calls.models import AttemptStatus, Outcome
from dialer.console import (
    AbandonTotals,
    CampaignControls,
    CampaignFigures,
    CampaignNotFound,
    ControlError,
    EngineView,
    SpyError,
    WindowTotals,
    abandon_totals,
    apply_controls,
    campaign_json,
    spy_originate,
)
from dialer.console.spy import spy_call_id
from dialer.console.store import campaign_in_tenant, local_day_start, tenant_campaigns
from dialer.store import campaigns, users
from dialer.store.attempts import (
    AttemptChange,
    NewAttempt,
    campaign_totals,
    create_attempts,
    ensure_campaign,
    ensure_tenant,
    update_attempts,
)
from dialer.store.db import Store, open_store
from dialer.store.models import AuditEvent, Role
from pacing.models import DialMode, Overrides
from pacing.service import make_pacer
from tests.nailed_flow import spy_fields
from tests.test_store_attempts import add_debtor

NEW_YORK = ZoneInfo("America/New_York")
# 10:00 in New York (EDT, UTC-4): the local day began at 04:00 UTC.
NOW = datetime(2026, 5, 4, 14, 0, tzinfo=UTC)


# ---- fixtures and helpers ----


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    opened = open_store(database_url)
    yield opened
    opened.close()


@dataclass(frozen=True)
class Seed:
    tenant_id: int
    campaign_id: int
    other_campaign_id: int
    debtor_id: int
    phone_id: int


@pytest.fixture
def seed(store: Store) -> Seed:
    tenant_id = ensure_tenant(store, "acme", now=NOW)
    campaign_id = ensure_campaign(store, tenant_id, "overdue-90", "predictive", now=NOW)
    other = ensure_campaign(store, tenant_id, "overdue-30", "progressive", now=NOW)
    who = add_debtor(store, tenant_id, "d1", "500.00")
    return Seed(tenant_id, campaign_id, other, who.debtor_id, who.phone_ids[0])


@dataclass(frozen=True)
class Call:
    answered_at: datetime | None
    outcome: Outcome
    abandoned: bool = False


def add_calls(store: Store, seed: Seed, calls: list[Call], campaign_id: int | None = None) -> None:
    """Ended attempts, dialled five seconds before they were answered (or before NOW)."""
    new = [
        NewAttempt(
            tenant_id=seed.tenant_id,
            campaign_id=campaign_id or seed.campaign_id,
            debtor_id=seed.debtor_id,
            debt_id=None,
            phone_id=seed.phone_id,
            node_id="n1",
            server="asterisk1",
            uniqueid=None,
            dialed_at=(c.answered_at or NOW) - timedelta(seconds=5),
        )
        for c in calls
    ]
    ids = create_attempts(store, new)
    changes = [
        (
            attempt_id,
            AttemptChange(
                status=AttemptStatus.ENDED,
                outcome=c.outcome,
                abandoned=c.abandoned,
                answered_at=c.answered_at,
                hungup_at=(c.answered_at or NOW) + timedelta(seconds=30),
            ),
        )
        for attempt_id, c in zip(ids, calls, strict=True)
    ]
    assert update_attempts(store, changes) == []


def count_attempt_queries(store: Store) -> list[str]:
    """Every statement reading call_attempts from now on (appended as they run)."""
    seen: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "call_attempts" in statement:
            seen.append(statement)

    sa.event.listen(store.engine, "before_cursor_execute", before)
    return seen


def view(**changes: Any) -> EngineView:
    values: dict[str, Any] = {
        "status": "running",
        "dial_mode": "predictive",
        "target_abandon_rate": 0.025,
        "max_dial_ratio": 3.0,
        "ringing": 4,
        "waiting": 1,
        "connected": 6,
        "dials_in_last_minute": 42,
        "live_answer_rate": 0.31234,
        "occupancy": 0.81234,
        "mean_talk_s": 183.25,
        "mean_wrap_up_s": 11.04,
        "agents_by_state": {"ready": 2, "on_call": 6, "wrap_up": 1, "paused": 1},
    }
    values.update(changes)
    return EngineView(**values)


# ---- abandonment from the store ----

# Answered today (New York), yesterday evening New York time but within 24 hours, two days ago,
# more than 30 days ago; a machine, an unanswered call, one in the future (a clock ahead).
MIXED = [
    Call(NOW - timedelta(hours=1), Outcome.ANSWERED, abandoned=True),
    Call(NOW - timedelta(hours=1), Outcome.ANSWERED),
    Call(datetime(2026, 5, 4, 3, 0, tzinfo=UTC), Outcome.ANSWERED, abandoned=True),
    Call(NOW - timedelta(days=2), Outcome.ANSWERED),
    Call(NOW - timedelta(days=2), Outcome.ANSWERED, abandoned=True),
    Call(NOW - timedelta(days=31), Outcome.ANSWERED, abandoned=True),
    Call(NOW - timedelta(minutes=5), Outcome.MACHINE),
    Call(None, Outcome.NO_ANSWER),
    Call(NOW + timedelta(hours=1), Outcome.ANSWERED, abandoned=True),
]


def test_abandonment_is_counted_over_the_local_day_24_hours_and_30_days(
    store: Store, seed: Seed
) -> None:
    add_calls(store, seed, MIXED)
    # Another campaign's abandons are not this one's.
    add_calls(
        store,
        seed,
        [Call(NOW - timedelta(hours=1), Outcome.ANSWERED, True)],
        seed.other_campaign_id,
    )
    totals = abandon_totals(store, seed.tenant_id, seed.campaign_id, now=NOW, tz=NEW_YORK)
    assert totals.at == NOW
    assert totals.today == WindowTotals(answered=2, abandoned=1)
    assert totals.last_24h == WindowTotals(answered=3, abandoned=2)
    assert totals.last_30d == WindowTotals(answered=5, abandoned=3)
    assert totals.today.rate == 0.5
    assert totals.last_30d.rate == pytest.approx(0.6)
    # In UTC the 03:00 call was today too.
    in_utc = abandon_totals(store, seed.tenant_id, seed.campaign_id, now=NOW, tz=UTC)
    assert in_utc.today == WindowTotals(answered=3, abandoned=2)
    # Another tenant sees nothing of it.
    other_tenant = ensure_tenant(store, "other", now=NOW)
    nothing = abandon_totals(store, other_tenant, seed.campaign_id, now=NOW, tz=UTC)
    assert nothing.last_30d == WindowTotals(0, 0)


def test_the_windows_count_as_the_campaign_totals_do(store: Store, seed: Seed) -> None:
    recent = [
        c for c in MIXED if c.answered_at is None or NOW - timedelta(days=29) < c.answered_at <= NOW
    ]
    add_calls(store, seed, recent)
    month = abandon_totals(store, seed.tenant_id, seed.campaign_id, now=NOW, tz=UTC).last_30d
    totals = campaign_totals(store, seed.campaign_id)
    assert (month.answered, month.abandoned) == (totals.answered, totals.abandoned)


def test_no_live_answer_means_no_rate_rather_than_zero(store: Store, seed: Seed) -> None:
    add_calls(
        store, seed, [Call(NOW - timedelta(minutes=1), Outcome.MACHINE), Call(None, Outcome.BUSY)]
    )
    totals = abandon_totals(store, seed.tenant_id, seed.campaign_id, now=NOW, tz=NEW_YORK)
    assert totals.today == WindowTotals(0, 0)
    assert (
        totals.today.rate is None and totals.last_24h.rate is None and totals.last_30d.rate is None
    )


@pytest.mark.parametrize(
    ("now", "zone", "start"),
    [
        # New York: spring forward at 02:00; that day still began at midnight EST.
        (
            datetime(2026, 3, 8, 12, 0, tzinfo=UTC),
            "America/New_York",
            datetime(2026, 3, 8, 5, 0, tzinfo=UTC),
        ),
        # Santiago skips midnight (00:00 -> 01:00): the day begins when the clocks jump.
        (
            datetime(2026, 9, 6, 12, 0, tzinfo=UTC),
            "America/Santiago",
            datetime(2026, 9, 6, 4, 0, tzinfo=UTC),
        ),
        # Shanghai, an hour after its midnight (16:00 UTC the day before).
        (
            datetime(2026, 5, 4, 17, 0, tzinfo=UTC),
            "Asia/Shanghai",
            datetime(2026, 5, 4, 16, 0, tzinfo=UTC),
        ),
    ],
)
def test_today_begins_at_the_campaigns_local_midnight(
    now: datetime, zone: str, start: datetime
) -> None:
    assert local_day_start(now, ZoneInfo(zone)) == start


def test_a_naive_time_is_refused(store: Store, seed: Seed) -> None:
    with pytest.raises(ValueError, match="naive"):
        abandon_totals(
            store, seed.tenant_id, seed.campaign_id, now=NOW.replace(tzinfo=None), tz=UTC
        )


def test_campaigns_are_found_only_in_their_tenant(store: Store, seed: Seed) -> None:
    ref = campaign_in_tenant(store, seed.tenant_id, seed.campaign_id)
    assert ref is not None and ref.name == "overdue-90" and ref.dial_mode == "predictive"
    other_tenant = ensure_tenant(store, "other", now=NOW)
    assert campaign_in_tenant(store, other_tenant, seed.campaign_id) is None
    assert [c.name for c in tenant_campaigns(store, seed.tenant_id)] == ["overdue-30", "overdue-90"]
    assert tenant_campaigns(store, other_tenant) == []


# ---- the figures the page reads ----

# Every field supervisor.js reads from a campaign, with its JSON type(s).
PAGE_FIELDS: dict[str, tuple[type, ...]] = {
    "id": (int,),
    "name": (str,),
    "status": (str,),
    "dial_mode": (str,),
    "target_abandon_rate": (float,),
    "max_dial_ratio": (float,),
    "abandon_rate_today": (float, type(None)),
    "abandon_rate_24h": (float, type(None)),
    "abandon_rate_30d": (float, type(None)),
    "dials_per_min": (float,),
    "live_answer_rate": (float, type(None)),
    "ringing": (int,),
    "waiting": (int,),
    "connected": (int,),
    "occupancy": (float, type(None)),
    "mean_talk_s": (float, type(None)),
    "mean_wrap_up_s": (float, type(None)),
    "agents_by_state": (dict,),
    "series": (list,),
}


def test_figures_have_every_field_the_page_reads_and_nothing_else() -> None:
    totals = AbandonTotals(NOW, WindowTotals(400, 9), WindowTotals(1000, 21), WindowTotals(0, 0))
    out = campaign_json(7, "overdue-90", view(), totals)
    assert set(out) == set(PAGE_FIELDS)
    for key, types in PAGE_FIELDS.items():
        assert isinstance(out[key], types) and not isinstance(out[key], bool), key
    assert out["id"] == 7 and out["name"] == "overdue-90"
    assert out["status"] == "running" and out["dial_mode"] == "predictive"
    assert out["target_abandon_rate"] == 0.025 and out["max_dial_ratio"] == 3.0
    assert out["abandon_rate_today"] == 0.0225
    assert out["abandon_rate_24h"] == 0.021
    assert out["abandon_rate_30d"] is None  # no live answer: nothing to be a share of
    assert out["dials_per_min"] == 42.0
    assert out["live_answer_rate"] == 0.3123 and out["occupancy"] == 0.8123
    assert out["mean_talk_s"] == 183.2 and out["mean_wrap_up_s"] == 11.0
    assert (out["ringing"], out["waiting"], out["connected"]) == (4, 1, 6)
    assert out["agents_by_state"] == {"ready": 2, "on_call": 6, "wrap_up": 1, "paused": 1}
    assert out["series"] == []
    quiet = campaign_json(
        7, "x", view(live_answer_rate=None, occupancy=None, mean_talk_s=None), None
    )
    assert quiet["abandon_rate_today"] is None and quiet["live_answer_rate"] is None
    assert quiet["occupancy"] is None and quiet["mean_talk_s"] is None


def test_the_store_is_asked_at_most_once_per_refresh_period(store: Store, seed: Seed) -> None:
    add_calls(
        store,
        seed,
        [
            Call(NOW - timedelta(minutes=10), Outcome.ANSWERED),
            Call(NOW - timedelta(minutes=9), Outcome.ANSWERED),
        ],
    )
    board = CampaignFigures(store, seed.tenant_id, seed.campaign_id, "overdue-90", tz=NEW_YORK)
    queries = count_attempt_queries(store)
    first = board.figures(view(), NOW)
    assert first["abandon_rate_today"] == 0.0
    assert len(queries) == 1
    # Fifty supervisors polling every second for the next 4.9 s: still that one query ...
    add_calls(store, seed, [Call(NOW, Outcome.ANSWERED, abandoned=True)])
    for tenth in range(50):
        at = NOW + timedelta(seconds=tenth / 10)
        for _ in range(50):
            out = board.figures(view(ringing=tenth), at)
        assert out["ringing"] == tenth  # ... while the engine's part is always fresh
        assert out["abandon_rate_today"] == 0.0
    assert len(queries) == 1
    # ... and the next one 5 s after it, which sees the new abandon.
    later = board.figures(view(), NOW + timedelta(seconds=5))
    assert len(queries) == 2
    assert later["abandon_rate_today"] == pytest.approx(1 / 3, abs=1e-6)
    assert board.totals is not None and board.totals.today == WindowTotals(3, 1)


async def test_the_event_loop_gets_the_figures_from_a_worker_and_can_force_a_refresh(
    store: Store, seed: Seed
) -> None:
    board = CampaignFigures(store, seed.tenant_id, seed.campaign_id, "overdue-90", tz=NEW_YORK)
    queries = count_attempt_queries(store)
    first = await board.live(view(), NOW)
    expected = campaign_json(seed.campaign_id, "overdue-90", view(), board.totals)
    assert {**first, "series": []} == expected
    assert first["series"] == [
        {"t": "2026-05-04T14:00:00+00:00", "abandon_rate": None, "occupancy": 0.8123}
    ]
    assert first["abandon_rate_today"] is None and len(queries) == 1
    add_calls(store, seed, [Call(NOW, Outcome.ANSWERED, abandoned=True)])
    assert (await board.live(view(), NOW + timedelta(seconds=1)))["abandon_rate_today"] is None
    board.invalidate()
    assert (await board.live(view(), NOW + timedelta(seconds=2)))["abandon_rate_today"] == 1.0
    assert len(queries) == 2


def test_threads_asking_at_once_share_one_query(store: Store, seed: Seed) -> None:
    board = CampaignFigures(store, seed.tenant_id, seed.campaign_id, "overdue-90", tz=NEW_YORK)
    queries = count_attempt_queries(store)
    start = threading.Barrier(8)
    results: list[dict[str, Any]] = []

    def poll() -> None:
        start.wait()
        results.append(board.figures(view(), NOW))

    workers = [threading.Thread(target=poll) for _ in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(results) == 8 and len(queries) == 1


def test_a_store_failure_keeps_the_last_figures_and_retries_later(tmp_path: Any) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'd.db'}")
    try:
        tenant_id = ensure_tenant(store, "acme", now=NOW)
        campaign_id = ensure_campaign(store, tenant_id, "c", "predictive", now=NOW)
        who = add_debtor(store, tenant_id, "d1", "10.00")
        seed = Seed(tenant_id, campaign_id, campaign_id, who.debtor_id, who.phone_ids[0])
        add_calls(
            store,
            seed,
            [
                Call(NOW - timedelta(minutes=1), Outcome.ANSWERED, True),
                Call(NOW - timedelta(minutes=2), Outcome.ANSWERED),
            ],
        )
        board = CampaignFigures(store, tenant_id, campaign_id, "c", tz=UTC)
        assert board.figures(view(), NOW)["abandon_rate_today"] == 0.5
        failures: list[str] = []

        def fail(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            if "call_attempts" in statement:
                failures.append(statement)
                raise sa.exc.OperationalError(statement, {}, Exception("database is down"))

        sa.event.listen(store.engine, "before_cursor_execute", fail)
        out = board.figures(view(ringing=9), NOW + timedelta(seconds=5))
        assert out["abandon_rate_today"] == 0.5 and out["ringing"] == 9
        assert len(failures) == 1
        # Not asked again on every poll while it is down: once per refresh period.
        board.figures(view(), NOW + timedelta(seconds=6))
        assert len(failures) == 1
        board.figures(view(), NOW + timedelta(seconds=10))
        assert len(failures) == 2
        # Never read at all: null rates, no error for the page.
        fresh = CampaignFigures(store, tenant_id, campaign_id, "c", tz=UTC)
        assert fresh.figures(view(), NOW)["abandon_rate_30d"] is None
    finally:
        store.close()


def test_the_series_keeps_one_point_per_period_over_the_last_ten_minutes(
    store: Store, seed: Seed
) -> None:
    add_calls(
        store,
        seed,
        [
            Call(NOW - timedelta(minutes=30), Outcome.ANSWERED, True),
            Call(NOW - timedelta(minutes=31), Outcome.ANSWERED),
        ],
    )
    board = CampaignFigures(store, seed.tenant_id, seed.campaign_id, "c", tz=UTC)
    # Polled every second for 15 minutes, by two supervisors.
    for second in range(15 * 60):
        for _ in range(2):
            out = board.figures(view(occupancy=second / 1000), NOW + timedelta(seconds=second))
    series = out["series"]
    times = [datetime.fromisoformat(p["t"]) for p in series]
    # One every 5 s (not one per poll), none older than 600 s at the last poll (14:14:59).
    assert times[0] == NOW + timedelta(seconds=300) and times[-1] == NOW + timedelta(seconds=895)
    assert all(b - a == timedelta(seconds=5) for a, b in itertools.pairwise(times))
    assert len(series) == 120
    assert series[-1] == {"t": "2026-05-04T14:14:55+00:00", "abandon_rate": 0.5, "occupancy": 0.895}
    # A clock set back starts the chart again rather than drawing backwards.
    back = board.figures(view(), NOW)
    assert [p["t"] for p in back["series"]] == ["2026-05-04T14:00:00+00:00"]


# ---- campaign controls ----


@dataclass(frozen=True)
class Supervisor:
    user_id: int
    username: str


@pytest.fixture
def supervisor(store: Store) -> Supervisor:
    user = users.add_user(store, "acme", "sue", "correct horse battery", Role.SUPERVISOR, now=NOW)
    return Supervisor(user.id, user.username)


@pytest.mark.parametrize(
    ("controls", "field"),
    [
        (CampaignControls(), "controls"),
        (CampaignControls(status="stopped"), "status"),
        (CampaignControls(status="RUNNING"), "status"),
        (CampaignControls(dial_mode="turbo"), "dial_mode"),
        (CampaignControls(target_abandon_rate=0.0), "target_abandon_rate"),
        (CampaignControls(target_abandon_rate=-0.01), "target_abandon_rate"),
        (CampaignControls(target_abandon_rate=0.0301), "target_abandon_rate"),
        (
            CampaignControls(target_abandon_rate=3.0),
            "target_abandon_rate",
        ),  # a percent, not a fraction
        (CampaignControls(target_abandon_rate=float("nan")), "target_abandon_rate"),
        (CampaignControls(target_abandon_rate=True), "target_abandon_rate"),
        (CampaignControls(target_abandon_rate="0.02"), "target_abandon_rate"),  # type: ignore[arg-type]
        (CampaignControls(max_dial_ratio=0.99), "max_dial_ratio"),
        (CampaignControls(max_dial_ratio=10.5), "max_dial_ratio"),
        (CampaignControls(max_dial_ratio=float("inf")), "max_dial_ratio"),
        (CampaignControls(max_dial_ratio=float("nan")), "max_dial_ratio"),
        (CampaignControls(dial_mode="ratio", max_dial_ratio=0), "max_dial_ratio"),
    ],
)
def test_controls_out_of_range_are_refused_naming_the_field(
    controls: CampaignControls, field: str
) -> None:
    with pytest.raises(ControlError) as refused:
        controls.validate()
    assert refused.value.field == field


def test_controls_within_range_pass_and_the_legal_limit_is_the_campaigns() -> None:
    for mode in DialMode:
        CampaignControls(dial_mode=mode.value).validate()
    CampaignControls(status="paused", target_abandon_rate=0.03, max_dial_ratio=10).validate()
    CampaignControls(status="running", target_abandon_rate=0.001, max_dial_ratio=1).validate()
    # A stricter campaign (a regulator's 1%, or the agency's own rule) ...
    with pytest.raises(ControlError, match=r"at most the legal limit 0\.01"):
        CampaignControls(target_abandon_rate=0.02).validate(legal_max_abandon_rate=0.01)
    # ... or a laxer one.
    CampaignControls(target_abandon_rate=0.05).validate(legal_max_abandon_rate=0.05)


def test_a_change_is_stored_audited_with_old_and_new_and_followed_by_the_pacer(
    store: Store, seed: Seed, supervisor: Supervisor
) -> None:
    first = apply_controls(
        store,
        seed.tenant_id,
        seed.campaign_id,
        CampaignControls(status="paused", target_abandon_rate=0.02),
        user=supervisor,
        now=NOW,
        client="10.0.0.5",
    )
    assert first.new == {"status": "paused", "target_abandon_rate": 0.02}
    assert first.old == {"status": "running", "target_abandon_rate": None}  # None: as configured
    second = apply_controls(
        store,
        seed.tenant_id,
        seed.campaign_id,
        CampaignControls(
            status="running", dial_mode="ratio", target_abandon_rate=0.015, max_dial_ratio=2.5
        ),
        user=supervisor,
        now=NOW + timedelta(seconds=1),
    )
    assert second.old == {
        "status": "paused",
        "dial_mode": "predictive",
        "target_abandon_rate": 0.02,
        "max_dial_ratio": None,
    }
    assert second.revision == first.revision + 1
    stored = campaigns.pacing_overrides(store, seed.campaign_id)
    assert stored == campaigns.PacingOverrides(
        revision=second.revision,
        target_abandon_rate=0.015,
        max_dial_ratio=2.5,
        dial_mode="ratio",
        paused=False,
    )
    events = users.list_audit(store, seed.tenant_id)
    assert [(e.action, e.target, e.username, e.user_id) for e in events] == [
        ("campaign.controls", f"campaign:{seed.campaign_id}", "sue", supervisor.user_id)
    ] * 2
    assert events[0].old_value == second.old and events[0].new_value == second.new
    assert events[1].old_value == first.old and events[1].new_value == first.new
    assert events[1].client == "10.0.0.5" and events[1].at == NOW
    # The engine hands the stored overrides to its pacer (_follow_supervisor): it takes them.
    pacer = make_pacer("predictive")
    pacer.apply(
        Overrides(
            target_abandon_rate=stored.target_abandon_rate,
            max_dial_ratio=stored.max_dial_ratio,
            dial_mode=DialMode(stored.dial_mode) if stored.dial_mode else None,
            paused=stored.paused,
        )
    )
    assert (
        pacer.settings.dial_mode is DialMode.RATIO and pacer.settings.target_abandon_rate == 0.015
    )


def test_a_refused_change_stores_and_audits_nothing(
    store: Store, seed: Seed, supervisor: Supervisor
) -> None:
    before = campaigns.pacing_overrides(store, seed.campaign_id)
    for bad in (
        CampaignControls(status="paused", target_abandon_rate=0.04),  # over the legal 3%
        CampaignControls(dial_mode="predictive", max_dial_ratio=50),
        CampaignControls(),
    ):
        with pytest.raises(ControlError):
            apply_controls(store, seed.tenant_id, seed.campaign_id, bad, user=supervisor, now=NOW)
    # A campaign of another tenant is not found, and not changed either.
    other_tenant = ensure_tenant(store, "other", now=NOW)
    with pytest.raises(CampaignNotFound):
        apply_controls(
            store,
            other_tenant,
            seed.campaign_id,
            CampaignControls(status="paused"),
            user=supervisor,
            now=NOW,
        )
    assert campaigns.pacing_overrides(store, seed.campaign_id) == before
    with store.begin() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(AuditEvent)).scalar_one() == 0


# ---- listen / whisper / barge ----

LAB_TARGET = "Local/agent1@agents-00000000;1"


@pytest.mark.parametrize("mode", ["listen", "whisper", "barge"])
def test_the_spy_originate_is_what_the_dialplan_and_the_lab_expect(mode: str) -> None:
    fields = spy_originate("lab1", 1, "Local/supervisor1@agents", LAB_TARGET, mode)
    assert fields == spy_fields(LAB_TARGET, mode)


def test_the_spy_originate_bytes_on_the_wire() -> None:
    fields = spy_originate("node1", 12, "PJSIP/2001", "node1-agent-a7-3", "barge")
    assert encode_action("Originate", "node1-99", fields) == (
        b"Action: Originate\r\n"
        b"ActionID: node1-99\r\n"
        b"Channel: PJSIP/2001\r\n"
        b"Context: dialer-spy\r\n"
        b"Exten: s\r\n"
        b"Priority: 1\r\n"
        b"Timeout: 60000\r\n"
        b'CallerID: "Dialer" <2001>\r\n'
        b"Async: true\r\n"
        b"ChannelId: node1-spy-12\r\n"
        b"OtherChannelId: node1-spy-12-2\r\n"
        b"Variable: SPY_TARGET=node1-agent-a7-3\r\n"
        b"Variable: SPY_MODE=barge\r\n"
        b"\r\n"
    )


@pytest.mark.parametrize(
    "phone",
    [
        "PJSIP/1001",
        "PJSIP/1001@trunk",
        "SIP/peer/5551234",
        "IAX2/user@host/ext",
        "DAHDI/g1/5551234",
        "Local/sup1@agents/n",
        "PJSIP/+4420709460#1",
    ],
)
def test_plausible_dial_strings_are_accepted(phone: str) -> None:
    assert spy_originate("n1", 1, phone, "PJSIP/1001-0000002a", "listen")[0] == ("Channel", phone)


@pytest.mark.parametrize(
    ("phone", "target", "mode", "field"),
    [
        ("PJSIP/1001", LAB_TARGET, "spy", "mode"),
        ("PJSIP/1001", LAB_TARGET, "Listen", "mode"),
        ("", LAB_TARGET, "listen", "phone"),
        ("1001", LAB_TARGET, "listen", "phone"),  # an extension alone: the web fills the template
        ("PJSIP/", LAB_TARGET, "listen", "phone"),
        ("/1001", LAB_TARGET, "listen", "phone"),
        ("PJSIP/1001\r\nAction: Hangup\r\nChannel: PJSIP/1002", LAB_TARGET, "listen", "phone"),
        ("PJSIP/1001\n", LAB_TARGET, "listen", "phone"),
        ("PJSIP/1001,PJSIP/1002", LAB_TARGET, "listen", "phone"),
        ("PJSIP/1001|PJSIP/1002", LAB_TARGET, "listen", "phone"),
        ("PJSIP/1001&PJSIP/1002", LAB_TARGET, "listen", "phone"),
        ("PJSIP/1001 ", LAB_TARGET, "listen", "phone"),
        ("PJSIP/${EVIL}", LAB_TARGET, "listen", "phone"),
        ('PJSIP/"1001"', LAB_TARGET, "listen", "phone"),
        ("PJSIP/" + "1" * 130, LAB_TARGET, "listen", "phone"),
        ("PJSIP/1001", "", "listen", "target"),
        ("PJSIP/1001", "PJSIP/1001-0000002a,qB", "listen", "target"),  # ChanSpy option injection
        ("PJSIP/1001", "PJSIP/1001-0000002a)", "listen", "target"),
        ("PJSIP/1001", "PJSIP/1001-0000002a\r\nVariable: X=1", "listen", "target"),
        ("PJSIP/1001", "PJSIP/1001|x", "listen", "target"),
        ("PJSIP/1001", "${CHANNEL}", "listen", "target"),
    ],
)
def test_unsafe_or_unknown_spy_requests_are_refused(
    phone: str, target: str, mode: str, field: str
) -> None:
    with pytest.raises(SpyError) as refused:
        spy_originate("n1", 1, phone, target, mode)
    assert refused.value.field == field


def test_the_spy_call_id_is_node_spy_sequence() -> None:
    assert spy_call_id("lab1", 1) == "lab1-spy-1"
    for node, seq in (("", 1), ("a b", 1), ("n\r\n", 1), ("n1", -1), ("n1", True)):
        with pytest.raises(SpyError):
            spy_call_id(node, seq)


@given(phone=st.text(max_size=40), target=st.text(max_size=40))
def test_whatever_is_typed_nothing_unsafe_reaches_asterisk(phone: str, target: str) -> None:
    try:
        fields = spy_originate("n1", 1, phone, target, "whisper")
    except SpyError:
        return
    encode_action("Originate", "n1-1", fields)  # no line break: the encoder would refuse it
    variables = [v for k, v in fields if k == "Variable"]
    assert variables == [f"SPY_TARGET={target}", "SPY_MODE=whisper"]
    for value in (phone, target):
        assert not set(value) & set(",|\r\n ()\"'${}[]&\\")
