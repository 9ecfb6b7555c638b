"""The managers' API over a real store, on SQLite and PostgreSQL: the case list filtered and
paged as written below, a strategies file with a mistake refused naming the key and its line,
fixed and saved (audited, the version before kept), a save over a colleague's refused, a
template previewed in Chinese for a made-up debtor and for a case's debtor with the guard's
answer; supervisors read, only managers save; another tenant sees nothing of it."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import json
import threading
import tomllib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from compliance_guard.models import Flag, FlagScope
from compliance_guard.rules import load_preset
from compliance_guard.service import Guard, RuleBook
from compliance_guard.store_sql import SqlStore
from dialer.calls.models import AttemptStatus, Outcome
from dialer.cases import service
from dialer.cases.models import Actor, CaseStatus
from dialer.cases.strategy import SHIPPED
from dialer.cases.tenant_files import SHIPPED_TEMPLATES, Kind, TenantFiles
from dialer.config import load_config
from dialer.errors import ConfigError
from dialer.importer import COLUMNS, import_csv
from dialer.messaging.file_provider import FileProvider
from dialer.messaging.jobs import BatchJobs, Outbox, open_outbox
from dialer.messaging.models import Channel, Outgoing, SendResult
from dialer.messaging.tables import Message
from dialer.store import attempts as repo
from dialer.store import users
from dialer.store.db import Store, open_store
from dialer.store.models import Case, Role
from dialer.web.auth import Auth
from dialer.web.cases_api import cases_router
from dialer.web.manager import manager_router
from tests.cases_fixtures import empty
from tests.test_desk import T0, _row

PASSWORD = "manager-pages-password"
# username -> (tenant, role, agent id)
USERS = {
    "mei": ("bank", Role.MANAGER, None),
    "lan": ("bank", Role.MANAGER, None),
    "sam": ("bank", Role.SUPERVISOR, None),
    "a1": ("bank", Role.AGENT, "a1"),
    "qa": ("bank", Role.QA, None),
    "boss": ("other", Role.MANAGER, None),
}
# The book: (tenant, debtor, name, debt, balance, days past due, phone).
BOOK = (
    ("bank", "D1", "Ana Núñez", "A1", "1250.50", "45", "(212) 555-0100"),
    ("bank", "D1", "Ana Núñez", "A2", "99.99", "12", "(212) 555-0100"),
    ("bank", "D2", "王芳", "B1", "300.00", "95", "212-555-0102"),
    ("bank", "D3", "李伟", "C1", "8000.00", "200", "212-555-0103"),
    ("bank", "D4", "Tom Baker", "E1", "50.00", "5", "212-555-0104"),
    ("bank", "D5", "Wang Lei", "F1", "2200.00", "60", "212-555-0105"),
    ("other", "X1", "王芳", "X1", "300.00", "95", "212-555-0199"),
)

PAY = "https://pay.example.com/d/{debtor}"

# What the nightly runs leave on a case they chose a strategy for and scored.
REASONS = ["rule 3", "days past due 95 >= 60"]
TERMS = [["days_past_due", 95, 0.35, "95 days past due"], ["balance", 300.0, 0.15, "owes 300"]]


class GatedProvider:
    """The file provider (one JSON line per message), held at `gate` while a test closes it:
    a batch can be caught running."""

    def __init__(self, path: Path) -> None:
        self.inner = FileProvider(Channel.SMS, path)
        self.name = "file"
        self.channel = Channel.SMS
        self.batch_size = self.inner.batch_size
        self.path = path
        self.gate = threading.Event()
        self.gate.set()

    def send(self, messages: Sequence[Outgoing]) -> list[SendResult]:
        assert self.gate.wait(30), "the test never opened the gate"
        return self.inner.send(messages)

    def close(self) -> None:
        self.inner.close()

    def sent(self) -> list[dict[str, str]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text("utf-8").splitlines()]


@dataclass
class Site:
    store: Store
    app: FastAPI
    auth: Auth
    files: TenantFiles
    tenant_id: int
    cases: dict[str, int]  # debtor external id -> case id
    sms: GatedProvider | None = None
    guard: Guard | None = None
    jobs: BatchJobs | None = field(default=None, repr=False)

    async def client(self, username: str) -> httpx.AsyncClient:
        tenant, role, agent_id = USERS[username]
        users.add_user(self.store, tenant, username, PASSWORD, role, agent_id=agent_id)
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://manager.test"
        )
        reply = await client.post(
            "/api/login", json={"tenant": tenant, "username": username, "password": PASSWORD}
        )
        assert reply.status_code == 200, reply.text
        return client


def build_book(store: Store, folder: Path) -> dict[str, int]:
    """BOOK imported; D2, D3 worked by a1 and D5 by a2; D1 promised to pay; D3 with legal; the
    strategy run's marks on D2 and D3. Debtor external id -> case id."""
    for tenant in ("bank", "other"):
        portfolio = folder / f"{tenant}.csv"
        with portfolio.open("w", newline="", encoding="utf-8") as fh:
            out = csv.DictWriter(fh, COLUMNS)
            out.writeheader()
            for t, debtor, name, debt, balance, dpd, phone in BOOK:
                if t == tenant:
                    out.writerow(_row(debtor, name, debt, balance, phone, days_past_due=dpd))
        assert import_csv(store, portfolio, tenant, now=T0 - timedelta(days=30)).rejected == 0
    tenant_id = repo.ensure_tenant(store, "bank")
    with store.begin() as conn:
        cases = {
            ext: case_id
            for ext, case_id in conn.execute(
                sa.text(
                    "SELECT d.external_id, c.id FROM cases c JOIN debtors d ON d.id = c.debtor_id"
                    " WHERE c.tenant_id = :t"
                ),
                {"t": tenant_id},
            )
        }
        for ext, strategy, band in (("D2", "firm_reminder", "medium"), ("D3", "legal", "high")):
            conn.execute(
                sa.update(Case)
                .where(Case.id == cases[ext])
                .values(
                    strategy=strategy,
                    strategy_step=2,
                    strategy_reasons=json.dumps(REASONS),
                    risk_band=band,
                    risk_score=0.5,
                    risk_terms=json.dumps(TERMS),
                )
            )
    boss = Actor.user("mei")
    for ext, agent in (("D2", "a1"), ("D3", "a1"), ("D5", "a2")):
        service.assign(store, tenant_id, cases[ext], agent, boss, "their queue", T0)
    service.make_promise(
        store, tenant_id, cases["D1"], Decimal("200"), T0.date() + timedelta(days=7), boss, T0
    )
    service.change_status(store, tenant_id, cases["D3"], CaseStatus.LEGAL, boss, "lawyer", T0)
    return cases


