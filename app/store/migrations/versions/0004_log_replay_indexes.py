"""Provisioning log: indexes on the two self-references (replay_of, replayed_by).

Retention deletes old rows. Deleting a row makes the database look for rows that still
refer to it through each foreign key (PostgreSQL's referential-integrity check, SQLite's
with foreign_keys on), and the purge clears those references first; without an index each
of those look-ups reads the whole table. Only replays set these columns, so the indexes
are partial (non-null values only): a request that is not a replay writes nothing to them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for column in ("replay_of", "replayed_by"):
        where = sa.text(f"{column} IS NOT NULL")
        op.create_index(
            f"ix_provisioning_log_{column}",
            "provisioning_log",
            [column],
            postgresql_where=where,
            sqlite_where=where,
        )


def downgrade() -> None:
    for column in ("replay_of", "replayed_by"):
        op.drop_index(f"ix_provisioning_log_{column}", table_name="provisioning_log")
