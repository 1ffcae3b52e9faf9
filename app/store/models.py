"""Tables for idempotency records, the provisioning log and batches.

The schema is created by the Alembic revisions in ``migrations/``, never by
``metadata.create_all``; these classes describe it for queries (and for the test that
checks the revisions and the models agree).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

LOG_OUTCOMES = ("in_progress", "succeeded", "rejected", "failed", "replayed")


def utc_now() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    PostgreSQL stores ``timestamptz``. SQLite has no time zones: values are stored as naive
    UTC in one fixed text format, so SQL comparisons (``locked_until < :now``) still order
    correctly, and they come back marked as UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class IdempotencyRecord(Base):
    """One Idempotency-Key of one caller for one operation.

    ``id`` is the claim handle given to the worker that executes the request. Taking over a
    stale claim assigns a new one, so a worker that lost its claim can neither complete nor
    release it.
    """

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        UniqueConstraint(
            "caller_key_id", "operation", "idempotency_key", name="uq_idempotency_keys_scope"
        ),
        Index("ix_idempotency_keys_expires_at", "expires_at"),
        CheckConstraint("state IN ('in_progress', 'completed')", name="ck_idempotency_keys_state"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    caller_key_id: Mapped[str] = mapped_column(String(64))
    operation: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[str | None] = mapped_column(Text)
    request_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    locked_until: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


def _index_of_values(column: str) -> Index:
    """An index of the rows where `column` has a value."""
    where = text(f"{column} IS NOT NULL")
    return Index(
        f"ix_provisioning_log_{column}", column, postgresql_where=where, sqlite_where=where
    )


class ProvisioningLogEntry(Base):
    """One accepted request: what was asked, what Stigg did, how it ended."""

    __tablename__ = "provisioning_log"
    __table_args__ = (
        Index("ix_provisioning_log_created_at", "created_at"),
        Index("ix_provisioning_log_outcome_created_at", "outcome", "created_at"),
        Index("ix_provisioning_log_operation_created_at", "operation", "created_at"),
        # Partial (non-null values only): many rows leave these columns empty, and an
        # index a row has no value for costs its insert nothing (migration 0005). Each is
        # only ever asked for a value, which implies not null.
        *(
            _index_of_values(column)
            for column in (
                "salesforce_account_id",
                "salesforce_opportunity_id",
                "correlation_id",
                "batch_item_id",
                # Only replays set these two (retention's deletes look rows up by them).
                "replay_of",
                "replayed_by",
            )
        ),
        CheckConstraint(
            "outcome IN ('in_progress', 'succeeded', 'rejected', 'failed', 'replayed')",
            name="ck_provisioning_log_outcome",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # Ours (a UUID), never the caller's: see correlation_id.
    request_id: Mapped[str] = mapped_column(String(64), unique=True)
    # The caller's X-Request-Id, if it sent one: for finding its requests, not unique.
    correlation_id: Mapped[str | None] = mapped_column(String(128))
    operation: Mapped[str] = mapped_column(String(64))
    caller_key_id: Mapped[str] = mapped_column(String(64))
    salesforce_account_id: Mapped[str | None] = mapped_column(String(64))
    salesforce_opportunity_id: Mapped[str | None] = mapped_column(String(64))
    stigg_customer_id: Mapped[str | None] = mapped_column(String(255))
    stigg_subscription_id: Mapped[str | None] = mapped_column(String(255))
    stigg_credit_grant_id: Mapped[str | None] = mapped_column(String(255))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    outcome: Mapped[str] = mapped_column(String(16))
    http_status: Mapped[int | None] = mapped_column(Integer)
    error_code: Mapped[str | None] = mapped_column(String(64))
    stigg_error_code: Mapped[str | None] = mapped_column(String(128))
    message: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    payload: Mapped[Any | None] = mapped_column(JSON)
    replay_of: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("provisioning_log.id", name="fk_provisioning_log_replay_of")
    )
    # Set on the original when `replay` re-runs it: the entry that did.
    replayed_by: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("provisioning_log.id", name="fk_provisioning_log_replayed_by")
    )
    # The batch item this request ran for (None for a single call).
    batch_item_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


BATCH_ITEM_STATUSES = ("QUEUED", "RUNNING", "SUCCEEDED", "FAILED")


class Batch(Base):
    """Up to BATCH_MAX_ITEMS single actions submitted together by one caller."""

    __tablename__ = "batches"
    __table_args__ = (Index("ix_batches_created_at", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    caller_key_id: Mapped[str] = mapped_column(String(64))
    item_count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class BatchItem(Base):
    """One item of a batch: the single action it stands for, and where it is.

    The table is the queue: workers claim QUEUED items (and RUNNING ones whose lease
    lapsed) in `id` order, never an item while an earlier unfinished item of the same
    `entity_key` (the Stigg customer) exists, so one customer's items run one at a time in
    submission order.
    """

    __tablename__ = "batch_items"
    __table_args__ = (
        UniqueConstraint("batch_id", "item_index", name="uq_batch_items_position"),
        Index("ix_batch_items_status_id", "status", "id"),
        Index("ix_batch_items_entity_key_id", "entity_key", "id"),
        CheckConstraint(
            "status IN ('QUEUED', 'RUNNING', 'SUCCEEDED', 'FAILED')",
            name="ck_batch_items_status",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    batch_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("batches.id", name="fk_batch_items_batch_id")
    )
    item_index: Mapped[int] = mapped_column(Integer)
    operation: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str] = mapped_column(String(255))
    reference: Mapped[str | None] = mapped_column(String(255))
    payload: Mapped[Any | None] = mapped_column(JSON)
    entity_key: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    http_status: Mapped[int | None] = mapped_column(Integer)
    result: Mapped[Any | None] = mapped_column(JSON)
    error: Mapped[Any | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
