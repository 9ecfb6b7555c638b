"""Transcripts kept per call, party and engine, with timed segments and words, and indexed for
search the same way on SQLite (FTS5) and PostgreSQL (tsvector + GIN).

The index does not see the text as written but its *index form* (`index_tokens`): Latin words
whole and lower-cased, and each run of CJK characters as overlapping bigrams plus the run's last
character alone. "请还款" becomes `请还 还款 款`. A two-character word is then one token (还款
matches exactly the calls that say 还款, not those with 还 or 款 apart), a longer word is a
phrase of consecutive bigrams, and a single character is a prefix query, because every
character of the text starts exactly one token. Neither database has a segmenter for Chinese
that we can rely on (FTS5's trigram tokenizer needs three characters; PostgreSQL's parser depends
on the server's locale), and the bigram form needs no dictionary, so a name or a word the
recogniser invented is found as well. Whitespace between CJK characters is ignored (recognisers
put spaces between Chinese words; people do not).

Storing is idempotent: a call re-transcribed by the same engine replaces its segments and
their index entries in one transaction.
"""

from __future__ import annotations

import enum
import hashlib
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, cast, column, delete, func, insert, select, table, text, update
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from dialer.errors import StoreError
from dialer.store.db import Store, error_reason
from dialer.store.models import CallAttempt, Party, QaScore, Transcript, TranscriptSegment

__all__ = [
    "Party",
    "Segment",
    "StoredSegment",
    "StoredTranscript",
    "TranscriptIn",
    "Word",
    "as_input",
    "delete_transcripts",
    "index_body",
    "index_segments",
    "index_tags",
    "index_tokens",
    "load_transcripts",
    "mark_flagged",
    "store_transcript",
    "tsvector_literal",
]


@dataclass(frozen=True, slots=True)
class Word:
    """One recognised word: seconds from the start of the recording, confidence 0..1."""

    w: str
    s: float
    e: float
    c: float | None = None

    def as_json(self) -> dict[str, Any]:
        return {"w": self.w, "s": self.s, "e": self.e, "c": self.c}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Word:
        c = data.get("c")
        return cls(str(data["w"]), float(data["s"]), float(data["e"]), None if c is None else c)


@dataclass(frozen=True, slots=True)
class Segment:
    """A stretch of one party's speech (a VAD segment, or a recogniser's utterance)."""

    start_s: float
    end_s: float
    text: str
    words: tuple[Word, ...] = ()
    confidence: float | None = None

    def timed_words(self) -> list[Word]:
        """The words with their times; without word timings, the segment's text spread evenly
        over its seconds (so a hit or a QA flag still lands near its second)."""
        if self.words:
            return list(self.words)
        pieces = self.text.split()
        if not pieces:
            return []
        step = max(self.end_s - self.start_s, 0.0) / len(pieces)
        return [
            Word(p, self.start_s + i * step, self.start_s + (i + 1) * step)
            for i, p in enumerate(pieces)
        ]


@dataclass(frozen=True, slots=True)
class TranscriptIn:
    """What a recogniser made of one party's channel of one call."""

    party: Party
    engine: str
    model: str
    language: str
    segments: tuple[Segment, ...]
    confidence: float | None = None

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments if s.text)


@dataclass(frozen=True, slots=True)
class StoredSegment:
    id: int
    seq: int
    start_s: float
    end_s: float
    text: str
    words: tuple[Word, ...]
    confidence: float | None

    def as_segment(self) -> Segment:
        return Segment(self.start_s, self.end_s, self.text, self.words, self.confidence)


@dataclass(frozen=True, slots=True)
class StoredTranscript:
    id: int
    tenant_id: int
    attempt_id: int
    recording_id: int | None
    party: Party
    engine: str
    model: str
    language: str
    confidence: float | None
    created_at: datetime
    segments: tuple[StoredSegment, ...]


# ---------------------------------------------------------------------------------------------
# The index form of text


