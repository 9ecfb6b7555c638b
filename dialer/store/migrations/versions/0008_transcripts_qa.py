"""Transcripts per call and party with their timed segments, the full-text index over them
(SQLite FTS5, PostgreSQL tsvector + GIN, both over bigram-expanded text so that Chinese words
are found), and QA: flags with a supervisor's verdict, and a score per call.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql


revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "transcripts",
        sa.Column("id", BIG_ID, primary_key=True),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("attempt_id", BIG_ID, sa.ForeignKey("call_attempts.id"), nullable=False),
        sa.Column("recording_id", BIG_ID, sa.ForeignKey("recordings.id"), nullable=True),
        sa.Column("party", sa.String(8), nullable=False),
        sa.Column("engine", sa.String(32), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("language", sa.String(16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint(
            "attempt_id", "party", "engine", name="uq_transcripts_attempt_id_party_engine"
        ),
    )
    op.create_table(
        "transcript_segments",
        sa.Column("id", BIG_ID, primary_key=True),
        sa.Column("transcript_id", BIG_ID, sa.ForeignKey("transcripts.id"), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("start_s", sa.Float(), nullable=False),
        sa.Column("end_s", sa.Float(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("words", sa.JSON(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.UniqueConstraint(
            "transcript_id", "seq", name="uq_transcript_segments_transcript_id_seq"
        ),
    )
    # The search index: one entry per segment, keyed by the segment's id, over the text as
    # recording/transcripts.py expands it (Latin words whole, CJK runs as overlapping bigrams)
    # and the call's tags (tenant, campaign, agent, party, day), so that the index itself
    # intersects a query with its filters.
    if op.get_context().dialect.name == "sqlite":
        # Contentless: the text lives once, in transcript_segments; deleting an entry hands
        # FTS5 the expanded text and the transcript's tags again (recording/transcripts.py).
        op.execute(
            "CREATE VIRTUAL TABLE transcript_fts USING fts5("
            "body, tags, content='', tokenize='unicode61 remove_diacritics 2')"
        )
    else:
        op.create_table(
            "transcript_search",
            sa.Column(
                "segment_id",
                BIG_ID,
                sa.ForeignKey("transcript_segments.id", ondelete="CASCADE"),
                primary_key=True,
            ),
            sa.Column("tsv", postgresql.TSVECTOR(), nullable=False),
        )
        op.create_index(
            "ix_transcript_search_tsv", "transcript_search", ["tsv"], postgresql_using="gin"
        )
    op.create_table(
        "qa_flags",
        sa.Column("id", BIG_ID, primary_key=True),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("attempt_id", BIG_ID, sa.ForeignKey("call_attempts.id"), nullable=False),
        sa.Column("rule_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("party", sa.String(8), nullable=True),
        sa.Column("at_s", sa.Float(), nullable=False),
        sa.Column("snippet", sa.Text(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("verdict", sa.String(8), nullable=True),
        sa.Column("reviewed_by", sa.String(64), nullable=True),
        sa.Column("reviewed_at", TS, nullable=True),
    )
    op.create_index("ix_qa_flags_attempt_id", "qa_flags", ["attempt_id"])
    op.create_index(
        "ix_qa_flags_tenant_id_rule_id_verdict", "qa_flags", ["tenant_id", "rule_id", "verdict"]
    )
    op.create_table(
        "qa_scores",
        sa.Column("attempt_id", BIG_ID, sa.ForeignKey("call_attempts.id"), primary_key=True),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("flags", sa.Integer(), nullable=False),
        sa.Column("scored_at", TS, nullable=False),
    )
    op.create_index(
        "ix_qa_scores_tenant_id_score_attempt_id", "qa_scores", ["tenant_id", "score", "attempt_id"]
    )


def downgrade() -> None:
    op.drop_table("qa_scores")
    op.drop_table("qa_flags")
    if op.get_context().dialect.name == "sqlite":
        op.execute("DROP TABLE transcript_fts")
    else:
        op.drop_table("transcript_search")
    op.drop_table("transcript_segments")
    op.drop_table("transcripts")
