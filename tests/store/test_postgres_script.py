"""A PostgreSQL driver transaction sends its statements in as few messages as its reads
allow (app/store/postgres_script.py): what lands is what SQLAlchemy would have written,
hostile values included; a statement the server refuses fails the transaction where its
message goes out and leaves nothing; the connection goes back to the pool as it came."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.exc import IntegrityError

from app.store import Store
from app.store.driver_statement import DriverStatement
from app.store.driver_transaction import driver_transaction
from app.store.postgres_script import PostgresScript
from app.store.provisioning_log import _START_KEYS, entries
from tests.store.rows import start_row

pytestmark = pytest.mark.postgres

# Everything client-side quoting has to get right: quotes, backslashes, psycopg's own
# placeholders, a statement separator and a comment, control characters, non-ASCII.
HOSTILE = "O'Brien \\' \\\\ %s %(x)s %% ; DROP TABLE provisioning_log; -- \x01\t\n é 東京 🚀"


@pytest.fixture
def pg_store(postgres_url):
    store = Store.from_url(postgres_url)
    yield store
    store.close()


@pytest.fixture
def messages(monkeypatch) -> list[str]:
    """The messages sent to the server, in order, each statement as compiled (a prepared
    one goes as its EXECUTE)."""
    sent: list[str] = []
    original = PostgresScript._send

    def counting(self):
        sent.append(";".join(statement.compiled for statement in self._waiting))
        return original(self)

    monkeypatch.setattr(PostgresScript, "_send", counting)
    return sent


def _row(store: Store, request_id: str) -> dict:
    with store.engine.connect() as connection:
        found = connection.execute(select(entries).where(entries.c.request_id == request_id))
        row = dict(found.mappings().one())
    row.pop("id")
    row.pop("request_id")
    return row


def test_reading_a_result_sends_it_with_the_statements_waiting_before_it(pg_store, messages):
    earlier = pg_store.log.start(request_id="earlier", operation="op", caller_key_id="k")

    with driver_transaction(pg_store.engine) as connection:
        pg_store.log.send_finish(
            connection, earlier, outcome="succeeded", http_status=200, attempts=1, duration_ms=4
        )
        assert messages == []  # nothing reads the UPDATE's row count: it waits
        entry_id = start_row(pg_store, connection, "now")

    assert len(messages) == 2
    first, second = messages
    assert first.startswith("BEGIN;") and "UPDATE provisioning_log" in first
    assert first.index("UPDATE provisioning_log") < first.index("INSERT INTO provisioning_log")
    assert second == "COMMIT"
    assert pg_store.log.get(earlier)["outcome"] == "succeeded"
    assert pg_store.log.get(entry_id)["request_id"] == "now"


def test_a_request_s_transaction_is_one_message_when_its_results_are_read_after_commit(
    pg_store, messages
):
    # What the ledger does for every request: the carried outcomes, the row, the key's
    # claim, and the row's id and the claim read once committed.
    earlier = pg_store.log.start(request_id="earlier", operation="op", caller_key_id="k")
    claim = {
        "caller_key_id": "k",
        "operation": "op",
        "key": "key-1",
        "fingerprint": "f" * 64,
        "request_id": "now",
        "lock_s": 60,
    }
    messages.clear()

    with driver_transaction(pg_store.engine) as connection:
        pg_store.log.send_finish(
            connection, earlier, outcome="succeeded", http_status=200, attempts=1, duration_ms=4
        )
        entry_id = pg_store.log.queue_start(
            connection, request_id="now", operation="op", caller_key_id="k"
        )
        claimed = pg_store.idempotency.queue_claim_if_new(connection, **claim)
        taken_again = pg_store.idempotency.queue_claim_if_new(connection, **claim)

    assert len(messages) == 1
    assert messages[0].startswith("BEGIN;") and messages[0].endswith("COMMIT")
    assert pg_store.log.get(entry_id())["request_id"] == "now"
    assert claimed() is not None and taken_again() is None  # the key existed by then
    assert pg_store.log.get(earlier)["outcome"] == "succeeded"


def test_outcomes_no_request_carried_are_committed_in_one_message(postgres_url, messages):
    # The deferred writes' own commit (app/store/deferred.py): the outcomes of the last
    # requests before a lull, committed by the background thread or by flush().
    store = Store.from_url(postgres_url, outcome_delay_s=60.0)
    try:
        first = store.log.start(request_id="first", operation="op", caller_key_id="k")
        second = store.log.start(request_id="second", operation="op", caller_key_id="k")
        for entry in (first, second):
            store.deferred.add(
                lambda connection, entry=entry: store.log.send_finish(
                    connection,
                    entry,
                    outcome="succeeded",
                    http_status=200,
                    attempts=1,
                    duration_ms=4,
                )
            )
        messages.clear()

        store.deferred.flush()

        assert len(messages) == 1
        assert messages[0].startswith("BEGIN;") and messages[0].endswith("COMMIT")
        assert messages[0].count("UPDATE provisioning_log") == 2
        assert store.log.get(first)["outcome"] == "succeeded"
        assert store.log.get(second)["outcome"] == "succeeded"
    finally:
        store.close()


def test_hostile_values_are_stored_exactly_as_sqlalchemy_stores_them(pg_store):
    payload = {HOSTILE: [HOSTILE, {"nested": HOSTILE}], "n": 1.5, "none": None}
    values = {
        "request_id": "by-script",
        "correlation_id": HOSTILE[:128],
        "operation": "createCreditGrant",
        "caller_key_id": HOSTILE[:64],
        "idempotency_key": HOSTILE,
        "salesforce_account_id": None,
        "salesforce_opportunity_id": "006000000000001AAA",
        "payload": payload,
        "replay_of": None,
        "batch_item_id": 2**31 - 1,
        "outcome": "in_progress",
        "attempts": 0,
        "created_at": datetime(2026, 12, 1, 8, 0, 0, 999999, tzinfo=UTC),
    }
    statement = insert(entries).returning(entries.c.id)
    with pg_store.engine.begin() as connection:
        connection.execute(statement, values | {"request_id": "by-sqlalchemy"})
    with driver_transaction(pg_store.engine) as connection:
        assert connection.script is not None
        DriverStatement(statement, _START_KEYS).execute(connection, values)

    assert _row(pg_store, "by-script") == _row(pg_store, "by-sqlalchemy")
    assert _row(pg_store, "by-script")["payload"] == payload
    with pg_store.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM provisioning_log")).scalar() == 2


def test_a_waiting_statement_the_server_refuses_fails_the_read_it_travels_with(pg_store):
    start_row(pg_store, None, "taken")
    duplicate = DriverStatement(insert(entries), _START_KEYS)
    refusal = pytest.raises(IntegrityError)
    with refusal as refused, driver_transaction(pg_store.engine) as connection:
        duplicate.execute_later(connection, _values("taken"))  # waits: no error yet
        start_row(pg_store, connection, "innocent")  # its message carries the duplicate

    assert "request_id" in str(refused.value.orig)
    # The error names the statements as compiled, never their values.
    assert "%(request_id)s" in str(refused.value) and "'taken'" not in str(refused.value)
    with pg_store.engine.connect() as connection:
        stored = connection.execute(select(entries.c.request_id)).scalars().all()
    assert stored == ["taken"]


def test_a_statement_refused_at_commit_leaves_nothing(pg_store, messages):
    start_row(pg_store, None, "taken")
    duplicate = DriverStatement(insert(entries), _START_KEYS)
    with pytest.raises(IntegrityError), driver_transaction(pg_store.engine) as connection:
        start_row(pg_store, connection, "innocent")
        duplicate.execute_later(connection, _values("taken"))  # goes with the COMMIT, and fails it

    assert messages[-1].endswith("COMMIT")
    with pg_store.engine.connect() as connection:
        stored = connection.execute(select(entries.c.request_id)).scalars().all()
    assert stored == ["taken"]


def test_the_connection_goes_back_to_the_pool_in_psycopg_s_own_transactions(postgres_url):
    store = Store.from_url(postgres_url, engine_options={"pool_size": 1, "max_overflow": 0})
    try:
        with pytest.raises(ValueError), driver_transaction(store.engine) as connection:
            start_row(store, connection, "lost")
            raise ValueError("a bug after the first message")
        with driver_transaction(store.engine) as connection:
            start_row(store, connection, "kept")

        pooled = store.engine.raw_connection()
        try:
            assert pooled.driver_connection.autocommit is False
        finally:
            pooled.close()
        # A SQLAlchemy transaction on that same connection still rolls back.
        with store.engine.connect() as connection:
            connection.execute(insert(entries), _values("rolled-back"))
            connection.rollback()
        with store.engine.connect() as connection:
            stored = connection.execute(select(entries.c.request_id)).scalars().all()
        assert stored == ["kept"]
    finally:
        store.close()


def _values(request_id: str) -> dict:
    return {
        "request_id": request_id,
        "correlation_id": None,
        "operation": "createCreditGrant",
        "caller_key_id": "caller",
        "idempotency_key": None,
        "salesforce_account_id": None,
        "salesforce_opportunity_id": None,
        "payload": None,
        "replay_of": None,
        "batch_item_id": None,
        "outcome": "in_progress",
        "attempts": 0,
        "created_at": datetime(2026, 12, 1, tzinfo=UTC),
    }


@pytest.mark.parametrize("key", [None, "key-1"])
def test_the_ledger_opens_a_request_in_one_message_carrying_the_last_outcome(
    postgres_url, messages, key
):
    from app.ledger import Ledger
    from app.request_context import new_request_id

    store = Store.from_url(postgres_url, outcome_delay_s=60)  # outcomes wait to be carried
    try:
        ledger = Ledger(store, ttl_s=3600, lock_s=60)

        def open_entry(idempotency_key):
            new_request_id()
            entry, replay = ledger.open(
                operation="createCreditGrant",
                caller_key_id="caller",
                payload={"amount": 1},
                idempotency_key=idempotency_key,
                fingerprint="f" * 64,
            )
            assert replay is None
            return entry

        answered = open_entry(None)
        answered.succeeded({"ok": True})
        messages.clear()

        entry = open_entry(key)

        assert len(messages) == 1
        assert "UPDATE provisioning_log" in messages[0]  # the last request's outcome
        assert (key is not None) == ("INSERT INTO idempotency_keys" in messages[0])
        assert store.log.get(answered.log_id)["outcome"] == "succeeded"
        assert store.log.get(entry.log_id)["outcome"] == "in_progress"
        assert (entry.record_id is not None) == (key is not None)
    finally:
        store.close()


# Prepared statements: PREPAREd once per connection, then EXECUTEd in the one message.

_PREFIX = "stigg_flow_actions_"


@pytest.fixture
def sent(monkeypatch) -> list[str]:
    """The messages as they went to the server (values and EXECUTEs included)."""
    texts: list[str] = []
    original = PostgresScript._execute

    def recording(self, waiting):
        texts.append(";".join(statement.rendered for statement in waiting))
        return original(self, waiting)

    monkeypatch.setattr(PostgresScript, "_execute", recording)
    return texts


@pytest.fixture
def one_connection_store(postgres_url):
    """A store whose pool holds one connection: every transaction runs on it."""
    store = Store.from_url(postgres_url, engine_options={"pool_size": 1, "max_overflow": 0})
    yield store
    store.close()


def _finish(store: Store, connection, entry_id: int) -> None:
    store.log.send_finish(
        connection, entry_id, outcome="succeeded", http_status=200, attempts=1, duration_ms=4
    )


def _request(store: Store, request_id: str, previous: int | None) -> int:
    """What every request commits: the last one's outcome and its own row."""
    with driver_transaction(store.engine) as connection:
        if previous is not None:
            _finish(store, connection, previous)
        entry_id = store.log.queue_start(
            connection, request_id=request_id, operation="op", caller_key_id="k"
        )
    return entry_id()


