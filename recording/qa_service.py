"""What QA staff do all day, as use cases on the store: find calls by what was said (with each
call's facts and the words to highlight), review one call (transcript per party, measures,
score, flags), mark a flag right or wrong, the flagged calls first, each rule's precision, and
the archived recording to play. The web pages call these; no rule lives in the pages.

Every function takes the caller's tenant and sees only that tenant's calls; `call_tenant` tells
the pages whose a call is, so a look at another tenant's call is refused and audited there.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.exc import SQLAlchemyError

from dialer.calls.models import Outcome
from dialer.errors import StoreError
from dialer.store.db import Store, error_reason
from dialer.store.models import (
    CallAttempt,
    Campaign,
    Party,
    QaFlag,
    QaScore,
    QaVerdict,
    Recording,
    RecordingStatus,
    Role,
    User,
)
from recording import qa
from recording.errors import RecordingError
from recording.metrics import measure_stereo
from recording.search import parse_query, search
from recording.transcripts import TranscriptIn, _Kind, as_input, load_transcripts, runs

__all__ = [
    "AudioUnavailable",
    "CallFacts",
    "CallMeasures",
    "CallReview",
    "FlagNotFound",
    "Measures",
    "QaRequestError",
    "QueueRow",
    "RulePrecision",
    "SearchPage",
    "SearchRequest",
    "call_review",
    "call_tenant",
    "find_calls",
    "flagged_calls",
    "highlights",
    "mark_flag",
    "precision_table",
    "recording_file",
    "search_options",
]

log = logging.getLogger(__name__)

MAX_PAGE = 200


class QaRequestError(RecordingError):
    """A request QA staff made cannot be answered as asked; `field` names what to change."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


class FlagNotFound(RecordingError):
    """The flag is not one of this call's (or not the tenant's)."""


class AudioUnavailable(RecordingError):
    """The call has no recording to play; the message says why (none, not archived yet,
    deleted by retention, missing from the archive)."""


def _fail(what: str, exc: SQLAlchemyError) -> StoreError:
    return StoreError(f"{what}: {error_reason(exc)}")


# ---------------------------------------------------------------------------------------------
# The call's facts


@dataclass(frozen=True, slots=True)
class CallFacts:
    attempt_id: int
    campaign_id: int
    campaign: str
    agent_id: str | None
    dialed_at: datetime
    outcome: str | None
    talk_s: float | None  # connected to hung up
    qa_score: float | None
    qa_flags: int | None  # standing: not judged wrong
    audio: bool  # an archived recording can be played

    def to_json(self) -> dict[str, Any]:
        return {
            "call_id": self.attempt_id,
            "campaign_id": self.campaign_id,
            "campaign": self.campaign,
            "agent_id": self.agent_id,
            "dialed_at": iso_utc(self.dialed_at),
            "outcome": self.outcome,
            "talk_s": None if self.talk_s is None else round(self.talk_s, 1),
            "qa_score": self.qa_score,
            "qa_flags": self.qa_flags,
            "audio": self.audio,
        }


def iso_utc(when: datetime | None) -> str | None:
    if when is None:
        return None
    # SQLite hands back naive datetimes; the store writes UTC.
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).isoformat()


def _facts(store: Store, tenant_id: int, attempt_ids: Sequence[int]) -> dict[int, CallFacts]:
    if not attempt_ids:
        return {}
    a = CallAttempt
    query = (
        select(
            a.id,
            a.campaign_id,
            Campaign.name,
            a.agent_id,
            a.dialed_at,
            a.outcome,
            a.connected_at,
            a.hungup_at,
            QaScore.score,
            QaScore.flags,
            Recording.status,
        )
        .join(Campaign, Campaign.id == a.campaign_id)
        .outerjoin(QaScore, QaScore.attempt_id == a.id)
        .outerjoin(Recording, Recording.attempt_id == a.id)
        .where(a.tenant_id == tenant_id, a.id.in_(list(attempt_ids)))
    )
    try:
        with store.begin() as conn:
            rows = conn.execute(query).all()
    except SQLAlchemyError as exc:
        raise _fail("facts of calls", exc) from exc
    out: dict[int, CallFacts] = {}
    for r in rows:
        talk = None
        if r.connected_at is not None and r.hungup_at is not None:
            talk = max(0.0, (r.hungup_at - r.connected_at).total_seconds())
        out[int(r.id)] = CallFacts(
            attempt_id=int(r.id),
            campaign_id=int(r.campaign_id),
            campaign=r.name,
            agent_id=r.agent_id,
            dialed_at=r.dialed_at,
            outcome=r.outcome,
            talk_s=talk,
            qa_score=None if r.score is None else float(r.score),
            qa_flags=None if r.flags is None else int(r.flags),
            audio=r.status == RecordingStatus.ARCHIVED.value,
        )
    return out


