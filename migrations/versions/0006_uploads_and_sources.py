"""uploads (presigned large uploads) and jobs.source_url (submit by URL)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The worker fetches this URL into input_key before the usual download (stage "fetching").
    # Batch mode: SQLite (embedded) cannot ALTER a column in place; on Postgres these are plain ALTERs.
    with op.batch_alter_table("jobs") as jobs:
        jobs.add_column(sa.Column("source_url", sa.Text(), nullable=True))
        # Unknown until the worker has fetched a source_url job's media.
        jobs.alter_column("sha256", existing_type=sa.String(length=64), nullable=True)
        jobs.alter_column("size_bytes", existing_type=sa.BigInteger(), nullable=True)
    op.create_table(
        "uploads",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant", sa.String(length=100), nullable=False),
        sa.Column("api_key_id", sa.Integer(), nullable=True),
        sa.Column("object_key", sa.String(length=200), nullable=False),
        sa.Column("max_bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        # Set when a job consumes it: an upload makes one job only.
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("job_id", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(["api_key_id"], ["api_keys.id"], name=op.f("fk_uploads_api_key_id_api_keys")),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_uploads_job_id_jobs"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_uploads")),
        sa.UniqueConstraint("object_key", name=op.f("uq_uploads_object_key")),
    )
    op.create_index("ix_uploads_expires_at", "uploads", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_uploads_expires_at", table_name="uploads")
    op.drop_table("uploads")
    # A source_url job never fetched has neither; it keeps no placeholder worth inventing, so it goes.
    op.execute("DELETE FROM jobs WHERE sha256 IS NULL OR size_bytes IS NULL")
    with op.batch_alter_table("jobs") as jobs:
        jobs.alter_column("size_bytes", existing_type=sa.BigInteger(), nullable=False)
        jobs.alter_column("sha256", existing_type=sa.String(length=64), nullable=False)
        jobs.drop_column("source_url")