@pytest.fixture
async def site(migrated_url: str, tmp_path: Path) -> AsyncIterator[Site]:
    empty(migrated_url)
    store = open_store(migrated_url)
    cases = build_book(store, tmp_path)
    guard = Guard(
        SqlStore(store.engine), RuleBook({"us-regf": load_preset("us-regf")}, default="us-regf")
    )
    auth = Auth(store, clock=lambda: T0)
    files = TenantFiles(tmp_path / "tenants")
    sms = GatedProvider(tmp_path / "sms-out.jsonl")
    outbox = Outbox("bank", {Channel.SMS: sms}, PAY, source="messaging.toml")
    jobs = BatchJobs(store, guard, outbox, clock=lambda: T0)
    app = FastAPI()
    app.include_router(auth.router())
    app.include_router(manager_router(store, auth, files, guard=guard, clock=lambda: T0, jobs=jobs))
    app.include_router(cases_router(store, auth, lambda: T0))
    tenant_id = repo.ensure_tenant(store, "bank")
    yield Site(store, app, auth, files, tenant_id, cases, sms, guard, jobs)
    sms.gate.set()
    await asyncio.to_thread(jobs.close)
    await auth.drain()
    store.close()


async def _listed(client: httpx.AsyncClient, query: str) -> list[str]:
    """The debtors' external ids of the listed cases, in the list's order."""
    reply = await client.get(f"/api/manager/cases?{query}")
    assert reply.status_code == 200, reply.text
    return [c["debtor_external_id"] for c in reply.json()["cases"]]


async def test_a_manager_narrows_the_case_list_by_each_filter(site: Site) -> None:
    mei = await site.client("mei")
    # Most overdue first by default; each case carries its debts summed up.
    assert await _listed(mei, "") == ["D3", "D2", "D5", "D1", "D4"]
    assert await _listed(mei, "sort=balance") == ["D3", "D5", "D1", "D2", "D4"]
    assert await _listed(mei, "status=promise_to_pay") == ["D1"]
    assert await _listed(mei, "status=legal&status=promise_to_pay") == ["D3", "D1"]
    assert await _listed(mei, "dpd_min=50&dpd_max=150") == ["D2", "D5"]
    assert await _listed(mei, "balance_min=1000") == ["D3", "D5", "D1"]
    assert await _listed(mei, "balance_min=1000&balance_max=2500") == ["D5", "D1"]
    assert await _listed(mei, "collector=a1") == ["D3", "D2"]
    assert await _listed(mei, "collector=-") == ["D1", "D4"]
    assert await _listed(mei, "band=high") == ["D3"]
    assert await _listed(mei, "strategy=firm_reminder") == ["D2"]
    # By part of the name (any letter case, Chinese too), the debtor's id or the case number;
    # the other tenant's 王芳 is not theirs to see.
    assert await _listed(mei, "q=王") == ["D2"]
    assert await _listed(mei, "q=ana") == ["D1"]
    assert await _listed(mei, "q=D4") == ["D4"]
    assert await _listed(mei, f"q={site.cases['D5']}") == ["D5"]
    assert await _listed(mei, "q=100%25") == []
    (ana,) = (await mei.get("/api/manager/cases?q=Ana")).json()["cases"]
    assert Decimal(ana["balance"]) == Decimal("1350.49") and ana["currency"] == "USD"
    assert ana["days_past_due"] == 45 and ana["debts"] == 2
    assert ana["status"] == "promise_to_pay" and ana["agent_id"] is None
    (li,) = (await mei.get("/api/manager/cases?band=high")).json()["cases"]
    assert (li["strategy"], li["band"], li["agent_id"]) == ("legal", "high", "a1")
    options = (await mei.get("/api/manager/options")).json()
    assert options["collectors"] == ["a1", "a2"]
    assert options["strategies"] == ["firm_reminder", "legal"]
    assert options["can_edit"] is True
    await mei.aclose()


