"""SQLite writers queue on a file lock beside the database (app/store/sqlite_writer.py)."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from app.store import Store, StoreError
from app.store import db as db_module
from app.store.sqlite_writer import WriterLockedConnection


def connect(path, *, give_up_after_s: float = 5.0) -> WriterLockedConnection:
    connection = sqlite3.connect(
        path, factory=WriterLockedConnection, isolation_level=None, check_same_thread=False
    )
    connection.use_writer_lock(f"{path}-writer.lock", give_up_after_s=give_up_after_s)
    return connection


@pytest.fixture
def database(tmp_path):
    path = str(tmp_path / "writers.db")
    setup = sqlite3.connect(path, isolation_level=None)
    setup.execute("PRAGMA journal_mode = WAL")
    setup.execute("CREATE TABLE t (n INTEGER)")
    setup.close()
    return path


def test_a_second_writer_waits_for_the_first_to_commit_then_writes(database):
    first, second = connect(database), connect(database)
    first.begin_immediate()
    first.execute("INSERT INTO t VALUES (1)")
    began = threading.Event()

    def write_second():
        second.begin_immediate()
        began.set()
        second.execute("INSERT INTO t VALUES (2)")
        second.commit()

    writer = threading.Thread(target=write_second)
    writer.start()
    assert not began.wait(0.3)  # the lock is held: it waits (SQLite's lock alone would too)
    first.commit()
    writer.join(timeout=10)

    assert began.is_set()
    assert [n for (n,) in first.execute("SELECT n FROM t ORDER BY rowid")] == [1, 2]


@pytest.mark.parametrize("end", ["rollback", "close"])
def test_the_lock_is_released_when_the_transaction_ends_without_a_commit(database, end):
    first, second = connect(database), connect(database, give_up_after_s=2)
    first.begin_immediate()
    getattr(first, end)()

    second.begin_immediate()  # would raise "database is locked" if the lock were still held
    second.execute("INSERT INTO t VALUES (3)")
    second.commit()


def test_a_writer_gives_up_like_sqlite_s_busy_timeout(database):
    holder, waiter = connect(database), connect(database, give_up_after_s=0.2)
    holder.begin_immediate()

    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        waiter.begin_immediate()

    holder.rollback()
    waiter.begin_immediate()  # a failed attempt leaves nothing held
    waiter.rollback()


def test_a_store_whose_writer_lock_stays_taken_answers_store_error(tmp_path, monkeypatch):
    monkeypatch.setattr(db_module, "SQLITE_BUSY_TIMEOUT_MS", 200)
    path = tmp_path / "store.db"
    store = Store.from_url(f"sqlite:///{path}")
    holder = connect(str(path))
    try:
        holder.begin_immediate()
        with pytest.raises(StoreError, match="database is locked"):
            store.log.start(request_id="r-1", operation="createCreditGrant", caller_key_id="k")
        holder.rollback()
        assert store.log.start(request_id="r-1", operation="createCreditGrant", caller_key_id="k")
    finally:
        holder.close()
        store.close()
