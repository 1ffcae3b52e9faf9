"""The window stores, on every backend, with times given explicitly (no real waiting).

Every backend must keep the same contract: a slot under every limit or none; a call counts
until a window after its answer (or, unanswered, its in-flight limit and a window after it
was sent); holds; the release times that the estimates read.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from app.stigg.rate_limit import MIN_WAIT_S, Limit
from tests.rate_limit.conftest import IN_FLIGHT_S, WINDOW_S

T0 = time.time()
OPERATION = "operation:provisionCustomer"


def token() -> str:
    return uuid.uuid4().hex


def take(store, limits, now, *, answered_after: float | None = 0.0) -> str:
    """Reserve (which must succeed) and, unless `answered_after` is None, complete."""
    call = token()
    assert store.reserve(limits, call, now) is None
    if answered_after is not None:
        store.complete([limit.key for limit in limits], call, now + answered_after)
    return call


def test_up_to_the_limit_then_a_wait_until_the_oldest_call_leaves(window_store):
    limits = [Limit(OPERATION, 3)]
    for offset in (0.0, 1.0, 2.0):
        take(window_store, limits, T0 + offset)

    wait = window_store.reserve(limits, token(), T0 + 3.0)

    assert wait == pytest.approx(WINDOW_S - 3.0, abs=1e-3)
    # The first call leaves the window a window after its answer, and not before.
    assert window_store.reserve(limits, token(), T0 + WINDOW_S - 0.001) is not None
    assert window_store.reserve(limits, token(), T0 + WINDOW_S + 0.001) is None
    assert len(window_store.releases(OPERATION, T0 + WINDOW_S + 0.001)) == 3


def test_a_denied_call_takes_no_slot_under_any_limit(window_store):
    customer_a, customer_b = "customer:a", "customer:b"
    take(window_store, [Limit(OPERATION, 5), Limit(customer_a, 2)], T0)
    take(window_store, [Limit(OPERATION, 5), Limit(customer_a, 2)], T0)

    denied = window_store.reserve([Limit(OPERATION, 5), Limit(customer_a, 2)], token(), T0)

    assert denied == pytest.approx(WINDOW_S, abs=1e-3)
    assert window_store.reserve([Limit(OPERATION, 5), Limit(customer_b, 2)], token(), T0) is None
    # 3 calls took the operation's slots: the denied one took none.
    assert len(window_store.releases(OPERATION, T0)) == 3
    assert len(window_store.releases(customer_a, T0)) == 2
    assert len(window_store.releases(customer_b, T0)) == 1


def test_the_longest_wait_of_the_limits_is_the_answer(window_store):
    customer = "customer:a"
    take(window_store, [Limit(OPERATION, 10), Limit(customer, 1)], T0)
    take(window_store, [Limit(OPERATION, 10)], T0 + 20)

    wait = window_store.reserve([Limit(OPERATION, 2), Limit(customer, 1)], token(), T0 + 30)

    assert wait == pytest.approx(WINDOW_S - 30, abs=1e-3)


def test_a_call_counts_until_a_window_after_its_answer(window_store):
    limits = [Limit(OPERATION, 1)]
    take(window_store, limits, T0, answered_after=5.0)

    # Sent at T0, answered at T0 + 5: Stigg may have counted it as late as T0 + 5.
    assert window_store.reserve(limits, token(), T0 + WINDOW_S + 1) == pytest.approx(4, abs=1e-3)
    assert window_store.releases(OPERATION, T0) == [pytest.approx(T0 + 5 + WINDOW_S, abs=1e-3)]
    assert window_store.reserve(limits, token(), T0 + WINDOW_S + 5.001) is None


def test_a_call_in_flight_counts_until_its_in_flight_limit(window_store):
    limits = [Limit(OPERATION, 1)]
    take(window_store, limits, T0, answered_after=None)

    # Its release is guessed at a window after it was sent; past that guess the waiter
    # checks again soon, and the slot is still taken while no answer came.
    assert window_store.reserve(limits, token(), T0 + 1) == pytest.approx(WINDOW_S - 1, abs=1e-3)
    assert window_store.reserve(limits, token(), T0 + WINDOW_S + 1) == pytest.approx(MIN_WAIT_S)
    # A worker that died mid-call: the slot frees itself.
    assert window_store.reserve(limits, token(), T0 + IN_FLIGHT_S + WINDOW_S + 0.001) is None


def test_a_hold_fills_the_windows_until_it_ends(window_store):
    customer = "customer:a"
    window_store.hold([OPERATION, customer], T0 + 5, T0)
    window_store.hold([OPERATION], T0 + 3, T0)  # an earlier end does not shorten it

    assert window_store.reserve([Limit(OPERATION, 100)], token(), T0 + 1) == pytest.approx(4)
    assert window_store.reserve([Limit(customer, 100)], token(), T0 + 2) == pytest.approx(3)
    assert window_store.reserve([Limit("operation:other", 100)], token(), T0 + 1) is None
    assert window_store.reserve([Limit(OPERATION, 100)], token(), T0 + 5.001) is None


def test_releases_are_sorted_and_only_of_live_calls(window_store):
    limits = [Limit(OPERATION, 10)]
    take(window_store, limits, T0 + 2)
    take(window_store, limits, T0)
    take(window_store, limits, T0 + 1, answered_after=None)

    releases = window_store.releases(OPERATION, T0 + 3)

    assert releases == [
        pytest.approx(T0 + WINDOW_S, abs=1e-3),
        pytest.approx(T0 + 1 + WINDOW_S, abs=1e-3),
        pytest.approx(T0 + 2 + WINDOW_S, abs=1e-3),
    ]
    assert window_store.releases(OPERATION, T0 + WINDOW_S + 0.5) == [
        pytest.approx(T0 + 1 + WINDOW_S, abs=1e-3),
        pytest.approx(T0 + 2 + WINDOW_S, abs=1e-3),
    ]
    assert window_store.releases("operation:unused", T0) == []


def test_threads_racing_for_the_last_slots_take_exactly_the_limit(window_store):
    limit, contenders = 5, 16
    barrier = threading.Barrier(contenders)
    granted, errors = [], []

    def contend():
        try:
            barrier.wait(timeout=30)
            if window_store.reserve([Limit(OPERATION, limit)], token(), T0) is None:
                granted.append(1)
        except Exception as error:  # collected so the assertion below shows it
            errors.append(error)

    threads = [threading.Thread(target=contend) for _ in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert len(granted) == limit