async def test_a_case_shows_its_strategy_reasons_and_score_term_by_term(site: Site) -> None:
    sam = await site.client("sam")
    shown = (await sam.get(f"/api/manager/cases/{site.cases['D2']}/strategy")).json()
    assert (shown["strategy"], shown["step"], shown["reasons"]) == ("firm_reminder", 2, REASONS)
    assert shown["override"] is None
    assert shown["score"]["band"] == "medium"
    assert [(t["feature"], t["points"]) for t in shown["score"]["terms"]] == [
        ("days_past_due", 0.35),
        ("balance", 0.15),
    ]
    fresh = (await sam.get(f"/api/manager/cases/{site.cases['D4']}/strategy")).json()
    assert fresh["strategy"] is None and fresh["score"] is None
    assert (await sam.get("/api/manager/cases/999999/strategy")).status_code == 404
    boss = await site.client("boss")
    assert (await boss.get(f"/api/manager/cases/{site.cases['D2']}/strategy")).status_code == 404
    await sam.aclose()
    await boss.aclose()


async def test_a_manager_saves_the_filters_as_a_segment_and_lists_by_it(site: Site) -> None:
    mei, sam = await site.client("mei"), await site.client("sam")
    body = {"name": "a1 early", "filter": {"collector": ["a1"], "days_past_due_max": 150}}
    saved = await mei.post("/api/manager/segments", json=body)
    assert saved.status_code == 201, saved.text
    assert saved.json()["filter"] == {"collector": ["a1"], "days_past_due_max": 150}
    assert [s["name"] for s in (await sam.get("/api/manager/segments")).json()] == ["a1 early"]
    assert await _listed(sam, "segment=a1%20early") == ["D2"]
    # The list's own filters narrow the segment further.
    assert await _listed(sam, "segment=a1%20early&status=legal") == []
    unknown = await sam.get("/api/manager/cases?segment=nope")
    assert unknown.status_code == 422 and unknown.json()["detail"][0]["loc"][-1] == "segment"
    bad = await mei.post(
        "/api/manager/segments",
        json={"name": "upside down", "filter": {"balance_min": 500, "balance_max": 100}},
    )
    assert bad.status_code == 422 and "balance_min" in bad.json()["detail"][0]["msg"]
    typo = await mei.post(
        "/api/manager/segments", json={"name": "typo", "filter": {"colector": ["a1"]}}
    )
    assert typo.status_code == 422 and typo.json()["detail"][0]["loc"][-1] == "colector"
    assert (await sam.post("/api/manager/segments", json=body)).status_code == 403
    audit = users.list_audit(site.store, site.tenant_id)
    # The save is audited (and so is the supervisor's refused try).
    assert [(a.action, a.target) for a in audit[:2]] == [
        ("forbidden", "POST /api/manager/segments"),
        ("segment.save", "segment:a1 early"),
    ]
    await mei.aclose()
    await sam.aclose()


async def test_a_manager_puts_a_case_on_a_strategy_by_hand_and_hands_it_back(site: Site) -> None:
    mei, sam = await site.client("mei"), await site.client("sam")
    url = f"/api/manager/cases/{site.cases['D4']}/strategy"
    put = await mei.post(url, json={"strategy": "firm_reminder", "why": "disputed twice"})
    assert put.status_code == 200, put.text
    shown = put.json()
    assert (shown["strategy"], shown["step"]) == ("firm_reminder", 0)
    assert shown["override"]["by"] == "user:mei" and shown["override"]["why"] == "disputed twice"
    assert (await sam.get(url)).json()["override"]["why"] == "disputed twice"
    unknown = await mei.post(url, json={"strategy": "gentle", "why": "x"})
    assert unknown.status_code == 422 and unknown.json()["detail"][0]["loc"][-1] == "strategy"
    assert "firm_reminder" in unknown.json()["detail"][0]["msg"]
    silent = await mei.post(url, json={"strategy": "firm_reminder", "why": ""})
    assert silent.status_code == 422 and silent.json()["detail"][0]["loc"][-1] == "why"
    assert (await sam.post(url, json={"why": "no"})).status_code == 403
    cleared = await mei.post(url, json={"why": "paid the disputed part"})
    assert cleared.status_code == 200 and cleared.json()["override"] is None
    assert cleared.json()["strategy"] == "firm_reminder"  # until the nightly run re-chooses
    missing = await mei.post(
        "/api/manager/cases/999999/strategy", json={"strategy": "legal", "why": "x"}
    )
    assert missing.status_code == 404
    await mei.aclose()
    await sam.aclose()


async def test_the_list_pages_through_every_case_once(site: Site) -> None:
    sam = await site.client("sam")
    seen: list[str] = []
    offset, more = 0, True
    while more:
        page = (await sam.get(f"/api/manager/cases?limit=2&offset={offset}")).json()
        seen += [c["debtor_external_id"] for c in page["cases"]]
        more = page["more"]
        offset += 2
    assert seen == ["D3", "D2", "D5", "D1", "D4"]
    await sam.aclose()


async def test_bounds_that_cannot_hold_are_refused_naming_the_field(site: Site) -> None:
    mei = await site.client("mei")
    reply = await mei.get("/api/manager/cases?dpd_min=90&dpd_max=30")
    assert reply.status_code == 422
    (detail,) = reply.json()["detail"]
    assert detail["loc"][-1] == "dpd_max" and "below" in detail["msg"]
    reply = await mei.get("/api/manager/cases?balance_min=-5")
    assert reply.status_code == 422
    assert reply.json()["detail"][0]["loc"][-1] == "balance_min"
    reply = await mei.get("/api/manager/cases?status=lost")
    assert reply.status_code == 422 and reply.json()["detail"][0]["loc"][:2] == ["query", "status"]
    await mei.aclose()