def call_tenant(store: Store, attempt_id: int) -> int | None:
    """The tenant whose call this is, None when there is no such call."""
    try:
        with store.begin() as conn:
            found = conn.execute(
                select(CallAttempt.tenant_id).where(CallAttempt.id == attempt_id)
            ).scalar()
    except SQLAlchemyError as exc:
        raise _fail(f"call {attempt_id}", exc) from exc
    return None if found is None else int(found)


# ---------------------------------------------------------------------------------------------
# Search


@dataclass(frozen=True, slots=True)
class SearchRequest:
    query: str
    campaign_id: int | None = None
    agent_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    outcome: str | None = None
    party: Party | None = None
    flagged: bool | None = None
    limit: int = 50
    offset: int = 0

    def checked(self) -> SearchRequest:
        """The request, or QaRequestError naming the field that is wrong."""
        if not parse_query(self.query):
            raise QaRequestError("q", "type a word or phrase to look for (English or 中文)")
        for name, when in (("since", self.since), ("until", self.until)):
            if when is not None and not 2000 <= when.year <= 2100:
                raise QaRequestError(name, "a date between the years 2000 and 2100")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise QaRequestError("until", "must be after since")
        if self.outcome is not None and self.outcome not in {o.value for o in Outcome}:
            known = ", ".join(o.value for o in Outcome)
            raise QaRequestError("outcome", f"{self.outcome!r} is not one of {known}")
        if not 1 <= self.limit <= MAX_PAGE:
            raise QaRequestError("limit", f"from 1 to {MAX_PAGE}")
        if self.offset < 0:
            raise QaRequestError("offset", "0 or more")
        return self


@dataclass(frozen=True, slots=True)
class FoundCall:
    """One place a call says the words: the call, the party, the second, the snippet."""

    call: CallFacts
    party: Party
    second: float
    snippet: str
    marks: tuple[tuple[int, int], ...]  # [start, end) of the query's words in the snippet
    rank: float

    def to_json(self) -> dict[str, Any]:
        return {
            **self.call.to_json(),
            "party": self.party.value,
            "second": round(self.second, 2),
            "snippet": self.snippet,
            "marks": [list(m) for m in self.marks],
            "rank": self.rank,
        }


@dataclass(frozen=True, slots=True)
class SearchPage:
    hits: tuple[FoundCall, ...]
    more: bool  # another page follows


def find_calls(store: Store, tenant_id: int, request: SearchRequest) -> SearchPage:
    """The tenant's calls that say the query, newest first, a page at a time."""
    req = request.checked()
    found = search(
        store,
        tenant_id,
        req.query,
        campaign_id=req.campaign_id,
        agent_id=req.agent_id,
        since=req.since,
        until=req.until,
        outcome=req.outcome,
        party=req.party,
        flagged=req.flagged,
        limit=req.limit + 1,
        offset=req.offset,
    )
    page = found[: req.limit]
    facts = _facts(store, tenant_id, sorted({h.attempt_id for h in page}))
    hits = tuple(
        FoundCall(
            call=facts[h.attempt_id],
            party=h.party,
            second=h.start_s,
            snippet=h.snippet,
            marks=tuple(highlights(h.snippet, req.query)),
            rank=h.rank,
        )
        for h in page
        if h.attempt_id in facts
    )
    return SearchPage(hits, more=len(found) > req.limit)


def _folded(text: str) -> tuple[str, list[int]]:
    """The text lower-cased, width- and accent-folded character by character, with the index
    in `text` each folded character came from."""
    out: list[str] = []
    owner: list[int] = []
    for i, ch in enumerate(text):
        form = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", ch).lower())
        form = "".join(c for c in form if not unicodedata.combining(c)) or ch
        out.append(form)
        owner.extend([i] * len(form))
    return "".join(out), owner


