"""results.signals and results.heatmaps: the forensic signals of a job and its stored heatmap overlays

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 11:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    # Results written before these existed had neither: they read back as empty.
    with op.batch_alter_table("results") as batch:
        batch.add_column(sa.Column("signals", _JSON, nullable=False, server_default="{}"))
        batch.add_column(sa.Column("heatmaps", _JSON, nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("results") as batch:
        batch.drop_column("heatmaps")
        batch.drop_column("signals")