async def test_only_managers_supervisors_and_admins_reach_the_manager_api(site: Site) -> None:
    agent, qa, boss = [await site.client(u) for u in ("a1", "qa", "boss")]
    for client in (agent, qa):
        assert (await client.get("/api/manager/cases")).status_code == 403
        assert (await client.get("/api/manager/files/strategies")).status_code == 403
    # The other tenant's manager lists their own book only.
    assert await _listed(boss, "") == ["X1"]
    for client in (agent, qa, boss):
        await client.aclose()


# A tenant's own strategies and templates, as a manager would write them.
STRATEGIES = """\
default = "gentle"

[[selection]]
strategy = "firm"
when = { days_past_due_min = 60 }

[strategies.gentle]
title = "Gentle"
title_zh = "温和"
steps = [
  { kind = "sms", template = "nudge" },
  { kind = "wait", days = 3 },
  { kind = "condition", check = "paid", then = "stop" },
  { kind = "escalate", to = "firm" },
]

[strategies.firm]
title = "Firm"
title_zh = "严正"
steps = [
  { kind = "call", campaign = "spring" },
  { kind = "wait", days = 2 },
]
"""
TEMPLATES = """\
[templates.nudge]
channel = "sms"
[templates.nudge."zh-CN"]
body = "【温馨提示】{name}您好，您的欠款{amount}已于{due_date}到期，请通过{payment_link}还款。"
[templates.nudge.en]
body = "Hi {name}, {amount} was due on {due_date}. Pay at {payment_link}"
"""
# The mistake: a wait of no days, in the gentle strategy's second step.
MISTAKE = '  { kind = "wait", days = 0 },'
BROKEN = STRATEGIES.replace('  { kind = "wait", days = 3 },', MISTAKE)


async def test_a_strategy_with_a_mistake_is_refused_at_its_key_then_saved_when_fixed(
    site: Site,
) -> None:
    mei = await site.client("mei")
    shipped = (await mei.get("/api/manager/files/strategies")).json()
    assert shipped["source"] == "shipped" and shipped["ok"] is True
    assert shipped["text"] == SHIPPED.read_text(encoding="utf-8")
    assert shipped["warnings"] == []  # the shipped templates are those it names

    checked = (await mei.post("/api/manager/files/strategies/check", json={"text": BROKEN})).json()
    assert checked["ok"] is False
    (problem,) = checked["problems"]
    assert problem["key"] == "strategies.gentle.steps[1].days"
    assert problem["line"] == 1 + BROKEN.splitlines().index(MISTAKE)
    assert "greater than or equal to 1" in problem["message"]

    refused = await mei.put(
        "/api/manager/files/strategies",
        json={"text": BROKEN, "base_version": shipped["version"]},
    )
    assert refused.status_code == 422
    assert refused.json()["problems"] == [problem]
    assert not site.files.path("bank", Kind.STRATEGIES).exists()

    saved = await mei.put(
        "/api/manager/files/strategies",
        json={"text": STRATEGIES, "base_version": shipped["version"]},
    )
    assert saved.status_code == 200, saved.text
    assert saved.json()["source"] == "tenant"
    assert saved.json()["version"] != shipped["version"]
    # Saved with a warning: no template "nudge" yet, at the step's line.
    (warning,) = saved.json()["warnings"]
    assert warning["key"] == "strategies.gentle.steps[0].template"
    assert warning["line"] == 1 + STRATEGIES.splitlines().index(
        '  { kind = "sms", template = "nudge" },'
    )
    again = (await mei.get("/api/manager/files/strategies")).json()
    assert again["text"] == STRATEGIES and again["version"] == saved.json()["version"]
    assert again["strategies"]["strategies"]["gentle"]["steps"][1] == {
        "kind": "wait",
        "id": None,
        "days": 3,
    }
    # What the nightly run reads is what was saved.
    assert sorted(site.files.strategies("bank").strategies) == ["firm", "gentle"]
    audit = users.list_audit(site.store, site.tenant_id)
    assert [(a.action, a.username) for a in audit[:1]] == [("strategies.save", "mei")]

    # The templates saved, the warning is gone; the strategies' second save keeps the first.
    templates = (await mei.get("/api/manager/files/templates")).json()
    reply = await mei.put(
        "/api/manager/files/templates",
        json={"text": TEMPLATES, "base_version": templates["version"]},
    )
    assert reply.status_code == 200, reply.text
    assert "nudge" in site.files.templates("bank")
    third = STRATEGIES.replace("days = 2", "days = 4")
    reply = await mei.put(
        "/api/manager/files/strategies",
        json={"text": third, "base_version": saved.json()["version"]},
    )
    assert reply.status_code == 200 and reply.json()["warnings"] == []
    kept = list((site.files.root / "bank" / "history").glob("strategies-*.toml"))
    assert [p.read_text(encoding="utf-8") for p in kept] == [STRATEGIES]
    await mei.aclose()


