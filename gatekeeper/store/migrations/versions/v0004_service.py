"""The service: queued releases, submitters, stalled releases, idempotency keys, leases.

A queued release (phase ``queued``) waits for its turn and holds nothing, so the partial
unique index of active releases leaves it out as it leaves out the final phases.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

# Frozen copies of the column types this revision creates.
TIME = sa.String(32).with_variant(postgresql.TIMESTAMP(timezone=True), "postgresql")
EPOCH = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

INDEX = "uq_releases_active_app_environment"
FINAL_PHASES = ("promoted", "rolled_back", "aborted", "failed")
IDLE_PHASES = (*FINAL_PHASES, "queued")


def _where(phases: tuple[str, ...]) -> sa.TextClause:
    return sa.text("phase NOT IN ({})".format(", ".join(f"'{p}'" for p in phases)))


def _index(phases: tuple[str, ...]) -> None:
    where = _where(phases)
    op.create_index(
        INDEX,
        "releases",
        ["app", "environment"],
        unique=True,
        sqlite_where=where,
        postgresql_where=where,
    )


def upgrade() -> None:
    op.drop_index(INDEX, table_name="releases")
    with op.batch_alter_table("releases") as batch:
        batch.add_column(sa.Column("submitted_by", sa.Text(), nullable=True))
        batch.add_column(sa.Column("stalled", sa.Text(), nullable=True))
    _index(IDLE_PHASES)

    op.create_table(
        "idempotency_keys",
        sa.Column("principal", sa.Text(), primary_key=True),
        sa.Column("key", sa.Text(), primary_key=True),
        sa.Column(
            "release_id",
            sa.Text(),
            sa.ForeignKey("releases.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("spec_hash", sa.Text(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.Text(), primary_key=True),
        sa.Column("holder", sa.Text(), nullable=False),
        sa.Column("epoch", EPOCH, nullable=False),
        sa.Column("expires_at", TIME, nullable=True),
        sa.Column("renewed_at", TIME, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("leases")
    op.drop_table("idempotency_keys")
    op.drop_index(INDEX, table_name="releases")
    with op.batch_alter_table("releases") as batch:
        batch.drop_column("stalled")
        batch.drop_column("submitted_by")
    _index(FINAL_PHASES)
