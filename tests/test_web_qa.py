"""The QA pages' API over real calls: simulated two-party calls are recorded, archived through
the job queue, transcribed by the pipeline (an oracle recogniser, as in tests/test_pipeline.py)
and checked by the shipped rule sets; QA staff then find them by what was said (English and
Chinese), open a call at the hit's second, seek in its recording, mark flags and read each
rule's precision. Only QA, supervisors, managers and admins get in, each to their own tenant.

Runs on SQLite and PostgreSQL; skips without the simulator's audio sources."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from dialer.calls.models import AttemptStatus, Outcome
from dialer.importer import import_csv
from dialer.portfolio import write_sample_portfolio
from dialer.store import attempts as repo
from dialer.store import users
from dialer.store.db import Store, open_store
from dialer.store.models import Role
from dialer.web.auth import COOKIE, Auth
from dialer.web.qa import STATIC, qa_router
from recording.archive import Archive, RetentionPolicy
from recording.pipeline import process_recording
from recording.qa import load_rules
from recording.service import archive_pending, collect_finished
from sim.audio import CallKind, CallSpec, Corpus, Layout, Rule, compose_call, write_call
from sim.audio.errors import AudioUnavailable
from tests.conftest import POSTGRES_URL, REQUIRE_SERVICES, _need
from tests.test_pipeline import Oracle

PASSWORD = "qa-pages-password"
USERS = (("qa", "default"), ("supervisor", "default"), ("admin", "default"),
         ("agent1", "default"), ("qa-other", "other"))  # fmt: skip
ROLES = {"qa": Role.QA, "supervisor": Role.SUPERVISOR, "admin": Role.ADMIN,
         "agent1": Role.AGENT, "qa-other": Role.QA}  # fmt: skip


@dataclass
class QaCall:
    attempt_id: int
    tenant: str
    truth: dict[str, object]
    agent_id: str
    campaign: str


@dataclass
class QaSite:
    """A store with QA-checked calls and the pages' app over it (not yet served)."""

    store: Store
    archive: Archive
    auth: Auth
    app: FastAPI
    calls: dict[str, QaCall] = field(default_factory=dict)


def _attempt(
    store: Store, tenant: str, campaign: str, agent_id: str, wav: Path, when: datetime
) -> int:
    tenant_id = repo.ensure_tenant(store, tenant)
    campaign_id = repo.ensure_campaign(store, tenant_id, campaign, "progressive")
    candidate = repo.next_candidates(store, campaign_id, limit=1)[0]
    (attempt_id,) = repo.create_attempts(
        store,
        [
            repo.NewAttempt(
                tenant_id=tenant_id,
                campaign_id=campaign_id,
                debtor_id=candidate.debtor_id,
                debt_id=candidate.debt_id,
                phone_id=candidate.phone_id,
                node_id="t",
                server="sim",
                uniqueid=f"dlr-qa-{uuid.uuid4().hex[:10]}",
                dialed_at=when,
                reservation_id=None,
            )
        ],
    )
    repo.update_attempt(
        store,
        attempt_id,
        repo.AttemptChange(
            status=AttemptStatus.ENDED,
            outcome=Outcome.ANSWERED,
            answered_at=when + timedelta(seconds=5),
            connected_at=when + timedelta(seconds=6),
            hungup_at=when + timedelta(seconds=51),
            agent_id=agent_id,
            recording_path=str(wav),
        ),
    )
    return attempt_id


# (key, tenant, campaign, agent, the simulated call; each is checked by its language's rule set)
CALLS = (
    ("threat", "default", "qa-east", "agent1", dict(language="en", violation=Rule.THREAT, seed=4)),
    ("clean", "default", "qa-west", "agent2", dict(language="en", kind=CallKind.CONVERSATION, seed=9)),
    ("chinese", "default", "qa-east", "agent1", dict(language="zh", seed=2)),
    ("other", "other", "qa-other", "agent9", dict(language="en", violation=Rule.THREAT, seed=4)),
)  # fmt: skip


