"""`dialer bench search`: search over many transcribed calls, English and Chinese, with and
without filters, on SQLite and PostgreSQL, against a primary-key lookup in the same run.

Figures, never pass/fail. The calls are made up from a small grammar of collection-call
sentences (agent and debtor sides, English and Chinese as a recogniser writes them: Chinese
words separated by spaces, every word timed), written in bulk straight through the drivers
(executemany on SQLite, COPY on PostgreSQL), then indexed the way recording/transcripts.py
indexes one call. The issue's goal: p95 under 200 ms over 1,000,000 calls.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, text

from dialer.store.db import Store, open_store, safe_url
from dialer.store.models import Debtor, Phone, Transcript, TranscriptSegment
from recording.search import search
from recording.transcripts import (
    index_body,
    index_tags,
    index_tokens,
    pg_lexemes,
    with_flagged,
)

DEFAULT_PG = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
T_END = datetime(2026, 12, 1, tzinfo=UTC)
DAYS = 90
CAMPAIGNS = 20  # the first 12 English, the rest Chinese
EN_CAMPAIGNS = 12
AGENTS = 200
DEBTORS = 5_000
FLAGGED = 0.05  # share of calls with QA flags standing
CHUNK = 10_000  # calls per write

# --- the grammar -------------------------------------------------------------------------------

FIRST = [
    "james",
    "mary",
    "robert",
    "patricia",
    "john",
    "jennifer",
    "michael",
    "linda",
    "david",
    "elizabeth",
    "william",
    "barbara",
    "richard",
    "susan",
    "joseph",
    "jessica",
    "thomas",
    "sarah",
    "charles",
    "karen",
    "daniel",
    "lisa",
    "matthew",
    "nancy",
    "anthony",
    "betty",
    "mark",
    "sandra",
]
LAST = [
    "smith",
    "johnson",
    "williams",
    "brown",
    "jones",
    "garcia",
    "miller",
    "davis",
    "rodriguez",
    "martinez",
    "hernandez",
    "lopez",
    "gonzalez",
    "wilson",
    "anderson",
    "thomas",
    "taylor",
    "moore",
    "jackson",
    "martin",
    "lee",
    "perez",
    "thompson",
    "white",
    "harris",
    "sanchez",
    "clark",
    "ramirez",
    "lewis",
    "robinson",
    "walker",
    "young",
    "allen",
    "king",
    "wright",
    "scott",
    "torres",
    "nguyen",
    "hill",
    "flores",
    "green",
    "adams",
    "nelson",
    "baker",
    "hall",
    "rivera",
    "campbell",
    "mitchell",
    "carter",
    "roberts",
    "kowalski",
    "okafor",
]
COMPANY = ["example credit", "northwind recovery", "summit collections", "lakeside finance"]
PRODUCT = ["credit card", "auto loan", "personal loan", "store card", "medical bill"]
WEEKDAY = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday"]
NUMBER = [
    "fifty",
    "hundred",
    "two",
    "hundred",
    "three",
    "hundred",
    "five",
    "hundred",
    "eighty",
    "forty",
    "seventy",
]

EN_AGENT = [
    "hello this is {first} from {company}",
    "may i speak with {first} {last} please",
    "this is an attempt to collect a debt and any information obtained will be used for that purpose",
    "i am calling about your {product} account",
    "your balance is {number} dollars and it is {days} days past due",
    "can you make a payment of {number} dollars today",
    "we can set up a payment plan of {number} dollars per month",
    "when will you be able to pay",
    "i can offer you a settlement if you pay by {weekday}",
    "let me confirm your address and date of birth",
    "i understand it is a difficult time for you",
    "i will note that you promised to pay on {weekday}",
    "is this still the best number to reach you",
    "the payment can be made by card or bank transfer",
    "thank you for your time have a good day",
    "i will call you back on {weekday} afternoon",
]
EN_DEBTOR = [
    "who is this",
    "yes speaking",
    "i lost my job last month",
    "i can pay {number} dollars on {weekday}",
    "i already paid that bill",
    "please stop calling me at work",
    "i dispute this debt i never had that account",
    "can you send me a letter about it",
    "my husband handles the bills",
    "i get paid on {weekday} so i can pay then",
    "that is not my debt",
    "okay a payment plan would help",
    "i need to talk to my lawyer first",
    "sorry i cannot talk right now",
]
ZH_SURNAME = [
    "王",
    "李",
    "张",
    "刘",
    "陈",
    "杨",
    "黄",
    "赵",
    "吴",
    "周",
    "徐",
    "孙",
    "马",
    "朱",
    "胡",
    "郭",
    "何",
    "高",
    "林",
    "罗",
    "郑",
    "梁",
    "谢",
    "宋",
    "唐",
    "许",
    "韩",
    "冯",
    "邓",
    "曹",
]
ZH_GIVEN = [
    "伟",
    "芳",
    "娜",
    "秀英",
    "敏",
    "静",
    "丽",
    "强",
    "磊",
    "军",
    "洋",
    "勇",
    "艳",
    "杰",
    "娟",
    "涛",
    "明",
    "超",
    "秀兰",
    "霞",
    "平",
    "刚",
    "桂英",
]
ZH_COMPANY = ["信达 资产", "华融 催收", "银河 金融", "长城 信用"]
ZH_PRODUCT = ["信用卡", "消费 贷款", "车贷", "网贷"]
ZH_NUMBER = ["五百", "一千", "两千", "三千", "八百", "一万", "六千"]
ZH_DAY = ["周一", "周二", "周三", "周四", "周五", "月底", "下周"]
ZH_AGENT = [
    "您好 我 是 {company} 的 客服 {surname} 先生",
    "请问 是 {surname}{given} 本人 吗",
    "您 的 {product} 账单 已经 逾期 {days} 天 了",
    "欠款 金额 是 {number} 元",
    "请 您 尽快 还款",
    "我们 可以 为 您 办理 分期 还款",
    "今天 能 先 还 一部分 吗",
    "逾期 会 影响 您 的 个人 征信",
    "请 在 {day} 之前 还清 欠款",
    "您 可以 通过 银行 转账 或者 微信 支付",
    "我 这边 给 您 记录 一下 还款 承诺",
    "感谢 您 的 配合 再见",
    "本次 通话 会 被 录音",
]
ZH_DEBTOR = [
    "你 是 哪位",
    "我 最近 手头 比较 紧",
    "下个月 发 工资 再 还",
    "我 已经 还 过 了",
    "能不能 减免 一点 利息",
    "你们 别 再 打 电话 了",
    "我 不 认识 这个 人",
    "我 可以 先 还 {number} 块",
    "{day} 之前 一定 还",
    "我 要 投诉 你们",
    "好 的 我 知道 了",
]
EN_QUERIES = {
    "common": ["payment plan", "balance", "pay", "today"],
    "medium": ["lost my job", "lawyer", "dispute this debt", '"stop calling"'],
    "rare": ["kowalski", "okafor settlement", "lakeside", "medical bill"],
    "none": ["bankruptcy", "garnish wages"],
}
ZH_QUERIES = {
    "common": ["还款", "欠款", "逾期"],
    "medium": ["分期还款", "征信", "减免利息", "投诉"],
    "rare": ["长城信用", "秀英", "车贷"],
    "none": ["法院", "起诉"],
}


def _fill(rng: random.Random, template: str) -> str:
    return template.format(
        first=rng.choice(FIRST),
        last=rng.choice(LAST),
        company=rng.choice(COMPANY),
        product=rng.choice(PRODUCT),
        weekday=rng.choice(WEEKDAY),
        number=rng.choice(NUMBER),
        days=rng.choice(["thirty", "sixty", "ninety", "120", "45", "75"]),
        surname=rng.choice(ZH_SURNAME),
        given=rng.choice(ZH_GIVEN),
        day=rng.choice(ZH_DAY),
    )


def _zh_fill(rng: random.Random, template: str) -> str:
    return template.format(
        company=rng.choice(ZH_COMPANY),
        surname=rng.choice(ZH_SURNAME),
        given=rng.choice(ZH_GIVEN),
        product=rng.choice(ZH_PRODUCT),
        days=rng.choice(["三十", "六十", "九十", "一百二十"]),
        number=rng.choice(ZH_NUMBER),
        day=rng.choice(ZH_DAY),
    )


# --- generated rows ----------------------------------------------------------------------------


@dataclass
class Chunk:
    attempts: list[tuple[Any, ...]] = field(default_factory=list)
    transcripts: list[tuple[Any, ...]] = field(default_factory=list)
    segments: list[tuple[Any, ...]] = field(
        default_factory=list
    )  # id, transcript, seq, s, e, text, words
    scores: list[tuple[Any, ...]] = field(default_factory=list)


def generate(calls: int, seed: int, first_attempt: int) -> Iterator[Chunk]:
    """Calls in chunks, their ids from `first_attempt` on (transcripts and segments numbered
    from 1), oldest first so that ids grow with time as they do in production."""
    rng = random.Random(seed)
    seg_id = 0
    span = DAYS * 86_400
    chunk = Chunk()
    for n in range(calls):
        attempt_id = first_attempt + n
        campaign = rng.randrange(CAMPAIGNS)
        english = campaign < EN_CAMPAIGNS
        dialed = T_END - timedelta(seconds=span * (1 - n / calls) + rng.random() * 60)
        agent = f"agent{rng.randrange(AGENTS)}"
        chunk.attempts.append((attempt_id, campaign, rng.randrange(DEBTORS), dialed, agent))
        if rng.random() < FLAGGED:
            chunk.scores.append((attempt_id, 70.0, 1, dialed))
        agent_lines, debtor_lines = (EN_AGENT, EN_DEBTOR) if english else (ZH_AGENT, ZH_DEBTOR)
        fill = _fill if english else _zh_fill
        t = rng.uniform(0.5, 2.0)
        turns: dict[str, list[tuple[float, float, str, list[dict[str, Any]]]]] = {
            "agent": [],
            "debtor": [],
        }
        for turn in range(rng.randint(5, 8)):
            party = "agent" if turn % 2 == 0 else "debtor"
            lines = agent_lines if party == "agent" else debtor_lines
            sentence = fill(rng, rng.choice(lines))
            words = []
            start = t
            for w in sentence.split():
                d = 0.18 + 0.05 * len(w) if english else 0.3 * len(w)
                words.append({"w": w, "s": round(t, 2), "e": round(t + d, 2), "c": 0.9})
                t += d + 0.05
            turns[party].append((start, t, sentence, words))
            t += rng.uniform(0.3, 2.0)
        for party, segs in turns.items():
            tid = 2 * attempt_id + (0 if party == "agent" else 1)
            body = " ".join(s[2] for s in segs)
            lang = "en" if english else "zh"
            chunk.transcripts.append((tid, attempt_id, party, lang, body, campaign, agent, dialed))
            for seq, (s, e, sentence, words) in enumerate(segs):
                seg_id += 1
                chunk.segments.append((seg_id, tid, seq, round(s, 2), round(e, 2), sentence, words))
        if len(chunk.attempts) >= CHUNK:
            yield chunk
            chunk = Chunk()
    if chunk.attempts:
        yield chunk


# --- writers -----------------------------------------------------------------------------------


def _seed_reference_rows(store: Store) -> tuple[int, int, list[int], list[int]]:
    """A tenant, campaigns and debtors with one phone each; (tenant, first campaign id,
    debtor ids, phone ids)."""
    now = datetime.now(UTC)
    with store.begin() as conn:
        tenant = conn.execute(
            text("INSERT INTO tenants (name, created_at) VALUES (:n, :t) RETURNING id"),
            {"n": f"bench-{uuid.uuid4().hex[:6]}", "t": now.replace(tzinfo=None)},
        ).scalar_one()
        camps = [
            conn.execute(
                text(
                    "INSERT INTO campaigns (tenant_id, name, dial_mode, status, settings, "
                    "created_at) VALUES (:t, :n, 'predictive', 'active', '{}', :c) RETURNING id"
                ),
                {"t": tenant, "n": f"c{i}", "c": now.replace(tzinfo=None)},
            ).scalar_one()
            for i in range(CAMPAIGNS)
        ]
        # one statement each, ids in the order of the rows (5,000 round trips took seconds)
        debtors = list(
            conn.execute(
                insert(Debtor).returning(Debtor.id, sort_by_parameter_order=True),
                [
                    {
                        "tenant_id": tenant,
                        "external_id": f"d{i}",
                        "full_name": f"debtor {i}",
                        "created_at": now,
                    }
                    for i in range(DEBTORS)
                ],
            ).scalars()
        )
        phones = list(
            conn.execute(
                insert(Phone).returning(Phone.id, sort_by_parameter_order=True),
                [
                    {
                        "tenant_id": tenant,
                        "debtor_id": d,
                        "e164": f"+1212{i:07d}",
                        "phone_type": "mobile",
                        "consent": True,
                        "do_not_call": False,
                        "created_at": now,
                    }
                    for i, d in enumerate(debtors)
                ],
            ).scalars()
        )
    return int(tenant), int(camps[0]), debtors, phones


@dataclass
class Target:
    name: str
    store: Store
    tenant_id: int
    first_campaign: int
    debtors: list[int]
    phones: list[int]
    cleanup: Callable[[], None]
    load_s: float = 0.0
    index_s: float = 0.0
    reused: bool = False  # an earlier run's data set (--schema): measured, not loaded again


def _sqlite_ts(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _tags(target: Target, chunk: Chunk) -> dict[int, str]:
    flagged = {a for a, _s, f, _t in chunk.scores if f > 0}
    return {
        tid: with_flagged(
            index_tags(target.tenant_id, target.first_campaign + c, agent, party, dialed),
            a in flagged,
        )
        for tid, a, party, _l, _b, c, agent, dialed in chunk.transcripts
    }


def _write_sqlite(target: Target, chunk: Chunk) -> None:
    tags = _tags(target, chunk)
    raw = target.store.engine.raw_connection()
    try:
        db = raw.driver_connection
        assert db is not None
        db.execute("PRAGMA synchronous=OFF")
        cur = db.cursor()
        cur.execute("BEGIN")
        cur.executemany(
            "INSERT INTO call_attempts (id, tenant_id, campaign_id, debtor_id, phone_id, status, "
            "outcome, abandoned, dialed_at, answered_at, connected_at, server, node_id, agent_id)"
            " VALUES (?, ?, ?, ?, ?, 'ended', 'answered', 0, ?, ?, ?, 'pbx1', 'n1', ?)",
            [
                (
                    a,
                    target.tenant_id,
                    target.first_campaign + c,
                    target.debtors[d],
                    target.phones[d],
                    _sqlite_ts(t),
                    _sqlite_ts(t),
                    _sqlite_ts(t),
                    agent,
                )
                for a, c, d, t, agent in chunk.attempts
            ],
        )
        now = _sqlite_ts(datetime.now(UTC))
        cur.executemany(
            "INSERT INTO transcripts (id, tenant_id, attempt_id, party, engine, model, language,"
            " text, confidence, tags, created_at)"
            " VALUES (?, ?, ?, ?, 'vosk', 'bench', ?, ?, 0.9, ?, ?)",
            [
                (tid, target.tenant_id, a, p, lang, body, tags[tid], now)
                for tid, a, p, lang, body, *_ in chunk.transcripts
            ],
        )
        cur.executemany(
            "INSERT INTO transcript_segments (id, transcript_id, seq, start_s, end_s, text, words,"
            " confidence) VALUES (?, ?, ?, ?, ?, ?, ?, 0.9)",
            [
                (i, t, q, s, e, x, json.dumps(w, ensure_ascii=False))
                for i, t, q, s, e, x, w in chunk.segments
            ],
        )
        cur.executemany(
            "INSERT INTO transcript_fts (rowid, body, tags) VALUES (?, ?, ?)",
            [(i, index_body(x), tags[t]) for i, t, _q, _s, _e, x, _w in chunk.segments],
        )
        cur.executemany(
            "INSERT INTO qa_scores (attempt_id, tenant_id, score, flags, scored_at) "
            "VALUES (?, ?, ?, ?, ?)",
            [(a, target.tenant_id, s, f, _sqlite_ts(t)) for a, s, f, t in chunk.scores],
        )
        cur.execute("COMMIT")
    finally:
        raw.close()


def _write_postgres(target: Target, chunk: Chunk) -> None:
    tags = _tags(target, chunk)
    raw = target.store.engine.raw_connection()
    try:
        db: Any = raw.driver_connection
        with db.cursor() as cur:
            with cur.copy(
                "COPY call_attempts (id, tenant_id, campaign_id, debtor_id, phone_id, status, "
                "outcome, abandoned, dialed_at, answered_at, connected_at, server, node_id, "
                "agent_id) FROM STDIN"
            ) as copy:
                for a, c, d, t, agent in chunk.attempts:
                    copy.write_row(
                        (
                            a,
                            target.tenant_id,
                            target.first_campaign + c,
                            target.debtors[d],
                            target.phones[d],
                            "ended",
                            "answered",
                            False,
                            t,
                            t,
                            t,
                            "pbx1",
                            "n1",
                            agent,
                        )
                    )
            now = datetime.now(UTC)
            with cur.copy(
                "COPY transcripts (id, tenant_id, attempt_id, party, engine, model, language, "
                "text, confidence, tags, created_at) FROM STDIN"
            ) as copy:
                for tid, a, p, lang, body, *_ in chunk.transcripts:
                    copy.write_row(
                        (
                            tid,
                            target.tenant_id,
                            a,
                            p,
                            "vosk",
                            "bench",
                            lang,
                            body,
                            0.9,
                            tags[tid],
                            now,
                        )
                    )
            with cur.copy(
                "COPY transcript_segments (id, transcript_id, seq, start_s, end_s, text, words, "
                "confidence) FROM STDIN"
            ) as copy:
                for i, t, q, s, e, x, w in chunk.segments:
                    copy.write_row((i, t, q, s, e, x, json.dumps(w, ensure_ascii=False), 0.9))
            with cur.copy("COPY transcript_search (segment_id, tsv) FROM STDIN") as copy:
                for i, t, _q, _s, _e, x, _w in chunk.segments:
                    copy.write_row((i, pg_lexemes(index_tokens(x), tags[t])))
            with cur.copy(
                "COPY qa_scores (attempt_id, tenant_id, score, flags, scored_at) FROM STDIN"
            ) as copy:
                for a, s, f, t in chunk.scores:
                    copy.write_row((a, target.tenant_id, s, f, t))
        db.commit()
    finally:
        raw.close()


def _built(store: Store) -> tuple[int, int, list[int], list[int]] | None:
    """The reference rows of an earlier run's kept data set (see --schema), or None."""
    with store.begin() as conn:
        tenant = conn.execute(
            text("SELECT min(id) FROM tenants WHERE name LIKE 'bench-%'")
        ).scalar_one()
        if tenant is None:
            return None
        camp = conn.execute(
            text("SELECT min(id) FROM campaigns WHERE tenant_id = :t"), {"t": tenant}
        ).scalar_one()
        debtors = list(
            conn.execute(
                text("SELECT id FROM debtors WHERE tenant_id = :t ORDER BY id"), {"t": tenant}
            ).scalars()
        )
        phones = list(
            conn.execute(
                text("SELECT id FROM phones WHERE tenant_id = :t ORDER BY id"), {"t": tenant}
            ).scalars()
        )
    return int(tenant), int(camp), debtors, phones


