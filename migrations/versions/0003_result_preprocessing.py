"""results.preprocessing: which crop convention, size and normalisation each member saw

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 06:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Results written before formats existed saw the seed's crop for every member; they read back as {}.
    op.add_column(
        "results",
        sa.Column(
            "preprocessing",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
            server_default="{}",
        ),
    )


def downgrade() -> None:
    op.drop_column("results", "preprocessing")
