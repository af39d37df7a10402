"""Initial schema: releases, step log, audit events, gate results, approvals, target state."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

# Frozen copies of the column types this revision creates (later model changes must not
# change what an old revision did).
TIME = sa.String(32).with_variant(postgresql.TIMESTAMP(timezone=True), "postgresql")
FLOAT = sa.Text().with_variant(postgresql.DOUBLE_PRECISION(), "postgresql")
ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# A release in one of these phases no longer holds its app+environment.
FINAL_PHASES = ("promoted", "rolled_back", "aborted", "failed")
ACTIVE = sa.text("phase NOT IN ({})".format(", ".join(f"'{p}'" for p in FINAL_PHASES)))


def _release_id(primary_key: bool = False) -> sa.Column[str]:
    return sa.Column(
        "release_id",
        sa.Text(),
        sa.ForeignKey("releases.id", ondelete="CASCADE"),
        primary_key=primary_key,
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "releases",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("app", sa.Text(), nullable=False),
        sa.Column("environment", sa.Text(), nullable=False),
        sa.Column("version", sa.Text(), nullable=False),
        sa.Column("stable_version", sa.Text(), nullable=False),
        sa.Column("strategy", sa.Text(), nullable=False),
        sa.Column("expedited", sa.Boolean(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("phase", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("next_step", sa.Integer(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
    )
    op.create_index("ix_releases_app_environment", "releases", ["app", "environment"])
    op.create_index(
        "uq_releases_active_app_environment",
        "releases",
        ["app", "environment"],
        unique=True,
        sqlite_where=ACTIVE,
        postgresql_where=ACTIVE,
    )

    op.create_table(
        "step_log",
        _release_id(primary_key=True),
        sa.Column("index", sa.Integer(), primary_key=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("at", TIME, nullable=False),
    )

    op.create_table(
        "events",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        _release_id(),
        sa.Column("at", TIME, nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
    )
    op.create_index("ix_events_release_id_at", "events", ["release_id", "at"])

    op.create_table(
        "gate_results",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        _release_id(),
        sa.Column("at", TIME, nullable=False),
        sa.Column("gate", sa.Text(), nullable=False),
        sa.Column("verdict", sa.Text(), nullable=False),
        sa.Column("value", FLOAT, nullable=True),
        sa.Column("threshold", FLOAT, nullable=True),
        sa.Column("window_s", FLOAT, nullable=True),
        sa.Column("requests", FLOAT, nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
    )
    op.create_index("ix_gate_results_release_id_at", "gate_results", ["release_id", "at"])

    op.create_table(
        "approvals",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        _release_id(),
        sa.Column("step", sa.Text(), nullable=False),
        sa.Column("approver", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.UniqueConstraint(
            "release_id", "step", "approver", name="uq_approvals_release_step_approver"
        ),
    )

    op.create_table(
        "target_state",
        _release_id(primary_key=True),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("target_state")
    op.drop_table("approvals")
    op.drop_index("ix_gate_results_release_id_at", table_name="gate_results")
    op.drop_table("gate_results")
    op.drop_index("ix_events_release_id_at", table_name="events")
    op.drop_table("events")
    op.drop_table("step_log")
    op.drop_index("uq_releases_active_app_environment", table_name="releases")
    op.drop_index("ix_releases_app_environment", table_name="releases")
    op.drop_table("releases")
