"""Provisioning log: the caller's correlation ID, and which entry replayed this one.

Request IDs are the service's own (unique); what a caller sends as X-Request-Id is kept
as a correlation ID, which nothing depends on being unique. A replayed entry points at the
entry that replayed it, so `replay` can refuse to run an entry twice.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Batch mode: SQLite can only add a foreign key by rebuilding the table.
    with op.batch_alter_table("provisioning_log") as table:
        table.add_column(sa.Column("correlation_id", sa.String(128), nullable=True))
        table.add_column(sa.Column("replayed_by", sa.Integer(), nullable=True))
        table.create_foreign_key(
            "fk_provisioning_log_replayed_by", "provisioning_log", ["replayed_by"], ["id"]
        )
        table.create_index("ix_provisioning_log_correlation_id", ["correlation_id"])


def downgrade() -> None:
    with op.batch_alter_table("provisioning_log") as table:
        table.drop_index("ix_provisioning_log_correlation_id")
        table.drop_constraint("fk_provisioning_log_replayed_by", type_="foreignkey")
        table.drop_column("replayed_by")
        table.drop_column("correlation_id")
