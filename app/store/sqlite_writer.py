"""SQLite connections whose write transactions queue on a file lock, not on SQLite's sleeps.

SQLite lets one connection write at a time. A connection that finds the write lock taken
waits in SQLite's busy handler, which sleeps 1, 2, 5, 10, 15, 20... ms between attempts
whatever the holder does: a transaction that holds the lock for a tenth of a millisecond
still costs a loser 1 ms, then 3, then 8. Under gunicorn's several worker processes that
was most of the added p99 latency (bench/README.md).

So before `BEGIN IMMEDIATE` each connection takes an exclusive `flock` on a file beside the
database, released when the transaction commits or rolls back. A waiter asks again after
50 µs, doubling up to 1 ms, so it gets the lock within a fraction of a millisecond of its
release; it gives up after the same time SQLite's busy timeout would (a StoreError, the
pipeline's retryable 503), so a stuck holder never hangs requests. SQLite's own locking
still applies underneath: another program writing to the file waits as before.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time

# Between two tries for the lock held by another connection: from FIRST_PAUSE_S, doubling.
FIRST_PAUSE_S = 0.00005
LONGEST_PAUSE_S = 0.001


class WriterLockedConnection(sqlite3.Connection):
    """A sqlite3 connection (the `factory` of `sqlite3.connect`) whose transactions begin
    with `begin_immediate()`. Without `use_writer_lock` (in-memory databases) it only
    begins them."""

    _lock_fd: int | None = None
    _lock_held = False
    give_up_after_s = 10.0

    def use_writer_lock(self, path: str, *, give_up_after_s: float) -> None:
        self._lock_fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.give_up_after_s = give_up_after_s

    def begin_immediate(self) -> None:
        self._take_writer_lock()
        try:
            self.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._release_writer_lock()
            raise

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._release_writer_lock()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._release_writer_lock()

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # also releases the lock
                self._lock_fd = None
                self._lock_held = False

    def _take_writer_lock(self) -> None:
        if self._lock_fd is None:
            return
        pause = FIRST_PAUSE_S
        deadline = None
        while True:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._lock_held = True
                return
            except BlockingIOError:
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.give_up_after_s
                elif now >= deadline:
                    # The message SQLite gives when its busy timeout runs out.
                    raise sqlite3.OperationalError("database is locked") from None
                time.sleep(pause)
                pause = min(pause * 2, LONGEST_PAUSE_S)

    def _release_writer_lock(self) -> None:
        if self._lock_held:
            self._lock_held = False
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
