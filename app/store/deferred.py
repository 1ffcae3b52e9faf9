"""Writes that need not hold up an answer: a finished request's outcome.

A request's log row must be committed before any work (so a crash mid-way leaves it
visible and replayable), but its outcome can follow the answer by a few milliseconds: if
the process dies in between, the row simply stays `in_progress`, exactly as if it had died
mid-request, and the machinery for that case (a claim that lapses, a retry or `replay`
whose create-once look-up finds what was created) already makes it safe.

Deferred writes ride along the next write transaction this process opens for requests
(app/store/group_commit.py: one commit for the new requests' rows and the last ones'
outcomes instead of one each), and a background thread commits whatever no request picked
up within `delay_s`. `flush()` commits them at once: reads of the log and the idempotency
records in this process call it first, and so does a worker that is stopping.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine

from app.store.driver_transaction import DriverConnection, driver_transaction
from app.store.errors import StoreError

log = logging.getLogger(__name__)

# One deferred write: statements run on the connection of a transaction it did not open,
# the driver's (app/store/driver_transaction.py), like every write a request makes: on
# PostgreSQL the thread's commit is one message too.
Write = Callable[[DriverConnection], object]

# After a failed background commit (the database is down), wait this long before the next.
RETRY_AFTER_FAILURE_S = 1.0

# The background thread goes back to waiting to be woken only after finding nothing
# pending for this long. Under steady traffic a request's outcome is often carried before
# the thread looks, so a thread that went idle after one empty look was woken again by
# nearly every few requests (`add`'s Event.set, a cross-CPU wake-up: 1-2% of a service
# worker's CPU at 8 connections in py-spy). Looking every delay_s for this long after the
# last outcome costs a few wake-ups a second, and only after traffic.
IDLE_AFTER_S = 1.0


class DeferredWrites:
    """Thread-safe. With `delay_s` 0 nothing is deferred: `add` writes at once."""

    def __init__(self, engine: Engine, *, delay_s: float) -> None:
        self._engine = engine
        self.delay_s = delay_s
        self._pending: list[Write] = []
        # When the oldest pending write was added: the background thread commits only what
        # waited delay_s, so under load the requests carry nearly all of them.
        self._oldest = 0.0
        self._lock = threading.Lock()
        # Held while flush() commits, so a flush that finds nothing pending returns only
        # once the background thread's commit in progress is done.
        self._flushing = threading.Lock()
        self._wake = threading.Event()
        # True while the background thread waits for a first pending write: only then does
        # `add` wake it (a wake-up per request cost more CPU than the request's statements).
        self._flusher_idle = True
        self._flusher_pid: int | None = None
        self._closed = False

    def add(self, write: Write) -> None:
        """Commit `write` soon: with the next request's transaction, or within delay_s.
        Raises StoreError only when nothing is deferred (delay_s 0) and the write fails."""
        if self.delay_s <= 0 or self._closed:
            with driver_transaction(self._engine) as connection:
                write(connection)
            return
        with self._lock:
            if not self._pending:
                self._oldest = time.monotonic()
            self._pending.append(write)
            self._start_flusher()
            wake, self._flusher_idle = self._flusher_idle, False
        if wake:
            # Otherwise the background thread is already waiting for the oldest pending
            # write to fall due, and looks again then.
            self._wake.set()

    def take(self) -> list[Write]:
        """The pending writes, for a transaction about to be committed (GroupCommit). What
        it cannot commit goes back with `give_back`."""
        with self._lock:
            taken, self._pending = self._pending, []
        return taken

    def give_back(self, writes: list[Write]) -> None:
        """Writes taken and not committed: the background thread commits them on their own
        (so a write that cannot be committed never fails another request twice)."""
        if writes:
            self._requeue(writes)

    def flush(self) -> None:
        """Commit every pending write now. Raises StoreError if the database is down (they
        stay queued)."""
        with self._flushing:
            with self._lock:
                taken, self._pending = self._pending, []
            if taken:
                self._commit(taken)

    def pending(self) -> int:
        return len(self._pending)

    def close(self) -> None:
        """Commit what is pending and write anything added later at once (a stopping
        process). A database that is down loses the pending outcomes (logged): their rows
        stay `in_progress`, as after a crash."""
        self._closed = True
        self._wake.set()
        try:
            self.flush()
        except StoreError as error:
            log.error("could not record %d request outcome(s) at exit: %s", self.pending(), error)

    def _commit(self, writes: list[Write]) -> None:
        """One transaction for all of them. If one of them is refused by the database (a
        bug, not an outage), each is retried alone and the refused one is dropped."""
        try:
            with driver_transaction(self._engine) as connection:
                for write in writes:
                    write(connection)
        except StoreError:
            self._requeue(writes)
            raise
        except Exception:
            if len(writes) == 1:
                log.exception("a request outcome could not be recorded; its row stays in_progress")
                return
            for index, write in enumerate(writes):
                try:
                    self._commit([write])
                except StoreError:
                    # The database went down meanwhile: this one is queued again, and so
                    # are those not tried yet.
                    self._requeue(writes[index + 1 :])
                    raise

    def _requeue(self, writes: list[Write]) -> None:
        with self._lock:
            if not self._pending:
                self._oldest = time.monotonic()
            self._pending[:0] = writes
            self._start_flusher()
            self._flusher_idle = False
        self._wake.set()

    def _start_flusher(self) -> None:
        # Called with the lock held. Per process: a thread does not survive gunicorn's fork.
        if self._flusher_pid == os.getpid():
            return
        self._flusher_pid = os.getpid()
        threading.Thread(target=self._run, name="deferred-writes", daemon=True).start()
        atexit.register(self.close)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._closed:
                return
            try:
                self._flush_when_due()
            except StoreError as error:
                log.error("could not record request outcomes, will retry: %s", error)
                time.sleep(RETRY_AFTER_FAILURE_S)
                self._wake.set()
            except Exception:
                log.exception("deferred writes")

    def _flush_when_due(self) -> None:
        """Commit the pending writes once the oldest has waited delay_s for a request to
        carry it; return when none has been pending for a whole delay_s.

        Under load the requests carry nearly every write, and this thread only looks: once
        per delay_s, without being woken by each request's write (a write added meanwhile
        is at most delay_s old when it looks, so none waits longer). It stops looking once
        it has found nothing pending for IDLE_AFTER_S."""
        nothing_since: float | None = None
        while not self._closed:
            with self._lock:
                now = time.monotonic()
                if not self._pending:
                    if nothing_since is None:
                        nothing_since = now
                    elif now - nothing_since >= IDLE_AFTER_S:
                        self._flusher_idle = True
                        return
                    wait_s = self.delay_s
                else:
                    nothing_since = None
                    wait_s = self._oldest + self.delay_s - now
            if wait_s > 0:
                time.sleep(wait_s)
                continue
            self.flush()
