"""SQLite's WAL checkpoints, moved off the request path.

By default SQLite checkpoints inside the COMMIT that takes the write-ahead log past 1,000
pages: that commit copies the log's pages into the database file and fsyncs it, 4-5 ms on
an idle disk here and tens of milliseconds on a busy one, about once every 140 requests
(a request writes about 7 pages). The committing request waits for it, and so does every
writer of every process queued behind it on the writer lock (app/store/sqlite_writer.py,
held until COMMIT returns): a stall that lands in the p99 (bench/README.md).

So the store's connections checkpoint automatically only past `BACKSTOP_PAGES` (in case
this thread is stopped or falls far behind), and a thread per process runs a PASSIVE
checkpoint every `INTERVAL_S` on a connection of its own. A PASSIVE checkpoint takes no
writer lock: requests keep appending to the log while it copies and fsyncs, and SQLite
starts the log over from its beginning at the first write after a complete one. What
survives a crash is unchanged (with WAL and `synchronous = NORMAL` a commit is in the log,
not yet in the database file, either way).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from typing import Any

from sqlalchemy import Engine, event

log = logging.getLogger(__name__)

INTERVAL_S = 0.5
# About 40 MB of log at SQLite's 4 KiB pages; at the service's write rate here, tens of
# seconds of writes.
BACKSTOP_PAGES = 10_000
# A checkpoint that keeps failing (the file is gone, the disk is full) is logged at most
# this often.
FAILURE_LOG_INTERVAL_S = 60.0


class WalCheckpointer:
    """Checkpoints one SQLite file from a background thread of the process using it."""

    def __init__(self, database_path: str, *, interval_s: float = INTERVAL_S) -> None:
        self.database_path = database_path
        self.interval_s = interval_s
        self.checkpoints = 0  # checkpoints that copied at least one page
        self._connection: sqlite3.Connection | None = None
        self._thread_pid: int | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._last_failure_logged = float("-inf")

    @classmethod
    def attach(cls, engine: Engine, **options: Any) -> WalCheckpointer | None:
        """A checkpointer for the engine's file, started by the engine's first connection
        in each process; None unless the engine is on a SQLite file."""
        url = engine.url
        if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
            return None
        checkpointer = cls(url.database, **options)

        @event.listens_for(engine, "connect")
        def leave_checkpoints_to_the_thread(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_PAGES}")
            cursor.close()
            checkpointer.start()

        return checkpointer

    def start(self) -> None:
        """Start this process's thread (a thread does not survive gunicorn's fork)."""
        with self._lock:
            if self._thread_pid == os.getpid() or self._stop.is_set():
                return
            self._thread_pid = os.getpid()
            self._connection = None  # a connection must not cross a fork either
            self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
            self._thread.start()

    def checkpoint(self) -> tuple[int, int]:
        """One PASSIVE checkpoint: (pages in the log, pages copied into the database)."""
        if self._connection is None:
            self._connection = sqlite3.connect(
                self.database_path, isolation_level=None, check_same_thread=False
            )
        _busy, in_log, copied = self._connection.execute(
            "PRAGMA wal_checkpoint(PASSIVE)"
        ).fetchone()
        if copied > 0:
            self.checkpoints += 1
        return in_log, copied

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            thread = self._thread if self._thread_pid == os.getpid() else None
        if thread is not None:
            thread.join(timeout=5)
        if self._connection is not None and self._thread_pid == os.getpid():
            self._connection.close()
            self._connection = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.checkpoint()
            except sqlite3.Error as error:
                now = time.monotonic()
                if now - self._last_failure_logged >= FAILURE_LOG_INTERVAL_S:
                    self._last_failure_logged = now
                    log.warning("SQLite checkpoint of %s failed: %s", self.database_path, error)
