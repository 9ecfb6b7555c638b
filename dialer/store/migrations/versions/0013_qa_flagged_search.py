"""QA-flagged calls marked in the transcript search index, so a flagged-only search stays fast.

The index's tags gain `qf` on every segment of a call with QA flags standing (see
recording/transcripts.py FLAGGED_TAG); the calls QA flagged before this revision are tagged here.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TAG = "qf"
FLAGGED = sa.text(
    "SELECT t.id, t.tags FROM transcripts t JOIN qa_scores q ON q.attempt_id = t.attempt_id "
    "WHERE q.flags > 0"
)


def _retag(flagged: bool) -> None:
    conn = op.get_bind()
    # The FTS5 table is contentless: an entry is replaced by telling it what it held, which
    # takes the same expansion of the text that wrote it.
    from recording.transcripts import index_body

    for transcript_id, tags in conn.execute(FLAGGED).all():
        kept = [t for t in str(tags).split() if t != TAG]
        old, new = str(tags), " ".join([*kept, TAG] if flagged else kept)
        if old == new:
            continue
        if conn.dialect.name == "sqlite":
            segments = conn.execute(
                sa.text("SELECT id, text FROM transcript_segments WHERE transcript_id = :t"),
                {"t": transcript_id},
            ).all()
            for segment_id, text in segments:
                body = index_body(text)
                conn.execute(
                    sa.text(
                        "INSERT INTO transcript_fts(transcript_fts, rowid, body, tags) "
                        "VALUES ('delete', :id, :body, :tags)"
                    ),
                    {"id": segment_id, "body": body, "tags": old},
                )
                conn.execute(
                    sa.text("INSERT INTO transcript_fts(rowid, body, tags) VALUES (:id, :b, :t)"),
                    {"id": segment_id, "b": body, "t": new},
                )
        else:
            change = "tsv || CAST(:lex AS tsvector)" if flagged else "ts_delete(tsv, :lex)"
            conn.execute(
                sa.text(
                    f"UPDATE transcript_search SET tsv = {change} WHERE segment_id IN "
                    "(SELECT id FROM transcript_segments WHERE transcript_id = :t)"
                ),
                {"lex": "~" + TAG, "t": transcript_id},
            )
        conn.execute(
            sa.text("UPDATE transcripts SET tags = :tags WHERE id = :t"),
            {"tags": new, "t": transcript_id},
        )


def upgrade() -> None:
    _retag(True)


def downgrade() -> None:
    _retag(False)
