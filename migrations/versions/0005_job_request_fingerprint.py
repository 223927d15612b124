"""jobs.request_fingerprint: an Idempotency-Key reused with a different request is refused, not replayed

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 14:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Jobs made before it have none and replay as they always did.
    op.add_column("jobs", sa.Column("request_fingerprint", sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "request_fingerprint")
