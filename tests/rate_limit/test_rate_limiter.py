"""The limiter's logic with a fake clock: which windows a call counts in, how long it waits,
when it gives up, Stigg's 429s, the estimates."""

from __future__ import annotations

import logging

import pytest

from app.config import RateLimitSettings
from app.stigg.rate_limit import (
    JITTER_S,
    MemoryWindowStore,
    RateBudgetExhausted,
    RateLimiter,
    RateStoreError,
)
from tests.rate_limit.conftest import FakeClock

WINDOW_S = 60.0
IN_FLIGHT_S = 6.0


def limiter_with(clock: FakeClock, store=None, **limits) -> RateLimiter:
    return RateLimiter(
        store or MemoryWindowStore(window_s=WINDOW_S, in_flight_s=IN_FLIGHT_S),
        limits=RateLimitSettings(window_s=WINDOW_S, **limits),
        clock=clock,
        sleep=clock.sleep,
    )


def call(limiter, operation="provisionCustomer", customer="acme", *, timeout_s=0.0):
    permit = limiter.acquire(operation, customer, timeout_s=timeout_s)
    permit.done()
    return permit


def test_calls_go_at_once_while_the_budget_lasts(clock):
    limiter = limiter_with(clock, mutations=3)

    permits = [call(limiter, customer=f"c{n}") for n in range(3)]

    assert [permit.waited_s for permit in permits] == [0.0, 0.0, 0.0]
    assert clock.sleeps == []


def test_a_call_waits_for_the_oldest_to_leave_the_window(clock):
    limiter = limiter_with(clock, mutations=2)
    call(limiter, customer="a")
    clock.advance(10)
    call(limiter, customer="b")
    clock.advance(10)

    permit = call(limiter, customer="c", timeout_s=45)

    # The first call left the window 60 s after its answer: 40 s from here, plus jitter.
    assert 40 <= permit.waited_s <= 40 + JITTER_S
    assert sum(clock.sleeps) == pytest.approx(permit.waited_s)


def test_a_call_that_cannot_get_budget_in_time_gives_up_at_once(clock):
    limiter = limiter_with(clock, mutations=1)
    call(limiter, customer="a")
    clock.advance(5)

    with pytest.raises(RateBudgetExhausted) as exhausted:
        limiter.acquire("provisionCustomer", "b", timeout_s=20)

    assert exhausted.value.retry_after_s == pytest.approx(55)
    assert clock.sleeps == []  # no point waiting 20 s for budget that comes in 55


def test_each_operation_has_its_own_window(clock):
    limiter = limiter_with(clock, mutations=1, overrides={"createCreditGrant": 2})
    call(limiter, "provisionCustomer", "a")

    call(limiter, "createCreditGrant", "b")
    call(limiter, "createCreditGrant", "c")
    with pytest.raises(RateBudgetExhausted):
        call(limiter, "createCreditGrant", "d")
    with pytest.raises(RateBudgetExhausted):
        call(limiter, "provisionCustomer", "e")
    assert limiter.limit_for("createCreditGrant") == 2
    assert limiter.limit_for("getCustomerByRefId") == 3000
    assert limiter.limit_for("creditGrants") == 500


def test_a_customer_has_its_own_window_across_mutations(clock):
    limiter = limiter_with(clock, per_customer=2)
    call(limiter, "provisionCustomer", "acme")
    call(limiter, "provisionSubscriptionV2", "acme")

    with pytest.raises(RateBudgetExhausted):
        call(limiter, "createCreditGrant", "acme")
    call(limiter, "createCreditGrant", "globex")


def test_reads_do_not_count_against_the_customer(clock):
    limiter = limiter_with(clock, per_customer=1)
    for _ in range(5):
        call(limiter, "getCustomerByRefId", "acme")
        call(limiter, "creditGrants", "acme")

    call(limiter, "provisionCustomer", "acme")
    with pytest.raises(RateBudgetExhausted):
        call(limiter, "updateOneCustomer", "acme")


def test_a_customer_waiting_for_its_budget_takes_no_operation_budget(clock):
    limiter = limiter_with(clock, mutations=3, per_customer=1)
    call(limiter, "provisionCustomer", "acme")
    for _ in range(3):
        with pytest.raises(RateBudgetExhausted):
            call(limiter, "provisionCustomer", "acme")

    # Two of the three operation slots are still free for other customers.
    call(limiter, "provisionCustomer", "b")
    call(limiter, "provisionCustomer", "c")
    with pytest.raises(RateBudgetExhausted):
        call(limiter, "provisionCustomer", "d")


