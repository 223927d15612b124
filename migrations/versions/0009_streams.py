"""live streams: stream_sessions, stream_frames, and webhook_deliveries.sequence (a stream's stream.decision
webhooks, one per decision change)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "stream_sessions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant", sa.String(length=100), nullable=False),
        sa.Column("api_key_id", sa.Integer(), nullable=True),
        sa.Column("strategy", _JSON, nullable=False),
        sa.Column("updates", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("frames_scored", sa.Integer(), nullable=False),
        sa.Column("frames_with_face", sa.Integer(), nullable=False),
        sa.Column("frames_received", sa.Integer(), nullable=False),
        sa.Column("frames_dropped", sa.Integer(), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("t_low", sa.Float(), nullable=True),
        sa.Column("t_high", sa.Float(), nullable=True),
        sa.Column("decision_changes", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.Column("close_reason", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["api_key_id"], ["api_keys.id"], name=op.f("fk_stream_sessions_api_key_id_api_keys")),
        sa.ForeignKeyConstraint(["id"], ["jobs.id"], name=op.f("fk_stream_sessions_id_jobs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stream_sessions")),
    )
    op.create_index("ix_stream_sessions_key_status", "stream_sessions", ["api_key_id", "status"])
    op.create_table(
        "stream_frames",
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("t", sa.Float(), nullable=False),
        sa.Column("faces", sa.Integer(), nullable=False),
        sa.Column("scores", _JSON, nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("verdict", sa.String(length=16), nullable=True),
        sa.Column("changed", sa.Boolean(), nullable=False),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_stream_frames_job_id_jobs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "seq", name=op.f("pk_stream_frames")),
    )
    # Batch mode: SQLite (the embedded database) can only change a unique constraint by rebuilding the table.
    with op.batch_alter_table("webhook_deliveries") as deliveries:
        deliveries.add_column(sa.Column("sequence", sa.Integer(), nullable=False, server_default="0"))
        deliveries.drop_constraint("uq_webhook_deliveries_job_event", type_="unique")
        deliveries.create_unique_constraint("uq_webhook_deliveries_job_event_sequence", ["job_id", "event", "sequence"])


def downgrade() -> None:
    # A stream's second and later stream.decision rows would break the narrower constraint: they go first.
    op.execute("DELETE FROM webhook_deliveries WHERE sequence > 0")
    with op.batch_alter_table("webhook_deliveries") as deliveries:
        deliveries.drop_constraint("uq_webhook_deliveries_job_event_sequence", type_="unique")
        deliveries.create_unique_constraint("uq_webhook_deliveries_job_event", ["job_id", "event"])
        deliveries.drop_column("sequence")
    op.drop_table("stream_frames")
    op.drop_index("ix_stream_sessions_key_status", table_name="stream_sessions")
    op.drop_table("stream_sessions")