def _server_prepared(store: Store) -> set[str]:
    """Our prepared statements on the server connection of a one-connection store."""
    with store.engine.connect() as connection:
        names = connection.execute(text("SELECT name FROM pg_prepared_statements")).scalars()
        return {name for name in names if name.startswith(_PREFIX)}


def _prepared_state(store: Store):
    from app.store.postgres_script import _PREPARED_INFO_KEY

    pooled = store.engine.raw_connection()
    try:
        return pooled.info[_PREPARED_INFO_KEY]
    finally:
        pooled.close()


def _stored(store: Store) -> list[tuple[str, str]]:
    with store.engine.connect() as connection:
        rows = connection.execute(
            select(entries.c.request_id, entries.c.outcome).order_by(entries.c.id)
        )
        return [tuple(row) for row in rows]


def test_each_statement_is_prepared_once_per_connection_then_executed(one_connection_store, sent):
    store = one_connection_store
    first = _request(store, "first", None)
    second = _request(store, "second", first)
    third = _request(store, "third", second)

    *_, last = sent
    # BEGIN; EXECUTE <the outcome's UPDATE>(...); EXECUTE <the row's INSERT>(...); COMMIT
    assert last.startswith("BEGIN;EXECUTE " + _PREFIX)
    assert last.count("EXECUTE " + _PREFIX) == 2
    assert "UPDATE" not in last and "INSERT" not in last
    assert "'third'" in last  # the values travel as literals
    assert len(_server_prepared(store)) == 2  # the INSERT and the UPDATE, once each
    assert _prepared_state(store).names == _server_prepared(store)
    assert _stored(store) == [
        ("first", "succeeded"),
        ("second", "succeeded"),
        ("third", "in_progress"),
    ]
    assert store.log.get(third)["request_id"] == "third"