def is_cjk(ch: str) -> bool:
    """Han ideographs (with extensions and compatibility forms), kana and Hangul syllables:
    scripts written without spaces between words."""
    o = ord(ch)
    return (
        0x4E00 <= o <= 0x9FFF
        or 0x3400 <= o <= 0x4DBF
        or 0xF900 <= o <= 0xFAFF
        or 0x20000 <= o <= 0x3FFFF
        or 0x3040 <= o <= 0x30FF
        or 0xAC00 <= o <= 0xD7AF
    )


class _Kind(enum.Enum):
    WORD = 1
    CJK = 2


@lru_cache(maxsize=4096)
def _fold(ch: str) -> str:
    """A letter without its accents (é -> e), as FTS5's remove_diacritics does, so that both
    databases index the same tokens."""
    return "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))


def runs(text: str) -> Iterator[tuple[_Kind, str]]:
    """The text as runs of word characters, lower-cased, full-width folded (NFKC) and without
    accents: Latin (and other spaced scripts) words, and CJK runs with the whitespace inside
    them dropped. Everything else separates."""
    text = unicodedata.normalize("NFKC", text).lower()
    word: list[str] = []
    cjk: list[str] = []
    for ch in text:
        if is_cjk(ch):
            if word:
                yield _Kind.WORD, "".join(word)
                word = []
            cjk.append(ch)
        elif ch.isalnum():
            if cjk:
                yield _Kind.CJK, "".join(cjk)
                cjk = []
            word.append(ch if ch < "\x80" else _fold(ch))
        else:
            if word:
                yield _Kind.WORD, "".join(word)
                word = []
            if cjk and not ch.isspace():
                yield _Kind.CJK, "".join(cjk)
                cjk = []
    if word:
        yield _Kind.WORD, "".join(word)
    if cjk:
        yield _Kind.CJK, "".join(cjk)


def cjk_tokens(run: str, *, last_alone: bool = True) -> list[str]:
    """Overlapping bigrams of a CJK run, then (unless told not to) its last character alone."""
    if len(run) == 1:
        return [run]
    grams = [run[i : i + 2] for i in range(len(run) - 1)]
    if last_alone:
        grams.append(run[-1])
    return grams


def index_tokens(text: str) -> list[str]:
    """The tokens the search index holds for `text`, in order."""
    tokens: list[str] = []
    for kind, run in runs(text):
        if kind is _Kind.WORD:
            tokens.append(run)
        else:
            tokens.extend(cjk_tokens(run))
    return tokens


def index_body(text: str) -> str:
    """The index form as FTS5 receives it: the tokens separated by spaces."""
    return " ".join(index_tokens(text))


def _quote_lexeme(token: str) -> str:
    return "'" + token.replace("\\", "\\\\").replace("'", "''") + "'"


def tsvector_literal(tokens: Sequence[str]) -> str:
    """A PostgreSQL tsvector in its input syntax, with positions (for phrase queries).

    Built here rather than with to_tsvector('simple', ...) so that PostgreSQL's parser, whose
    idea of a letter depends on the server's locale, cannot split or drop CJK tokens: the
    lexemes are exactly the tokens SQLite indexes. Positions stop at 16383 (PostgreSQL's limit).
    """
    positions: dict[str, list[int]] = {}
    for pos, token in enumerate(tokens, start=1):
        positions.setdefault(token, []).append(min(pos, 16383))
    return " ".join(
        f"{_quote_lexeme(tok)}:{','.join(map(str, pos[:256]))}" for tok, pos in positions.items()
    )


def index_tags(
    tenant_id: int, campaign_id: int, agent_id: str | None, party: Party | str, dialed_at: datetime
) -> str:
    """The call's facts a search filters on, as index tokens (word characters only, so FTS5
    keeps each whole): tenant, campaign, agent (hashed: any id), party and UTC day. They are
    facts that do not change once a call has ended, which is when it is transcribed."""
    tags = [f"t{tenant_id}", f"c{campaign_id}", f"p{Party(party).value}"]
    if agent_id:
        tags.append(agent_tag(agent_id))
    tags.append(day_tag(dialed_at))
    return " ".join(tags)


