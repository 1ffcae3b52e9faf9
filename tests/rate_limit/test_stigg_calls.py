"""Every Stigg call of an action passes the limiter: the 429 a Flow gets when the budget is
gone, the wait when it comes back in time, Stigg's own 429s, batch items' budget waits.

Stigg is mocked with `responses`; the limiter runs on the in-process store with a fake
clock, which the client's backoff sleeps move too.
"""

from __future__ import annotations

import pytest

from app.config import RateLimitSettings
from app.stigg import StiggFailure
from app.stigg.rate_limit import JITTER_S, MemoryWindowStore, RateLimiter
from tests.conftest import ACCOUNT_18, PROMOTIONAL_GRANT
from tests.fakes import Reply, data, graphql_error

WINDOW_S = 60.0
CUSTOMER = {"salesforceAccountId": ACCOUNT_18, "customerName": "Acme", "customerEmail": "a@acme.io"}
RENAMED = {**CUSTOMER, "customerName": "Acme Renamed"}
EXISTING = {
    "customerId": ACCOUNT_18,
    "name": "Acme",
    "email": "a@acme.io",
    "salesforceId": ACCOUNT_18,
}
GRANT_INPUT = {"customerId": "acme", "amount": 100, "currencyId": "cred-type-ai-tokens"}


@pytest.fixture
def limited(app, clock, sleeps):
    """Switch the app's limiter on with these limits; Stigg backoffs move the clock."""
    client = app.extensions["stigg"]

    def install(**limits) -> tuple[RateLimiter, MemoryWindowStore]:
        store = MemoryWindowStore(window_s=WINDOW_S, in_flight_s=6)
        limiter = RateLimiter(
            store,
            limits=RateLimitSettings(window_s=WINDOW_S, **limits),
            clock=clock,
            sleep=clock.sleep,
        )
        client.rate_limiter = limiter

        def backoff(seconds: float) -> None:
            sleeps.append(seconds)
            clock.advance(seconds)

        client._sleep = backoff
        return limiter, store

    return install


def test_a_single_action_answers_429_when_the_budget_is_gone_past_its_deadline(
    caller, stigg, limited, clock
):
    limited(per_customer=1)
    assert caller.post("create-customer-with-email", CUSTOMER).status_code == 200
    stigg.script("GetCustomer", data(EXISTING))
    clock.advance(5)

    response = caller.post("create-customer-with-email", RENAMED)

    # acme's one mutation a window is spent for 55 s more: beyond the 20 s deadline, so
    # the answer comes at once, and the update was never sent.
    assert response.status_code == 429
    assert response.json == {
        "code": "STIGG_RATE_LIMITED",
        "message": "Stigg's rate limit was reached, even after backing off; try again in a minute.",
        "retryable": True,
        "requestId": response.headers["X-Request-Id"],
    }
    assert response.headers["Retry-After"] == "55"
    assert stigg.operations == ["GetCustomer", "ProvisionCustomer", "GetCustomer"]
    assert clock.sleeps == []


def test_a_single_action_waits_for_budget_that_frees_up_before_its_deadline(
    caller, stigg, limited, clock
):
    limited(per_customer=1)
    assert caller.post("create-customer-with-email", CUSTOMER).status_code == 200
    stigg.script("GetCustomer", data(EXISTING))
    clock.advance(50)

    response = caller.post("create-customer-with-email", RENAMED)

    assert response.status_code == 200
    assert stigg.operations == ["GetCustomer", "ProvisionCustomer", "GetCustomer", "UpdateCustomer"]
    assert 10 <= sum(clock.sleeps) <= 10 + JITTER_S


@pytest.mark.parametrize(
    "stigg_says_no",
    [
        Reply(status=429, body={"error": "rate_limit_exceeded", "message": "Too many requests"}),
        graphql_error("RateLimitExceeded", "Too many requests", validation=False),
    ],
    ids=["HTTP 429", "RateLimitExceeded"],
)
def test_stiggs_429_is_backed_off_counted_and_the_retry_takes_a_permit_again(
    caller, stigg, limited, sleeps, stigg_says_no
):
    limiter, store = limited()
    holds = []
    hold = store.hold
    store.hold = lambda keys, until, now: (
        holds.append((keys, until - now)),
        hold(keys, until, now),
    )
    stigg.script("GrantCredits", stigg_says_no)

    response = caller.post("create-credit-grant", PROMOTIONAL_GRANT)

    assert response.status_code == 200
    assert len(stigg.calls_to("GrantCredits")) == 2
    assert limiter.stigg_429s == {"createCreditGrant": 1}
    assert len(sleeps) == 1 and sleeps[0] >= 0.2  # exponential backoff with jitter
    # Everyone using the grant's window or acme's paused for as long as this call did.
    assert holds == [(["operation:createCreditGrant", "customer:acme"], pytest.approx(sleeps[0]))]
    # Both attempts took a slot of the grant's window and of acme's.
    assert len(store.releases("operation:createCreditGrant", limiter._clock())) == 2
    assert len(store.releases("customer:acme", limiter._clock())) == 2


