"""Engine set-up and migrations (app/store/db.py)."""

from __future__ import annotations

import time

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event, inspect, make_url, text

from app.ledger import Ledger
from app.request_context import new_request_id
from app.store import Store, StoreError, create_engine_for, migrate
from app.store.db import current_revision, head_revision
from app.store.models import Base
from tests.store import workers


def test_migrate_creates_the_tables_on_an_empty_database(database_url):
    engine = create_engine_for(database_url)
    assert current_revision(engine) is None

    migrate(engine)

    assert current_revision(engine) == head_revision()
    tables = set(inspect(engine).get_table_names())
    assert {"idempotency_keys", "provisioning_log", "alembic_version"} <= tables
    engine.dispose()


def test_migrate_a_second_time_changes_nothing(store):
    entry_id = store.log.start(request_id="r-1", operation="createCustomer", caller_key_id="k")

    migrate(store.engine)

    assert current_revision(store.engine) == head_revision()
    assert store.log.get(entry_id)["request_id"] == "r-1"


def test_the_revisions_build_exactly_what_the_models_describe(store):
    with store.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


def test_processes_migrating_at_once_all_succeed(database_url):
    processes = 4
    outcomes = workers.run_at_once(workers.migrate_once, database_url, processes=processes)

    assert outcomes == ["migrated"] * processes
    engine = create_engine_for(database_url)
    assert current_revision(engine) == head_revision()
    engine.dispose()


def test_processes_opening_a_new_sqlite_file_at_once_all_succeed(tmp_path):
    # Switching a new file to WAL takes a lock for which SQLite does not wait (its busy
    # timeout does not apply): without a retry about a third of such races failed one
    # process with "database is locked" (gunicorn's workers, or a worker and the rate
    # limiter, on a first start).
    processes, races = 4, 20
    urls = [f"sqlite:///{tmp_path / f'fresh-{race}.db'}" for race in range(races)]
    outcomes = workers.run_at_once(
        workers.open_fresh_databases, urls, processes=processes, timeout_s=120
    )

    assert outcomes == [["opened"] * races] * processes


def test_an_unreachable_server_is_refused_with_one_clear_line():
    url = "postgresql+psycopg://stigg:hunter2@127.0.0.1:1/provisioning?connect_timeout=2"

    with pytest.raises(StoreError) as refused:
        Store.from_url(url)

    message = str(refused.value)
    assert message.startswith("database at postgresql+psycopg://stigg:***@127.0.0.1:1/")
    assert "hunter2" not in message
    assert "\n" not in message


def test_an_unopenable_sqlite_file_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'missing-folder' / 'store.db'}"

    with pytest.raises(StoreError, match=r"^database at sqlite:///.*: cannot migrate: "):
        Store.from_url(url)


@pytest.mark.parametrize(
    ("url", "refusal"),
    [
        ("garbage", "not a database URL SQLAlchemy can use"),
        ("postgres//stigg:hunter2@db/provisioning", "not a database URL SQLAlchemy can use"),
        ("nosuchdb://stigg:hunter2@db/provisioning", "not a database URL SQLAlchemy can use"),
        (
            "mysql://stigg:hunter2@db/provisioning",
            "database at mysql://stigg:***@db/provisioning: its driver is not installed (MySQLdb)",
        ),
    ],
)
def test_a_url_that_cannot_be_used_is_a_store_error_without_the_password(url, refusal):
    with pytest.raises(StoreError) as refused:
        Store.from_url(url)

    assert str(refused.value) == refusal


def test_a_database_at_an_unknown_revision_is_refused(store):
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'from_the_future'"))

    with pytest.raises(StoreError, match=r"'from_the_future', which this version .* not know"):
        migrate(store.engine)
    with pytest.raises(StoreError, match="schema at 'from_the_future'"):
        store.check()


def test_check_passes_on_a_migrated_database(store):
    store.check()


def test_check_fails_before_migration(database_url):
    store = Store.from_url(database_url, run_migrations=False)
    with pytest.raises(StoreError, match="schema at None"):
        store.check()
    store.close()