async def test_a_save_over_a_colleagues_is_refused_and_loses_nothing(site: Site) -> None:
    mei, lan = await site.client("mei"), await site.client("lan")
    opened = (await mei.get("/api/manager/files/strategies")).json()
    lans = STRATEGIES.replace('title = "Gentle"', 'title = "Soft"')
    first = await lan.put(
        "/api/manager/files/strategies", json={"text": lans, "base_version": opened["version"]}
    )
    assert first.status_code == 200
    meis = STRATEGIES.replace('title = "Gentle"', 'title = "Kind"')
    second = await mei.put(
        "/api/manager/files/strategies", json={"text": meis, "base_version": opened["version"]}
    )
    assert second.status_code == 409 and "someone else" in second.json()["detail"]
    assert (await mei.get("/api/manager/files/strategies")).json()["text"] == lans
    await mei.aclose()
    await lan.aclose()


async def test_a_supervisor_reads_and_checks_but_does_not_save(site: Site) -> None:
    sam = await site.client("sam")
    opened = (await sam.get("/api/manager/files/templates")).json()
    assert opened["ok"] is True and opened["source"] == "shipped"
    shipped = tomllib.loads(SHIPPED_TEMPLATES.read_text(encoding="utf-8"))["templates"]
    assert {t["name"] for t in opened["templates"]} == set(shipped)
    checked = await sam.post("/api/manager/files/templates/check", json={"text": TEMPLATES})
    assert checked.json()["ok"] is True
    refused = await sam.put(
        "/api/manager/files/templates", json={"text": TEMPLATES, "base_version": opened["version"]}
    )
    assert refused.status_code == 403
    assert not site.files.path("bank", Kind.TEMPLATES).exists()
    assert (await sam.get("/api/manager/options")).json()["can_edit"] is False
    await sam.aclose()


async def test_a_template_with_an_unknown_placeholder_is_refused_naming_the_key(
    site: Site,
) -> None:
    mei = await site.client("mei")
    text = TEMPLATES.replace("您的欠款{amount}已于", "您的欠款{amt}已于")
    checked = (await mei.post("/api/manager/files/templates/check", json={"text": text})).json()
    assert checked["problems"] == [
        {
            "key": "templates.nudge.zh-CN.body",
            "message": "unknown placeholder {amt} (known: {name}, {amount}, {due_date}, "
            "{payment_link})",
            "line": 4,
        }
    ]
    opened = (await mei.get("/api/manager/files/templates")).json()
    refused = await mei.put(
        "/api/manager/files/templates", json={"text": text, "base_version": opened["version"]}
    )
    assert refused.status_code == 422 and refused.json()["problems"] == checked["problems"]
    await mei.aclose()


async def test_a_template_is_previewed_in_chinese_for_a_made_up_and_a_real_debtor(
    site: Site,
) -> None:
    mei = await site.client("mei")
    sample = await mei.post(
        "/api/manager/templates/preview",
        json={"text": TEMPLATES, "template": "nudge", "language": "zh-CN"},
    )
    assert sample.status_code == 200, sample.text
    shown = sample.json()
    # The unsaved text is what is shown, written the Chinese way.
    assert shown["body"].startswith("【温馨提示】张伟您好，您的欠款1,250.00元已于")
    due = T0.date() - timedelta(days=30)
    assert f"{due.year}年{due.month}月{due.day}日" in shown["body"]
    assert shown["guard"] is None and shown["length"] == len(shown["body"])

    real = await mei.post(
        "/api/manager/templates/preview",
        json={
            "text": TEMPLATES,
            "template": "nudge",
            "language": "zh-CN",
            "case_id": site.cases["D2"],
        },
    )
    assert real.status_code == 200, real.text
    for_wang = real.json()
    assert for_wang["body"].startswith("【温馨提示】王芳您好，您的欠款300.00 USD已于")
    # The pages were not told the payment link: its place shows.
    assert "请通过[payment link]还款" in for_wang["body"]
    assert for_wang["debtor"] == {"case_id": site.cases["D2"], "name": "王芳"}
    # Monday 10:00 in New York: Reg F lets a message go.
    assert for_wang["guard"]["allowed"] is True

    missing = await mei.post(
        "/api/manager/templates/preview",
        json={"text": TEMPLATES, "template": "no-such", "language": "en"},
    )
    assert missing.status_code == 404 and "nudge" in missing.json()["detail"]
    other = await mei.post(
        "/api/manager/templates/preview",
        json={"text": TEMPLATES, "template": "nudge", "language": "en", "case_id": 999_999},
    )
    assert other.status_code == 404
    await mei.aclose()


def _calls(site: Site, answered: int, unanswered: int) -> None:
    """Calls to D2 on the campaign "spring" at T0, the answered ones taken by a1."""
    campaign_id = repo.ensure_campaign(site.store, site.tenant_id, "spring", "progressive")
    with site.store.begin() as conn:
        debtor_id, debt_id, phone_id = conn.execute(
            sa.text(
                "SELECT d.id, b.id, p.id FROM debtors d JOIN debts b ON b.debtor_id = d.id"
                " JOIN phones p ON p.debtor_id = d.id WHERE d.external_id = 'D2'"
                " AND d.tenant_id = :t"
            ),
            {"t": site.tenant_id},
        ).one()
    for n in range(answered + unanswered):
        (attempt_id,) = repo.create_attempts(
            site.store,
            [
                repo.NewAttempt(
                    tenant_id=site.tenant_id,
                    campaign_id=campaign_id,
                    debtor_id=debtor_id,
                    debt_id=debt_id,
                    phone_id=phone_id,
                    node_id="t",
                    server="sim",
                    uniqueid=f"dlr-manager-{n}",
                    dialed_at=T0 + timedelta(minutes=n),
                    reservation_id=None,
                )
            ],
        )
        picked = n < answered
        repo.update_attempt(
            site.store,
            attempt_id,
            repo.AttemptChange(
                status=AttemptStatus.ENDED,
                outcome=Outcome.ANSWERED if picked else Outcome.NO_ANSWER,
                answered_at=T0 + timedelta(minutes=n, seconds=5) if picked else None,
                connected_at=T0 + timedelta(minutes=n, seconds=6) if picked else None,
                hungup_at=T0 + timedelta(minutes=n, seconds=66),
                agent_id="a1" if picked else None,
            ),
        )


