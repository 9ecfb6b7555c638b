"""What the dialer engine asks of the store: whom to call, attempt rows, totals, dispositions."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from dialer.calls.models import AttemptStatus, Outcome
from dialer.errors import StoreError
from dialer.store.attempts import (
    AttemptChange,
    NewAttempt,
    attempt_by_uniqueid,
    attempts_in_progress,
    campaign_totals,
    create_attempt,
    ensure_agent,
    ensure_campaign,
    ensure_tenant,
    get_attempt,
    next_candidates,
    record_disposition,
    update_attempt,
    update_attempts,
)
from dialer.store.db import Store, open_store
from dialer.store.models import Agent, Debt, Debtor, Disposition, Phone

T0 = datetime(2026, 5, 4, 14, 0, tzinfo=UTC)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    opened = open_store(database_url)
    yield opened
    opened.close()


@dataclass(frozen=True)
class Seeded:
    debtor_id: int
    debt_id: int
    phone_ids: tuple[int, ...]


def add_debtor(
    store: Store,
    tenant_id: int,
    external_id: str,
    balance: str,
    phones: tuple[str, ...] = ("+12125550100",),
    *,
    consent: bool = True,
    do_not_call: bool = False,
    debt_status: str = "open",
    timezone: str | None = "America/New_York",
) -> Seeded:
    with store.session() as session:
        debtor = Debtor(
            tenant_id=tenant_id,
            external_id=external_id,
            full_name=f"Debtor {external_id}",
            timezone=timezone,
            created_at=T0,
        )
        session.add(debtor)
        session.flush()
        debt = Debt(
            tenant_id=tenant_id,
            debtor_id=debtor.id,
            external_id=f"acc-{external_id}",
            principal=Decimal(balance) + 100,
            balance=Decimal(balance),
            currency="USD",
            days_past_due=30,
            status=debt_status,
            created_at=T0,
        )
        rows = [
            Phone(
                tenant_id=tenant_id,
                debtor_id=debtor.id,
                e164=number,
                phone_type="mobile",
                consent=consent,
                do_not_call=do_not_call,
                created_at=T0,
            )
            for number in phones
        ]
        session.add_all([debt, *rows])
        session.flush()
        return Seeded(debtor.id, debt.id, tuple(p.id for p in rows))


@pytest.fixture
def campaign(store: Store) -> tuple[int, int]:
    tenant_id = ensure_tenant(store, "acme", now=T0)
    return tenant_id, ensure_campaign(store, tenant_id, "overdue-90", "predictive", now=T0)


def dial(
    store: Store, campaign: tuple[int, int], who: Seeded, phone: int = 0, node: str = "n1"
) -> int:
    tenant_id, campaign_id = campaign
    return create_attempt(
        store,
        NewAttempt(
            tenant_id=tenant_id,
            campaign_id=campaign_id,
            debtor_id=who.debtor_id,
            debt_id=who.debt_id,
            phone_id=who.phone_ids[phone],
            node_id=node,
            server="asterisk1",
            uniqueid=None,
            dialed_at=T0,
        ),
    )


def end(store: Store, attempt_id: int, outcome: Outcome, *, abandoned: bool = False) -> None:
    change = AttemptChange(
        status=AttemptStatus.ENDED, outcome=outcome, hungup_at=T0, abandoned=abandoned
    )
    update_attempt(store, attempt_id, change)


def test_tenant_and_campaign_are_created_once_and_found_after(store: Store) -> None:
    tenant_id = ensure_tenant(store, "acme")
    assert ensure_tenant(store, "acme") == tenant_id
    assert ensure_tenant(store, "other bank") != tenant_id
    campaign_id = ensure_campaign(store, tenant_id, "early", "progressive")
    assert ensure_campaign(store, tenant_id, "early", "predictive") == campaign_id
    other_tenant = ensure_tenant(store, "other bank")
    assert ensure_campaign(store, other_tenant, "early", "progressive") != campaign_id


def test_candidates_skip_do_not_call_no_consent_zero_balance_and_closed_debts(
    store: Store, campaign: tuple[int, int]
) -> None:
    tenant_id, campaign_id = campaign
    good = add_debtor(store, tenant_id, "good", "500.00", ("+12125550101",))
    add_debtor(store, tenant_id, "dnc", "900.00", ("+12125550102",), do_not_call=True)
    add_debtor(store, tenant_id, "no-consent", "800.00", ("+12125550103",), consent=False)
    add_debtor(store, tenant_id, "paid", "0.00", ("+12125550104",))
    add_debtor(store, tenant_id, "settled", "700.00", ("+12125550105",), debt_status="settled")

    candidates = next_candidates(store, campaign_id, 10)

    assert [c.debtor_external_id for c in candidates] == ["good"]
    assert candidates[0].phone_id == good.phone_ids[0]
    assert candidates[0].e164 == "+12125550101"
    assert candidates[0].debt_id == good.debt_id
    assert candidates[0].timezone == "America/New_York"


def test_highest_balance_comes_first_one_phone_per_debtor_up_to_the_limit(
    store: Store, campaign: tuple[int, int]
) -> None:
    tenant_id, campaign_id = campaign
    add_debtor(store, tenant_id, "small", "100.00", ("+12125550110",))
    add_debtor(store, tenant_id, "large", "9000.00", ("+12125550111", "+12125550112"))
    add_debtor(store, tenant_id, "middle", "2500.50", ("+12125550113",))

    everyone = next_candidates(store, campaign_id, 10)
    assert [c.debtor_external_id for c in everyone] == ["large", "middle", "small"]
    assert [c.debtor_external_id for c in next_candidates(store, campaign_id, 2)] == [
        "large",
        "middle",
    ]
    assert next_candidates(store, campaign_id, 10) == everyone  # same question, same answer


def test_an_attempted_phone_is_not_offered_again_in_that_campaign(
    store: Store, campaign: tuple[int, int]
) -> None:
    tenant_id, campaign_id = campaign
    rich = add_debtor(store, tenant_id, "rich", "5000.00", ("+12125550120", "+12125550121"))
    add_debtor(store, tenant_id, "poor", "50.00", ("+12125550122",))
    end(store, dial(store, campaign, rich, phone=0), Outcome.NO_ANSWER)

    after = next_candidates(store, campaign_id, 10)
    assert [(c.debtor_external_id, c.phone_id) for c in after] == [
        ("rich", rich.phone_ids[1]),
        ("poor", after[1].phone_id),
    ]
    end(store, dial(store, campaign, rich, phone=1), Outcome.BUSY)
    assert [c.debtor_external_id for c in next_candidates(store, campaign_id, 10)] == ["poor"]
    # Another campaign has its own attempt count, and a higher cap offers the phone again.
    other = ensure_campaign(store, tenant_id, "second-pass", "progressive")
    assert [c.debtor_external_id for c in next_candidates(store, other, 10)] == ["rich", "poor"]
    again = next_candidates(store, campaign_id, 10, max_attempts_per_phone=2)
    assert [c.debtor_external_id for c in again] == ["rich", "poor"]


def test_a_debtor_on_a_call_is_not_rung_on_another_phone(
    store: Store, campaign: tuple[int, int]
) -> None:
    tenant_id, campaign_id = campaign
    busy = add_debtor(store, tenant_id, "busy", "5000.00", ("+12125550130", "+12125550131"))
    add_debtor(store, tenant_id, "free", "10.00", ("+12125550132",))
    attempt = dial(store, campaign, busy)
    assert [c.debtor_external_id for c in next_candidates(store, campaign_id, 10)] == ["free"]
    end(store, attempt, Outcome.NO_ANSWER)
    offered = next_candidates(store, campaign_id, 10)
    assert (offered[0].debtor_external_id, offered[0].phone_id) == ("busy", busy.phone_ids[1])


def test_excluded_phones_and_other_tenants_debtors_are_not_offered(
    store: Store, campaign: tuple[int, int]
) -> None:
    tenant_id, campaign_id = campaign
    held = add_debtor(store, tenant_id, "held", "300.00", ("+12125550140",))
    add_debtor(store, tenant_id, "open", "200.00", ("+12125550141",))
    stranger = ensure_tenant(store, "other bank")
    add_debtor(store, stranger, "theirs", "99999.00", ("+12125550142",))
    offered = next_candidates(store, campaign_id, 10, exclude_phone_ids={held.phone_ids[0]})
    assert [c.debtor_external_id for c in offered] == ["open"]


def test_attempt_updates_change_only_the_fields_given(
    store: Store, campaign: tuple[int, int]
) -> None:
    tenant_id, _ = campaign
    who = add_debtor(store, tenant_id, "x", "100.00")
    attempt_id = dial(store, campaign, who)
    update_attempt(store, attempt_id, AttemptChange(uniqueid="1714831200.17", reason=4))
    update_attempt(
        store,
        attempt_id,
        AttemptChange(status=AttemptStatus.ANSWERED, answered_at=T0 + timedelta(seconds=9)),
    )
    row = get_attempt(store, attempt_id)
    assert row is not None
    assert row.status is AttemptStatus.ANSWERED
    assert row.uniqueid == "1714831200.17"
    assert row.reason == 4
    assert row.answered_at == T0 + timedelta(seconds=9)
    assert row.dialed_at == T0
    assert row.outcome is None and row.abandoned is False


def test_updating_a_missing_attempt_is_an_error(store: Store) -> None:
    with pytest.raises(StoreError, match="attempt 424242 does not exist"):
        update_attempt(store, 424242, AttemptChange(status=AttemptStatus.ENDED))


def test_attempts_in_progress_are_those_not_ended_per_node(
    store: Store, campaign: tuple[int, int]
) -> None:
    tenant_id, _ = campaign
    a = add_debtor(store, tenant_id, "a", "100.00", ("+12125550150",))
    b = add_debtor(store, tenant_id, "b", "100.00", ("+12125550151",))
    c = add_debtor(store, tenant_id, "c", "100.00", ("+12125550152",))
    on_n1 = dial(store, campaign, a, node="n1")
    on_n2 = dial(store, campaign, b, node="n2")
    end(store, dial(store, campaign, c, node="n1"), Outcome.BUSY)
    assert [r.id for r in attempts_in_progress(store)] == [on_n1, on_n2]
    assert [r.id for r in attempts_in_progress(store, "n2")] == [on_n2]


def test_campaign_totals_count_outcomes_connections_abandons_and_talk_time(
    store: Store, campaign: tuple[int, int]
) -> None:
    tenant_id, campaign_id = campaign
    people = [
        add_debtor(store, tenant_id, f"p{i}", "100.00", (f"+1212555016{i}",)) for i in range(5)
    ]
    talked = dial(store, campaign, people[0])
    update_attempt(
        store,
        talked,
        AttemptChange(
            status=AttemptStatus.ENDED,
            outcome=Outcome.ANSWERED,
            answered_at=T0 + timedelta(seconds=5),
            connected_at=T0 + timedelta(seconds=6),
            hungup_at=T0 + timedelta(seconds=96, milliseconds=500),
            agent_id="agent7",
        ),
    )
    end(store, dial(store, campaign, people[1]), Outcome.ANSWERED, abandoned=True)
    end(store, dial(store, campaign, people[2]), Outcome.BUSY)
    end(store, dial(store, campaign, people[3]), Outcome.MACHINE)
    dial(store, campaign, people[4])  # still ringing

    totals = campaign_totals(store, campaign_id)

    assert totals.attempts == 5
    assert totals.answered == 2
    assert totals.connected == 1
    assert totals.abandoned == 1
    assert totals.talk_seconds == pytest.approx(90.5, abs=0.01)
    assert set(totals.outcomes) == {o.value for o in Outcome}
    assert totals.outcomes["busy"] == 1 and totals.outcomes["machine"] == 1
    assert totals.outcomes["no_answer"] == 0
    other = ensure_campaign(store, tenant_id, "empty", "progressive")
    assert campaign_totals(store, other).attempts == 0


def test_a_promise_to_pay_is_recorded_with_its_amount_and_date(
    store: Store, campaign: tuple[int, int]
) -> None:
    tenant_id, _ = campaign
    attempt_id = dial(store, campaign, add_debtor(store, tenant_id, "x", "100.00"))
    disposition_id = record_disposition(
        store,
        attempt_id,
        "agent7",
        "promise_to_pay",
        promise_amount=Decimal("150.25"),
        promise_date=date(2026, 6, 1),
        note="pays on the 1st",
        now=T0,
    )
    with store.session() as session:
        saved = session.get(Disposition, disposition_id)
        assert saved is not None
        assert saved.tenant_id == tenant_id
        assert saved.promise_amount == Decimal("150.25")
        assert saved.promise_date == date(2026, 6, 1)
        assert saved.created_at == T0


@pytest.mark.parametrize(
    ("code", "extra", "message"),
    [
        ("promise_to_pay", {}, "promise_amount"),
        ("callback", {}, "callback_at"),
        ("maybe_later", {}, "unknown disposition"),
    ],
)
def test_a_disposition_missing_what_its_code_needs_is_refused(
    store: Store, campaign: tuple[int, int], code: str, extra: dict[str, object], message: str
) -> None:
    tenant_id, _ = campaign
    attempt_id = dial(store, campaign, add_debtor(store, tenant_id, "x", "100.00"))
    with pytest.raises(StoreError, match=message):
        record_disposition(store, attempt_id, "agent7", code, **extra)  # type: ignore[arg-type]


def test_a_disposition_for_a_missing_attempt_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="attempt 99 does not exist"):
        record_disposition(store, 99, "agent7", "refused")


def test_a_debtor_with_two_debts_is_offered_once_for_the_larger_debt(
    store: Store, campaign: tuple[int, int]
) -> None:
    tenant_id, campaign_id = campaign
    twice = add_debtor(store, tenant_id, "twice", "100.00", ("+12125550170", "+12125550171"))
    add_debtor(store, tenant_id, "once", "500.00", ("+12125550172",))
    with store.session() as session:
        larger = Debt(
            tenant_id=tenant_id,
            debtor_id=twice.debtor_id,
            external_id="acc-twice-2",
            principal=Decimal("9000"),
            balance=Decimal("8000.00"),
            currency="USD",
            days_past_due=200,
            created_at=T0,
        )
        session.add(larger)
        session.flush()
        larger_id = larger.id
    offered = next_candidates(store, campaign_id, 10)
    assert [(c.debtor_external_id, c.debt_id) for c in offered] == [
        ("twice", larger_id),
        ("once", offered[1].debt_id),
    ]
    assert offered[0].phone_id == twice.phone_ids[0]


def test_debtors_beyond_the_first_page_of_debts_are_still_found(
    store: Store, campaign: tuple[int, int]
) -> None:
    tenant_id, campaign_id = campaign
    whale = add_debtor(store, tenant_id, "whale", "99999.00", ("+12125550180",))
    add_debtor(store, tenant_id, "minnow", "1.00", ("+12125550181",))
    with store.session() as session:
        session.add_all(
            Debt(
                tenant_id=tenant_id,
                debtor_id=whale.debtor_id,
                external_id=f"acc-whale-{n}",
                principal=Decimal(50_000 + n),
                balance=Decimal(50_000 + n),
                currency="USD",
                days_past_due=90,
                created_at=T0,
            )
            for n in range(60)  # many more than one page of debts for a request of 2
        )
    assert [c.debtor_external_id for c in next_candidates(store, campaign_id, 2)] == [
        "whale",
        "minnow",
    ]


def test_a_very_long_exclusion_list_still_excludes_exactly_those_phones(
    store: Store, campaign: tuple[int, int]
) -> None:
    tenant_id, campaign_id = campaign
    held = add_debtor(store, tenant_id, "held", "300.00", ("+12125550190",))
    add_debtor(store, tenant_id, "open", "200.00", ("+12125550191",))
    # More ids than any driver takes as bound parameters in one statement.
    exclusions = {held.phone_ids[0], *range(10**6, 10**6 + 40_000)}
    offered = next_candidates(store, campaign_id, 10, exclude_phone_ids=exclusions)
    assert [c.debtor_external_id for c in offered] == ["open"]


def test_an_attempt_is_found_by_its_asterisk_uniqueid(
    store: Store, campaign: tuple[int, int]
) -> None:
    tenant_id, _ = campaign
    attempt_id = dial(store, campaign, add_debtor(store, tenant_id, "x", "100.00"))
    update_attempt(store, attempt_id, AttemptChange(uniqueid="1714831200.42"))
    found = attempt_by_uniqueid(store, "1714831200.42")
    assert found is not None and found.id == attempt_id
    assert attempt_by_uniqueid(store, "1714831200.43") is None


def test_an_agent_is_created_once_and_follows_the_latest_channel(store: Store) -> None:
    tenant_id = ensure_tenant(store, "acme")
    agent_id = ensure_agent(store, tenant_id, "agent7", "Ann", "PJSIP/agent7")
    assert ensure_agent(store, tenant_id, "agent7", "Ann B.", "Local/agent7@agents") == agent_id
    with store.session() as session:
        agent = session.get(Agent, agent_id)
        assert agent is not None
        assert (agent.name, agent.channel) == ("Ann B.", "Local/agent7@agents")


def test_updates_in_one_commit_skip_a_missing_attempt_and_apply_the_rest(
    store: Store, campaign: tuple[int, int]
) -> None:
    tenant_id, _ = campaign
    first = dial(store, campaign, add_debtor(store, tenant_id, "u1", "100.00", ("+12125550180",)))
    second = dial(store, campaign, add_debtor(store, tenant_id, "u2", "100.00", ("+12125550181",)))
    missing = update_attempts(
        store,
        [
            (first, AttemptChange(status=AttemptStatus.ANSWERED, answered_at=T0)),
            (424242, AttemptChange(status=AttemptStatus.ENDED)),
            (second, AttemptChange(status=AttemptStatus.ENDED, outcome=Outcome.BUSY)),
            (first, AttemptChange(status=AttemptStatus.ENDED, outcome=Outcome.ANSWERED)),
        ],
    )
    assert missing == [424242]
    one, two = get_attempt(store, first), get_attempt(store, second)
    assert one is not None and two is not None
    assert one.status is AttemptStatus.ENDED and one.answered_at == T0  # both of its changes
    assert two.outcome is Outcome.BUSY