def _open_targets(urls: list[str], schema_name: str | None = None) -> list[Target]:
    targets = []
    for url in urls:
        cleanup: Callable[[], None] = lambda: None  # noqa: E731
        if url.startswith("postgresql"):
            import sqlalchemy as sa

            schema = schema_name or f"bench_{uuid.uuid4().hex[:10]}"
            admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
            try:
                with admin.connect() as conn:
                    conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
            except sa.exc.OperationalError as exc:
                print(f"skipping {safe_url(url)}: {str(exc).splitlines()[0]}", file=sys.stderr)
                admin.dispose()
                continue
            # the schema replaces any search_path the URL chose (the tests' URLs choose one)
            schema_url = (
                sa.make_url(url)
                .update_query_dict({"options": f"-csearch_path={schema}"})
                .render_as_string(hide_password=False)
            )

            def drop(admin: Any = admin, schema: str = schema) -> None:
                with admin.connect() as conn:
                    conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
                admin.dispose()

            cleanup = drop
            try:
                store = open_store(schema_url)
            except BaseException:
                drop()
                raise
            name = "postgresql"
        else:
            store = open_store(url)
            name = "sqlite"
        try:
            built = _built(store) if schema_name else None
            tenant, camp, debtors, phones = built or _seed_reference_rows(store)
        except BaseException:  # the throwaway schema goes with the run that failed
            store.close()
            cleanup()
            raise
        target = Target(name, store, tenant, camp, debtors, phones, cleanup)
        target.reused = built is not None
        targets.append(target)
    return targets