def build_site(url: str, root: Path) -> QaSite:
    """Calls recorded, collected, archived by the job queue and run through the pipeline."""
    try:
        corpus = Corpus.open()
    except AudioUnavailable as exc:
        if REQUIRE_SERVICES:
            pytest.fail(f"{exc} and DIALER_REQUIRE_SERVICES=1")
        pytest.skip(str(exc))
    store = open_store(url)
    spool = root / "spool"
    spool.mkdir(parents=True)
    for tenant in ("default", "other"):
        portfolio = root / f"{tenant}.csv"
        write_sample_portfolio(portfolio, debtors=6, seed=3)
        import_csv(store, portfolio, tenant=tenant)
    for username, tenant in USERS:
        role = ROLES[username]
        agent_id = username if role is Role.AGENT else None
        users.add_user(store, tenant, username, PASSWORD, role, agent_id=agent_id)
    now = datetime.now(UTC).replace(microsecond=0)
    calls: dict[str, QaCall] = {}
    truths: dict[int, dict[str, object]] = {}
    for n, (key, tenant, campaign, agent_id, spec) in enumerate(CALLS):
        wav = spool / f"{key}.wav"
        write_call(compose_call(corpus, CallSpec(duration_s=45, **spec)), wav, Layout.STEREO)
        truth = json.loads(wav.with_suffix(".truth.json").read_text(encoding="utf-8"))
        when = now - timedelta(hours=len(CALLS) - n)
        attempt_id = _attempt(store, tenant, campaign, agent_id, wav, when)
        calls[key] = QaCall(attempt_id, tenant, truth, agent_id, campaign)
        truths[attempt_id] = truth
    archive = Archive(root / "archive")
    collect_finished(store, now)
    run = archive_pending(store, archive, RetentionPolicy(), now=lambda: now)
    assert run.count("archived") == len(CALLS), run.outcomes
    with store.begin() as conn:
        archived = conn.execute(
            sa.text("SELECT id, attempt_id, tenant_id, archive_path FROM recordings")
        ).all()
    for recording_id, attempt_id, tenant_id, path in archived:
        truth = truths[attempt_id]
        process_recording(
            store,
            Oracle(truth),  # type: ignore[arg-type]
            load_rules("cn-collections" if truth["language"] == "zh" else "us-collections"),
            tenant_id=tenant_id,
            attempt_id=attempt_id,
            recording_id=recording_id,
            path=archive.root / path,
            now=now,
        )
    app = FastAPI()
    auth = Auth(store)
    app.include_router(auth.router())
    app.include_router(qa_router(auth, store, archive.root))
    # The sign-in page, as dialer/web/app.py serves it.
    app.add_api_route("/", lambda: FileResponse(STATIC / "index.html"), include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return QaSite(store, archive, auth, app, calls)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[QaSite]:
    root = tmp_path_factory.mktemp(f"qa-{request.param}")
    if request.param == "sqlite":
        built = build_site(f"sqlite:///{root / 'dialer.db'}", root)
        yield built
        built.store.close()
        return
    _need(POSTGRES_URL, 5432, "PostgreSQL")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in POSTGRES_URL else "?"
    try:
        built = build_site(f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}", root)
        yield built
        built.store.close()
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
async def signed_in(site: QaSite) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """A client per user with a session of their own (made in the store: each password check
    costs half a second here; signing in through the page is the browser test's)."""
    clients: dict[str, httpx.AsyncClient] = {}
    transport = httpx.ASGITransport(app=site.app)
    for username, tenant in USERS:
        user = users.find_user(site.store, tenant, username)
        assert user is not None
        token = users.create_session(site.store, user.id, ttl_s=600)
        clients[username] = httpx.AsyncClient(
            transport=transport,
            base_url="http://qa.test",
            cookies={COOKIE: token},
            timeout=10,
        )
    yield clients
    for client in clients.values():
        await client.aclose()


def _threat(site: QaSite) -> tuple[float, str]:
    """The scripted threat's second and its last word."""
    violation = site.calls["threat"].truth["violations"][0]  # type: ignore[index]
    return float(violation["start_s"]), violation["text"].split()[-1].strip(".,!?")


async def test_a_threat_phrase_finds_the_call_with_its_second_and_the_words_marked(
    site: QaSite, signed_in: dict[str, httpx.AsyncClient]
) -> None:
    said_at, _ = _threat(site)
    reply = await signed_in["qa"].get("/api/qa/search", params={"q": '"have you arrested"'})
    assert reply.status_code == 200, reply.text
    hits = reply.json()["hits"]
    call = site.calls["threat"]
    assert [h["call_id"] for h in hits] == [call.attempt_id]
    hit = hits[0]
    assert hit["party"] == "agent"
    assert hit["campaign"] == "qa-east" and hit["agent_id"] == "agent1"
    assert hit["audio"] is True and hit["qa_flags"] >= 1
    # The hit's second is where "have you arrested" is said, inside the threat's utterance.
    assert said_at <= hit["second"] <= said_at + 3.5, (hit, said_at)
    marked = [hit["snippet"][a:b].lower() for a, b in hit["marks"]]
    assert marked == ["have you arrested"], marked


async def test_chinese_two_characters_find_the_chinese_call(
    site: QaSite, signed_in: dict[str, httpx.AsyncClient]
) -> None:
    reply = await signed_in["qa"].get("/api/qa/search", params={"q": "还款"})
    assert reply.status_code == 200, reply.text
    hits = reply.json()["hits"]
    assert {h["call_id"] for h in hits} == {site.calls["chinese"].attempt_id}
    for hit in hits:
        assert [hit["snippet"][a:b] for a, b in hit["marks"]] == ["还款"] * len(hit["marks"])
        assert hit["marks"]


async def test_filters_narrow_the_hits(
    site: QaSite, signed_in: dict[str, httpx.AsyncClient]
) -> None:
    qa = signed_in["qa"]
    options = (await qa.get("/api/qa/options")).json()
    campaigns = {c["name"]: c["id"] for c in options["campaigns"]}
    assert set(campaigns) == {"qa-east", "qa-west"}  # never the other tenant's
    assert options["agents"] == ["agent1"]  # the tenant's agents, from its users
    threat, clean = site.calls["threat"].attempt_id, site.calls["clean"].attempt_id

    async def found(**params: object) -> set[int]:
        reply = await qa.get("/api/qa/search", params={"q": "account", **params})
        assert reply.status_code == 200, reply.text
        return {h["call_id"] for h in reply.json()["hits"]}

    everything = await found()
    assert {threat, clean} <= everything
    assert await found(campaign_id=campaigns["qa-west"]) == {clean}
    assert await found(agent="agent1") == everything - {clean}
    assert await found(flagged="flagged") >= {threat}
    assert clean not in await found(flagged="flagged")
    assert await found(party="debtor") <= everything
    dialed = datetime.now(UTC) - timedelta(hours=len(CALLS) - 1)  # the clean call's hour
    window = {"since": (dialed - timedelta(minutes=5)).isoformat(),
              "until": (dialed + timedelta(minutes=5)).isoformat()}  # fmt: skip
    assert await found(**window) == {clean}
    assert await found(outcome="busy") == set()


async def test_bad_requests_are_refused_naming_the_field(
    site: QaSite, signed_in: dict[str, httpx.AsyncClient]
) -> None:
    qa = signed_in["qa"]
    cases = {
        "q": {"q": "?!"},
        "until": {"q": "debt", "since": "2026-12-05T00:00:00Z", "until": "2026-12-01T00:00:00Z"},
        "outcome": {"q": "debt", "outcome": "happy"},
        "party": {"q": "debt", "party": "lawyer"},
        "since": {"q": "debt", "since": "yesterday"},
        "limit": {"q": "debt", "limit": 0},
    }
    for name, params in cases.items():
        reply = await qa.get("/api/qa/search", params=params)
        assert reply.status_code == 422, (name, reply.text)
        assert [d["loc"][-1] for d in reply.json()["detail"]] == [name], reply.text
    reply = await qa.post(
        f"/api/qa/calls/{site.calls['threat'].attempt_id}/flags/1/verdict",
        json={"verdict": "maybe"},
    )
    assert reply.status_code == 422
    assert reply.json()["detail"][0]["loc"] == ["body", "verdict"]
    assert (await qa.get("/api/qa/calls/999999")).status_code == 404


async def test_the_review_shows_both_parties_measures_and_the_flag_at_its_second(
    site: QaSite, signed_in: dict[str, httpx.AsyncClient]
) -> None:
    said_at, last_word = _threat(site)
    call = site.calls["threat"]
    reply = await signed_in["supervisor"].get(f"/api/qa/calls/{call.attempt_id}")
    assert reply.status_code == 200, reply.text
    review = reply.json()
    assert {line["party"] for line in review["lines"]} == {"agent", "debtor"}
    starts = [line["start_s"] for line in review["lines"]]
    assert starts == sorted(starts)
    threat_lines = [x for x in review["lines"] if last_word in x["text"]]
    assert threat_lines and abs(threat_lines[0]["start_s"] - said_at) < 0.5
    measures = review["measures"]
    assert measures["source"] == "audio"
    assert measures["talk_s"]["agent"] > measures["talk_s"]["debtor"] > 0
    assert 0 < measures["silence_ratio"] < 1
    assert abs(measures["duration_s"] - 45) < 1
    forbidden = [f for f in review["flags"] if f["kind"] == "forbidden"]
    assert any(abs(f["second"] - said_at) < 5 for f in forbidden), (forbidden, said_at)
    assert review["call"]["qa_score"] < 100


async def test_the_recording_plays_from_any_byte_so_the_player_can_seek(
    site: QaSite, signed_in: dict[str, httpx.AsyncClient]
) -> None:
    call = site.calls["threat"]
    url = f"/api/qa/calls/{call.attempt_id}/audio"
    whole = await signed_in["qa"].get(url)
    assert whole.status_code == 200
    assert whole.headers["content-type"] == "audio/wav"
    assert whole.headers["accept-ranges"] == "bytes"
    assert whole.content[:4] == b"RIFF"
    part = await signed_in["qa"].get(url, headers={"Range": "bytes=100000-100099"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 100000-100099/{len(whole.content)}"
    assert part.content == whole.content[100000:100100]
    beyond = await signed_in["qa"].get(url, headers={"Range": f"bytes={len(whole.content)}-"})
    assert beyond.status_code == 416


async def test_a_verdict_is_kept_with_who_and_when_audited_and_moves_the_rules_precision(
    site: QaSite, signed_in: dict[str, httpx.AsyncClient]
) -> None:
    call = site.calls["threat"]
    qa = signed_in["qa"]
    review = (await qa.get(f"/api/qa/calls/{call.attempt_id}")).json()
    flag = next(f for f in review["flags"] if f["kind"] == "forbidden")
    before = {p["rule"]: p for p in (await qa.get("/api/qa/precision")).json()}[flag["rule"]]
    reply = await qa.post(
        f"/api/qa/calls/{call.attempt_id}/flags/{flag['id']}/verdict", json={"verdict": "wrong"}
    )
    assert reply.status_code == 200, reply.text
    reply = await qa.post(
        f"/api/qa/calls/{call.attempt_id}/flags/{flag['id']}/verdict", json={"verdict": "right"}
    )
    marked = reply.json()
    assert marked["flag"]["verdict"] == "right" and marked["flag"]["reviewed_by"] == "qa"
    assert marked["flag"]["reviewed_at"] is not None
    # The flag was judged before (or not): either way it now counts once, as right.
    judged_before = flag["verdict"] is not None
    assert marked["precision"]["right"] == before["right"] + (0 if judged_before else 1)
    assert marked["precision"]["unreviewed"] == before["unreviewed"] - (0 if judged_before else 1)
    assert marked["precision"]["precision"] is not None
    after = (await qa.get(f"/api/qa/calls/{call.attempt_id}")).json()
    assert next(f for f in after["flags"] if f["id"] == flag["id"])["verdict"] == "right"
    # Supervisors read who judged what in the audit log.
    with site.store.begin() as conn:
        audited = conn.execute(
            sa.text(
                "SELECT username, target, new_value FROM audit_events WHERE action = 'qa.verdict'"
                " ORDER BY id"
            )
        ).all()
    mine = [a for a in audited if a.target == f"call:{call.attempt_id}/flag:{flag['id']}"]
    assert [a.username for a in mine][-2:] == ["qa", "qa"]
    assert "right" in str(mine[-1].new_value)
    # A flag of another call is not this call's to mark.
    other = site.calls["clean"].attempt_id
    reply = await qa.post(
        f"/api/qa/calls/{other}/flags/{flag['id']}/verdict", json={"verdict": "right"}
    )
    assert reply.status_code == 404 and str(flag["id"]) in reply.json()["detail"]


async def test_flagged_calls_come_first_and_unreviewed_before_reviewed(
    site: QaSite, signed_in: dict[str, httpx.AsyncClient]
) -> None:
    reply = await signed_in["supervisor"].get(
        "/api/qa/queue", params={"only_flagged": "false", "limit": 50}
    )
    assert reply.status_code == 200, reply.text
    rows = reply.json()["calls"]
    mine = {c.attempt_id for c in site.calls.values() if c.tenant == "default"}
    assert {r["call_id"] for r in rows} == mine
    flagged = [bool(r["qa_flags"]) for r in rows]
    assert flagged == sorted(flagged, reverse=True), rows
    standing = [r for r in rows if r["qa_flags"]]
    open_ = [r["unreviewed"] > 0 for r in standing]
    assert open_ == sorted(open_, reverse=True), rows
    assert any(flagged) and not all(flagged)
    only = (await signed_in["supervisor"].get("/api/qa/queue")).json()["calls"]
    assert all(r["qa_flags"] or r["unreviewed"] for r in only)


async def test_only_qa_and_supervisors_get_in_and_each_sees_only_their_tenant(
    site: QaSite, signed_in: dict[str, httpx.AsyncClient]
) -> None:
    ours = site.calls["threat"].attempt_id
    theirs = site.calls["other"].attempt_id
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=site.app), base_url="http://qa.test"
    ) as anonymous:
        assert (await anonymous.get("/api/qa/search", params={"q": "debt"})).status_code == 401
    agent = signed_in["agent1"]
    for path in ("/api/qa/search?q=debt", f"/api/qa/calls/{ours}", f"/api/qa/calls/{ours}/audio",
                 "/api/qa/queue", "/api/qa/precision"):  # fmt: skip
        assert (await agent.get(path)).status_code == 403, path
    assert (await signed_in["admin"].get(f"/api/qa/calls/{ours}")).status_code == 200
    # The other tenant's QA finds its own threat call, never ours, and cannot open ours.
    other = signed_in["qa-other"]
    hits = (await other.get("/api/qa/search", params={"q": "arrested"})).json()["hits"]
    assert [h["call_id"] for h in hits] == [theirs]
    for path in (f"/api/qa/calls/{ours}", f"/api/qa/calls/{ours}/audio"):
        reply = await other.get(path)
        assert reply.status_code == 403, (path, reply.text)
    queue = (await other.get("/api/qa/queue", params={"only_flagged": "false"})).json()
    assert [r["call_id"] for r in queue["calls"]] == [theirs]
    ours_hits = (await signed_in["qa"].get("/api/qa/search", params={"q": "arrested"})).json()
    assert theirs not in {h["call_id"] for h in ours_hits["hits"]}
    await site.auth.drain()
    with site.store.begin() as conn:
        refused = conn.execute(
            sa.text("SELECT target FROM audit_events WHERE action = 'forbidden'")
        ).scalars()
        assert f"GET /api/qa/calls/{ours}/audio" in set(refused)
