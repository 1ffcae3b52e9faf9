"""Provisioning log: the indexes on columns most requests leave empty become partial.

Every request writes a log row before any work, and every index on the table is one more
B-tree that insert walks and changes. Four of them index columns that many rows leave NULL:
the Salesforce Account and Opportunity (a credit grant for a customer whose ID is not an
Account ID has neither), the caller's correlation ID (only some callers send one) and the
batch item (only batch items have one). A full index still stores an entry for every NULL;
a partial one (non-null values only) costs a request that leaves the column empty nothing.
Every query that uses them looks a value up (`column = :value`), which implies the column
is not null, so both SQLite and PostgreSQL still use them (tests/store/test_db.py checks
the query plans). bench/README.md has the measurement.

The upgrade rebuilds the four indexes inside the start-up migration's transaction, which
holds writes to the table while it runs (on PostgreSQL, as CREATE INDEX without
CONCURRENTLY does). With a million rows it took half a second on the bench machine, on
SQLite and on PostgreSQL alike.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    "salesforce_account_id",
    "salesforce_opportunity_id",
    "correlation_id",
    "batch_item_id",
)


def upgrade() -> None:
    for column in COLUMNS:
        name = f"ix_provisioning_log_{column}"
        where = sa.text(f"{column} IS NOT NULL")
        op.drop_index(name, table_name="provisioning_log")
        op.create_index(
            name, "provisioning_log", [column], postgresql_where=where, sqlite_where=where
        )


def downgrade() -> None:
    for column in COLUMNS:
        name = f"ix_provisioning_log_{column}"
        op.drop_index(name, table_name="provisioning_log")
        op.create_index(name, "provisioning_log", [column])