def test_sqlite_connections_use_wal_a_busy_timeout_and_foreign_keys(tmp_path):
    engine = create_engine_for(f"sqlite:///{tmp_path / 'store.db'}")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        # NORMAL (1) is durable across process crashes in WAL mode and halves commit cost.
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1
    # One connection per process: its threads queue in the pool instead of sleep-polling
    # SQLite's file lock against each other (long tails under load, see bench/).
    assert (engine.pool.size(), engine.pool._max_overflow) == (1, 0)
    engine.dispose()


def test_a_postgresql_url_without_driver_uses_psycopg_3():
    engine = create_engine_for("postgresql://postgres@127.0.0.1:5432/test")
    assert engine.dialect.driver == "psycopg"
    engine.dispose()


def _statements_run_by(store, call) -> list[tuple[str, object]]:
    """The SELECTs `call` sends to the database, with their parameters."""
    seen = []

    def capture(_conn, _cursor, statement, parameters, _context, _many):
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", capture)
    try:
        call()
    finally:
        event.remove(store.engine, "before_cursor_execute", capture)
    return seen


def _plan(store, statement: str, parameters) -> str:
    with store.engine.begin() as connection:
        if store.engine.dialect.name == "postgresql":
            # A table this small is read whole whatever the indexes; ask whether it *can*
            # use one.
            connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
            rows = connection.exec_driver_sql(f"EXPLAIN {statement}", parameters).all()
            return "\n".join(row[0] for row in rows)
        rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
        return "\n".join(row[-1] for row in rows)


@pytest.mark.parametrize(
    ("look_up", "indexes"),
    [
        (
            lambda log: log.list(salesforce_id="001000000000001AAA"),
            ["salesforce_account_id", "salesforce_opportunity_id"],
        ),
        (lambda log: log.get("corr-1"), ["correlation_id"]),
    ],
    ids=["by-salesforce-id", "by-correlation-id"],
)
def test_the_log_look_ups_by_value_use_the_partial_indexes(store, look_up, indexes):
    # A row that leaves every one of them empty, and one that fills them.
    store.log.start(request_id="r-empty", operation="createCreditGrant", caller_key_id="k")
    store.log.start(
        request_id="r-full",
        operation="createCustomer",
        caller_key_id="k",
        salesforce_account_id="001000000000001AAA",
        salesforce_opportunity_id="006000000000001AAA",
        correlation_id="corr-1",
    )
    definitions = {
        index["name"]: index for index in inspect(store.engine).get_indexes("provisioning_log")
    }
    for column in (*indexes, "batch_item_id"):
        name = f"ix_provisioning_log_{column}"
        where = definitions[name]["dialect_options"].get(f"{store.engine.dialect.name}_where")
        assert f"{column} IS NOT NULL" in str(where).replace("(", "").replace(")", ""), name

    statements = _statements_run_by(store, lambda: look_up(store.log))
    by_value = [s for s in statements if "provisioning_log" in s[0] and "WHERE" in s[0]]
    assert by_value
    plan = _plan(store, *by_value[-1])
    for column in indexes:
        assert f"ix_provisioning_log_{column}" in plan, plan


def _store_whose_connection_died(postgres_url, postgres_admin, monkeypatch, *, ping_if_idle_s):
    """A store on PostgreSQL whose one pooled connection the server has just terminated."""
    monkeypatch.setattr("app.store.db.PING_IF_IDLE_S", ping_if_idle_s)
    store = Store.from_url(postgres_url, engine_options={"pool_size": 1})
    with store.engine.connect() as connection:
        backend = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
    with postgres_admin.connect() as admin:
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
    return store


@pytest.mark.postgres
def test_a_postgres_connection_that_died_while_idle_is_replaced_before_use(
    postgres_url, postgres_admin, monkeypatch
):
    store = _store_whose_connection_died(
        postgres_url, postgres_admin, monkeypatch, ping_if_idle_s=0.05
    )
    time.sleep(0.1)  # idle longer than PING_IF_IDLE_S: pinged, found dead, replaced

    entry_id = store.log.start(request_id="r-after", operation="createCustomer", caller_key_id="k")

    assert store.log.get(entry_id)["request_id"] == "r-after"
    store.close()


