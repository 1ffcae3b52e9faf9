"""Batches: the batch and its items (the items table is the work queue), and the link
from a provisioning-log row to the batch item it ran for.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.store.models import UTCDateTime

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("caller_key_id", sa.String(64), nullable=False),
        sa.Column("item_count", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_batches_created_at", "batches", ["created_at"])
    op.create_table(
        "batch_items",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "batch_id",
            sa.String(40),
            sa.ForeignKey("batches.id", name="fk_batch_items_batch_id"),
            nullable=False,
        ),
        sa.Column("item_index", sa.Integer(), nullable=False),
        sa.Column("operation", sa.String(64), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("reference", sa.String(255), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.Column("entity_key", sa.String(255), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("not_before", UTCDateTime(), nullable=True),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", UTCDateTime(), nullable=True),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.UniqueConstraint("batch_id", "item_index", name="uq_batch_items_position"),
        sa.CheckConstraint(
            "status IN ('QUEUED', 'RUNNING', 'SUCCEEDED', 'FAILED')",
            name="ck_batch_items_status",
        ),
    )
    op.create_index("ix_batch_items_status_id", "batch_items", ["status", "id"])
    op.create_index("ix_batch_items_entity_key_id", "batch_items", ["entity_key", "id"])
    with op.batch_alter_table("provisioning_log") as table:
        table.add_column(sa.Column("batch_item_id", sa.Integer(), nullable=True))
        table.create_index("ix_provisioning_log_batch_item_id", ["batch_item_id"])


def downgrade() -> None:
    with op.batch_alter_table("provisioning_log") as table:
        table.drop_index("ix_provisioning_log_batch_item_id")
        table.drop_column("batch_item_id")
    op.drop_table("batch_items")
    op.drop_table("batches")
