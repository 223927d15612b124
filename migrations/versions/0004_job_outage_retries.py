"""jobs.outage_retries, jobs.outage_since: claims handed back for an outage do not use up a job's attempts

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("outage_retries", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("jobs", sa.Column("outage_since", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "outage_since")
    op.drop_column("jobs", "outage_retries")