# The tag of a call with QA flags standing (see recording/qa.py): unlike the others it changes
# after the call, when QA flags it or a reviewer judges its last flag wrong, so that a search
# for flagged calls lets the index do the narrowing (at 1,000,000 calls PostgreSQL otherwise
# fetched every match of a word to keep the few flagged).
FLAGGED_TAG = "qf"


def with_flagged(tags: str, flagged: bool) -> str:
    """`tags` with the QA-flagged tag present or absent."""
    kept = [t for t in tags.split() if t != FLAGGED_TAG]
    return " ".join([*kept, FLAGGED_TAG] if flagged else kept)


def agent_tag(agent_id: str) -> str:
    return "a" + hashlib.blake2b(agent_id.encode("utf-8"), digest_size=8).hexdigest()


def day_tag(when: datetime) -> str:
    return "d" + when.astimezone(UTC).strftime("%Y%m%d")


def pg_lexemes(body_tokens: Sequence[str], tags: str) -> str:
    """The tsvector of a segment: its tokens with positions, then its tags prefixed with `~`
    (a character no body token has)."""
    tag_part = " ".join(_quote_lexeme("~" + t) for t in tags.split())
    return f"{tsvector_literal(body_tokens)} {tag_part}".strip()


# ---------------------------------------------------------------------------------------------
# The store


_FTS_INSERT = text("INSERT INTO transcript_fts(rowid, body, tags) VALUES (:id, :body, :tags)")
_FTS_DELETE = text(
    "INSERT INTO transcript_fts(transcript_fts, rowid, body, tags) "
    "VALUES ('delete', :id, :body, :tags)"
)
_PG_SEARCH = table("transcript_search", column("segment_id"), column("tsv", TSVECTOR))
_PG_INSERT = text(
    "INSERT INTO transcript_search(segment_id, tsv) VALUES (:id, CAST(:tsv AS tsvector))"
)


def index_segments(conn: Connection, segments: Iterable[tuple[int, str]], tags: str) -> None:
    """Enter segments (id, text as written) of one transcript, with its tags, in the search
    index of the connection's database."""
    if conn.dialect.name == "sqlite":
        rows: list[dict[str, Any]] = [
            {"id": i, "body": index_body(t), "tags": tags} for i, t in segments
        ]
        if rows:
            conn.execute(_FTS_INSERT, rows)
    else:
        rows = [{"id": i, "tsv": pg_lexemes(index_tokens(t), tags)} for i, t in segments]
        if rows:
            conn.execute(_PG_INSERT, rows)


def _unindex_segments(conn: Connection, segments: Iterable[tuple[int, str, str]]) -> None:
    if conn.dialect.name == "sqlite":
        # A contentless FTS5 table forgets an entry only when told what it was given.
        rows = [{"id": i, "body": index_body(t), "tags": tags} for i, t, tags in segments]
        if rows:
            conn.execute(_FTS_DELETE, rows)
    # PostgreSQL: transcript_search rows go with their segment (ON DELETE CASCADE).


