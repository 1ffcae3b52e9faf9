"""The driver's own write transaction (app/store/driver_transaction.py), on SQLite and
PostgreSQL: commits what its block wrote, leaves nothing of a block that raised, turns an
outage into StoreError, and never gives a broken connection back to the pool."""

from __future__ import annotations

import fcntl
import os

import pytest
from sqlalchemy import select, text

from app.store import Store, StoreError
from app.store.driver_transaction import driver_transaction
from app.store.provisioning_log import entries
from tests.store.rows import start_row


def request_ids(store: Store) -> list[str]:
    with store.engine.connect() as connection:
        query = select(entries.c.request_id).order_by(entries.c.id)
        return list(connection.execute(query).scalars())


def test_what_the_block_wrote_is_committed_and_seen_by_another_store(store, database_url):
    other = Store.from_url(database_url)
    try:
        with driver_transaction(store.engine) as connection:
            start_row(store, connection, "r1")
            start_row(store, connection, "r2")
        assert request_ids(other) == ["r1", "r2"]
    finally:
        other.close()


def test_a_block_that_raises_leaves_nothing_and_the_connection_serves_again(store):
    with pytest.raises(ValueError), driver_transaction(store.engine) as connection:
        start_row(store, connection, "lost")
        raise ValueError("a bug between two statements")

    with driver_transaction(store.engine) as connection:
        start_row(store, connection, "kept")
    assert request_ids(store) == ["kept"]


def test_a_statement_the_database_refuses_propagates_as_it_is(store):
    with driver_transaction(store.engine) as connection:
        start_row(store, connection, "r1")
    with pytest.raises(Exception) as refused, driver_transaction(store.engine) as connection:
        start_row(store, connection, "r1")  # the request ID is unique

    assert not isinstance(refused.value, StoreError)  # a bug, never a retryable outage
    assert "unique" in str(refused.value).lower()
    assert request_ids(store) == ["r1"]


def test_a_begin_that_cannot_get_the_write_lock_is_a_store_error(tmp_path):
    database = tmp_path / "store.db"
    store = Store.from_url(f"sqlite:///{database}")
    holder = os.open(f"{database}-writer.lock", os.O_RDWR)
    try:
        pooled = store.engine.raw_connection()
        pooled.driver_connection.give_up_after_s = 0.2  # not SQLite's 10 s
        pooled.close()
        fcntl.flock(holder, fcntl.LOCK_EX)  # another process is writing, for ever

        locked = pytest.raises(StoreError, match="database is locked")
        with locked, driver_transaction(store.engine) as connection:
            start_row(store, connection, "r1")

        fcntl.flock(holder, fcntl.LOCK_UN)
        with driver_transaction(store.engine) as connection:
            start_row(store, connection, "r2")
        assert request_ids(store) == ["r2"]
    finally:
        os.close(holder)
        store.close()


@pytest.mark.postgres
def test_a_postgresql_connection_the_server_killed_is_dropped_and_the_next_one_works(
    postgres_url, postgres_admin
):
    store = Store.from_url(postgres_url)
    try:
        with driver_transaction(store.engine) as connection:
            start_row(store, connection, "before")
            backend = connection.connection.driver_connection.info.backend_pid
        with postgres_admin.connect() as admin:
            admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})

        with pytest.raises(StoreError), driver_transaction(store.engine) as connection:
            start_row(store, connection, "lost")

        with driver_transaction(store.engine) as connection:
            start_row(store, connection, "after")
            assert connection.connection.driver_connection.info.backend_pid != backend
        assert request_ids(store) == ["before", "after"]
    finally:
        store.close()