def test_a_server_connection_without_the_statement_gets_the_message_again_as_text(
    one_connection_store, sent, caplog
):
    # What a transaction pooler does: the next transaction runs on a server connection
    # that never saw this client's PREPARE.
    store = one_connection_store
    first = _request(store, "first", None)
    second = _request(store, "second", first)
    held = _server_prepared(store)
    with store.engine.connect() as connection:
        for name in held:
            connection.execute(text(f"DEALLOCATE {name}"))
    sent.clear()

    third = _request(store, "third", second)

    refused, again = sent
    assert "EXECUTE " + _PREFIX in refused
    assert "EXECUTE" not in again and "INSERT INTO provisioning_log" in again
    assert "sends its statements as text from now on" in caplog.text
    # Exactly once: the refused message left nothing behind.
    assert _stored(store) == [
        ("first", "succeeded"),
        ("second", "succeeded"),
        ("third", "in_progress"),
    ]
    assert store.log.get(third)["request_id"] == "third"
    # The connection no longer prepares: the next request goes as text, no PREPARE.
    sent.clear()
    _request(store, "fourth", third)
    assert len(sent) == 1 and "EXECUTE" not in sent[0]
    assert _server_prepared(store) == set()
    assert _prepared_state(store).disabled


def test_a_statement_the_server_connection_already_holds_is_executed(one_connection_store, sent):
    # Another client of a pooler prepared it there: the same name is the same SQL.
    store = one_connection_store
    first = _request(store, "first", None)
    _request(store, "second", first)
    held = _server_prepared(store)
    _prepared_state(store).names.clear()  # this client forgets it prepared them
    sent.clear()

    _request(store, "third", None)

    assert len(sent) == 1 and "EXECUTE " + _PREFIX in sent[0]
    assert _server_prepared(store) == held
    assert [request_id for request_id, _ in _stored(store)] == ["first", "second", "third"]