@pytest.mark.postgres
def test_a_postgres_connection_used_a_moment_ago_is_not_pinged(
    postgres_url, postgres_admin, monkeypatch
):
    # The other side of the trade (PING_IF_IDLE_S): no round trip for a connection just
    # handed back, so one that died within that moment fails its request, as a retryable
    # StoreError, and the pool replaces it for the next.
    store = _store_whose_connection_died(
        postgres_url, postgres_admin, monkeypatch, ping_if_idle_s=3600
    )

    with pytest.raises(StoreError):
        store.log.start(request_id="r-lost", operation="createCustomer", caller_key_id="k")
    entry_id = store.log.start(request_id="r-next", operation="createCustomer", caller_key_id="k")

    assert store.log.get(entry_id)["request_id"] == "r-next"
    store.close()


def _prepared_statements_after_repeating_one(engine, times: int) -> int:
    """How many statements the server holds prepared for a connection that ran one
    statement `times` times."""
    with engine.connect() as connection:
        for _ in range(times):
            connection.execute(text("SELECT 1 WHERE 1 = :one"), {"one": 1})
        return connection.execute(text("SELECT count(*) FROM pg_prepared_statements")).scalar()


@pytest.mark.postgres
def test_psycopg_prepares_a_statement_it_repeats_unless_the_url_says_none(postgres_url):
    preparing = create_engine_for(postgres_url)
    never = create_engine_for(
        make_url(postgres_url).update_query_dict({"prepare_threshold": "none"})
    )
    at_once = create_engine_for(
        make_url(postgres_url).update_query_dict({"prepare_threshold": "0"})
    )
    try:
        assert _prepared_statements_after_repeating_one(preparing, 8) >= 1
        assert _prepared_statements_after_repeating_one(never, 8) == 0
        assert _prepared_statements_after_repeating_one(at_once, 1) >= 1
    finally:
        for engine in (preparing, never, at_once):
            engine.dispose()


@pytest.mark.postgres
def test_the_store_works_behind_a_pooler_that_forbids_prepared_statements(postgres_url):
    url = make_url(postgres_url).update_query_dict({"prepare_threshold": "none"})
    store = Store.from_url(url.render_as_string(hide_password=False))
    try:
        ledger = Ledger(store, ttl_s=3600, lock_s=60)
        for number in range(8):  # more than psycopg's default threshold of five
            new_request_id()
            entry, _ = ledger.open(
                operation="createCreditGrant",
                caller_key_id="caller",
                payload={"amount": number},
                idempotency_key=f"key-{number}",
                fingerprint="f" * 64,
            )
            entry.succeeded({"creditGrantId": f"grant-{number}"})
        store.deferred.flush()
        with store.engine.connect() as connection:
            assert (
                connection.execute(text("SELECT count(*) FROM pg_prepared_statements")).scalar()
                == 0
            )
        assert [row["outcome"] for row in store.log.list(limit=10)] == ["succeeded"] * 8
    finally:
        store.close()


@pytest.mark.parametrize(
    ("threshold", "why"),
    [
        ("never", "prepare_threshold must be a whole number of runs, or none"),
        ("-1", "prepare_threshold must be a whole number of runs, or none"),
        ("1e3", "prepare_threshold must be a whole number of runs, or none"),
    ],
)
def test_a_prepare_threshold_that_is_not_a_number_is_refused_without_the_password(threshold, why):
    url = f"postgresql://stigg:hunter2@db/provisioning?prepare_threshold={threshold}"
    with pytest.raises(StoreError) as refused:
        Store.from_url(url)

    assert str(refused.value).startswith(
        f"database at postgresql+psycopg://stigg:***@db/provisioning: {why}"
    )
    assert "hunter2" not in str(refused.value)


def test_a_prepare_threshold_given_twice_is_refused():
    url = "postgresql://stigg@db/provisioning?prepare_threshold=none&prepare_threshold=5"
    with pytest.raises(StoreError, match="prepare_threshold is given more than once"):
        Store.from_url(url)