def highlights(text: str, query: str) -> list[tuple[int, int]]:
    """Where the query's words are in `text` (as search matches them: any case, width or
    accent; a CJK run as written; a Latin word ending in `*` as a prefix): [start, end)
    character ranges, sorted and merged."""
    folded, owner = _folded(text)
    spans: list[tuple[int, int]] = []
    for term in parse_query(query):
        pieces = list(runs(term.canon))
        if not pieces:
            continue
        # The term's runs in a row, anything but word characters between them (as the index
        # sees the text); a Latin word whole unless the term is a prefix.
        pattern = r"\W*".join(re.escape(run) for _, run in pieces)
        if pieces[0][0] is _Kind.WORD:
            pattern = r"(?<!\w)" + pattern
        if pieces[-1][0] is _Kind.WORD:
            pattern += r"\w*" if term.prefix else r"(?!\w)"
        for m in re.finditer(pattern, folded):
            if m.end() > m.start():
                spans.append((owner[m.start()], owner[m.end() - 1] + 1))
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


@dataclass(frozen=True, slots=True)
class SearchOptions:
    campaigns: tuple[tuple[int, str], ...]
    agents: tuple[str, ...]
    outcomes: tuple[str, ...]
    parties: tuple[str, ...]


def search_options(store: Store, tenant_id: int) -> SearchOptions:
    """What the search filters offer: the tenant's campaigns and agents (from its users; any
    agent id may be typed), the call outcomes and the parties."""
    try:
        with store.begin() as conn:
            campaigns = conn.execute(
                select(Campaign.id, Campaign.name)
                .where(Campaign.tenant_id == tenant_id)
                .order_by(Campaign.name)
            ).all()
            agents = conn.execute(
                select(User.agent_id)
                .where(
                    User.tenant_id == tenant_id,
                    User.role == Role.AGENT.value,
                    User.agent_id.is_not(None),
                )
                .order_by(User.agent_id)
            ).scalars()
            agent_ids = tuple(str(a) for a in agents)
    except SQLAlchemyError as exc:
        raise _fail(f"search options of tenant {tenant_id}", exc) from exc
    return SearchOptions(
        campaigns=tuple((int(c.id), str(c.name)) for c in campaigns),
        agents=agent_ids,
        outcomes=tuple(o.value for o in Outcome),
        parties=tuple(p.value for p in Party),
    )


# ---------------------------------------------------------------------------------------------
# Measures