def test_prepare_threshold_none_sends_text_and_prepares_nothing(postgres_url, sent):
    from sqlalchemy.engine import make_url

    url = make_url(postgres_url).update_query_dict({"prepare_threshold": "none"})
    store = Store.from_url(
        url.render_as_string(hide_password=False),
        engine_options={"pool_size": 1, "max_overflow": 0},
    )
    try:
        first = _request(store, "first", None)
        _request(store, "second", first)

        assert sent and all("EXECUTE" not in message for message in sent)
        assert _server_prepared(store) == set()
        assert _stored(store) == [("first", "succeeded"), ("second", "in_progress")]
    finally:
        store.close()


def test_only_a_transaction_s_first_message_carries_executes(one_connection_store, sent):
    # A later message could not be sent again as text if the server connection lacked
    # the statement (what went before it would be lost), so it never EXECUTEs.
    store = one_connection_store
    first = _request(store, "first", None)
    _request(store, "second", first)  # both statements prepared by now
    sent.clear()

    with driver_transaction(store.engine) as connection:
        third = start_row(store, connection, "third")  # read at once: the first message
        _finish(store, connection, third)  # goes with the COMMIT

    opening, closing = sent
    assert "EXECUTE " + _PREFIX in opening
    assert "EXECUTE" not in closing and "UPDATE provisioning_log" in closing
    assert _stored(store)[-1] == ("third", "succeeded")
