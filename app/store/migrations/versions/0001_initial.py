"""Idempotency records and the provisioning log.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.store.models import UTCDateTime

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("caller_key_id", sa.String(64), nullable=False),
        sa.Column("operation", sa.String(64), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("locked_until", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        # The claim is an INSERT that this constraint lets through exactly once.
        sa.UniqueConstraint(
            "caller_key_id", "operation", "idempotency_key", name="uq_idempotency_keys_scope"
        ),
        sa.CheckConstraint(
            "state IN ('in_progress', 'completed')", name="ck_idempotency_keys_state"
        ),
    )
    op.create_index("ix_idempotency_keys_expires_at", "idempotency_keys", ["expires_at"])

    op.create_table(
        "provisioning_log",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False, unique=True),
        sa.Column("operation", sa.String(64), nullable=False),
        sa.Column("caller_key_id", sa.String(64), nullable=False),
        sa.Column("salesforce_account_id", sa.String(64), nullable=True),
        sa.Column("salesforce_opportunity_id", sa.String(64), nullable=True),
        sa.Column("stigg_customer_id", sa.String(255), nullable=True),
        sa.Column("stigg_subscription_id", sa.String(255), nullable=True),
        sa.Column("stigg_credit_grant_id", sa.String(255), nullable=True),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("stigg_error_code", sa.String(128), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.Column(
            "replay_of",
            sa.Integer(),
            sa.ForeignKey("provisioning_log.id", name="fk_provisioning_log_replay_of"),
            nullable=True,
        ),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint(
            "outcome IN ('in_progress', 'succeeded', 'rejected', 'failed', 'replayed')",
            name="ck_provisioning_log_outcome",
        ),
    )
    op.create_index("ix_provisioning_log_created_at", "provisioning_log", ["created_at"])
    op.create_index(
        "ix_provisioning_log_outcome_created_at", "provisioning_log", ["outcome", "created_at"]
    )
    op.create_index(
        "ix_provisioning_log_operation_created_at",
        "provisioning_log",
        ["operation", "created_at"],
    )
    op.create_index(
        "ix_provisioning_log_salesforce_account_id", "provisioning_log", ["salesforce_account_id"]
    )
    op.create_index(
        "ix_provisioning_log_salesforce_opportunity_id",
        "provisioning_log",
        ["salesforce_opportunity_id"],
    )


def downgrade() -> None:
    op.drop_table("provisioning_log")
    op.drop_table("idempotency_keys")