async def test_the_days_report_counts_the_calls_and_downloads_as_csv(site: Site) -> None:
    _calls(site, answered=2, unanswered=3)
    sam = await site.client("sam")
    day = T0.date().isoformat()
    reply = await sam.get(f"/api/manager/reports?day={day}&period=day&by=campaign")
    assert reply.status_code == 200, reply.text
    report = reply.json()
    assert (report["start"], report["end"], report["by"]) == (day, day, "campaign")
    (spring,) = report["rows"]
    assert spring["label"] == "spring" and spring["attempts"] == 5
    assert report["totals"]["attempts"] == 5
    assert "contact_rate" in report["definitions"]
    csv_reply = await sam.get(f"/api/manager/reports.csv?day={day}&period=day&by=campaign")
    assert csv_reply.status_code == 200
    assert csv_reply.headers["content-type"].startswith("text/csv")
    assert f"report-{day}-day-campaign.csv" in csv_reply.headers["content-disposition"]
    lines = list(csv.DictReader(csv_reply.text.splitlines()))
    assert [(r["label"], r["attempts"]) for r in lines] == [("spring", "5"), ("All", "5")]
    bad = await sam.get("/api/manager/reports?period=year")
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "period"
    for day in ("0001-01-01", "9999-12-31"):  # a day before or after which no date exists
        for kind in ("reports", "reports.csv"):
            edge = await sam.get(f"/api/manager/{kind}?day={day}&period=month")
            assert edge.status_code == 422 and day in edge.json()["detail"]
    await sam.aclose()


async def test_a_manager_gives_a_case_to_a_collector_by_hand_and_it_is_kept_there(
    site: Site,
) -> None:
    from dialer.cases import assignment_service

    assignment_service.save_collector(site.store, site.tenant_id, "a7", T0, team="desk")
    assignment_service.save_collector(
        site.store, site.tenant_id, "a8", T0, team="desk", capacity=5, active=False
    )
    mei, sam = await site.client("mei"), await site.client("sam")
    # The collectors to choose from, with their load; supervisors read them too.
    listed = (await sam.get("/api/manager/collectors")).json()
    assert [(c["agent_id"], c["team"], c["open_cases"], c["active"]) for c in listed] == [
        ("a7", "desk", 0, True),
        ("a8", "desk", 0, False),
    ]
    assert listed[1]["capacity"] == 5
    url = f"/api/manager/cases/{site.cases['D4']}/collector"
    given = await mei.post(url, json={"agent_id": "a7", "why": "knows the family"})
    assert given.status_code == 200, given.text
    assert given.json() == {"case_id": site.cases["D4"], "agent_id": "a7", "kept": True}
    case = (await mei.get(f"/api/cases/{site.cases['D4']}")).json()
    assert case["agent_id"] == "a7" and case["agent_kept"] is True
    assert any("knows the family" in h["reason"] for h in case["history"])
    loads = {
        c["agent_id"]: c["open_cases"] for c in (await mei.get("/api/manager/collectors")).json()
    }
    assert loads == {"a7": 1, "a8": 0}
    nobody = await mei.post(url, json={"agent_id": "zed", "why": "x"})
    assert nobody.status_code == 422
    assert nobody.json()["detail"][0]["loc"] == ["body", "agent_id"]
    assert (await sam.post(url, json={"agent_id": "a7", "why": "no"})).status_code == 403
    back = await mei.post(url, json={"agent_id": None, "why": "back to the queue"})
    assert back.json() == {"case_id": site.cases["D4"], "agent_id": None, "kept": False}
    await mei.aclose()
    await sam.aclose()


# ----- message batches to a segment -----

LATE = {"name": "late", "filter": {"days_past_due_min": 40}}  # D1, D2, D3, D5; not D4
NUMBERS = {"D1": "+12125550100", "D2": "+12125550102", "D3": "+12125550103", "D5": "+12125550105"}
BATCH = f"reminder_gentle-late-{T0.date().isoformat()}"


def _messages(site: Site) -> int:
    with site.store.begin() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(Message)).scalar_one())


async def _finished(client: httpx.AsyncClient, job_id: str) -> dict[str, object]:
    """The job once done (polled as the page polls it)."""
    async with asyncio.timeout(30):
        while True:
            reply = await client.get(f"/api/manager/batches/{job_id}")
            assert reply.status_code == 200, reply.text
            if reply.json()["done"]:
                return dict(reply.json())
            await asyncio.sleep(0.02)


async def _late_segment_and_an_opt_out(site: Site, mei: httpx.AsyncClient) -> None:
    assert (await mei.post("/api/manager/segments", json=LATE)).status_code == 201
    assert site.guard is not None
    # D5 replied STOP: the guard refuses texts to that number from now on.
    site.guard.set_flag("bank", Flag.OPT_OUT_SMS, FlagScope.PHONE, NUMBERS["D5"], T0)


