"""Requests' rows committed together (app/store/group_commit.py), on SQLite and PostgreSQL.

To make a batch on purpose, a first thread's write holds its transaction open on a gate
while the other threads queue behind it; once the gate opens, the next leader carries all
of them in one transaction. `other` is a second Store on the same database: what another
worker process sees.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from app.errors import ActionError
from app.ledger import Ledger
from app.request_context import new_request_id
from app.store import Store, StoreError
from app.store import group_commit as group_commit_module
from tests.store.rows import PAYLOAD, start_row

BODY = {"creditGrantId": "grant-1", "stiggCustomerId": "acme"}
FOLLOWERS = 6
WAIT_S = 30


@pytest.fixture
def stores(database_url):
    store = Store.from_url(database_url, outcome_delay_s=60.0)
    other = Store.from_url(database_url)
    yield store, other
    store.close()
    other.close()


class Commits:
    """Transactions the store's group commit committed from now on."""

    def __init__(self, store: Store) -> None:
        self._group_commit = store.group_commit
        self._before = store.group_commit.commits

    def __len__(self) -> int:
        return self._group_commit.commits - self._before


def count_commits(store: Store) -> Commits:
    return Commits(store)


class Batch:
    """A leader holding the transaction open, and `writes` queued behind it."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.results: dict[int, object] = {}
        self.threads: list[threading.Thread] = []

    def hold_the_leader(self) -> None:
        def held(connection):
            log_id = start_row(self.store, connection, "leader")
            self.entered.set()
            assert self.gate.wait(WAIT_S)
            return log_id

        self._start("leader", held)
        assert self.entered.wait(WAIT_S)

    def queue(self, number: int, write, *, then=None) -> None:
        """`then(result)` runs in the thread the moment run() returns."""
        self._start(number, write, then)

    def release(self) -> dict:
        self._wait_for(lambda: len(self.store.group_commit._queued) == len(self.threads) - 1)
        self.gate.set()
        for thread in self.threads:
            thread.join(WAIT_S)
            assert not thread.is_alive()
        return self.results

    def _start(self, name, write, then=None) -> None:
        def run():
            try:
                result = self.store.group_commit.run(write)
                self.results[name] = then(result) if then else result
            except BaseException as error:  # what the caller of run() would see
                self.results[name] = error

        thread = threading.Thread(target=run, name=str(name))
        self.threads.append(thread)
        thread.start()

    @staticmethod
    def _wait_for(condition) -> None:
        deadline = time.monotonic() + WAIT_S
        while not condition():
            assert time.monotonic() < deadline
            time.sleep(0.001)


def test_threads_that_arrive_together_share_one_commit_and_each_gets_its_own_row(stores):
    store, other = stores
    batch = Batch(store)
    batch.hold_the_leader()
    commits = count_commits(store)
    for number in range(FOLLOWERS):
        batch.queue(number, lambda connection, n=number: start_row(store, connection, f"r{n}"))

    results = batch.release()

    assert len(commits) == 2  # the leader's transaction, then one for all who queued
    ids = [results[number] for number in range(FOLLOWERS)]
    assert len({*ids, results["leader"]}) == FOLLOWERS + 1
    for number, log_id in enumerate(ids):
        row = other.log.get(log_id)
        assert (row["request_id"], row["outcome"]) == (f"r{number}", "in_progress")


def test_a_thread_is_answered_only_once_its_row_is_committed(stores):
    store, other = stores
    batch = Batch(store)
    batch.hold_the_leader()
    for number in range(FOLLOWERS):
        batch.queue(
            number,
            lambda connection, n=number: start_row(store, connection, f"r{n}"),
            # Another process looks the row up the moment run() returns. (On SQLite the
            # look-up's own transaction waits for the write lock; PostgreSQL's does not.)
            then=lambda log_id: (other.log.get(log_id) or {}).get("request_id"),
        )

    results = batch.release()

    assert [results[number] for number in range(FOLLOWERS)] == [
        f"r{number}" for number in range(FOLLOWERS)
    ]


def test_a_write_the_database_refuses_fails_only_its_own_request(stores):
    store, other = stores
    batch = Batch(store)
    batch.hold_the_leader()

    def refused(connection):
        start_row(store, connection, "refused")
        raise ValueError("a value the database refuses")

    for number in range(FOLLOWERS):
        if number == 2:
            batch.queue(number, refused)
        else:
            batch.queue(number, lambda connection, n=number: start_row(store, connection, f"r{n}"))

    results = batch.release()

    assert isinstance(results[2], ValueError)
    for number in range(FOLLOWERS):
        if number != 2:
            assert other.log.get(results[number])["request_id"] == f"r{number}"
    requests = [row["request_id"] for row in other.log.list(limit=100)]
    assert "refused" not in requests
    assert len(requests) == FOLLOWERS  # the leader and the five others, once each


def test_an_outage_fails_every_request_of_the_batch_and_commits_none(stores, monkeypatch):
    store, other = stores
    batch = Batch(store)
    batch.hold_the_leader()
    for number in range(FOLLOWERS):
        batch.queue(number, lambda connection, n=number: start_row(store, connection, f"r{n}"))

    def down(_engine):
        raise StoreError("database at test: unreachable")

    # The leader's transaction is already open; the followers' batch meets the outage.
    monkeypatch.setattr(group_commit_module, "driver_transaction", down)
    results = batch.release()

    errors = [results[number] for number in range(FOLLOWERS)]
    assert all(isinstance(error, StoreError) for error in errors)
    assert len({id(error) for error in errors}) == FOLLOWERS  # one exception per thread
    assert [row["request_id"] for row in other.log.list(limit=100)] == ["leader"]


def test_the_outcomes_a_failed_batch_carried_stay_queued(stores, monkeypatch):
    store, other = stores
    ledger = Ledger(store, ttl_s=3600, lock_s=60)

    def open_entry():
        new_request_id()
        return ledger.open(operation="createCreditGrant", caller_key_id="c", payload=PAYLOAD)[0]

    answered = open_entry()
    answered.succeeded(BODY)
    assert store.deferred.pending() == 1

    def down(_engine):
        raise StoreError("database at test: unreachable")

    with monkeypatch.context() as patched:
        patched.setattr(group_commit_module, "driver_transaction", down)
        with pytest.raises(ActionError) as refused:
            open_entry()
    assert refused.value.code == "STORE_UNAVAILABLE"
    assert store.deferred.pending() == 1

    open_entry()
    assert store.deferred.pending() == 0
    assert other.log.get(answered.log_id)["outcome"] == "succeeded"


def test_a_leader_that_is_stopped_does_not_leave_the_others_waiting(stores):
    store, _other = stores
    batch = Batch(store)
    batch.hold_the_leader()
    batch.queue(0, lambda connection: start_row(store, connection, "r0"))

    def stopped(_connection):
        raise KeyboardInterrupt

    batch.queue(1, stopped)
    results = batch.release()

    # Whichever of the two led the batch raised KeyboardInterrupt itself (whoever's write
    # raised it); the other was told its row was not committed.
    kinds = Counter(type(results[number]) for number in (0, 1))
    assert kinds == {KeyboardInterrupt: 1, StoreError: 1}


def test_one_of_many_requests_with_one_key_in_one_batch_wins(database_url):
    # Outcomes not deferred: a repeat would otherwise wait that long for the first one's.
    store = Store.from_url(database_url)
    ledger = Ledger(store, ttl_s=3600, lock_s=60)
    batch = Batch(store)
    batch.hold_the_leader()
    outcomes = []
    lock = threading.Lock()

    def open_with_the_key():
        new_request_id()
        try:
            entry, replay = ledger.open(
                operation="createCreditGrant",
                caller_key_id="caller",
                payload=PAYLOAD,
                idempotency_key="one-key",
                fingerprint="f" * 64,
            )
            result = ("claimed", entry.record_id is not None, replay)
        except ActionError as error:
            result = ("refused", error.code, None)
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=open_with_the_key) for _ in range(FOLLOWERS)]
    for thread in threads:
        thread.start()
    Batch._wait_for(lambda: len(store.group_commit._queued) == FOLLOWERS)
    batch.gate.set()
    for thread in threads + batch.threads:
        thread.join(WAIT_S)
    store.close()

    assert Counter(outcomes) == {
        ("claimed", True, None): 1,
        ("refused", "REQUEST_IN_PROGRESS", None): FOLLOWERS - 1,
    }


def test_alone_a_request_commits_at_once(stores):
    store, other = stores
    commits = count_commits(store)
    for number in range(3):
        log_id = store.group_commit.run(
            lambda connection, n=number: start_row(store, connection, f"r{n}")
        )
        assert other.log.get(log_id)["request_id"] == f"r{number}"
    assert len(commits) == 3


def test_each_waiting_thread_is_woken_once(stores, monkeypatch):
    """Only its own result, or the lead of the next batch, wakes a waiting thread: not
    every commit of the process (which cost a worker 2% of its CPU at 32 connections)."""
    store, other = stores
    woken = Counter()
    wake = group_commit_module._Ticket.wake

    def counted_wake(ticket):
        woken[threading.current_thread().name, id(ticket)] += 1
        wake(ticket)

    monkeypatch.setattr(group_commit_module._Ticket, "wake", counted_wake)
    commits = count_commits(store)
    batch = Batch(store)
    batch.hold_the_leader()
    for number in range(FOLLOWERS):
        batch.queue(number, lambda connection, n=number: start_row(store, connection, f"r{n}"))
    results = batch.release()

    # The leader hands the lead to the first follower, which wakes the other five with
    # their rows: one wake-up each, none for the leader, two commits.
    assert sorted(woken.values()) == [1] * FOLLOWERS
    assert len(commits) == 2
    for number in range(FOLLOWERS):
        assert other.log.get(results[number])["request_id"] == f"r{number}"


def test_a_waiting_thread_that_is_stopped_passes_the_lead_on(stores, monkeypatch):
    store, other = stores
    wait = group_commit_module._Ticket.wait

    def stopped_once_woken(ticket):
        wait(ticket)
        if threading.current_thread().name == "stopped":
            raise KeyboardInterrupt

    monkeypatch.setattr(group_commit_module._Ticket, "wait", stopped_once_woken)
    batch = Batch(store)
    batch.hold_the_leader()
    batch.queue("stopped", lambda connection: start_row(store, connection, "stopped"))
    Batch._wait_for(lambda: len(store.group_commit._queued) == 1)
    batch.queue("behind", lambda connection: start_row(store, connection, "behind"))
    results = batch.release()

    # "stopped" was handed the lead and stopped before committing anything: its row was
    # never written, and "behind" led its own batch instead of waiting for ever.
    assert isinstance(results["stopped"], KeyboardInterrupt)
    assert other.log.get(results["behind"])["request_id"] == "behind"
    assert not store.group_commit._queued and not store.group_commit._leading
