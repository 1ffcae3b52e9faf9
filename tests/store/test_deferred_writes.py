"""Outcomes committed after the answer (app/store/deferred.py), on SQLite and PostgreSQL.

`other` is a second Store on the same database: what another worker process, another
instance or the `log` command sees.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.errors import ActionError
from app.ledger import Ledger
from app.request_context import new_request_id
from app.store import Store, StoreError
from app.store import deferred as deferred_module
from app.store.models import IdempotencyRecord

records = IdempotencyRecord.__table__

PAYLOAD = {"stiggCustomerId": "acme", "currencyId": "credits", "amount": 100}
BODY = {"creditGrantId": "grant-1", "stiggCustomerId": "acme"}
# Longer than any test: the background thread never commits on its own unless asked to.
NEVER_S = 60.0


@pytest.fixture
def open_store(database_url):
    opened = []

    def open_(**options) -> Store:
        store = Store.from_url(database_url, **options)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


def ledger_on(store: Store) -> Ledger:
    return Ledger(store, ttl_s=3600, lock_s=60)


def open_entry(ledger: Ledger, *, key: str | None = None):
    new_request_id()
    entry, replay = ledger.open(
        operation="createCreditGrant",
        caller_key_id="caller",
        payload=PAYLOAD,
        idempotency_key=key,
        fingerprint="f" * 64,
    )
    assert replay is None
    return entry


def outcome(store: Store, entry) -> str:
    return store.log.get(entry.log_id)["outcome"]


def test_an_outcome_is_committed_with_the_next_request_s_row(open_store):
    store = open_store(outcome_delay_s=NEVER_S)
    other = open_store()
    ledger = ledger_on(store)

    first = open_entry(ledger)
    first.succeeded(BODY)

    assert outcome(other, first) == "in_progress"  # answered, not yet committed
    assert store.deferred.pending() == 1
    second = open_entry(ledger)
    assert store.deferred.pending() == 0
    row = other.log.get(first.log_id)
    assert (row["outcome"], row["http_status"], row["stigg_credit_grant_id"]) == (
        "succeeded",
        200,
        "grant-1",
    )
    assert outcome(other, second) == "in_progress"


def test_the_background_thread_commits_an_outcome_no_request_picked_up(open_store):
    store = open_store(outcome_delay_s=0.05)
    other = open_store()
    entry = open_entry(ledger_on(store))

    entry.succeeded(BODY)

    deadline = time.monotonic() + 10
    while outcome(other, entry) == "in_progress" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert outcome(other, entry) == "succeeded"
    assert store.deferred.pending() == 0


def test_the_background_thread_leaves_alone_what_a_request_carried_within_the_delay(
    open_store,
):
    store = open_store(outcome_delay_s=1.0)
    background_flushes = []
    flush = store.deferred.flush

    def counted_flush():
        background_flushes.append(1)
        flush()

    store.deferred.flush = counted_flush  # what the background thread calls
    ledger = ledger_on(store)
    first = open_entry(ledger)
    first.succeeded(BODY)

    time.sleep(0.1)
    open_entry(ledger)  # carries the outcome, well within the delay
    time.sleep(1.5)  # past the delay: the thread would have committed it by now

    assert background_flushes == []
    assert store.deferred.pending() == 0


def test_an_outcome_added_while_the_thread_sleeps_on_an_empty_queue_still_waits_one_delay(
    open_store,
):
    """Once the requests carried what it waited for, the thread looks again a delay later
    instead of being woken by every request's outcome: an outcome added in between must
    still be committed one delay after it was added, not two."""
    delay_s = 0.5
    store = open_store(outcome_delay_s=delay_s)
    other = open_store()
    ledger = ledger_on(store)
    first = open_entry(ledger)
    first.succeeded(BODY)  # the thread now waits for it to fall due
    time.sleep(0.05)
    open_entry(ledger).succeeded(BODY)  # carries it; this one's outcome is pending now
    time.sleep(0.05)
    store.group_commit.run(lambda connection: None)  # a request carries that one too
    # The thread finds nothing pending at 0.5 s and sleeps on to 1.0 s; this one, added at
    # 0.6 s, is due at 1.1 s (a thread that slept a whole delay again would commit it at 1.5).
    time.sleep(0.5)
    late = open_entry(ledger)
    late.succeeded(BODY)
    added = time.monotonic()

    while outcome(other, late) == "in_progress" and time.monotonic() - added < 3:
        time.sleep(0.01)
    committed_after_s = time.monotonic() - added

    assert outcome(other, late) == "succeeded"
    assert committed_after_s < delay_s + 0.25


class CountedEvent:
    """The background thread's wake-up Event, counting `set` (a cross-CPU wake-up when
    the thread is waiting on it)."""

    def __init__(self, event: threading.Event) -> None:
        self._event = event
        self.sets = 0

    def set(self) -> None:
        self.sets += 1
        self._event.set()

    def __getattr__(self, name):
        return getattr(self._event, name)


def test_under_steady_traffic_the_thread_is_woken_once_and_idles_after_it(open_store, monkeypatch):
    """Outcomes three delays apart (the thread commits each a delay after it came): the
    thread keeps looking once per delay instead of idling after one empty look and being
    woken again by the next outcome; it idles once nothing was pending for IDLE_AFTER_S."""
    delay_s = 0.05
    monkeypatch.setattr(deferred_module, "IDLE_AFTER_S", 0.5)
    store = open_store(outcome_delay_s=delay_s)
    wake = CountedEvent(store.deferred._wake)
    store.deferred._wake = wake
    ledger = ledger_on(store)

    for _ in range(5):
        entry = open_entry(ledger)  # carries the previous outcome
        entry.succeeded(BODY)
        time.sleep(3 * delay_s)
    open_entry(ledger)
    assert wake.sets == 1

    deadline = time.monotonic() + 5
    while not store.deferred._flusher_idle and time.monotonic() < deadline:
        time.sleep(0.01)
    assert store.deferred._flusher_idle
    open_entry(ledger).succeeded(BODY)
    assert wake.sets == 2


def test_the_process_that_answered_reads_its_own_outcomes(open_store):
    store = open_store(outcome_delay_s=NEVER_S)
    entry = open_entry(ledger_on(store))

    entry.succeeded(BODY)

    assert outcome(store, entry) == "succeeded"
    assert [row["outcome"] for row in store.log.list()] == ["succeeded"]


def test_a_repeat_elsewhere_waits_for_an_answered_request_s_outcome_and_replays_it(open_store):
    store = open_store(outcome_delay_s=NEVER_S)
    other = open_store(outcome_delay_s=0.5)  # waits up to 2 x 0.5 s + a margin
    entry = open_entry(ledger_on(store), key="key-1")
    entry.succeeded(BODY)  # answered; the kept answer is not committed yet
    committer = threading.Timer(0.1, store.deferred.flush)
    committer.start()

    new_request_id()
    _, replay = ledger_on(other).open(
        operation="createCreditGrant",
        caller_key_id="caller",
        payload=PAYLOAD,
        idempotency_key="key-1",
        fingerprint="f" * 64,
    )

    committer.join()
    assert (replay.status, replay.body) == (200, BODY)


def test_a_repeat_of_a_request_still_running_is_told_to_retry(open_store):
    store = open_store(outcome_delay_s=NEVER_S)
    other = open_store(outcome_delay_s=0.01)
    open_entry(ledger_on(store), key="key-1")  # running: no answer yet

    with pytest.raises(ActionError) as refused:
        open_entry(ledger_on(other), key="key-1")

    assert (refused.value.status, refused.value.code) == (409, "REQUEST_IN_PROGRESS")
    assert refused.value.retryable is True


def test_the_answer_s_time_is_recorded_not_the_commit_s(open_store, clock):
    store = open_store(outcome_delay_s=NEVER_S, clock=clock)
    entry = open_entry(ledger_on(store), key="key-1")
    entry.succeeded(BODY)
    answered = clock.now

    clock.advance(30)  # the outcome waits; the clock moves on
    store.deferred.flush()

    assert store.log.get(entry.log_id)["finished_at"] == answered
    with store.engine.connect() as connection:
        expires_at = connection.execute(select(records.c.expires_at)).scalar_one()
    assert expires_at == answered + timedelta(seconds=3600)


def test_a_transaction_that_fails_gives_the_outcomes_back(open_store, monkeypatch):
    store = open_store(outcome_delay_s=NEVER_S)
    other = open_store()
    ledger = ledger_on(store)
    entry = open_entry(ledger)
    entry.succeeded(BODY)

    def broken_start(*_args, **_row):
        raise RuntimeError("a bug in the next request")

    monkeypatch.setattr(store.log, "queue_start", broken_start)
    with pytest.raises(RuntimeError):
        open_entry(ledger)

    assert store.deferred.pending() == 1
    assert outcome(other, entry) == "in_progress"
    store.deferred.flush()
    assert outcome(other, entry) == "succeeded"


def test_a_write_the_database_refuses_is_dropped_alone_and_logged(open_store, caplog):
    store = open_store(outcome_delay_s=NEVER_S)
    other = open_store()
    entry = open_entry(ledger_on(store))

    def refused(_connection):
        raise ValueError("a value the database refuses")

    store.deferred.add(refused)
    entry.succeeded(BODY)
    with caplog.at_level(logging.ERROR, logger="app.store.deferred"):
        store.deferred.flush()

    assert outcome(other, entry) == "succeeded"
    assert store.deferred.pending() == 0
    assert "could not be recorded" in caplog.text


def test_an_outage_keeps_the_outcomes_queued(open_store, monkeypatch):
    store = open_store(outcome_delay_s=NEVER_S)
    other = open_store()
    entry = open_entry(ledger_on(store))
    entry.succeeded(BODY)

    def down(*_args, **_kwargs):
        raise StoreError("database at test: unreachable")

    with monkeypatch.context() as patched:
        patched.setattr(deferred_module, "driver_transaction", down)
        with pytest.raises(StoreError):
            store.deferred.flush()
    assert store.deferred.pending() == 1

    store.deferred.flush()
    assert outcome(other, entry) == "succeeded"


def test_close_commits_what_is_pending_and_later_outcomes_go_straight_in(database_url):
    store = Store.from_url(database_url, outcome_delay_s=NEVER_S)
    other = Store.from_url(database_url)
    try:
        ledger = ledger_on(store)
        first = open_entry(ledger)
        second = open_entry(ledger)
        first.succeeded(BODY)

        store.deferred.close()

        assert outcome(other, first) == "succeeded"
        second.succeeded(BODY)  # after close: committed before succeeded() returns
        assert outcome(other, second) == "succeeded"
    finally:
        store.close()
        other.close()


def test_with_no_delay_the_outcome_is_committed_before_the_answer(open_store):
    store = open_store(outcome_delay_s=0)
    other = open_store()
    entry = open_entry(ledger_on(store))

    entry.succeeded(BODY)

    assert outcome(other, entry) == "succeeded"
    assert store.deferred.pending() == 0


def test_an_outage_while_retrying_one_by_one_keeps_the_untried_queued(open_store, monkeypatch):
    store = open_store(outcome_delay_s=NEVER_S)
    other = open_store()
    ledger = ledger_on(store)
    first, second = open_entry(ledger), open_entry(ledger)

    def refused(_connection):
        raise ValueError("a value the database refuses")

    store.deferred.add(refused)
    first.succeeded(BODY)
    second.succeeded(BODY)
    real_transaction = deferred_module.driver_transaction
    calls = []

    def down_from_the_third_call(engine):
        calls.append(1)
        if len(calls) >= 3:  # all three together, the refused one alone, then the outage
            raise StoreError("database at test: unreachable")
        return real_transaction(engine)

    with monkeypatch.context() as patched:
        patched.setattr(deferred_module, "driver_transaction", down_from_the_third_call)
        with pytest.raises(StoreError):
            store.deferred.flush()
    assert store.deferred.pending() == 2  # both outcomes; the refused write is gone

    store.deferred.flush()
    assert (outcome(other, first), outcome(other, second)) == ("succeeded", "succeeded")