async def test_a_dry_run_to_a_segment_gives_the_figures_and_writes_nothing(site: Site) -> None:
    mei = await site.client("mei")
    await _late_segment_and_an_opt_out(site, mei)
    setup = (await mei.get("/api/manager/batches")).json()
    assert setup["on"] is True and setup["why_off"] is None and setup["jobs"] == []
    gentle = next(t for t in setup["templates"] if t["name"] == "reminder_gentle")
    assert gentle == {
        "name": "reminder_gentle",
        "channel": "sms",
        "languages": ["zh-CN", "en"],
        "provider": True,
    }
    reply = await mei.post(
        "/api/manager/batches",
        json={"segment": "late", "template": "reminder_gentle", "dry_run": True},
    )
    assert reply.status_code == 200, reply.text
    dry = reply.json()["dry_run"]
    assert dry["batch_key"] == BATCH
    assert (dry["debtors"], dry["go_now"], dry["wait"], dry["refused"], dry["skipped"]) == (
        4,
        3,
        0,
        1,
        0,
    )
    first = dry["previews"][0]
    assert first["language"] == "en" and "https://pay.example.com/d/D" in first["body"]
    assert "5550" not in first["recipient"]  # masked
    # Nothing written, nothing sent, nothing reserved.
    assert _messages(site) == 0 and site.sms is not None and site.sms.sent() == []
    with site.store.begin() as conn:
        reserved = conn.execute(sa.text("SELECT count(*) FROM compliance_reservation"))
        assert reserved.scalar_one() == 0
    audit = users.list_audit(site.store, site.tenant_id)
    assert (audit[0].action, audit[0].target) == ("messages.batch_dry_run", f"batch:{BATCH}")
    await mei.aclose()


async def test_a_batch_sends_each_debtor_of_the_segment_once_and_counts_refusals(
    site: Site,
) -> None:
    mei, sam = await site.client("mei"), await site.client("sam")
    await _late_segment_and_an_opt_out(site, mei)
    assert site.sms is not None
    body = {"segment": "late", "template": "reminder_gentle"}
    # Held at the provider: a second start of the same batch joins the running one.
    site.sms.gate.clear()
    first = await mei.post("/api/manager/batches", json=body)
    assert first.status_code == 202, first.text
    again = await mei.post("/api/manager/batches", json=body)
    assert again.status_code == 202 and again.json()["joined"] is True
    job_id = first.json()["job"]["id"]
    assert again.json()["job"]["id"] == job_id and first.json()["joined"] is False
    site.sms.gate.set()
    # A supervisor watches it to the end.
    done = await _finished(sam, job_id)
    assert done["state"] == "done" and done["error"] is None and done["percent"] == 100
    assert (done["batch_key"], done["debtors"], done["planned"], done["processed"]) == (
        BATCH,
        4,
        4,
        4,
    )
    assert (done["sent"], done["refused"], done["scheduled"], done["failed"]) == (3, 1, 0, 0)
    sent = site.sms.sent()
    # Each debtor of the segment once; D4 (outside it) and the opted-out D5 not at all.
    assert sorted(m["to"] for m in sent) == sorted(NUMBERS[d] for d in ("D1", "D2", "D3"))
    assert all(m["body"].startswith("Hi ") for m in sent)
    assert "https://pay.example.com/d/D1" in next(
        m["body"] for m in sent if m["to"] == NUMBERS["D1"]
    )
    # Started again the same day: the same batch, nothing sent twice.
    rerun = await mei.post("/api/manager/batches", json=body)
    assert rerun.status_code == 202 and rerun.json()["joined"] is False
    second = await _finished(mei, rerun.json()["job"]["id"])
    assert second["batch_key"] == BATCH and second["state"] == "done"
    assert (second["created"], second["already"], second["planned"], second["sent"]) == (0, 4, 0, 0)
    assert len(site.sms.sent()) == 3 and _messages(site) == 4
    listed = (await sam.get("/api/manager/batches")).json()["jobs"]
    assert [j["id"] for j in listed] == [rerun.json()["job"]["id"], job_id]
    # Every start is audited, the joined one too.
    starts = [
        a
        for a in users.list_audit(site.store, site.tenant_id)
        if a.action == "messages.batch_start"
    ]
    assert len(starts) == 3 and {a.target for a in starts} == {f"batch:{BATCH}"}
    await mei.aclose()
    await sam.aclose()


async def test_a_batch_naming_what_is_not_there_is_refused_at_the_field(site: Site) -> None:
    mei, sam, a1 = await site.client("mei"), await site.client("sam"), await site.client("a1")
    boss = await site.client("boss")
    assert (await mei.post("/api/manager/segments", json=LATE)).status_code == 201
    url = "/api/manager/batches"
    for body, field_name in (
        ({"segment": "nope", "template": "reminder_gentle"}, "segment"),
        ({"segment": "late", "template": "nope"}, "template"),
        # An e-mail template, and the messaging file has no e-mail provider.
        ({"segment": "late", "template": "reminder_gentle_email"}, "template"),
        ({"segment": "late", "template": "reminder_gentle", "language": "fr"}, "language"),
    ):
        reply = await mei.post(url, json=body)
        assert reply.status_code == 422, reply.text
        assert reply.json()["detail"][0]["loc"] == ["body", field_name]
    ok = {"segment": "late", "template": "reminder_gentle"}
    # Agents do not send, nor do supervisors; neither reads a batch of another tenant.
    assert (await a1.post(url, json=ok)).status_code == 403
    assert (await a1.get(url)).status_code == 403
    assert (await sam.post(url, json=ok)).status_code == 403
    started = await mei.post(url, json=ok)
    job_id = started.json()["job"]["id"]
    assert (await boss.get(f"{url}/{job_id}")).status_code == 404
    assert (await boss.get(url)).json()["on"] is False  # set up for "bank" only
    assert (await _finished(sam, job_id))["state"] == "done"
    assert _messages(site) == 4
    for client in (mei, sam, a1, boss):
        await client.aclose()