def _first_attempt_id(store: Store) -> int:
    with store.begin() as conn:
        return (
            int(conn.execute(text("SELECT coalesce(max(id), 0) FROM call_attempts")).scalar_one())
            + 1
        )


def load(targets: list[Target], calls: int, seed: int, *, progress: bool = True) -> int:
    """Write `calls` calls into every target; the number of segments written."""
    firsts = {t.name: _first_attempt_id(t.store) for t in targets}
    if len(set(firsts.values())) > 1:
        raise SystemExit("the databases differ: bench search needs fresh ones")
    segments = 0
    pg = [t for t in targets if t.name == "postgresql"]
    for t in pg:  # GIN is built once at the end: far faster than entry by entry
        with t.store.begin() as conn:
            conn.execute(text("DROP INDEX ix_transcript_search_tsv"))
    started = time.perf_counter()
    for n, chunk in enumerate(generate(calls, seed, next(iter(firsts.values())))):
        segments += len(chunk.segments)
        for t in targets:
            began = time.perf_counter()
            (_write_sqlite if t.name == "sqlite" else _write_postgres)(t, chunk)
            t.load_s += time.perf_counter() - began
        if progress:
            done = min((n + 1) * CHUNK, calls)
            print(
                f"\r  {done:,}/{calls:,} calls, {segments:,} segments, "
                f"{time.perf_counter() - started:.0f} s",
                end="",
                file=sys.stderr,
                flush=True,
            )
    if progress:
        print(file=sys.stderr)
    for t in pg:
        began = time.perf_counter()
        raw = t.store.engine.raw_connection()
        try:
            db: Any = raw.driver_connection
            db.execute("SET maintenance_work_mem = '1GB'")
            db.execute("CREATE INDEX ix_transcript_search_tsv ON transcript_search USING gin (tsv)")
            for table in ("call_attempts", "transcripts", "transcript_segments"):
                db.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
                )
            db.commit()
            db.autocommit = True
            # the bench's tables only: the database may hold other schemas (the tests' do)
            db.execute(
                "VACUUM ANALYZE call_attempts, transcripts, transcript_segments, "
                "transcript_search, qa_scores"
            )
        finally:
            raw.close()
        t.index_s = time.perf_counter() - began
    for t in targets:
        if t.name == "sqlite":
            began = time.perf_counter()
            with t.store.begin() as conn:
                conn.exec_driver_sql("ANALYZE")
            t.index_s = time.perf_counter() - began
    return segments