def mark_flagged(conn: Connection, attempt_id: int, flagged: bool) -> int:
    """Tag (or untag) every indexed segment of the call as QA-flagged; the transcripts changed."""
    changed = 0
    for tr in conn.execute(
        select(Transcript.id, Transcript.tags).where(Transcript.attempt_id == attempt_id)
    ).all():
        old, new = str(tr.tags), with_flagged(str(tr.tags), flagged)
        if new == old:
            continue
        changed += 1
        segment_ids = select(TranscriptSegment.id).where(TranscriptSegment.transcript_id == tr.id)
        if conn.dialect.name == "sqlite":
            segments = [
                (int(r.id), str(r.text))
                for r in conn.execute(
                    select(TranscriptSegment.id, TranscriptSegment.text).where(
                        TranscriptSegment.transcript_id == tr.id
                    )
                )
            ]
            _unindex_segments(conn, ((i, t, old) for i, t in segments))
            index_segments(conn, segments, new)
        else:
            # The tag lexemes carry no position, so adding or deleting one leaves the words be.
            lexeme = "~" + FLAGGED_TAG
            tsv = _PG_SEARCH.c.tsv
            conn.execute(
                update(_PG_SEARCH)
                .where(_PG_SEARCH.c.segment_id.in_(segment_ids))
                .values(
                    tsv=tsv.op("||")(cast(lexeme, TSVECTOR))
                    if flagged
                    else func.ts_delete(tsv, lexeme)
                )
            )
        conn.execute(update(Transcript).where(Transcript.id == tr.id).values(tags=new))
    return changed


def _drop_segments(conn: Connection, transcript_ids: Sequence[int]) -> None:
    if not transcript_ids:
        return
    old = conn.execute(
        select(TranscriptSegment.id, TranscriptSegment.text, Transcript.tags)
        .join(Transcript, Transcript.id == TranscriptSegment.transcript_id)
        .where(TranscriptSegment.transcript_id.in_(transcript_ids))
    ).all()
    _unindex_segments(conn, ((int(r.id), str(r.text), str(r.tags)) for r in old))
    conn.execute(
        delete(TranscriptSegment).where(TranscriptSegment.transcript_id.in_(transcript_ids))
    )


def _segment_rows(transcript_id: int, segments: Sequence[Segment]) -> list[dict[str, Any]]:
    return [
        {
            "transcript_id": transcript_id,
            "seq": seq,
            "start_s": float(seg.start_s),
            "end_s": float(seg.end_s),
            "text": seg.text,
            "words": [w.as_json() for w in seg.words],
            "confidence": seg.confidence,
        }
        for seq, seg in enumerate(segments)
    ]


def _store_once(
    store: Store,
    tenant_id: int,
    attempt_id: int,
    transcript: TranscriptIn,
    recording_id: int | None,
    now: datetime,
) -> int:
    party = Party(transcript.party).value
    with store.begin() as conn:
        call = conn.execute(
            select(CallAttempt.campaign_id, CallAttempt.agent_id, CallAttempt.dialed_at).where(
                CallAttempt.id == attempt_id, CallAttempt.tenant_id == tenant_id
            )
        ).first()
        flagged = conn.execute(
            select(QaScore.flags).where(QaScore.attempt_id == attempt_id, QaScore.flags > 0)
        ).first()
    if call is None:
        raise StoreError(f"transcript of attempt {attempt_id}: no such call of tenant {tenant_id}")
    tags = index_tags(tenant_id, call.campaign_id, call.agent_id, party, call.dialed_at)
    if flagged:  # a call transcribed again after QA flagged it
        tags = with_flagged(tags, True)
    values = {
        "tenant_id": tenant_id,
        "attempt_id": attempt_id,
        "recording_id": recording_id,
        "party": party,
        "engine": transcript.engine,
        "model": transcript.model,
        "language": transcript.language,
        "text": transcript.text,
        "confidence": transcript.confidence,
        "tags": tags,
        "created_at": now,
    }
    with store.begin() as conn:
        found = conn.execute(
            select(Transcript.id)
            .where(
                Transcript.attempt_id == attempt_id,
                Transcript.party == party,
                Transcript.engine == transcript.engine,
            )
            .with_for_update()
        ).scalar()
        if found is None:
            transcript_id = int(
                conn.execute(
                    insert(Transcript).values(values).returning(Transcript.id)
                ).scalar_one()
            )
        else:
            transcript_id = int(found)
            _drop_segments(conn, [transcript_id])
            conn.execute(update(Transcript).where(Transcript.id == transcript_id).values(values))
        rows = _segment_rows(transcript_id, transcript.segments)
        if rows:
            ids = conn.execute(
                insert(TranscriptSegment).returning(
                    TranscriptSegment.id, sort_by_parameter_order=True
                ),
                rows,
            ).scalars()
            index_segments(conn, zip(ids, (r["text"] for r in rows), strict=True), tags)
        return transcript_id


