"""Finding calls by what was said: each hit is one segment, with its snippet and the second the
words were said, newest calls first.

Query syntax: words and CJK runs separated by spaces must all occur in one segment; a quoted
part ("I will sue you") must occur as written; a CJK run is always matched as written (its
consecutive bigrams, see recording/transcripts.py); a single CJK character, or a Latin word
ending in `*`, matches as a prefix. Case, width and accents do not matter.

Speed: the database's own index narrows first (SQLite FTS5 with rowid = segment id, walked
newest segment first; on PostgreSQL the newest entries walked, then GIN on the tsvector for
older ones, see _pg_rows); the filters (tenant, party, campaign, agent, date, outcome, QA
flag) are checked on the rows the index yields, each by primary key, until a page is full.
Ordering by relevance instead would make every query read every match (hundreds of thousands
for a common word in a million calls); the newest-first walk stops after one page, and QA
staff look for recent calls. `rank` is reported for each hit (the
share of the segment's tokens the query matched) so a caller may re-order a page.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Float,
    Integer,
    Row,
    Select,
    and_,
    column,
    exists,
    func,
    literal_column,
    select,
    table,
    text,
)
from sqlalchemy.dialects.postgresql import TSQUERY
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql.elements import ColumnElement, TextClause

from dialer.errors import StoreError
from dialer.store.db import Store, error_reason
from dialer.store.models import (
    CallAttempt,
    Party,
    QaScore,
    Tenant,
    Transcript,
    TranscriptSegment,
)
from recording.transcripts import (
    FLAGGED_TAG,
    Segment,
    Word,
    _Kind,
    agent_tag,
    cjk_tokens,
    day_tag,
    index_tokens,
    is_cjk,
    runs,
)

__all__ = ["Hit", "Term", "fts5_query", "parse_query", "search", "tsquery_literal"]

SNIPPET_CHARS = 160


@dataclass(frozen=True, slots=True)
class Hit:
    attempt_id: int
    party: Party
    start_s: float  # the second of the recording where the matched words begin
    snippet: str
    rank: float
    segment_id: int


@dataclass(frozen=True, slots=True)
class Term:
    """One thing that must occur in a segment: index tokens in a row, the last maybe a prefix."""

    tokens: tuple[str, ...]
    prefix: bool
    canon: str  # the term as `canon()` writes text, to find its second among the words


def canon(text: str) -> str:
    """Text reduced to its word characters: Latin words separated by one space, CJK runs with
    no space inside or around them."""
    out: list[str] = []
    prev: _Kind | None = None
    for kind, run in runs(text):
        if out and prev is _Kind.WORD and kind is _Kind.WORD:
            out.append(" ")
        out.append(run)
        prev = kind
    return "".join(out)


def _term(piece: str) -> Term | None:
    found = list(runs(piece))
    if not found:
        return None
    tokens: list[str] = []
    for i, (kind, run) in enumerate(found):
        if kind is _Kind.WORD:
            tokens.append(run)
        else:
            # The text's run may go on after the query's: its last character alone is then not
            # a token of the text, only a bigram starting with it is.
            tokens.extend(cjk_tokens(run, last_alone=i < len(found) - 1))
    last_kind, last_run = found[-1]
    prefix = (last_kind is _Kind.CJK and len(last_run) == 1) or (
        last_kind is _Kind.WORD and piece.rstrip().endswith("*")
    )
    return Term(tuple(tokens), prefix, canon(piece))


_PIECES = re.compile(r'"([^"]*)"?|(\S+)')


def parse_query(query: str) -> list[Term]:
    """The terms of a query (see the module's docstring)."""
    terms: list[Term] = []
    for quoted, bare in _PIECES.findall(query):
        term = _term(quoted or bare)
        if term is not None and term not in terms:
            terms.append(term)
    return terms


def fts5_query(terms: Sequence[Term]) -> str:
    """The FTS5 MATCH expression: each term a phrase, all of them required."""
    return " AND ".join(f'"{" ".join(t.tokens)}"' + ("*" if t.prefix else "") for t in terms)


def _lexeme(token: str) -> str:
    return "'" + token.replace("\\", "\\\\").replace("'", "''") + "'"


def tsquery_literal(terms: Sequence[Term]) -> str:
    """The PostgreSQL tsquery: each term a phrase (`<->`), all of them required."""
    parts = []
    for t in terms:
        lexemes = [_lexeme(tok) for tok in t.tokens]
        if t.prefix:
            lexemes[-1] += ":*"
        parts.append("(" + " <-> ".join(lexemes) + ")")
    return " & ".join(parts)


_FTS = table("transcript_fts", column("rowid", Integer), column("rank", Float))
_PG = table("transcript_search", column("segment_id", Integer), column("tsv"))
# A date range of up to this many days is also asked of the index, as an OR of day tags;
# a longer one keeps most calls anyway and is only checked on the rows.
MAX_INDEXED_DAYS = 62


@dataclass(frozen=True, slots=True)
class _Filters:
    tenant_id: int
    campaign_id: int | None = None
    agent_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    outcome: str | None = None
    party: Party | None = None
    flagged: bool | None = None

    def tags(self, *, shared: bool) -> tuple[list[str], list[str]]:
        """(tags every hit has, tags of which a hit has one) for the index to intersect.

        The tenant's tag only when other tenants share the store (`shared`) and no campaign
        or agent tag narrows more: every segment of a lone tenant has it, so both indexes
        read its whole list to intersect it, for nothing (at 1,000,000 calls it made an
        agent's search 4 to 50 times slower on SQLite). The rows are checked anyway. A
        campaign belongs to one tenant; an agent id another tenant also uses costs only the
        rows checked."""
        required = []
        if self.campaign_id is not None:
            required.append(f"c{self.campaign_id}")
        if self.agent_id is not None:
            required.append(agent_tag(self.agent_id))
        if self.flagged:
            required.append(FLAGGED_TAG)
        if shared and not required:
            required.append(f"t{self.tenant_id}")
        if self.party is not None:
            required.append(f"p{self.party.value}")
        days: list[str] = []
        if self.since is not None:
            last = (self.until - timedelta(microseconds=1)) if self.until else datetime.now(UTC)
            first_day = self.since.astimezone(UTC).date()
            span = (last.astimezone(UTC).date() - first_day).days
            if 0 <= span < MAX_INDEXED_DAYS:
                days = [
                    day_tag(datetime.combine(first_day + timedelta(days=n), time(), UTC))
                    for n in range(span + 1)
                ]
        return required, days


def _fts5_match(terms: Sequence[Term], filters: _Filters, *, shared: bool) -> str:
    required, days = filters.tags(shared=shared)
    tag_expr = " AND ".join(required)
    if days:
        tag_expr += (" AND " if tag_expr else "") + "(" + " OR ".join(days) + ")"
    if not tag_expr:
        return f"{{body}} : ({fts5_query(terms)})"
    return f"{{body}} : ({fts5_query(terms)}) AND {{tags}} : ({tag_expr})"


def _tsquery_match(terms: Sequence[Term], filters: _Filters, *, shared: bool) -> str:
    required, days = filters.tags(shared=shared)
    parts = [tsquery_literal(terms), *(_lexeme("~" + t) for t in required)]
    if days:
        parts.append("(" + " | ".join(_lexeme("~" + d) for d in days) + ")")
    return " & ".join(parts)


def _pg_matches(match: str) -> ColumnElement[bool]:
    # Inlined, not bound: the planner must see the query to cost the GIN index, and psycopg's
    # prepared statements would hand it a generic plan after five runs. Safe: lexemes are
    # word characters and tags only (see parse_query), quoted by tsquery_literal.
    tsquery = literal_column("'" + match.replace("'", "''") + "'::tsquery", TSQUERY)
    return _PG.c.tsv.bool_op("@@")(tsquery)


def _statement(dialect: str, match: str, f: _Filters) -> Select[Any]:
    seg, tr = TranscriptSegment, Transcript
    matches: ColumnElement[bool] | TextClause
    if dialect == "sqlite":
        key = _FTS.c.rowid
        matches = text("transcript_fts MATCH :match")
        source = _FTS
    else:
        key = _PG.c.segment_id
        matches = _pg_matches(match)
        source = _PG
    query = (
        select(seg.id, seg.start_s, seg.end_s, seg.text, seg.words, tr.attempt_id, tr.party)
        .select_from(source)
        .join(seg, seg.id == key)
        .join(tr, tr.id == seg.transcript_id)
        # the index's tags said so already; checked again on the few rows it yields
        .where(matches, tr.tenant_id == f.tenant_id)
    )
    if f.party is not None:
        query = query.where(tr.party == f.party.value)
    conditions = []
    if f.since is not None:
        conditions.append(CallAttempt.dialed_at >= f.since)
    if f.until is not None:
        conditions.append(CallAttempt.dialed_at < f.until)
    if f.outcome is not None:
        conditions.append(CallAttempt.outcome == f.outcome)
    if conditions:
        query = query.join(CallAttempt, CallAttempt.id == tr.attempt_id).where(and_(*conditions))
    if f.flagged is not None:
        has_flags = exists().where(QaScore.attempt_id == tr.attempt_id, QaScore.flags > 0)
        query = query.where(has_flags if f.flagged else ~has_flags)
    return query


def search(
    store: Store,
    tenant_id: int,
    query: str,
    *,
    campaign_id: int | None = None,
    agent_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    outcome: str | None = None,
    party: Party | str | None = None,
    flagged: bool | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[Hit]:
    """The segments of the tenant's calls that say `query`, newest first.

    `since`/`until` bound the call's dial time (until excluded); `flagged` keeps only calls
    with QA flags standing (True) or without (False).
    """
    terms = parse_query(query)
    if not terms or limit <= 0:
        return []
    filters = _Filters(
        tenant_id=tenant_id,
        campaign_id=campaign_id,
        agent_id=agent_id,
        since=since,
        until=until,
        outcome=outcome,
        party=None if party is None else Party(party),
        flagged=flagged,
    )
    dialect = store.dialect
    need = offset + limit
    try:
        with store.begin() as conn:
            shared = (
                conn.execute(select(Tenant.id).where(Tenant.id != tenant_id).limit(1)).first()
                is not None
            )
            if dialect == "sqlite":
                match = _fts5_match(terms, filters, shared=shared)
                statement = _statement(dialect, match, filters)
                rows = conn.execute(
                    statement.order_by(_FTS.c.rowid.desc()).limit(need), {"match": match}
                ).all()
            else:
                match = _tsquery_match(terms, filters, shared=shared)
                statement = _statement(dialect, match, filters)
                rows = _pg_rows(conn, statement, _pg_matches(match), need)
    except SQLAlchemyError as exc:
        raise StoreError(f"search {query!r}: {error_reason(exc)}") from exc
    rows = rows[offset:need]
    return [
        Hit(
            attempt_id=int(r.attempt_id),
            party=Party(r.party),
            start_s=_second(r.words or (), terms[0], float(r.start_s), float(r.end_s), r.text),
            snippet=snippet(r.text, terms[0]),
            rank=_rank(r.text, terms),
            segment_id=int(r.id),
        )
        for r in rows
    ]


# PostgreSQL (see _pg_rows): the newest index entries a search walks first; GIN's cost per
# entry it yields over a walk's per entry walked (about 5 us against 1 us, measured at
# 1,000,000 calls); the most entries a search walks in all; how many walks at most.
WALK_FIRST = 20_000
GIN_COST = 5
WALK_MAX = 400_000
WALKS = 4


def _pg_rows(
    conn: Connection, statement: Select[Any], matches: ColumnElement[bool], need: int
) -> list[Row[Any]]:
    """The `need` newest hits on PostgreSQL: walk the newest entries, then ask GIN for the rest.

    The planner cannot choose between the two itself: it multiplies the shares of a query's
    words as if they were independent, so "lost my job" (128,000 segments in 6.5 million)
    looks like 188 and it fetches every one of them through GIN (4 s), while "okafor
    settlement" (none: never in one segment) looks common and it walks the whole table (11 s).
    So: walk WALK_FIRST entries with bitmap scans (the only way GIN is read) off. If that did
    not fill the page, the hit rate says how much further a walk must go, and the share of
    walked entries the index matched says how many GIN would yield (more than the hits when
    a filter the index cannot check, such as QA flags, drops most of them): walk on while that
    is cheaper, else GIN for all older entries, ordered by an expression so that the planner
    cannot fall back to walking."""
    key = _PG.c.segment_id
    top = conn.execute(select(func.max(key))).scalar()
    if top is None:
        return []
    conn.exec_driver_sql("SET LOCAL jit = off")  # compiling costs more than these queries
    conn.exec_driver_sql("SET LOCAL enable_bitmapscan = off")
    rows: list[Row[Any]] = []
    hi, lo = int(top), int(top) - WALK_FIRST
    rows += conn.execute(
        statement.where(key > lo, key <= hi).order_by(key.desc()).limit(need)
    ).all()
    if rows and len(rows) < need and lo > 0:
        matched = conn.execute(
            select(func.count()).select_from(_PG).where(key > lo, matches)
        ).scalar_one()
        for _ in range(WALKS - 1):
            walked = int(top) - lo
            walk_left = (need - len(rows)) * walked / len(rows)
            gin_left = matched * lo / WALK_FIRST
            if walk_left > GIN_COST * gin_left or walked + walk_left > WALK_MAX:
                break
            hi, lo = lo, max(lo - int(2 * walk_left) - 1, 0)  # twice what the rate says
            rows += conn.execute(
                statement.where(key > lo, key <= hi).order_by(key.desc()).limit(need - len(rows))
            ).all()
            if len(rows) >= need or lo <= 0:
                break
    if len(rows) < need and lo > 0:
        conn.exec_driver_sql("SET LOCAL enable_bitmapscan = on")
        conn.exec_driver_sql("SET LOCAL work_mem = '32MB'")  # an exact bitmap: no rechecks
        rows += conn.execute(
            statement.where(key <= lo).order_by((key + 0).desc()).limit(need - len(rows))
        ).all()
    return rows


def _rank(text_: str, terms: Sequence[Term]) -> float:
    """How much of the segment the query is: its terms' occurrences per index token.

    Not bm25: FTS5 computes bm25 by reading the whole list of every term of the query (the
    tags' lists hold every segment), which would cost more than the search itself; and the
    hits come newest first anyway. The same on both databases."""
    tokens = index_tokens(text_)
    if not tokens:
        return 0.0
    found = 0
    for term in terms:
        n = len(term.tokens)
        for i in range(len(tokens) - n + 1):
            window = tokens[i : i + n]
            if window[:-1] == list(term.tokens[:-1]) and (
                window[-1] == term.tokens[-1]
                or (term.prefix and window[-1].startswith(term.tokens[-1]))
            ):
                found += n
    return round(found / len(tokens), 4)


def _second(
    words: Sequence[dict[str, Any]], term: Term, start_s: float, end_s: float, text_: str
) -> float:
    """Where the term's words begin among the segment's timed words (without word timings,
    the segment's words spread evenly over it)."""
    if not words:
        words = [w.as_json() for w in Segment(start_s, end_s, text_).timed_words()]
    hay: list[str] = []
    owner: list[int] = []
    for i, raw in enumerate(words):
        form = canon(str(raw.get("w", "")))
        if not form:
            continue
        if hay and not (is_cjk(hay[-1]) or is_cjk(form[0])):
            hay.append(" ")
            owner.append(i)
        hay.extend(form)
        owner.extend([i] * len(form))
    joined = "".join(hay)
    start = 0
    while term.canon:
        pos = joined.find(term.canon, start)
        if pos < 0:
            break
        before_ok = pos == 0 or joined[pos - 1] == " " or is_cjk(joined[pos - 1])
        end = pos + len(term.canon)
        after_ok = (
            term.prefix or end >= len(joined) or joined[end] == " " or is_cjk(joined[end - 1])
        )
        if before_ok and after_ok:
            return Word.from_json(dict(words[owner[pos]])).s
        start = pos + 1
    return start_s


def snippet(text_: str, term: Term, width: int = SNIPPET_CHARS) -> str:
    """The segment's text, cut to about `width` characters around the term's first word."""
    if len(text_) <= width:
        return text_
    first = term.canon.split(" ")[0]
    needle = first[:2] if first and is_cjk(first[0]) else first
    pos = max(text_.lower().find(needle), 0) if needle else 0
    begin = max(0, min(pos - width // 3, len(text_) - width))
    cut = text_[begin : begin + width]
    return ("…" if begin > 0 else "") + cut + ("…" if begin + width < len(text_) else "")