def test_the_pages_know_the_messaging_file_or_say_why_they_cannot_send(tmp_path: Path) -> None:
    plain = tmp_path / "dialer.toml"
    plain.write_text("")
    assert load_config(plain, env={}).messaging.file == "messaging.toml"
    off = tmp_path / "off.toml"
    off.write_text('[messaging]\nfile = ""\n')
    assert load_config(off, env={}).messaging.path() is None
    typo = tmp_path / "typo.toml"
    typo.write_text('[messaging]\nfiles = "m.toml"\n')
    with pytest.raises(ConfigError, match=r"messaging\.files: unknown setting"):
        load_config(typo, env={})
    assert load_config(plain, env={"DIALER_MESSAGING_FILE": "x.toml"}).messaging.file == "x.toml"
    assert (
        open_outbox(None, "bank").refusal("bank") == "no messaging file is set ([messaging] file)"
    )
    missing = open_outbox(tmp_path / "messaging.toml", "bank")
    assert "no such messaging file" in str(missing.refusal("bank"))
    settings = tmp_path / "messaging.toml"
    settings.write_text(
        'payment_link = "https://pay.example.com/{debtor}"\n'
        f'[sms]\nprovider = "file"\npath = "{tmp_path / "out.jsonl"}"\n'
    )
    outbox = open_outbox(settings, "bank")
    assert outbox.refusal("bank") is None and outbox.refusal("other") is not None
    assert outbox.payment_link == "https://pay.example.com/{debtor}"
    assert set(outbox.providers) == {Channel.SMS}
    settings.write_text('[sms]\nprovider = "pigeon"\n')
    with pytest.raises(ConfigError, match=r"sms\.provider"):
        open_outbox(settings, "bank")


async def test_the_running_dialer_sends_from_the_pages_with_its_messaging_file(
    tmp_path: Path,
) -> None:
    """`dialer run`'s pages (dialer/web/wiring.py): [messaging] file names the settings; the
    pages send a batch with its provider and write its payment link into previews."""
    from dialer.cases import segments
    from dialer.config import MessagingConfig
    from dialer.gates import build_guard
    from dialer.web.wiring import pages
    from tests.test_engine import _rig, _sim

    rig = await _rig(tmp_path, f"sqlite:///{tmp_path / 'dialer.db'}", [_sim()], debtors=6, agents=0)
    out = tmp_path / "sms-out.jsonl"
    settings = tmp_path / "messaging.toml"
    settings.write_text(
        f'payment_link = "{PAY}"\n[sms]\nprovider = "file"\npath = "{out}"\n', encoding="utf-8"
    )
    config = dataclasses.replace(rig.config, messaging=MessagingConfig(file=str(settings)))
    tenant = config.campaign.tenant
    users.add_user(rig.store, tenant, "mei", PASSWORD, Role.MANAGER)
    tenant_id = repo.ensure_tenant(rig.store, tenant)
    segments.save_segment(
        rig.store, tenant_id, "all", {"days_past_due_min": 0}, Actor.user("mei"), T0
    )
    try:
        guard = build_guard(config, rig.store)
        async with (
            pages(rig.engine, config, guard, port=0) as port,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as mei,
        ):
            login = {"tenant": tenant, "username": "mei", "password": PASSWORD}
            assert (await mei.post("/api/login", json=login)).status_code == 200
            assert (await mei.get("/api/manager/batches")).json()["on"] is True
            body = {"segment": "all", "template": "reminder_gentle", "batch": "wired"}
            dry = await mei.post("/api/manager/batches", json={**body, "dry_run": True})
            figures = dry.json()["dry_run"]
            assert figures["debtors"] == 6
            counted = ("go_now", "wait", "refused", "skipped")
            assert sum(figures[k] for k in counted) == 6
            started = await mei.post("/api/manager/batches", json=body)
            assert started.status_code == 202, started.text
            done = await _finished(mei, started.json()["job"]["id"])
            assert done["state"] == "done" and done["batch_key"] == "wired"
            sent = out.read_text("utf-8").splitlines() if out.exists() else []
            assert len(sent) == done["sent"]
            # The messaging file's payment link reaches a real debtor's preview.
            listed = (await mei.get("/api/manager/cases")).json()["cases"]
            shown = []
            for case in listed:
                reply = await mei.post(
                    "/api/manager/templates/preview",
                    json={
                        "template": "reminder_gentle",
                        "language": "en",
                        "case_id": case["id"],
                    },
                )
                if reply.status_code == 200:
                    shown.append(reply.json()["body"])
            assert shown and all("https://pay.example.com/d/" in b for b in shown)
    finally:
        rig.store.close()
        await rig.sim.close()
