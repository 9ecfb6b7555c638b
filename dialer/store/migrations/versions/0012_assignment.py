"""Collectors and their teams, where an assignment rule put each case (team, collector, dialer
campaign, by which rule), debts' product, segments (saved filters over cases) and the call
lists campaigns draw from them.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def _tenant() -> sa.Column[int]:
    return sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id"), nullable=False)


def upgrade() -> None:
    op.create_table(
        "teams",
        sa.Column("id", sa.Integer(), primary_key=True),
        _tenant(),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("tenant_id", "name", name="uq_teams_tenant_id_name"),
    )
    op.create_table(
        "collectors",
        sa.Column("id", sa.Integer(), primary_key=True),
        _tenant(),
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("team_id", sa.Integer(), sa.ForeignKey("teams.id"), nullable=True),
        sa.Column("seniority", sa.String(16), nullable=False),
        sa.Column("languages", sa.JSON(), nullable=False),
        sa.Column("skills", sa.JSON(), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.UniqueConstraint("tenant_id", "agent_id", name="uq_collectors_tenant_id_agent_id"),
    )
    if op.get_bind().dialect.name == "sqlite":
        # SQLite adds a column with its reference in place; a batch rebuild of `cases` would
        # drop the table under the rows of case_history that point at it.
        op.execute(
            "ALTER TABLE cases ADD COLUMN team_id INTEGER"
            " CONSTRAINT fk_cases_team_id_teams REFERENCES teams (id)"
        )
    else:
        op.add_column("cases", sa.Column("team_id", sa.Integer(), nullable=True))
        op.create_foreign_key("fk_cases_team_id_teams", "cases", "teams", ["team_id"], ["id"])
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("assigned_campaign", sa.String(100), nullable=True))
        batch.add_column(sa.Column("assignment_rule", sa.String(64), nullable=True))
        batch.add_column(sa.Column("assigned_at", TS, nullable=True))
    op.create_index("ix_cases_tenant_id_team_id", "cases", ["tenant_id", "team_id"])
    with op.batch_alter_table("debts") as batch:
        batch.add_column(sa.Column("product", sa.String(32), nullable=True))
    op.create_table(
        "segments",
        sa.Column("id", sa.Integer(), primary_key=True),
        _tenant(),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("filter", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.UniqueConstraint("tenant_id", "name", name="uq_segments_tenant_id_name"),
    )
    op.create_table(
        "assignment_rule_sets",
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id"), primary_key=True),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(500), nullable=False),
        sa.Column("updated_by", sa.String(100), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "campaign_segments",
        sa.Column("campaign_id", sa.Integer(), sa.ForeignKey("campaigns.id"), primary_key=True),
        _tenant(),
        sa.Column("segment_id", sa.Integer(), sa.ForeignKey("segments.id"), nullable=False),
        sa.Column("cases", sa.Integer(), nullable=False),
        sa.Column("loaded_by", sa.String(100), nullable=False),
        sa.Column("loaded_at", TS, nullable=False),
    )
    op.create_table(
        "campaign_list",
        sa.Column("campaign_id", sa.Integer(), sa.ForeignKey("campaigns.id"), primary_key=True),
        sa.Column("debtor_id", sa.Integer(), sa.ForeignKey("debtors.id"), primary_key=True),
        sa.Column("case_id", sa.Integer(), sa.ForeignKey("cases.id"), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("campaign_list")
    op.drop_table("campaign_segments")
    op.drop_table("segments")
    op.drop_table("assignment_rule_sets")
    with op.batch_alter_table("debts") as batch:
        batch.drop_column("product")
    op.drop_index("ix_cases_tenant_id_team_id", table_name="cases")
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("assigned_at")
        batch.drop_column("assignment_rule")
        batch.drop_column("assigned_campaign")
        batch.drop_column("team_id")  # its reference to teams goes with it
    op.drop_table("collectors")
    op.drop_table("teams")
