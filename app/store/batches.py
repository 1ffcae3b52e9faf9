"""Batches and their items: the items table is the work queue.

No job library: an item's state lives in one row, and every change of hands is one
statement whose row count says who won. Workers claim in `id` order; on PostgreSQL with
`FOR UPDATE SKIP LOCKED`, so claimers never wait on each other; on SQLite every write
transaction holds the database's single write lock (BEGIN IMMEDIATE, see db.py), so a
claim is atomic there too. An item is never claimed while an earlier unfinished item of
the same entity (Stigg customer) exists: a customer's items run one at a time, in
submission order. A claim is a lease; a worker renews the leases of what it runs, and an
item whose lease lapsed (its worker died) is claimed again by another.

On PostgreSQL, creating a batch sends a NOTIFY in the same transaction, so idle workers
(LISTENing) wake the moment the items are committed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Engine,
    Integer,
    and_,
    bindparam,
    exists,
    func,
    insert,
    or_,
    select,
    text,
    update,
)

from app.store.errors import transaction
from app.store.models import Batch, BatchItem, UTCDateTime, utc_now
from app.store.provisioning_log import redact

NOTIFY_CHANNEL = "stigg_flow_actions_batch_items"
# The operation a batch submission is logged (and keyed) under.
CREATE_BATCH_OPERATION = "createBatch"
UNFINISHED = ("QUEUED", "RUNNING")

batches = Batch.__table__
items = BatchItem.__table__


def _candidates():
    """Runnable items, oldest first: QUEUED and due, or RUNNING with a lapsed lease; never
    one behind an unfinished earlier item of the same entity. Built once (bound params)."""
    earlier = items.alias("earlier")
    earlier_unfinished = exists().where(
        earlier.c.entity_key == items.c.entity_key,
        earlier.c.id < items.c.id,
        earlier.c.status.in_(UNFINISHED),
    )
    now = bindparam("now", type_=UTCDateTime())
    runnable = or_(
        and_(
            items.c.status == "QUEUED", or_(items.c.not_before.is_(None), items.c.not_before <= now)
        ),
        and_(items.c.status == "RUNNING", items.c.lease_until < now),
    )
    return (
        select(items.c.id)
        .where(runnable, ~earlier_unfinished)
        .order_by(items.c.id)
        .limit(bindparam("limit", type_=Integer))
    )


_CANDIDATES = _candidates()
# PostgreSQL: claimers skip each other's candidate rows instead of waiting for them.
_CANDIDATES_SKIP_LOCKED = _CANDIDATES.with_for_update(skip_locked=True, of=items)


@dataclass(frozen=True)
class NewItem:
    index: int
    operation: str
    idempotency_key: str
    reference: str | None
    payload: Any
    entity_key: str | None
    # An item refused at submission is stored finished: (http_status, error body).
    refused: tuple[int, dict] | None = None


@dataclass(frozen=True)
class ClaimedItem:
    id: int
    batch_id: str
    index: int
    operation: str
    idempotency_key: str
    payload: Any
    attempts: int
    caller_key_id: str


class BatchStore:
    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = utc_now) -> None:
        self._engine = engine
        self._clock = clock
        self.notifies = engine.dialect.name == "postgresql"

    def create(self, *, batch_id: str, caller_key_id: str, new_items: list[NewItem]) -> None:
        """Store the batch and all its items in one transaction (and wake the workers)."""
        now = self._clock()
        rows = []
        for item in new_items:
            finished = item.refused is not None
            rows.append(
                {
                    "batch_id": batch_id,
                    "item_index": item.index,
                    "operation": item.operation,
                    "idempotency_key": item.idempotency_key,
                    "reference": item.reference,
                    "payload": redact(item.payload),
                    "entity_key": item.entity_key,
                    "status": "FAILED" if finished else "QUEUED",
                    "attempts": 0,
                    "http_status": item.refused[0] if finished else None,
                    "error": item.refused[1] if finished else None,
                    "created_at": now,
                    "finished_at": now if finished else None,
                }
            )
        with transaction(self._engine) as connection:
            connection.execute(
                insert(batches),
                {
                    "id": batch_id,
                    "caller_key_id": caller_key_id,
                    "item_count": len(new_items),
                    "created_at": now,
                },
            )
            if rows:
                connection.execute(insert(items), rows)
            if self.notifies:
                connection.execute(text(f"NOTIFY {NOTIFY_CHANNEL}"))

    def get(self, batch_id: str) -> tuple[dict, list[dict]] | None:
        """The batch and its items in submission order, or None."""
        with transaction(self._engine) as connection:
            batch = (
                connection.execute(select(batches).where(batches.c.id == batch_id))
                .mappings()
                .first()
            )
            if batch is None:
                return None
            rows = (
                connection.execute(
                    select(items).where(items.c.batch_id == batch_id).order_by(items.c.item_index)
                )
                .mappings()
                .all()
            )
        return dict(batch), [dict(row) for row in rows]

    def claim(self, *, owner: str, limit: int, lease_s: float) -> list[ClaimedItem]:
        """Take up to `limit` runnable items, oldest first, leased to `owner`."""
        now = self._clock()
        candidates = _CANDIDATES_SKIP_LOCKED if self.notifies else _CANDIDATES
        with transaction(self._engine) as connection:
            ids = list(connection.execute(candidates, {"now": now, "limit": limit}).scalars())
            if not ids:
                return []
            connection.execute(
                update(items)
                .where(items.c.id.in_(ids))
                .values(
                    status="RUNNING",
                    lease_owner=owner,
                    lease_until=now + timedelta(seconds=lease_s),
                    attempts=items.c.attempts + 1,
                    started_at=func.coalesce(items.c.started_at, now),
                )
            )
            rows = connection.execute(
                select(items, batches.c.caller_key_id)
                .join(batches, batches.c.id == items.c.batch_id)
                .where(items.c.id.in_(ids))
                .order_by(items.c.id)
            ).mappings()
            return [
                ClaimedItem(
                    id=row["id"],
                    batch_id=row["batch_id"],
                    index=row["item_index"],
                    operation=row["operation"],
                    idempotency_key=row["idempotency_key"],
                    payload=row["payload"],
                    attempts=row["attempts"],
                    caller_key_id=row["caller_key_id"],
                )
                for row in rows
            ]

    def renew(self, *, owner: str, item_ids: Iterable[int], lease_s: float) -> int:
        ids = list(item_ids)
        if not ids:
            return 0
        with transaction(self._engine) as connection:
            return connection.execute(
                update(items)
                .where(
                    items.c.id.in_(ids), items.c.lease_owner == owner, items.c.status == "RUNNING"
                )
                .values(lease_until=self._clock() + timedelta(seconds=lease_s))
            ).rowcount

    def finish(
        self,
        item_id: int,
        *,
        owner: str,
        succeeded: bool,
        http_status: int,
        body: dict,
    ) -> bool:
        """Record a final outcome; False if `owner` lost the lease meanwhile."""
        values = {
            "status": "SUCCEEDED" if succeeded else "FAILED",
            "http_status": http_status,
            "result": body if succeeded else None,
            "error": None if succeeded else body,
            "finished_at": self._clock(),
            "lease_owner": None,
            "lease_until": None,
            "not_before": None,
        }
        return self._update_leased(item_id, owner, values)

    def requeue(
        self, item_id: int, *, owner: str, not_before: datetime, http_status: int, body: dict
    ) -> bool:
        """Back to the queue after a retryable failure, not to run before `not_before`; the
        last error stays visible meanwhile."""
        values = {
            "status": "QUEUED",
            "http_status": http_status,
            "error": body,
            "not_before": not_before,
            "lease_owner": None,
            "lease_until": None,
        }
        return self._update_leased(item_id, owner, values)

    def _update_leased(self, item_id: int, owner: str, values: dict) -> bool:
        with transaction(self._engine) as connection:
            return (
                connection.execute(
                    update(items)
                    .where(
                        items.c.id == item_id,
                        items.c.lease_owner == owner,
                        items.c.status == "RUNNING",
                    )
                    .values(**values)
                ).rowcount
                == 1
            )

    def next_due(self) -> datetime | None:
        """When a waiting item next becomes runnable (a delayed retry, a lapsing lease)."""
        with transaction(self._engine) as connection:
            retry = connection.execute(
                select(func.min(items.c.not_before)).where(items.c.status == "QUEUED")
            ).scalar()
            lease = connection.execute(
                select(func.min(items.c.lease_until)).where(items.c.status == "RUNNING")
            ).scalar()
        due = [moment for moment in (retry, lease) if moment is not None]
        return _as_utc(min(due)) if due else None

    def queue_ahead(self, up_to_item_id: int) -> dict[str, int]:
        """Unfinished items with an id up to `up_to_item_id` (this batch and everything
        queued before it), by operation: what must run before the batch completes."""
        with transaction(self._engine) as connection:
            rows = connection.execute(
                select(items.c.operation, func.count())
                .where(items.c.status.in_(UNFINISHED), items.c.id <= up_to_item_id)
                .group_by(items.c.operation)
            ).all()
        return {operation: count for operation, count in rows}

    def unfinished_in(self, batch_id: str) -> int:
        """How many of the batch's items are QUEUED or RUNNING: what a caller waiting for
        the batch polls (the whole batch is read once, for the answer)."""
        with transaction(self._engine) as connection:
            return connection.execute(
                select(func.count())
                .select_from(items)
                .where(items.c.batch_id == batch_id, items.c.status.in_(UNFINISHED))
            ).scalar_one()

    def unfinished_counts(self) -> dict[str, int]:
        """How many items are QUEUED and RUNNING (for the metrics: an index range scan)."""
        with transaction(self._engine) as connection:
            rows = connection.execute(
                select(items.c.status, func.count())
                .where(items.c.status.in_(UNFINISHED))
                .group_by(items.c.status)
            ).all()
        return {status: count for status, count in rows}

    def oldest_queued_at(self) -> datetime | None:
        with transaction(self._engine) as connection:
            oldest = connection.execute(
                select(func.min(items.c.created_at)).where(items.c.status == "QUEUED")
            ).scalar()
        return _as_utc(oldest) if oldest is not None else None


def _as_utc(moment: datetime | str) -> datetime:
    # Aggregates bypass the column type's result processing (SQLite answers text).
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return UTCDateTime().process_result_value(moment, None)
