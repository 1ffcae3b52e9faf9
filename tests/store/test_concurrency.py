"""Exactly one winner when many requests arrive with one Idempotency-Key at once.

Threads share one Store, as the threads of one gunicorn worker do; processes each build
their own engine, as gunicorn workers and separate instances do. Both run on SQLite and
PostgreSQL.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter

from app.store import Claimed, InProgress, Store, fingerprint
from tests.store import workers

BODY = {"salesforceAccountId": "001000000000001AAA", "currencyId": "credits", "amount": 100}


def test_one_of_32_threads_wins_the_claim(store):
    contenders = 32
    barrier = threading.Barrier(contenders)
    claims = []
    errors = []

    def claim(number):
        try:
            barrier.wait(timeout=30)
            claims.append(
                store.idempotency.claim(
                    caller_key_id="caller",
                    operation="createCreditGrant",
                    key="one-key",
                    fingerprint=fingerprint(BODY),
                    request_id=f"request-{number}",
                    lock_s=60,
                )
            )
        except Exception as error:  # collected so the assertion below shows it
            errors.append(error)

    threads = [threading.Thread(target=claim, args=(number,)) for number in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert Counter(type(claim) for claim in claims) == {Claimed: 1, InProgress: contenders - 1}


def test_two_instances_sharing_one_database_have_one_winner(database_url):
    # Two Stores on one database: two service instances, each with its own pool.
    instances = [Store.from_url(database_url), Store.from_url(database_url)]
    contenders_per_instance = 8
    barrier = threading.Barrier(2 * contenders_per_instance)
    claims = []

    def claim(store, number):
        barrier.wait(timeout=30)
        claims.append(
            store.idempotency.claim(
                caller_key_id="caller",
                operation="createCreditGrant",
                key="one-key",
                fingerprint=fingerprint(BODY),
                request_id=f"request-{number}",
                lock_s=60,
            )
        )

    threads = [
        threading.Thread(target=claim, args=(store, number))
        for number in range(contenders_per_instance)
        for store in instances
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for store in instances:
        store.close()

    assert len(claims) == len(threads)
    assert sum(isinstance(claim, Claimed) for claim in claims) == 1


def test_one_of_8_processes_wins_the_claim(database_url):
    Store.from_url(database_url).close()  # migrated once, as start-up does
    processes = 8
    outcomes = workers.run_at_once(
        workers.claim_once,
        database_url,
        processes=processes,
        key="one-key",
        fingerprint=fingerprint(BODY),
    )

    assert Counter(outcomes) == {"Claimed": 1, "InProgress": processes - 1}


def test_a_worker_killed_mid_request_is_resumed_by_the_next_one(database_url):
    store = Store.from_url(database_url)
    context = workers.process_context()
    claimed = context.Event()
    lock_s = 2.0
    child = context.Process(
        target=workers.claim_then_die,
        args=(database_url, claimed),
        kwargs={"key": "one-key", "fingerprint": fingerprint(BODY), "lock_s": lock_s},
    )
    child.start()
    assert claimed.wait(timeout=60)
    child.join(timeout=60)
    assert child.exitcode == -signal.SIGKILL

    def claim():
        return store.idempotency.claim(
            caller_key_id="caller",
            operation="createSubscription",
            key="one-key",
            fingerprint=fingerprint(BODY),
            request_id="request-after",
            lock_s=60,
        )

    first_look = claim()
    time.sleep(lock_s)
    after_the_lock = claim()
    store.close()

    assert isinstance(first_look, InProgress)
    assert after_the_lock == Claimed(record_id=after_the_lock.record_id, resumed=True)
