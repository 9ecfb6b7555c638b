"""Transcripts are searchable in English and Chinese, with the second of each hit; QA rules flag
what they should (through recognition errors) and not what they should not; verdicts give each
rule's precision. On SQLite (FTS5) and PostgreSQL (tsvector + GIN) alike."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from dialer.calls.models import AttemptStatus, Outcome
from dialer.cli import main
from dialer.store.attempts import (
    AttemptChange,
    NewAttempt,
    create_attempt,
    ensure_campaign,
    ensure_tenant,
    update_attempt,
)
from dialer.store.db import Store, downgrade, open_store, upgrade
from dialer.store.models import (
    Debtor,
    Party,
    Phone,
    QaFlagKind,
    QaVerdict,
    Transcript,
    TranscriptSegment,
)
from recording import qa
from recording import search as search_module
from recording.search import parse_query, search
from recording.transcripts import (
    Segment,
    TranscriptIn,
    Word,
    delete_transcripts,
    index_tokens,
    load_transcripts,
    store_transcript,
)

T0 = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)
US = qa.load_rules("us-collections")
CN = qa.load_rules("cn-collections")


def seg(start: float, text: str, step: float = 0.4) -> Segment:
    """A segment whose words are timed `step` seconds apart from `start`."""
    words = text.split()
    timed = tuple(
        Word(w, start + i * step, start + i * step + step * 0.9, 0.9) for i, w in enumerate(words)
    )
    return Segment(start, start + step * len(words), text, timed, 0.9)


def said(
    party: str, *lines: tuple[float, str], language: str = "en", engine: str = "vosk"
) -> TranscriptIn:
    return TranscriptIn(
        Party(party), engine, "test-model", language, tuple(seg(s, t) for s, t in lines)
    )


CLEAN_EN = [
    said(
        "agent",
        (1.0, "hello this is anna from example credit"),
        (
            5.0,
            "this is an attempt to collect a debt and any information obtained will be used for that purpose",
        ),
        (20.0, "i will see you next week then"),
    ),
    said("debtor", (3.5, "yes speaking"), (15.0, "ok i can pay on friday")),
]


@dataclass
class World:
    store: Store
    tenant_id: int
    campaign_id: int
    other_campaign_id: int
    debtor_id: int
    phone_id: int

    def call(
        self,
        *transcripts: TranscriptIn,
        campaign_id: int | None = None,
        agent: str = "agent1",
        dialed_at: datetime = T0,
        outcome: Outcome = Outcome.ANSWERED,
    ) -> int:
        attempt = create_attempt(
            self.store,
            NewAttempt(
                tenant_id=self.tenant_id,
                campaign_id=campaign_id or self.campaign_id,
                debtor_id=self.debtor_id,
                debt_id=None,
                phone_id=self.phone_id,
                node_id="n1",
                server="pbx1",
                uniqueid=None,
                dialed_at=dialed_at,
            ),
        )
        update_attempt(
            self.store,
            attempt,
            AttemptChange(status=AttemptStatus.ENDED, outcome=outcome, agent_id=agent),
        )
        for t in transcripts:
            store_transcript(self.store, self.tenant_id, attempt, t)
        return attempt


def tenant_world(store: Store, name: str) -> World:
    tenant = ensure_tenant(store, name, now=T0)
    with store.session() as session:
        debtor = Debtor(tenant_id=tenant, external_id="d1", full_name="Li Wei", created_at=T0)
        session.add(debtor)
        session.flush()
        phone = Phone(
            tenant_id=tenant,
            debtor_id=debtor.id,
            e164="+8613800000000",
            phone_type="mobile",
            created_at=T0,
        )
        session.add(phone)
        session.flush()
        debtor_id, phone_id = debtor.id, phone.id
    return World(
        store,
        tenant,
        ensure_campaign(store, tenant, "spring", "predictive", now=T0),
        ensure_campaign(store, tenant, "autumn", "predictive", now=T0),
        debtor_id,
        phone_id,
    )


@pytest.fixture
def world(database_url: str) -> Iterator[World]:
    store = open_store(database_url)
    yield tenant_world(store, "acme")
    store.close()


# --- the index form ----------------------------------------------------------------------------


def test_cjk_runs_become_bigrams_and_their_last_character_latin_words_stay_whole() -> None:
    assert index_tokens("请 尽快 还款, OK? Pay ＴＯＤＡＹ") == [
        "请尽",
        "尽快",
        "快还",
        "还款",
        "款",
        "ok",
        "pay",
        "today",
    ]
    assert index_tokens("我") == ["我"]
    assert index_tokens("Café Müller") == ["cafe", "muller"]


def test_a_query_drops_the_run_end_a_text_might_continue_and_one_character_is_a_prefix() -> None:
    [term] = parse_query("还款")
    assert term.tokens == ("还款",) and not term.prefix
    [term] = parse_query("还")
    assert term.tokens == ("还",) and term.prefix
    assert [t.tokens for t in parse_query('"will sue you" 分期还款')] == [
        ("will", "sue", "you"),
        ("分期", "期还", "还款"),
    ]


# --- search --------------------------------------------------------------------------------------


def test_an_english_query_finds_the_call_and_the_second_it_was_said(world: World) -> None:
    target = world.call(
        said("agent", (1.0, "hello"), (12.0, "we can set up a payment plan for you"))
    )
    world.call(said("agent", (2.0, "thank you for your time")))
    hits = search(world.store, world.tenant_id, "Payment Plan")
    assert [(h.attempt_id, h.party) for h in hits] == [(target, Party.AGENT)]
    assert hits[0].start_s == pytest.approx(12.0 + 5 * 0.4)  # "payment" is the sixth word
    assert "payment plan" in hits[0].snippet
    assert search(world.store, world.tenant_id, '"plan payment"') == []
    assert search(world.store, world.tenant_id, "nothing like this") == []


def test_two_chinese_characters_find_only_the_calls_that_say_them_together(world: World) -> None:
    both = world.call(said("agent", (3.0, "您 的 欠款 请 尽快 还款"), language="zh"))
    apart = world.call(said("debtor", (2.0, "我 还 没有 钱 款 下个月 给"), language="zh"))
    spaced = world.call(
        said("debtor", (4.0, "下周 一定 还 款"), language="zh")
    )  # the recogniser split it
    hits = search(world.store, world.tenant_id, "还款")
    assert {h.attempt_id for h in hits} == {both, spaced}
    assert apart not in {h.attempt_id for h in hits}
    [first] = [h for h in hits if h.attempt_id == both]
    assert first.start_s == pytest.approx(3.0 + 5 * 0.4)
    assert {h.attempt_id for h in search(world.store, world.tenant_id, "还")} == {
        both,
        apart,
        spaced,
    }
    assert {h.attempt_id for h in search(world.store, world.tenant_id, "尽快还款")} == {both}
    assert search(world.store, world.tenant_id, "快还款项") == []


def test_filters_narrow_the_hits(world: World) -> None:
    line = (5.0, "can you make a payment today")
    a = world.call(said("agent", line), agent="agent1", dialed_at=T0)
    b = world.call(said("debtor", line), agent="agent2", dialed_at=T0 + timedelta(days=3))
    c = world.call(said("agent", line), campaign_id=world.other_campaign_id, agent="agent2")
    d = world.call(said("agent", line), outcome=Outcome.MACHINE, dialed_at=T0 - timedelta(days=5))
    qa.save_result(
        world.store,
        world.tenant_id,
        b,
        qa.QaResult(60.0, (qa.Flag("x", QaFlagKind.FORBIDDEN, Party.DEBTOR, 5.0, "…", 90.0),)),
    )

    def found(**filters: object) -> set[int]:
        return {h.attempt_id for h in search(world.store, world.tenant_id, "payment", **filters)}  # type: ignore[arg-type]

    assert found() == {a, b, c, d}
    assert found(campaign_id=world.other_campaign_id) == {c}
    assert found(agent_id="agent2") == {b, c}
    assert found(since=T0 + timedelta(days=1)) == {b}
    assert found(until=T0) == {d}
    assert found(outcome="machine") == {d}
    assert found(party="debtor") == {b}
    assert found(flagged=True) == {b}
    assert found(flagged=False) == {a, c, d}
    assert found(agent_id="agent2", campaign_id=world.campaign_id) == {b}
    other = ensure_tenant(world.store, "other-tenant")
    assert search(world.store, other, "payment") == []
    assert len(search(world.store, world.tenant_id, "payment", limit=2)) == 2
    assert len(search(world.store, world.tenant_id, "payment", limit=2, offset=3)) == 1


def test_a_chinese_query_takes_the_same_filters_and_the_newest_calls_come_first(
    world: World,
) -> None:
    def zh(party: str, line: str) -> TranscriptIn:
        return said(party, (2.0, line), language="zh")

    old = world.call(zh("agent", "请 您 尽快 还款"), dialed_at=T0 - timedelta(days=100))
    agent2 = world.call(zh("agent", "我们 可以 办理 分期 还款"), agent="agent2")
    debtor = world.call(zh("debtor", "下个月 一定 还款"), dialed_at=T0 + timedelta(days=2))
    other = world.call(zh("agent", "今天 能 还款 吗"), campaign_id=world.other_campaign_id)
    flagged = world.call(zh("agent", "再 不 还款 就 起诉 你"), dialed_at=T0 + timedelta(days=1))
    qa.save_result(
        world.store,
        world.tenant_id,
        flagged,
        qa.QaResult(60.0, (qa.Flag("threat", QaFlagKind.FORBIDDEN, Party.AGENT, 2.0, "…", 90.0),)),
    )
    world.call(zh("agent", "还有 别的 款项 吗"))  # 还 and 款, never 还款

    def found(**filters: object) -> list[int]:
        return [h.attempt_id for h in search(world.store, world.tenant_id, "还款", **filters)]  # type: ignore[arg-type]

    # newest first: the order the calls were entered, whatever their dial time
    assert found() == [flagged, other, debtor, agent2, old]
    assert found(campaign_id=world.other_campaign_id) == [other]
    assert found(agent_id="agent2") == [agent2]
    assert found(party="debtor") == [debtor]
    assert found(flagged=True) == [flagged]
    assert found(since=T0 + timedelta(hours=12), until=T0 + timedelta(days=3)) == [
        flagged,
        debtor,
    ]
    # a range longer than the index keeps day tags for is checked on the calls themselves
    assert found(since=T0 - timedelta(days=200), until=T0 - timedelta(days=50)) == [old]
    assert found(party="agent", flagged=False, campaign_id=world.campaign_id) == [agent2, old]
    assert found(agent_id="agent2", party="debtor") == []
    hits = search(world.store, world.tenant_id, "分期 还款", agent_id="agent2")
    [hit] = hits
    assert hit.attempt_id == agent2 and hit.start_s == pytest.approx(2.0 + 3 * 0.4)


def test_walking_the_newest_entries_or_asking_the_index_gives_the_same_page(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = ["can you make a payment today", "请 您 尽快 还款", "i lost my job", "好 的 我 知道 了"]
    calls = [
        world.call(
            said("agent" if n % 3 else "debtor", (1.0, lines[n % 4]), language="zh"),
            agent=f"agent{n % 2}",
            dialed_at=T0 + timedelta(hours=n),
        )
        for n in range(24)
    ]
    for flagged in calls[::5]:
        qa.save_result(
            world.store,
            world.tenant_id,
            flagged,
            qa.QaResult(60.0, (qa.Flag("x", QaFlagKind.FORBIDDEN, Party.AGENT, 1.0, "…", 90.0),)),
        )
    asks: list[tuple[str, dict[str, object]]] = [
        ("payment", {}),
        ("还款", {"agent_id": "agent1"}),
        ("还款", {"flagged": True}),
        ("lost my job", {"party": "agent", "since": T0 + timedelta(hours=4)}),
        ("知道", {"offset": 2, "limit": 2}),
    ]

    def pages() -> list[list[int]]:
        return [
            [h.segment_id for h in search(world.store, world.tenant_id, q, **f)]  # type: ignore[arg-type]
            for q, f in asks
        ]

    walked = pages()  # a small table: PostgreSQL walks it all
    assert all(walked) and walked[1] == sorted(walked[1], reverse=True)
    monkeypatch.setattr(search_module, "WALK_FIRST", 2)  # PostgreSQL: a few, then GIN
    monkeypatch.setattr(search_module, "GIN_COST", 0)
    assert pages() == walked
    monkeypatch.setattr(search_module, "GIN_COST", 10**6)  # walks further, then GIN
    monkeypatch.setattr(search_module, "WALKS", 2)
    assert pages() == walked


def test_another_tenants_calls_never_show_even_with_the_same_agent_id(world: World) -> None:
    mine = world.call(said("agent", (1.0, "can you make a payment today")), agent="agent1")
    theirs = tenant_world(world.store, "other")
    for _ in range(3):
        theirs.call(said("agent", (1.0, "can you make a payment today")), agent="agent1")

    def found(tenant: int, **filters: object) -> list[int]:
        return [h.attempt_id for h in search(world.store, tenant, "payment", **filters)]  # type: ignore[arg-type]

    assert found(world.tenant_id) == [mine]
    assert found(world.tenant_id, agent_id="agent1") == [mine]
    assert found(world.tenant_id, party="agent", since=T0 - timedelta(days=1)) == [mine]
    assert found(world.tenant_id, campaign_id=theirs.campaign_id) == []
    assert len(found(theirs.tenant_id, agent_id="agent1")) == 3


def test_storing_a_transcript_again_replaces_it_and_its_hits(world: World) -> None:
    call = world.call(said("agent", (1.0, "your balance is overdue")))
    for _ in range(3):
        store_transcript(
            world.store, world.tenant_id, call, said("agent", (1.0, "your balance is overdue"))
        )
    assert len(search(world.store, world.tenant_id, "balance")) == 1
    store_transcript(
        world.store, world.tenant_id, call, said("agent", (2.0, "your account is settled"))
    )
    assert search(world.store, world.tenant_id, "balance") == []
    assert [h.start_s for h in search(world.store, world.tenant_id, "settled")] == [
        pytest.approx(3.2)
    ]
    [kept] = load_transcripts(world.store, call)
    assert [s.text for s in kept.segments] == ["your account is settled"]
    # another engine's transcript is kept beside it
    store_transcript(
        world.store,
        world.tenant_id,
        call,
        said("agent", (2.0, "your account is settled"), engine="pocketsphinx"),
    )
    assert len(search(world.store, world.tenant_id, "settled")) == 2
    assert delete_transcripts(world.store, call) == 2
    assert search(world.store, world.tenant_id, "settled") == []


# --- QA rules ------------------------------------------------------------------------------------


def test_shipped_rule_sets_load_and_bad_ones_are_refused(tmp_path: Path) -> None:
    assert {"us-collections", "cn-collections"} <= set(qa.list_presets())
    assert US.rule("mini-miranda") is not None and CN.rule("threat") is not None
    bad = tmp_path / "bad.toml"
    bad.write_text('[[forbidden]]\nid = "x"\nphrases = []\n', encoding="utf-8")
    with pytest.raises(qa.QaRulesError, match="phrases"):
        qa.load_rules(bad)
    with pytest.raises(qa.QaRulesError, match="no QA rule set"):
        qa.load_rules("nowhere")


def test_sounds_alike_words_share_a_key_and_others_do_not() -> None:
    assert qa.phonetic_key("sue") == qa.phonetic_key("shoe")
    assert qa.phonetic_key("see") != qa.phonetic_key("sue")
    assert qa.word_likeness("shoe", "sue") >= 90 > qa.word_likeness("see", "sue")


def test_a_misrecognised_threat_is_flagged_at_its_second_and_a_clean_call_is_not() -> None:
    assert qa.score_call(CLEAN_EN, None, US) == qa.QaResult(100.0, ())
    threat = [
        CLEAN_EN[0],
        said("debtor", (3.5, "yes speaking"), (14.0, "i cannot pay")),
        said("agent", (16.0, "if you do not pay i will shoe you")),
    ]
    result = qa.score_call(threat, None, US)
    [flag] = result.flags
    assert (flag.rule_id, flag.kind, flag.party) == (
        "threat-lawsuit",
        QaFlagKind.FORBIDDEN,
        Party.AGENT,
    )
    assert flag.at_s == pytest.approx(16.0 + 5 * 0.4)
    assert "shoe" in flag.snippet
    assert result.score == 60.0


def test_chinese_phrases_are_matched_through_one_wrong_character() -> None:
    opening = said(
        "agent",
        (1.0, "您好 我 是 华融 的 客服 本次 通话 会 被 录音 您 的 欠款 已经 逾期"),
        language="zh",
    )
    clean = qa.score_call(
        [opening, said("debtor", (9.0, "好 的 我 下周 还"), language="zh")], None, CN
    )
    assert clean.flags == ()
    threat = qa.score_call(
        [opening, said("agent", (12.0, "再 不 还 我们 会 起 素 你"), language="zh")], None, CN
    )
    [flag] = threat.flags
    assert flag.rule_id == "threat" and flag.at_s == pytest.approx(12.0 + 3 * 0.4)


def test_a_mini_miranda_missing_from_the_first_seconds_is_flagged() -> None:
    late = [
        said(
            "agent",
            (2.0, "hello this is anna from example credit"),
            (70.0, "this is an attempt to collect a debt"),
        ),
        said("debtor", (6.0, "yes"), (40.0, "okay"), (60.0, "go on")),
    ]
    [flag] = [f for f in qa.score_call(late, None, US).flags if f.kind is QaFlagKind.MISSING]
    assert (flag.rule_id, flag.kind) == ("mini-miranda", QaFlagKind.MISSING)
    assert flag.at_s == pytest.approx(70.0) and "after the first 45 s" in flag.snippet
    never = [
        said("agent", (2.0, "hello this is anna from example credit")),
        said("debtor", (6.0, "yes")),
    ]
    [flag] = qa.score_call(never, None, US).flags
    assert flag.rule_id == "mini-miranda" and flag.at_s == pytest.approx(47.0)
    # a recognition error inside the disclosure still satisfies it
    garbled = [
        said(
            "agent",
            (2.0, "this is anna from example credit this is an attempt to collect the dept"),
        )
    ]
    assert "mini-miranda" not in {f.rule_id for f in qa.score_call(garbled, None, US).flags}


def test_the_debt_told_to_a_third_party_is_flagged_only_after_they_say_so() -> None:
    opening = (1.0, "hi my name is bob calling from acme this is an attempt to collect a debt")
    told = [
        said("agent", opening, (12.0, "please tell him he owes money to acme")),
        said("debtor", (8.0, "he is not here right now")),
    ]
    assert [f.rule_id for f in qa.score_call(told, None, US).flags] == ["third-party-disclosure"]
    debtor = [
        said("agent", opening, (12.0, "you owes money to acme")),
        said("debtor", (8.0, "yes it is me")),
    ]
    assert qa.score_call(debtor, None, US).flags == ()


def test_silence_and_overtalk_limits_use_the_call_metrics() -> None:
    metrics = {
        "silence_ratio": 0.2,
        "longest_silence": {"start_s": 30.0, "end_s": 55.0},
        "overtalk_s": 18.0,
        "overtalk": [{"start_s": 70.0, "end_s": 76.5}, {"start_s": 80.0, "end_s": 81.0}],
    }
    flags = {f.rule_id: f for f in qa.score_call(CLEAN_EN, metrics, US).flags}
    assert set(flags) == {"dead-air", "overtalk"}
    assert flags["dead-air"].at_s == 30.0 and "25.0 s" in flags["dead-air"].snippet
    assert flags["overtalk"].at_s == 70.0
    # without metrics: estimated from the segments (the clean call has no long gap)
    assert qa.score_call(CLEAN_EN, None, US).flags == ()


def test_verdicts_give_each_rule_its_precision_and_flagged_calls_come_first(world: World) -> None:
    threat = said(
        "agent",
        (1.0, "this is anna from example credit this is an attempt to collect a debt"),
        (9.0, "i will sue you"),
    )
    calls = [world.call(threat, said("debtor", (5.0, "what"))) for _ in range(3)]
    clean = world.call(*CLEAN_EN)
    for call in [*calls, clean]:
        qa.check_call(world.store, world.tenant_id, call, US)
    queue = qa.review_queue(world.store, world.tenant_id)
    assert [c.attempt_id for c in queue][-1] == clean and queue[0].flags == 1
    flags = [qa.flags_of(world.store, world.tenant_id, c)[0] for c in calls]
    qa.review(world.store, flags[0].id, QaVerdict.RIGHT, "sam")
    qa.review(world.store, flags[1].id, "right", "sam")
    judged = qa.review(world.store, flags[2].id, QaVerdict.WRONG, "kim")
    assert (judged.verdict, judged.reviewed_by) == (QaVerdict.WRONG, "kim")
    [(rule, (right, wrong, precision))] = qa.rule_precision(world.store, world.tenant_id).items()
    assert (rule, right, wrong, precision) == ("threat-lawsuit", 2, 1, 2 / 3)
    # a flag judged wrong no longer counts against its call, and survives re-scoring
    assert {h.attempt_id for h in search(world.store, world.tenant_id, "sue", flagged=True)} == set(
        calls[:2]
    )
    qa.check_call(world.store, world.tenant_id, calls[2], US)
    assert qa.flags_of(world.store, world.tenant_id, calls[2])[0].verdict is QaVerdict.WRONG


def _tagged_calls(store: Store) -> set[int]:
    """The calls whose segments the search index itself holds as QA-flagged."""
    if store.dialect == "sqlite":
        query = "SELECT rowid FROM transcript_fts WHERE transcript_fts MATCH 'tags : qf'"
    else:
        query = "SELECT segment_id FROM transcript_search WHERE tsv @@ CAST('''~qf''' AS tsquery)"
    with store.begin() as conn:
        segments = [int(r[0]) for r in conn.exec_driver_sql(query)]
        if not segments:
            return set()
        rows = conn.execute(
            sa.select(Transcript.attempt_id)
            .join(TranscriptSegment, TranscriptSegment.transcript_id == Transcript.id)
            .where(TranscriptSegment.id.in_(segments))
        )
        return {int(r[0]) for r in rows}


def test_the_index_marks_flagged_calls_so_a_flagged_search_narrows_in_the_index(
    world: World,
) -> None:
    threat = said("agent", (9.0, "i will sue you"))
    calls = [world.call(threat) for _ in range(3)]
    clean = world.call(*CLEAN_EN)
    for call in [*calls, clean]:
        qa.check_call(world.store, world.tenant_id, call, US)
    assert _tagged_calls(world.store) == set(calls)
    # every flag judged wrong: no longer a flagged call, in the index too
    flags = qa.flags_of(world.store, world.tenant_id, calls[0])
    for flag in flags:
        qa.review(world.store, flag.id, QaVerdict.WRONG, "kim")
    assert _tagged_calls(world.store) == set(calls[1:])
    qa.review(world.store, flags[0].id, QaVerdict.RIGHT, "kim")
    assert _tagged_calls(world.store) == set(calls)
    # transcribed again after QA: the new segments are tagged as the old were
    store_transcript(world.store, world.tenant_id, calls[1], threat)
    assert _tagged_calls(world.store) == set(calls)
    hits = search(world.store, world.tenant_id, "sue", flagged=True)
    assert {h.attempt_id for h in hits} == set(calls)
    # a store migrated from before the tag: the calls QA flagged are tagged on upgrade
    downgrade(world.store.engine, "0012")
    assert _tagged_calls(world.store) == set()
    upgrade(world.store.engine)
    assert _tagged_calls(world.store) == set(calls)


# --- the command line ----------------------------------------------------------------------------


def test_the_qa_commands_search_review_and_report_precision(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(
        "DATABASE_URL", str(world.store.engine.url.render_as_string(hide_password=False))
    )
    threat = said(
        "agent",
        (1.0, "this is anna from example credit this is an attempt to collect a debt"),
        (9.0, "我们 会 起诉 你 i will sue you"),
    )
    call = world.call(threat)
    assert main(["qa", "check", str(call), "--tenant", "acme", "--json"]) == 0
    [flag] = json.loads(capsys.readouterr().out)["flags"]
    assert (
        main(
            [
                "qa",
                "search",
                "起诉",
                "--tenant",
                "acme",
                "--campaign",
                "spring",
                "--flagged",
                "--json",
            ]
        )
        == 0
    )
    [hit] = json.loads(capsys.readouterr().out)
    assert (hit["call_id"], hit["second"]) == (call, pytest.approx(9.8))
    assert (
        main(
            [
                "qa",
                "review",
                str(call),
                "--tenant",
                "acme",
                "--flag",
                str(flag["id"]),
                "--wrong",
                "--user",
                "sam",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "[wrong by sam]" in out and "0:09.0  agent" in out
    assert main(["qa", "precision", "--tenant", "acme", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "threat-lawsuit": {"right": 0, "wrong": 1, "precision": 0.0}
    }
    assert main(["qa", "search", "nothing", "--tenant", "nobody"]) == 2


def test_bench_search_prints_its_figures(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["bench", "search", "--calls", "300", "--reps", "8", "--url", database_url, "--json"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    [(name, figures)] = report["databases"].items()
    assert name == ("sqlite" if database_url.startswith("sqlite") else "postgresql")
    cases = {c["case"]: c for c in figures["cases"]}
    assert "baseline: segment by primary key" in cases
    assert cases["Chinese, no filter [common]"]["hits"] == 50
    assert cases["English, no filter [common]"]["hits"] > cases["English, no filter [rare]"]["hits"]
    assert cases["Chinese, no filter [none]"]["hits"] == 0
    assert cases["English, agent [none]"]["hits"] == 0
    assert all(c["p50_ms"] <= c["p95_ms"] <= c["max_ms"] for c in cases.values())