@dataclass(frozen=True, slots=True)
class Measures:
    """How the call went, in seconds of the recording. `source`: "audio" (measured on the
    archived stereo file: VAD per channel, raised voice against each speaker's baseline) or
    "transcript" (estimated from the transcript's segment times; no raised voice)."""

    source: str
    duration_s: float | None
    talk_s: dict[str, float]
    silence_ratio: float | None
    longest_silence_s: float | None
    longest_silence_at_s: float | None
    overtalk_s: float | None
    longest_overtalk_at_s: float | None
    raised_voice: tuple[dict[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        def r(value: float | None) -> float | None:
            return None if value is None else round(value, 2)

        return {
            "source": self.source,
            "duration_s": r(self.duration_s),
            "talk_s": {k: round(v, 2) for k, v in self.talk_s.items()},
            "silence_ratio": None if self.silence_ratio is None else round(self.silence_ratio, 4),
            "longest_silence_s": r(self.longest_silence_s),
            "longest_silence_at_s": r(self.longest_silence_at_s),
            "overtalk_s": r(self.overtalk_s),
            "longest_overtalk_at_s": r(self.longest_overtalk_at_s),
            "raised_voice": list(self.raised_voice),
        }


@dataclass
class CallMeasures:
    """Measures of archived recordings, kept for the last `keep` files looked at (a file in the
    archive never changes: its name holds its hash)."""

    archive_root: Path
    keep: int = 256
    _cache: OrderedDict[str, Measures] = field(default_factory=OrderedDict)

    def path_of(self, archive_path: str) -> Path:
        """The archived file's path, never outside the archive root."""
        root = self.archive_root.resolve()
        path = (root / archive_path).resolve()
        if not path.is_relative_to(root):
            raise AudioUnavailable(f"{archive_path} is outside the archive")
        return path

    def of_audio(self, archive_path: str) -> Measures | None:
        """Measured on the archived file; None when it is not a stereo recording or cannot
        be read (the caller estimates from the transcript instead)."""
        hit = self._cache.get(archive_path)
        if hit is not None:
            self._cache.move_to_end(archive_path)
            return hit
        try:
            m = measure_stereo(self.path_of(archive_path))
        except (RecordingError, OSError) as exc:
            log.info("x measures of %s from the transcript instead: %s", archive_path, exc)
            return None
        measured = Measures(
            source="audio",
            duration_s=m.duration_s,
            talk_s={"agent": m.agent.talk_s, "debtor": m.debtor.talk_s},
            silence_ratio=m.silence_ratio,
            longest_silence_s=None if m.longest_silence is None else m.longest_silence.duration_s,
            longest_silence_at_s=None if m.longest_silence is None else m.longest_silence.start_s,
            overtalk_s=m.overtalk_s,
            longest_overtalk_at_s=(
                max(m.overtalk, key=lambda i: i.duration_s).start_s if m.overtalk else None
            ),
            raised_voice=tuple(v.to_dict() for v in m.raised_voice),
        )
        self._cache[archive_path] = measured
        while len(self._cache) > self.keep:
            self._cache.popitem(last=False)
        return measured


def _from_transcripts(transcripts: Sequence[TranscriptIn]) -> Measures:
    numbers = qa.TalkNumbers.from_transcripts(transcripts)
    talk: dict[str, float] = {}
    end = 0.0
    for t in transcripts:
        talk[t.party.value] = talk.get(t.party.value, 0.0) + sum(
            s.end_s - s.start_s for s in t.segments if s.end_s > s.start_s
        )
        end = max([end, *(s.end_s for s in t.segments)])
    return Measures(
        source="transcript",
        duration_s=end or None,
        talk_s=talk,
        silence_ratio=numbers.silence_ratio,
        longest_silence_s=numbers.longest_silence_s,
        longest_silence_at_s=numbers.longest_silence_at_s,
        overtalk_s=numbers.overtalk_s,
        longest_overtalk_at_s=numbers.longest_overtalk_at_s,
    )


# ---------------------------------------------------------------------------------------------
# Review of one call


@dataclass(frozen=True, slots=True)
class Line:
    party: Party
    start_s: float
    end_s: float
    text: str


@dataclass(frozen=True, slots=True)
class CallReview:
    call: CallFacts
    lines: tuple[Line, ...]  # both parties, in time order
    flags: tuple[qa.StoredFlag, ...]
    measures: Measures | None
    engines: tuple[tuple[Party, str], ...]  # who transcribed each party: engine/model


def _recording_row(store: Store, tenant_id: int, attempt_id: int) -> Any:
    try:
        with store.begin() as conn:
            return conn.execute(
                select(Recording.status, Recording.archive_path, Recording.error).where(
                    Recording.attempt_id == attempt_id, Recording.tenant_id == tenant_id
                )
            ).first()
    except SQLAlchemyError as exc:
        raise _fail(f"recording of call {attempt_id}", exc) from exc


def call_review(
    store: Store, tenant_id: int, attempt_id: int, measures: CallMeasures
) -> CallReview | None:
    """Everything the review page shows of one of the tenant's calls; None if it has none."""
    facts = _facts(store, tenant_id, [attempt_id]).get(attempt_id)
    if facts is None:
        return None
    stored = load_transcripts(store, attempt_id, tenant_id=tenant_id)
    lines = sorted(
        (
            Line(t.party, s.start_s, s.end_s, s.text)
            for t in stored
            for s in t.segments
            if s.text.strip()
        ),
        key=lambda line: (line.start_s, line.party.value),
    )
    measured: Measures | None = None
    rec = _recording_row(store, tenant_id, attempt_id)
    if rec is not None and rec.status == RecordingStatus.ARCHIVED.value and rec.archive_path:
        measured = measures.of_audio(rec.archive_path)
    if measured is None and stored:
        measured = _from_transcripts([as_input(t) for t in stored])
    return CallReview(
        call=facts,
        lines=tuple(lines),
        flags=tuple(qa.flags_of(store, tenant_id, attempt_id)),
        measures=measured,
        engines=tuple((t.party, f"{t.engine}/{t.model}") for t in stored),
    )


def recording_file(store: Store, tenant_id: int, attempt_id: int, measures: CallMeasures) -> Path:
    """The archived WAV of one of the tenant's calls, or AudioUnavailable saying why not."""
    rec = _recording_row(store, tenant_id, attempt_id)
    if rec is None:
        raise AudioUnavailable(f"call {attempt_id} has no recording")
    if rec.status == RecordingStatus.DELETED.value:
        raise AudioUnavailable(f"the recording of call {attempt_id} was deleted by retention")
    if rec.status != RecordingStatus.ARCHIVED.value or not rec.archive_path:
        why = f" ({rec.error})" if rec.error else ""
        raise AudioUnavailable(
            f"the recording of call {attempt_id} is not archived: {rec.status}{why}"
        )
    path = measures.path_of(rec.archive_path)
    if not path.is_file():
        raise AudioUnavailable(
            f"the recording of call {attempt_id} is missing from the archive ({rec.archive_path})"
        )
    return path


# ---------------------------------------------------------------------------------------------
# Verdicts, the queue, precision


def mark_flag(
    store: Store,
    tenant_id: int,
    attempt_id: int,
    flag_id: int,
    verdict: QaVerdict,
    user: str,
    *,
    now: datetime,
) -> tuple[qa.StoredFlag, qa.StoredFlag]:
    """A reviewer's verdict on one of the call's flags: (the flag before, after)."""
    before = next((f for f in qa.flags_of(store, tenant_id, attempt_id) if f.id == flag_id), None)
    if before is None:
        raise FlagNotFound(f"call {attempt_id} has no QA flag {flag_id}")
    after = qa.review(store, flag_id, verdict, user, tenant_id=tenant_id, now=now)
    return before, after


@dataclass(frozen=True, slots=True)
class QueueRow:
    call: CallFacts
    unreviewed: int  # flags no one has judged yet


def flagged_calls(
    store: Store, tenant_id: int, *, limit: int = 50, offset: int = 0, only_flagged: bool = True
) -> tuple[list[QueueRow], bool]:
    """The tenant's QA-scored calls for review: calls with standing flags first, those with
    flags no one has judged first among them, then the lowest score, then the newest. With
    `only_flagged`, only calls with a standing or unjudged flag. (rows, another page follows)."""
    if not 1 <= limit <= MAX_PAGE:
        raise QaRequestError("limit", f"from 1 to {MAX_PAGE}")
    if offset < 0:
        raise QaRequestError("offset", "0 or more")
    open_flags = (
        select(QaFlag.attempt_id, func.count().label("n"))
        .where(QaFlag.tenant_id == tenant_id, QaFlag.verdict.is_(None))
        .group_by(QaFlag.attempt_id)
        .subquery()
    )
    unreviewed = func.coalesce(open_flags.c.n, 0)
    query = (
        select(QaScore.attempt_id, unreviewed.label("unreviewed"))
        .outerjoin(open_flags, open_flags.c.attempt_id == QaScore.attempt_id)
        .where(QaScore.tenant_id == tenant_id)
    )
    if only_flagged:
        query = query.where((QaScore.flags > 0) | (unreviewed > 0))
    query = (
        query.order_by(
            case((QaScore.flags > 0, 0), else_=1),
            case((unreviewed > 0, 0), else_=1),
            QaScore.score,
            QaScore.attempt_id.desc(),
        )
        .limit(limit + 1)
        .offset(offset)
    )
    try:
        with store.begin() as conn:
            rows = conn.execute(query).all()
    except SQLAlchemyError as exc:
        raise _fail(f"flagged calls of tenant {tenant_id}", exc) from exc
    page = rows[:limit]
    facts = _facts(store, tenant_id, [int(r.attempt_id) for r in page])
    out = [
        QueueRow(facts[int(r.attempt_id)], int(r.unreviewed))
        for r in page
        if int(r.attempt_id) in facts
    ]
    return out, len(rows) > limit


@dataclass(frozen=True, slots=True)
class RulePrecision:
    rule_id: str
    right: int
    wrong: int
    unreviewed: int
    precision: float | None  # right / judged; None before any verdict

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule_id,
            "right": self.right,
            "wrong": self.wrong,
            "unreviewed": self.unreviewed,
            "precision": None if self.precision is None else round(self.precision, 4),
        }


def precision_table(store: Store, tenant_id: int) -> list[RulePrecision]:
    """Each rule's flags judged right and wrong, those not judged yet, and its precision."""
    judged = qa.rule_precision(store, tenant_id)
    try:
        with store.begin() as conn:
            open_by_rule = {
                str(rule_id): int(n)
                for rule_id, n in conn.execute(
                    select(QaFlag.rule_id, func.count())
                    .where(QaFlag.tenant_id == tenant_id, QaFlag.verdict.is_(None))
                    .group_by(QaFlag.rule_id)
                )
            }
    except SQLAlchemyError as exc:
        raise _fail(f"unjudged QA flags of tenant {tenant_id}", exc) from exc
    out = []
    for rule_id in sorted(set(judged) | set(open_by_rule)):
        right, wrong, precision = judged.get(rule_id, (0, 0, None))
        out.append(
            RulePrecision(rule_id, right, wrong, int(open_by_rule.get(rule_id, 0)), precision)
        )
    return out
