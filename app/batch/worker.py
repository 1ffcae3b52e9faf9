"""The batch worker: claims items from the store and runs each through the executor, the
same path as a single call with the same Idempotency-Key.

It is a thread pool inside every web process for the embedded default (SQLite), or the
`stigg-flow-actions worker` process, as many as wanted, on PostgreSQL. No Flask in here.

An item that fails in a way a retry can fix (Stigg unavailable or rate-limited, the same key
still running elsewhere) goes back to the queue with a delay; its key was released, so the
retry looks for what the failed attempt may have created before creating anything. A worker
that dies leaves its items leased; when the lease lapses another worker takes them over the
same way.

Idle workers wait: on PostgreSQL for a NOTIFY sent when a batch is stored, otherwise for an
in-process signal from the web thread that stored it, with a light poll (one indexed query)
for batches stored by other processes, and always until the next delayed item is due.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from app import metrics
from app.execution import Outcome
from app.request_context import request_of_its_own
from app.runtime import Runtime
from app.store import StoreError
from app.store.batches import NOTIFY_CHANNEL, ClaimedItem

log = logging.getLogger(__name__)

# With no PostgreSQL NOTIFY to wait for, how often an idle worker looks for items that
# another process stored.
POLL_S = 1.0
# With NOTIFY, a safety net only (a missed notification, a lease lapsing).
LISTEN_POLL_S = 30.0
MAX_RETRY_DELAY_S = 60.0


class BatchWorker:
    def __init__(
        self,
        runtime: Runtime,
        *,
        threads: int | None = None,
        owner: str | None = None,
    ):
        settings = runtime.settings.batch
        self.runtime = runtime
        self.batches = runtime.store.batches
        self.threads = threads or settings.worker_threads
        self.lease_s = settings.lease_s
        self.max_attempts = settings.item_max_attempts
        self.owner = owner or f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._running: set[int] = set()
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._threads: list[threading.Thread] = []
        # PostgreSQL notifications that woke this worker (observable in tests and logs).
        self.notifications = 0

    # Lifecycle

    def start(self) -> None:
        """Run in background threads (the embedded worker of a web process)."""
        if self._threads:
            return
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="batch-item")
        loops = [self._dispatch, self._heartbeat]
        if self.batches.notifies:
            loops.append(self._listen)
        for loop in loops:
            thread = threading.Thread(target=loop, name=f"batch-{loop.__name__}", daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info(f"batch worker {self.owner} started with {self.threads} threads")

    def run_forever(self) -> None:
        """Run until stop() (the `worker` command; signal handlers call stop)."""
        self.start()
        while not self._stop.wait(1.0):
            pass
        self.join()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def join(self, timeout_s: float = 30.0) -> None:
        """Wait for the items in hand to finish (their leases lapse otherwise)."""
        for thread in self._threads:
            thread.join(timeout_s)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def notify(self) -> None:
        """Items were stored by this process: look now."""
        self._wake.set()

    def drain(self) -> int:
        """Run every runnable item in the calling thread until none is left; how many ran.
        For tests and tools: deterministic, no threads."""
        ran = 0
        while claimed := self.batches.claim(owner=self.owner, limit=1, lease_s=self.lease_s):
            for item in claimed:
                self.run_item(item)
                ran += 1
        return ran

    # Loops

    def _dispatch(self) -> None:
        slots = threading.Semaphore(self.threads)
        while not self._stop.is_set():
            free = 0
            while slots.acquire(blocking=False):
                free += 1
            try:
                claimed = (
                    self.batches.claim(owner=self.owner, limit=free, lease_s=self.lease_s)
                    if free
                    else []
                )
            except StoreError as error:
                log.error(f"batch worker cannot claim items: {error}")
                claimed = []
            for _ in range(free - len(claimed)):
                slots.release()
            for item in claimed:
                with self._lock:
                    self._running.add(item.id)
                self._pool.submit(self._run_and_release, item, slots)
            if claimed:
                continue
            self._wake.wait(self._idle_wait_s())
            self._wake.clear()

    def _run_and_release(self, item: ClaimedItem, slots: threading.Semaphore) -> None:
        try:
            self.run_item(item)
        except Exception:
            log.exception("batch item crashed the worker thread")
        finally:
            with self._lock:
                self._running.discard(item.id)
            slots.release()
            self._wake.set()  # a slot is free, and the customer's next item may be runnable

    def _idle_wait_s(self) -> float:
        cap = LISTEN_POLL_S if self.batches.notifies else POLL_S
        try:
            due = self.batches.next_due()
        except StoreError:
            return cap
        if due is None:
            return cap
        return max(0.05, min(cap, (due - datetime.now(UTC)).total_seconds()))

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            with self._lock:
                running = list(self._running)
            try:
                self.batches.renew(owner=self.owner, item_ids=running, lease_s=self.lease_s)
            except StoreError as error:
                log.error(f"batch worker cannot renew its leases: {error}")

    def _listen(self) -> None:
        """Turn PostgreSQL notifications into wake-ups (reconnecting as needed)."""
        import psycopg

        url = self.runtime.store.engine.url.set(drivername="postgresql")
        conninfo = url.render_as_string(hide_password=False)
        while not self._stop.is_set():
            try:
                with psycopg.connect(conninfo, autocommit=True) as connection:
                    connection.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    while not self._stop.is_set():
                        for _ in connection.notifies(timeout=1.0, stop_after=1):
                            self.notifications += 1
                            self._wake.set()
            except psycopg.Error as error:
                log.warning(f"batch worker lost its LISTEN connection: {error}")
                self._stop.wait(1.0)

    # One item

    def run_item(self, item: ClaimedItem) -> None:
        with request_of_its_own():
            outcome = self.runtime.executor.run(
                item.operation,
                caller_key_id=item.caller_key_id,
                payload=item.payload,
                idempotency_key=item.idempotency_key,
                batch_item_id=item.id,
                session_options=self.runtime.batch_session_options,
            )
        try:
            if self._retry_later(outcome, item):
                delay_s = retry_delay_s(outcome, item.attempts)
                if self.batches.requeue(
                    item.id,
                    owner=self.owner,
                    not_before=datetime.now(UTC) + timedelta(seconds=delay_s),
                    http_status=outcome.status,
                    body=outcome.body,
                ):
                    metrics.batch_item_retried()
                log.info(
                    f"batch item {item.batch_id}[{item.index}] will be retried in "
                    f"{delay_s:.1f} s (attempt {item.attempts}: {outcome.body.get('code')})"
                )
                return
            if self.batches.finish(
                item.id,
                owner=self.owner,
                succeeded=outcome.succeeded,
                http_status=outcome.status,
                body=outcome.body,
            ):
                metrics.batch_item_finished(succeeded=outcome.succeeded)
        except StoreError as error:
            # The outcome is in the provisioning log; the lease lapses and the item is
            # run again, which finds what this run did (same key).
            log.error(f"could not record batch item {item.id}: {error}")

    def _retry_later(self, outcome: Outcome, item: ClaimedItem) -> bool:
        return (
            not outcome.succeeded
            and outcome.body.get("retryable") is True
            and item.attempts < self.max_attempts
        )


def retry_delay_s(outcome: Outcome, attempts: int) -> float:
    """Retry-After when the failure gave one, else exponential backoff with jitter."""
    retry_after = outcome.headers.get("Retry-After")
    if retry_after and retry_after.isdigit():
        return min(MAX_RETRY_DELAY_S, float(retry_after)) + random.uniform(0, 0.5)
    return min(MAX_RETRY_DELAY_S, 2.0 ** max(0, attempts - 1)) + random.uniform(0, 0.5)


def wait_until_stopped(worker: BatchWorker, signals=("SIGTERM", "SIGINT")) -> None:
    """Run `worker` in this (main) thread until one of `signals` arrives."""
    import signal

    for name in signals:
        signal.signal(getattr(signal, name), lambda *_: worker.stop())
    started = time.monotonic()
    worker.run_forever()
    log.info(f"batch worker {worker.owner} stopped after {time.monotonic() - started:.0f} s")
