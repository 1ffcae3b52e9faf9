"""LOG_RETENTION_DAYS, applied: hourly in every web process, and by `stigg-flow-actions purge`.

What goes and what always stays is decided in app/store/retention.py. Every web process
runs the purge about once an hour (the first time a few minutes after it starts, at a
random moment, so the workers of a deployment do not all start together); when several
run at once they take different rows (PostgreSQL) or queue for SQLite's write lock one
short chunk at a time, and a run that finds nothing costs a few indexed queries.

No Flask here.
"""

from __future__ import annotations

import logging
import random
import threading

from app import metrics
from app.store import Store, StoreError
from app.store.retention import PurgeReport

log = logging.getLogger(__name__)

PURGE_INTERVAL_S = 3600.0
# The first run comes this long after start-up, at random within the range.
FIRST_RUN_S = (60.0, 600.0)


class RetentionJob:
    def __init__(
        self,
        store: Store,
        *,
        days: int,
        interval_s: float = PURGE_INTERVAL_S,
        first_run_s: float | None = None,
    ):
        self.store = store
        self.days = days
        self.interval_s = interval_s
        self.first_run_s = random.uniform(*FIRST_RUN_S) if first_run_s is None else first_run_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="retention", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout_s: float = 10.0) -> None:
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _loop(self) -> None:
        wait_s = self.first_run_s
        while not self._stop.wait(wait_s):
            self.run_once()
            wait_s = self.interval_s

    def run_once(self) -> PurgeReport | None:
        """One purge; None when the database failed (logged; the next run tries again).
        Expired idempotency records go too (their own TTL, not LOG_RETENTION_DAYS)."""
        try:
            expired = self.store.idempotency.purge_expired()
            if expired:
                log.info(f"retention: purged {expired} expired idempotency records")
            report = self.store.retention.purge(days=self.days)
        except StoreError as error:
            log.warning("retention: purge failed: %s", error)
            return None
        record(report)
        if report.log_total or report.batches:
            log.info(
                f"retention: purged {report.log_total} provisioning-log rows and "
                f"{report.batches} batches ({report.batch_items} items) finished before "
                f"{report.cutoff:%Y-%m-%d %H:%M} UTC"
            )
        return report


def record(report: PurgeReport) -> None:
    """Count what a purge deleted in the metrics."""
    metrics.rows_purged(table="provisioning_log", count=report.log_total)
    metrics.rows_purged(table="batches", count=report.batches)
    metrics.rows_purged(table="batch_items", count=report.batch_items)


def describe(report: PurgeReport, *, days: int) -> list[str]:
    """The report as lines for the `purge` command."""
    verb = "would delete" if report.dry_run else "deleted"
    lines = [
        f"LOG_RETENTION_DAYS={days}: rows finished before {report.cutoff:%Y-%m-%d %H:%M:%S} UTC",
        f"provisioning log: {verb} {report.log_total} rows",
    ]
    if report.log_rows:
        lines.append(f"  {'OPERATION':<28}  {'OUTCOME':<10}  ROWS")
        for (operation, outcome), count in sorted(report.log_rows.items()):
            lines.append(f"  {operation:<28}  {outcome:<10}  {count}")
    if report.kept_log_rows:
        lines.append(
            f"  kept: {report.kept_log_rows} older rows still in progress, finished within "
            "the period, or pointed to by an unexpired Idempotency-Key"
        )
    lines.append(f"batches: {verb} {report.batches} ({report.batch_items} items)")
    return lines