def test_a_call_still_in_flight_keeps_its_slot(clock):
    limiter = limiter_with(clock, mutations=1)
    in_flight = limiter.acquire("provisionCustomer", "a", timeout_s=0)
    clock.advance(WINDOW_S + 1)

    # Sent a window ago but not answered: Stigg may not have counted it yet.
    with pytest.raises(RateBudgetExhausted):
        limiter.acquire("provisionCustomer", "b", timeout_s=0)

    in_flight.done()
    clock.advance(WINDOW_S)
    call(limiter, "provisionCustomer", "b")


def test_stiggs_429s_are_counted_and_a_cool_down_holds_the_callers_windows(clock):
    limiter = limiter_with(clock)

    limiter.stigg_rate_limited("createCreditGrant")
    limiter.stigg_rate_limited("createCreditGrant")
    limiter.stigg_rate_limited("getCustomerByRefId")
    limiter.cool_down("createCreditGrant", "acme", seconds=3)
    limiter.cool_down("getCustomerByRefId", "acme", seconds=1)

    assert limiter.stigg_429s == {"createCreditGrant": 2, "getCustomerByRefId": 1}
    # Everyone using the grant's window, or acme's, waits out the cool-down...
    for operation, customer in (("createCreditGrant", "globex"), ("provisionCustomer", "acme")):
        with pytest.raises(RateBudgetExhausted) as exhausted:
            limiter.acquire(operation, customer, timeout_s=0)
        assert exhausted.value.retry_after_s == pytest.approx(3)
    # ...other operations for other customers do not.
    assert call(limiter, "provisionCustomer", "globex").waited_s == 0
    permit = call(limiter, "createCreditGrant", "globex", timeout_s=10)
    assert 3 <= permit.waited_s <= 3 + JITTER_S


def test_estimates_follow_the_budget(clock):
    limiter = limiter_with(clock, mutations=3)
    assert limiter.estimate_wait_s("provisionCustomer", 0) == 0
    assert limiter.estimate_wait_s("provisionCustomer", 3) == 0
    assert limiter.estimate_wait_s("provisionCustomer", 4) == WINDOW_S
    assert limiter.estimate_wait_s("provisionCustomer", 7) == 2 * WINDOW_S

    call(limiter, customer="a")
    call(limiter, customer="b")
    clock.advance(10)

    # One slot free now; the other two a window after their calls, 50 s from here.
    assert limiter.estimate_wait_s("provisionCustomer", 1) == 0
    assert limiter.estimate_wait_s("provisionCustomer", 2) == pytest.approx(50)
    assert limiter.estimate_wait_s("provisionCustomer", 3) == pytest.approx(50)
    assert limiter.estimate_wait_s("provisionCustomer", 4) == pytest.approx(WINDOW_S)
    assert limiter.estimate_wait_s("provisionCustomer", 5) == pytest.approx(50 + WINDOW_S)
    assert limiter.estimate_wait_s("createCreditGrant", 3) == 0


def test_switched_off_it_never_waits_but_still_counts_stiggs_429s(clock):
    limiter = RateLimiter.disabled()

    for _ in range(1000):
        assert limiter.acquire("provisionCustomer", "acme", timeout_s=0).waited_s == 0
    limiter.stigg_rate_limited("provisionCustomer")
    limiter.cool_down("provisionCustomer", "acme", seconds=5)

    assert limiter.enabled is False
    assert limiter.estimate_wait_s("provisionCustomer", 10_000) == 0
    assert limiter.stigg_429s == {"provisionCustomer": 1}


class BrokenStore(MemoryWindowStore):
    def reserve(self, limits, token, now):
        raise RateStoreError("database at sqlite:///x: disk I/O error")


def test_a_broken_store_lets_calls_through_and_says_so(clock, caplog):
    limiter = limiter_with(
        clock, BrokenStore(window_s=WINDOW_S, in_flight_s=IN_FLIGHT_S), mutations=1
    )

    with caplog.at_level(logging.WARNING):
        permits = [call(limiter) for _ in range(3)]

    assert [permit.waited_s for permit in permits] == [0, 0, 0]
    assert "calling Stigg without a permit" in caplog.text