def test_a_rate_limited_grant_is_not_resent_without_budget(caller, stigg, limited):
    # One grant a window: the first attempt took it, and Stigg said 429 anyway (another
    # client of the same Stigg environment). The retry must wait for budget, not go out.
    limiter, _ = limited(overrides={"createCreditGrant": 1})
    stigg.script("GrantCredits", Reply(status=429, body={"error": "rate_limit_exceeded"}))

    response = caller.post("create-credit-grant", PROMOTIONAL_GRANT)

    assert response.status_code == 429
    assert response.json["code"] == "STIGG_RATE_LIMITED"
    assert response.json["retryable"] is True
    assert int(response.headers["Retry-After"]) in (59, 60)
    assert len(stigg.calls_to("GrantCredits")) == 1
    assert limiter.stigg_429s == {"createCreditGrant": 1}


def test_a_batch_item_waits_for_budget_without_losing_its_deadline(app, stigg, limited, clock):
    limited(overrides={"createCreditGrant": 1})
    client = app.extensions["stigg"]
    client.session().execute("GrantCredits", {"input": GRANT_INPUT})
    clock.advance(WINDOW_S - 25)

    # Budget in 25 s: past a single action's 20 s deadline...
    single = client.session()
    with pytest.raises(StiggFailure) as refused:
        single.execute("GrantCredits", {"input": GRANT_INPUT})
    assert refused.value.code == "STIGG_RATE_LIMITED"
    assert refused.value.retry_after_s == pytest.approx(25)
    # ...and past what this item may wait...
    with pytest.raises(StiggFailure):
        client.session(budget_wait_s=10).execute("GrantCredits", {"input": GRANT_INPUT})
    assert len(stigg.calls_to("GrantCredits")) == 1

    # ...but within 30 s of budget wait, which the deadline does not pay for.
    item = client.session(budget_wait_s=30)
    grant = item.execute("GrantCredits", {"input": GRANT_INPUT})

    assert grant["customerId"] == "acme"
    assert len(stigg.calls_to("GrantCredits")) == 2
    assert 25 <= item.budget_wait_s_spent <= 25 + JITTER_S
    assert item.remaining_s() > 40  # 20 s of deadline, moved on by the 25 s waited


def test_single_actions_record_their_budget_wait_too(app, stigg, limited, clock):
    limited(overrides={"createCreditGrant": 1})
    client = app.extensions["stigg"]
    client.session().execute("GrantCredits", {"input": GRANT_INPUT})
    clock.advance(WINDOW_S - 5)

    single = client.session()
    single.execute("GrantCredits", {"input": GRANT_INPUT})

    assert 5 <= single.budget_wait_s_spent <= 5 + JITTER_S
    assert single.remaining_s() < 20  # not moved on by the wait (it would be ~25 s then)


def test_subscription_mutations_count_against_the_subscription_and_workflows_none(
    app, stigg, limited
):
    _, store = limited()
    session = app.extensions["stigg"].session()
    stigg.add_subscription("acme", "sub-1")

    session.execute("UpdateSubscription", {"input": {"subscriptionId": "sub-1"}})
    session.execute("CancelSubscription", {"input": {"subscriptionRefId": "sub-1"}})
    session.execute("TriggerWorkflow", {"input": {"triggerId": "wf-1"}})

    now = app.extensions["stigg"].rate_limiter._clock()
    assert len(store.releases("customer:subscription:sub-1", now)) == 2
    assert len(store.releases("operation:updateOneSubscription", now)) == 1
    assert len(store.releases("operation:cancelSubscription", now)) == 1
    assert len(store.releases("operation:triggerWorkflow", now)) == 1
    assert store.releases("customer:acme", now) == []
