"""Statements run on the driver's cursor (app/store/driver_statement.py) write exactly
what SQLAlchemy's own execution would, and fail the same way."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import bindparam, event, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from app.store import Store, StoreError
from app.store.driver_statement import DriverStatement
from app.store.idempotency import records
from app.store.provisioning_log import _FINISH_KEYS, _START_KEYS, entries

PAYLOAD = {
    "customerName": "Société Générale — 東京 🚀",
    "amount": 1234.5,
    "nested": {"list": [1, None, True, "x"], "empty": {}},
}


def _start_values(request_id: str) -> dict:
    return {
        "request_id": request_id,
        "correlation_id": None,
        "operation": "createCreditGrant",
        "caller_key_id": "caller-a",
        "idempotency_key": "key-é",
        "salesforce_account_id": "001000000000001AAA",
        "salesforce_opportunity_id": None,
        "payload": PAYLOAD,
        "replay_of": None,
        "batch_item_id": 7,
        "outcome": "in_progress",
        "attempts": 0,
        # Not UTC on the way in: stored as UTC, like every time the store keeps.
        "created_at": datetime(2026, 12, 1, 9, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2))),
    }


def _finish_values(finished_at: datetime) -> dict:
    return {
        "outcome": "failed",
        "http_status": 503,
        "error_code": "STIGG_UNAVAILABLE",
        "stigg_error_code": None,
        "message": "Stigg did not answer — twice",
        "stigg_customer_id": "customer-1",
        "stigg_subscription_id": None,
        "stigg_credit_grant_id": None,
        "attempts": 2,
        "duration_ms": 1500,
        "finished_at": finished_at,
    }


def _stored(store, request_id: str) -> tuple[dict, tuple]:
    """The row as SQLAlchemy reads it, and the stored text of its times and payload."""
    with store.engine.connect() as connection:
        row = connection.execute(select(entries).where(entries.c.request_id == request_id))
        read = dict(row.mappings().one())
        raw = connection.execute(
            text(
                "SELECT CAST(created_at AS TEXT), CAST(finished_at AS TEXT), "
                "CAST(payload AS TEXT) FROM provisioning_log WHERE request_id = :r"
            ),
            {"r": request_id},
        ).one()
    for key in ("id", "request_id"):
        read.pop(key)
    return read, tuple(raw)


def test_a_row_written_on_the_driver_is_the_row_sqlalchemy_would_have_written(store):
    finished_at = datetime(2026, 12, 1, 7, 31, 0, 5, tzinfo=UTC)
    start = insert(entries).returning(entries.c.id)
    finish = update(entries).where(entries.c.id == bindparam("entry_id"))
    with store.engine.begin() as connection:
        core_id = connection.execute(start, _start_values("r-core")).scalar_one()
        connection.execute(finish, _finish_values(finished_at) | {"entry_id": core_id})
        inserted = DriverStatement(start, _START_KEYS).execute(
            connection, _start_values("r-driver")
        )
        driver_id = inserted.first_row[0]
        updated = DriverStatement(finish, _FINISH_KEYS).execute(
            connection, _finish_values(finished_at) | {"entry_id": driver_id}
        )
        assert updated.rowcount == 1

    by_core, by_driver = _stored(store, "r-core"), _stored(store, "r-driver")
    assert by_driver == by_core
    read, _raw = by_driver
    assert read["payload"] == PAYLOAD
    assert read["created_at"] == datetime(2026, 12, 1, 7, 30, 15, 123456, tzinfo=UTC)
    assert read["finished_at"] == finished_at


def test_the_log_s_statements_go_to_the_driver_not_through_sqlalchemy(store):
    # What the change bought (bench/README.md): SQLAlchemy's execution no longer sees them.
    executed = []

    def seen(*args):
        executed.append(args[2])

    event.listen(store.engine, "before_cursor_execute", seen)
    entry_id = store.log.start(request_id="r-1", operation="createCustomer", caller_key_id="k")
    assert store.log.finish(
        entry_id, outcome="succeeded", http_status=200, attempts=1, duration_ms=3
    )
    event.remove(store.engine, "before_cursor_execute", seen)

    assert not [s for s in executed if "provisioning_log" in s]
    assert store.log.get(entry_id)["outcome"] == "succeeded"


def test_a_constraint_the_row_breaks_is_sqlalchemy_s_integrity_error(store):
    store.log.start(request_id="r-1", operation="createCustomer", caller_key_id="k")
    with pytest.raises(IntegrityError) as raised:
        store.log.start(request_id="r-1", operation="createCustomer", caller_key_id="k")
    assert "request_id" in str(raised.value.orig)


@pytest.mark.postgres
def test_a_connection_lost_mid_transaction_is_a_store_error(postgres_url, postgres_admin):
    store = Store.from_url(postgres_url, engine_options={"pool_size": 1})
    with pytest.raises(StoreError), store.transaction() as connection:
        backend = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with postgres_admin.connect() as admin:
            admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
        store.log.start(
            request_id="r-lost",
            operation="createCustomer",
            caller_key_id="k",
            connection=connection,
        )

    entry_id = store.log.start(request_id="r-next", operation="createCustomer", caller_key_id="k")
    assert store.log.get(entry_id)["request_id"] == "r-next"
    store.close()


def _idempotency_rows(store) -> dict[str, tuple]:
    """Every idempotency record as stored, each column cast to text, by key (without the
    columns that name the record)."""
    naming = ("id", "idempotency_key", "request_id")
    columns = ", ".join(f"CAST({c.name} AS TEXT)" for c in records.columns if c.name not in naming)
    with store.engine.connect() as connection:
        rows = connection.execute(
            text(f"SELECT idempotency_key, {columns} FROM idempotency_keys")
        ).all()
    return {row[0]: tuple(row[1:]) for row in rows}


def test_the_key_s_claim_and_kept_answer_are_stored_as_sqlalchemy_would_store_them(store):
    claimed_at = datetime(2026, 12, 1, 9, 0, 0, 250, tzinfo=UTC)
    answered_at = claimed_at + timedelta(seconds=2, microseconds=17)
    body = {"stiggCustomerId": "customer-é", "created": True}

    def claim(key: str) -> dict:
        return {
            "id": f"record-{key}",
            "caller_key_id": "caller-a",
            "operation": "createCustomer",
            "idempotency_key": key,
            "fingerprint": "f" * 64,
            "state": "in_progress",
            "response_status": None,
            "response_body": None,
            "request_id": f"request-{key}",
            "created_at": claimed_at,
            "locked_until": claimed_at + timedelta(seconds=60),
            "expires_at": claimed_at + timedelta(hours=24),
        }

    # Through SQLAlchemy's execution, by hand...
    with store.engine.begin() as connection:
        connection.execute(insert(records), claim("by-core"))
        connection.execute(
            update(records)
            .where(records.c.id == "record-by-core")
            .values(
                state="completed",
                response_status=200,
                response_body=json.dumps(body, ensure_ascii=False, separators=(",", ":")),
                locked_until=answered_at,
                expires_at=answered_at + timedelta(seconds=3600),
            )
        )
    # ... and through the store, on the driver's cursor.
    with store.engine.begin() as connection:
        claimed = store.idempotency.claim_if_new(
            connection,
            caller_key_id="caller-a",
            operation="createCustomer",
            key="by-driver",
            fingerprint="f" * 64,
            request_id="request-by-driver",
            lock_s=60,
            ttl_s=24 * 3600,
        )
        connection.execute(
            update(records)
            .where(records.c.id == claimed.record_id)
            .values(id="record-by-driver", created_at=claimed_at)
        )
    assert store.idempotency.complete(
        "record-by-driver", status=200, body=body, ttl_s=3600, answered_at=answered_at
    )

    stored = _idempotency_rows(store)
    assert stored["by-driver"] == stored["by-core"]
    assert stored["by-driver"][3:5] == ("completed", "200")


def test_on_a_connection_without_a_transaction_it_begins_one_as_sqlalchemy_would(store):
    # SQLAlchemy begins a transaction on a connection's first statement ("autobegin"), and
    # the caller decides: commit keeps the row, rollback drops it.
    with store.engine.connect() as connection:
        store.log.start(
            request_id="r-dropped",
            operation="createCustomer",
            caller_key_id="k",
            connection=connection,
        )
        assert connection.in_transaction()
        connection.rollback()
        store.log.start(
            request_id="r-kept",
            operation="createCustomer",
            caller_key_id="k",
            connection=connection,
        )
        connection.commit()

    assert store.log.get("r-dropped") is None
    assert store.log.get("r-kept")["request_id"] == "r-kept"


def test_a_column_default_it_cannot_apply_is_refused_not_written_null(store):
    # SQLAlchemy's execution computes `default=` values; the driver's cursor does not. A
    # column with a default left out of `columns` must fail loudly, not store NULL.
    # (`attempts` has default=0 in the model.)
    keys = [key for key in _START_KEYS if key != "attempts"]
    statement = DriverStatement(insert(entries).returning(entries.c.id), keys)
    values = {key: value for key, value in _start_values("r-1").items() if key != "attempts"}

    with store.engine.begin() as connection, pytest.raises(ValueError, match="attempts"):
        statement.execute(connection, values)


def test_a_value_for_a_column_the_statement_does_not_set_is_refused_not_dropped(store):
    # A field added to the values but not to `columns` would otherwise never be written
    # (the positional statement SQLite gets has no place for it).
    keys = [key for key in _START_KEYS if key != "correlation_id"]
    statement = DriverStatement(insert(entries).returning(entries.c.id), keys)

    with store.engine.begin() as connection, pytest.raises(ValueError, match="correlation_id"):
        statement.execute(connection, _start_values("r-1"))
