"""Retention: finished provisioning-log rows and finished batches older than
LOG_RETENTION_DAYS are deleted, in short transactions of a bounded number of rows.

What is never deleted:

- a row still `in_progress` (a request that crashed mid-way: it is there to be replayed);
- a row that an unexpired idempotency record points to (`idempotency_keys.request_id`):
  records keep their own TTL (IDEMPOTENCY_TTL_S), and their row stays as long as they do;
- a row that a kept `in_progress` row names as its replay (`replayed_by`), which `replay`
  follows to tell whether the crashed request was already re-run;
- a batch with an item not finished, or finished within the retention period, or whose
  creating Idempotency-Key can still be replayed (the replay answers with the batch).

A row is old when it was created and finished before the cut-off. The two self-references
(`replay_of`, `replayed_by`) of rows that stay are cleared when the row they name goes, in
the same transaction as the delete, so no foreign key ever stops a purge.

Each chunk is one transaction: select up to `chunk_rows` rows, clear references to them,
delete them. On PostgreSQL the selected rows are locked with SKIP LOCKED, so two processes
purging at once take different rows and never wait on each other or on a request; on
SQLite a chunk holds the database's write lock for a few milliseconds, and the pause
between chunks lets waiting requests in.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, delete, exists, func, or_, select, update

from app.store.batches import CREATE_BATCH_OPERATION, UNFINISHED
from app.store.errors import transaction
from app.store.models import (
    Batch,
    BatchItem,
    IdempotencyRecord,
    ProvisioningLogEntry,
    utc_now,
)

LOG_CHUNK_ROWS = 500
# Batches per transaction: each brings up to BATCH_MAX_ITEMS items (200 by default).
BATCH_CHUNK = 10
CHUNK_PAUSE_S = 0.05

entries = ProvisioningLogEntry.__table__
records = IdempotencyRecord.__table__
batches = Batch.__table__
items = BatchItem.__table__


@dataclass
class PurgeReport:
    """What a purge deleted, or (dry run) would delete."""

    cutoff: datetime
    dry_run: bool
    # (operation, outcome) -> rows
    log_rows: Counter[tuple[str, str]] = field(default_factory=Counter)
    # Rows older than the cut-off that stay (in progress, or still pointed to).
    kept_log_rows: int = 0
    batches: int = 0
    batch_items: int = 0

    @property
    def log_total(self) -> int:
        return sum(self.log_rows.values())


class Retention:
    """Deletes what LOG_RETENTION_DAYS lets go. Database failures raise StoreError."""

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._sleep = sleep
        self._postgres = engine.dialect.name == "postgresql"

    def cutoff(self, days: int) -> datetime:
        return self._clock() - timedelta(days=days)

    def preview(self, *, days: int) -> PurgeReport:
        """What `purge(days=days)` would delete now, deleting nothing."""
        now = self._clock()
        cutoff = now - timedelta(days=days)
        report = PurgeReport(cutoff=cutoff, dry_run=True)
        with transaction(self._engine) as connection:
            rows = connection.execute(
                select(entries.c.operation, entries.c.outcome, func.count())
                .where(self._old_log_row(cutoff, now))
                .group_by(entries.c.operation, entries.c.outcome)
            ).all()
            report.log_rows.update({(operation, outcome): n for operation, outcome, n in rows})
            report.kept_log_rows = self._count_old(connection, cutoff) - report.log_total
            old = self._old_batch(connection, cutoff, now)
            report.batches = connection.execute(
                select(func.count()).select_from(batches).where(old)
            ).scalar_one()
            report.batch_items = connection.execute(
                select(func.count())
                .select_from(items)
                .where(items.c.batch_id.in_(select(batches.c.id).where(old)))
            ).scalar_one()
        return report

    def purge(
        self, *, days: int, chunk_rows: int = LOG_CHUNK_ROWS, pause_s: float = CHUNK_PAUSE_S
    ) -> PurgeReport:
        """Delete what is older than `days` days, chunk by chunk; returns what went."""
        now = self._clock()
        cutoff = now - timedelta(days=days)
        report = PurgeReport(cutoff=cutoff, dry_run=False)
        while self._purge_log_chunk(report, cutoff, now, chunk_rows) == chunk_rows:
            self._sleep(pause_s)
        while self._purge_batch_chunk(report, cutoff, now, BATCH_CHUNK) == BATCH_CHUNK:
            self._sleep(pause_s)
        with transaction(self._engine) as connection:
            report.kept_log_rows = self._count_old(connection, cutoff)
        return report

    # The provisioning log

    def _old_log_row(self, cutoff: datetime, now: datetime):
        # The records that may point at an old row were made before the cut-off: a claim
        # comes after its row is started and before it is finished (and a takeover keeps
        # the record's creation time). Not correlated: evaluated once per statement.
        pinned = select(records.c.request_id).where(
            records.c.expires_at > now, records.c.created_at < cutoff
        )
        replayers = entries.alias("replayer")
        awaited = select(replayers.c.replayed_by).where(
            replayers.c.outcome == "in_progress", replayers.c.replayed_by.is_not(None)
        )
        return and_(
            entries.c.created_at < cutoff,
            entries.c.outcome != "in_progress",
            entries.c.finished_at < cutoff,
            entries.c.request_id.not_in(pinned),
            entries.c.id.not_in(awaited),
        )

    def _count_old(self, connection, cutoff: datetime) -> int:
        return connection.execute(
            select(func.count()).select_from(entries).where(entries.c.created_at < cutoff)
        ).scalar_one()

    def _purge_log_chunk(
        self, report: PurgeReport, cutoff: datetime, now: datetime, limit: int
    ) -> int:
        query = (
            select(entries.c.id, entries.c.operation, entries.c.outcome)
            .where(self._old_log_row(cutoff, now))
            .order_by(entries.c.created_at)
            .limit(limit)
        )
        if self._postgres:
            query = query.with_for_update(skip_locked=True, of=entries)
        with transaction(self._engine) as connection:
            rows = connection.execute(query).all()
            if not rows:
                return 0
            ids = [row.id for row in rows]
            connection.execute(
                update(entries).where(entries.c.replay_of.in_(ids)).values(replay_of=None)
            )
            connection.execute(
                update(entries).where(entries.c.replayed_by.in_(ids)).values(replayed_by=None)
            )
            connection.execute(delete(entries).where(entries.c.id.in_(ids)))
        report.log_rows.update((row.operation, row.outcome) for row in rows)
        return len(rows)

    # Batches

    def _old_batch(self, connection, cutoff: datetime, now: datetime):
        not_done = exists().where(
            items.c.batch_id == batches.c.id,
            or_(items.c.status.in_(UNFINISHED), items.c.finished_at >= cutoff),
        )
        condition = and_(batches.c.created_at < cutoff, ~not_done)
        replayable = self._replayable_batch_ids(connection, cutoff, now)
        if replayable:
            condition = and_(condition, batches.c.id.not_in(replayable))
        return condition

    def _replayable_batch_ids(self, connection, cutoff: datetime, now: datetime) -> list[str]:
        """Batches whose createBatch Idempotency-Key can still be replayed. Only a record
        made before the cut-off can name an old batch: usually none (the TTL is shorter)."""
        bodies = connection.execute(
            select(records.c.response_body).where(
                records.c.operation == CREATE_BATCH_OPERATION,
                records.c.expires_at > now,
                records.c.created_at < cutoff,
                records.c.response_body.is_not(None),
            )
        ).scalars()
        found = []
        for body in bodies:
            batch_id = _batch_id_of(body)
            if batch_id is not None:
                found.append(batch_id)
        return found

    def _purge_batch_chunk(
        self, report: PurgeReport, cutoff: datetime, now: datetime, limit: int
    ) -> int:
        with transaction(self._engine) as connection:
            query = (
                select(batches.c.id)
                .where(self._old_batch(connection, cutoff, now))
                .order_by(batches.c.created_at)
                .limit(limit)
            )
            if self._postgres:
                query = query.with_for_update(skip_locked=True, of=batches)
            ids = list(connection.execute(query).scalars())
            if not ids:
                return 0
            report.batch_items += connection.execute(
                delete(items).where(items.c.batch_id.in_(ids))
            ).rowcount
            report.batches += connection.execute(
                delete(batches).where(batches.c.id.in_(ids))
            ).rowcount
        return len(ids)


def _batch_id_of(body: Any) -> str | None:
    try:
        answer = json.loads(body)
    except (TypeError, ValueError):
        return None
    batch_id = answer.get("batchId") if isinstance(answer, dict) else None
    return batch_id if isinstance(batch_id, str) else None