# --- measuring ---------------------------------------------------------------------------------


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _timed(fn: Callable[[], object], reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        began = time.perf_counter()
        fn()
        out.append((time.perf_counter() - began) * 1000)
    return out


def measure(target: Target, reps: int, seed: int) -> list[tuple[str, float, float, float, int]]:
    """(case, p50 ms, p95 ms, max ms, mean hits) per case."""
    rng = random.Random(seed)
    store, tenant = target.store, target.tenant_id
    with store.begin() as conn:
        top = int(
            conn.execute(
                select(TranscriptSegment.id).order_by(TranscriptSegment.id.desc()).limit(1)
            ).scalar_one()
        )
    results = []

    def pk() -> None:
        with store.begin() as conn:
            conn.execute(
                select(TranscriptSegment.start_s, TranscriptSegment.text).where(
                    TranscriptSegment.id == rng.randint(1, top)
                )
            ).first()

    times = _timed(pk, reps)
    results.append(
        ("baseline: segment by primary key", _pct(times, 0.5), _pct(times, 0.95), max(times), 1)
    )
    since = T_END - timedelta(days=7)
    cases: list[tuple[str, dict[str, list[str]], dict[str, Any]]] = [
        ("English, no filter", EN_QUERIES, {}),
        ("English, campaign", EN_QUERIES, {"campaign_id": target.first_campaign + 3}),
        ("English, agent", EN_QUERIES, {"agent_id": "agent7"}),
        ("English, last 7 days + party", EN_QUERIES, {"since": since, "party": "agent"}),
        ("English, flagged", EN_QUERIES, {"flagged": True}),
        ("Chinese, no filter", ZH_QUERIES, {}),
        ("Chinese, campaign", ZH_QUERIES, {"campaign_id": target.first_campaign + 15}),
        ("Chinese, agent + flagged", ZH_QUERIES, {"agent_id": "agent7", "flagged": True}),
    ]
    for label, pool, filters in cases:
        for kind, queries in pool.items():
            hits: list[int] = []

            def one(
                queries: list[str] = queries,
                filters: dict[str, Any] = filters,
                hits: list[int] = hits,
            ) -> None:
                hits.append(len(search(store, tenant, rng.choice(queries), **filters)))

            one()  # a first run, not counted
            hits.clear()
            times = _timed(one, max(reps // 4, 5))
            results.append(
                (
                    f"{label} [{kind}]",
                    _pct(times, 0.5),
                    _pct(times, 0.95),
                    max(times),
                    round(statistics.mean(hits)),
                )
            )
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--calls", type=int, default=100_000, help="transcribed calls to build")
    parser.add_argument(
        "--url",
        action="append",
        default=None,
        help="database URL (repeatable; default: a temporary SQLite file, and PostgreSQL at "
        "TEST_POSTGRES_URL or 127.0.0.1:5432/test in a throwaway schema if it answers)",
    )
    parser.add_argument("--reps", type=int, default=200, help="timed searches per case")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the SQLite file and schema")
    parser.add_argument(
        "--schema",
        default=None,
        help="PostgreSQL schema to build in and keep (implies --keep); a schema an earlier run "
        "built is measured again without loading (a million calls take about 45 min to load)",
    )
    parser.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    tmp = None
    urls = args.url
    if not urls:
        tmp = tempfile.mkdtemp(prefix="bench-search-")
        urls = [f"sqlite:///{Path(tmp) / 'search.db'}", DEFAULT_PG]
    targets = _open_targets(urls, args.schema)
    keep = args.keep or args.schema is not None
    report: dict[str, Any] = {"calls": args.calls, "databases": {}}
    try:
        if all(t.reused for t in targets):
            with targets[0].store.begin() as conn:
                segments = int(
                    conn.execute(select(func.count()).select_from(TranscriptSegment)).scalar_one()
                )
                args.calls = int(
                    conn.execute(
                        select(func.count(func.distinct(Transcript.attempt_id)))
                    ).scalar_one()
                )
            print(f"measuring the kept data set in schema {args.schema}", file=sys.stderr)
        else:
            print(
                f"building {args.calls:,} transcribed calls in "
                f"{', '.join(t.name for t in targets)}",
                file=sys.stderr,
            )
            segments = load(targets, args.calls, args.seed, progress=not args.json)
        report["segments"] = segments
        for t in targets:
            rows = measure(t, args.reps, args.seed)
            report["databases"][t.name] = {
                "load_s": round(t.load_s, 1),
                "index_s": round(t.index_s, 1),
                "cases": [
                    {
                        "case": c,
                        "p50_ms": round(a, 2),
                        "p95_ms": round(b, 2),
                        "max_ms": round(m, 2),
                        "hits": h,
                    }
                    for c, a, b, m, h in rows
                ],
            }
            if not args.json:
                print(
                    f"\n{t.name}: {args.calls:,} calls, {segments:,} segments; "
                    f"load {t.load_s:.0f} s, index/analyse {t.index_s:.0f} s"
                )
                print("| case | p50 ms | p95 ms | max ms | hits | p95 vs PK |")
                print("|---|---|---|---|---|---|")
                base = rows[0][2]
                for c, a, b, m, h in rows:
                    print(f"| {c} | {a:.2f} | {b:.2f} | {m:.2f} | {h} | {b / base:.0f}x |")
    finally:
        for t in targets:
            t.store.close()
            if not keep:
                t.cleanup()
        if tmp and not keep:
            for f in Path(tmp).iterdir():
                f.unlink()
            Path(tmp).rmdir()
        elif tmp:
            print(f"kept {tmp}", file=sys.stderr)
    if args.json:
        print(json.dumps(report))
    return 0