def store_transcript(
    store: Store,
    tenant_id: int,
    attempt_id: int,
    transcript: TranscriptIn,
    *,
    recording_id: int | None = None,
    now: datetime | None = None,
) -> int:
    """Keep what `transcript.engine` heard of one party of a call, replacing what that engine
    heard before, and index it; the transcript's id."""
    when = now or datetime.now(UTC)
    for attempt in (1, 2):
        try:
            return _store_once(store, tenant_id, attempt_id, transcript, recording_id, when)
        except IntegrityError as exc:
            # Another worker stored the same transcript between our read and our insert: the
            # second pass finds theirs and replaces it.
            if attempt == 2:
                raise StoreError(
                    f"transcript of attempt {attempt_id} ({transcript.party}): {error_reason(exc)}"
                ) from exc
        except SQLAlchemyError as exc:
            raise StoreError(
                f"transcript of attempt {attempt_id} ({transcript.party}): {error_reason(exc)}"
            ) from exc
    raise AssertionError("unreachable")


def delete_transcripts(store: Store, attempt_id: int) -> int:
    """Forget every transcript of a call (the retention job, with its recording); how many."""
    try:
        with store.begin() as conn:
            ids = [
                int(i)
                for i in conn.execute(
                    select(Transcript.id).where(Transcript.attempt_id == attempt_id)
                ).scalars()
            ]
            _drop_segments(conn, ids)
            if ids:
                conn.execute(delete(Transcript).where(Transcript.id.in_(ids)))
            return len(ids)
    except SQLAlchemyError as exc:
        raise StoreError(f"transcripts of attempt {attempt_id}: {error_reason(exc)}") from exc


def load_transcripts(
    store: Store, attempt_id: int, *, tenant_id: int | None = None
) -> list[StoredTranscript]:
    """A call's transcripts with their segments, agent first, in time order."""
    try:
        with store.begin() as conn:
            query = select(Transcript).where(Transcript.attempt_id == attempt_id)
            if tenant_id is not None:
                query = query.where(Transcript.tenant_id == tenant_id)
            heads = conn.execute(query.order_by(Transcript.party, Transcript.id)).all()
            ids = [h.id for h in heads]
            segs: dict[int, list[StoredSegment]] = {i: [] for i in ids}
            if ids:
                for r in conn.execute(
                    select(TranscriptSegment)
                    .where(TranscriptSegment.transcript_id.in_(ids))
                    .order_by(TranscriptSegment.transcript_id, TranscriptSegment.seq)
                ):
                    segs[r.transcript_id].append(
                        StoredSegment(
                            id=r.id,
                            seq=r.seq,
                            start_s=r.start_s,
                            end_s=r.end_s,
                            text=r.text,
                            words=tuple(Word.from_json(w) for w in r.words or ()),
                            confidence=r.confidence,
                        )
                    )
    except SQLAlchemyError as exc:
        raise StoreError(f"transcripts of attempt {attempt_id}: {error_reason(exc)}") from exc
    return [
        StoredTranscript(
            id=h.id,
            tenant_id=h.tenant_id,
            attempt_id=h.attempt_id,
            recording_id=h.recording_id,
            party=Party(h.party),
            engine=h.engine,
            model=h.model,
            language=h.language,
            confidence=h.confidence,
            created_at=h.created_at,
            segments=tuple(segs[h.id]),
        )
        for h in heads
    ]


def as_input(stored: StoredTranscript) -> TranscriptIn:
    """A stored transcript in the shape QA scoring and re-storing take."""
    return TranscriptIn(
        party=stored.party,
        engine=stored.engine,
        model=stored.model,
        language=stored.language,
        segments=tuple(s.as_segment() for s in stored.segments),
        confidence=stored.confidence,
    )
