"""batches (POST /v1/batches) and jobs.batch_id

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant", sa.String(length=100), nullable=False),
        sa.Column("api_key_id", sa.Integer(), nullable=True),
        sa.Column("item_count", sa.Integer(), nullable=False),
        sa.Column("webhook_url", sa.Text(), nullable=True),
        sa.Column("per_item_webhooks", sa.Boolean(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("request_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["api_key_id"], ["api_keys.id"], name=op.f("fk_batches_api_key_id_api_keys")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batches")),
        sa.UniqueConstraint("tenant", "idempotency_key", name="uq_batches_tenant_idempotency_key"),
    )
    # Batch mode: SQLite (the embedded database) can only add a foreign key by rebuilding the table.
    with op.batch_alter_table("jobs") as jobs:
        jobs.add_column(sa.Column("batch_id", sa.Uuid(), nullable=True))
        jobs.create_foreign_key(op.f("fk_jobs_batch_id_batches"), "batches", ["batch_id"], ["id"])
        jobs.create_index(op.f("ix_jobs_batch_id"), ["batch_id"])


def downgrade() -> None:
    with op.batch_alter_table("jobs") as jobs:
        jobs.drop_index(op.f("ix_jobs_batch_id"))
        jobs.drop_constraint(op.f("fk_jobs_batch_id_batches"), type_="foreignkey")
        jobs.drop_column("batch_id")
    op.drop_table("batches")
