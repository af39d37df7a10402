"""Releases remember whether they were stopped (by a person or the hold timeout).

A rolling-back release used to carry it as a prefix of its reason text; a resumed
run reads it to know the phase the rollback ends in (aborted, not rolled back).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

_MARK = "[stopped] "


def upgrade() -> None:
    with op.batch_alter_table("releases") as batch:
        batch.add_column(
            sa.Column("stopped", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    # A release caught rolling back by the upgrade keeps its intent.
    releases = sa.table(
        "releases",
        sa.column("phase", sa.Text()),
        sa.column("reason", sa.Text()),
        sa.column("stopped", sa.Boolean()),
    )
    op.execute(
        releases.update()
        .where(releases.c.reason.startswith(_MARK))
        .values(stopped=True, reason=sa.func.substr(releases.c.reason, len(_MARK) + 1))
    )


def downgrade() -> None:
    with op.batch_alter_table("releases") as batch:
        batch.drop_column("stopped")
