"""Time in the sandbox: scheduled subscriptions, trials, cancellation dates, billing periods
and grants move on when their dates pass, applied lazily when state is read. The state's
clock is a FakeClock here (conftest), so no test sleeps."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.sandbox.conftest import iso

SUBSCRIPTION = """
mutation($input: ProvisionSubscriptionInput!) {
  provisionSubscriptionV2(input: $input) {
    id status isScheduled
    subscription {
      subscriptionId status startDate endDate cancellationDate cancelReason trialEndDate
      currentBillingPeriodStart currentBillingPeriodEnd
    }
  }
}
"""

LOOK = """
query($input: GetActiveSubscriptionsInput!, $customer: GetCustomerByRefIdInput!) {
  getActiveSubscriptions(input: $input) { subscriptionId }
  getCustomerByRefId(input: $customer) { hasActiveSubscription }
}
"""


@pytest.fixture
def customer(stigg, clock):
    return stigg.customer("cust-1", billingInformation={"paymentMethodId": "pm_1"})


def provision(stigg, **input):
    body = stigg.post(SUBSCRIPTION, {"input": {"customerId": "cust-1", **input}}).get_json()
    assert "errors" not in body, body
    return body["data"]["provisionSubscriptionV2"]


def subscriptions(admin) -> dict[str, dict]:
    state = admin.get("/_admin/state").get_json()
    return {s["subscriptionId"]: s for s in state["subscriptions"]}


def active_ids(stigg) -> list[str]:
    body = stigg.post(
        LOOK, {"input": {"customerId": "cust-1"}, "customer": {"customerId": "cust-1"}}
    ).get_json()
    return [s["subscriptionId"] for s in body["data"]["getActiveSubscriptions"]]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_a_future_start_is_scheduled_and_the_current_one_runs_until_then(
    stigg, admin, clock, customer
):
    current = provision(stigg, planId="plan-free", subscriptionId="today")
    later = provision(
        stigg,
        planId="plan-pro",
        billingPeriod="MONTHLY",
        subscriptionId="in-march",
        startDate="2026-03-01T00:00:00Z",
    )

    assert current["isScheduled"] is False
    assert later["status"] == "SUCCESS"
    assert later["isScheduled"] is True
    assert later["subscription"]["status"] == "NOT_STARTED"
    assert later["subscription"]["currentBillingPeriodStart"] is None
    now = subscriptions(admin)
    assert now["today"]["status"] == "ACTIVE"
    assert (
        now["today"]["endDate"] == now["today"]["cancellationDate"] == ("2026-03-01T00:00:00.000Z")
    )
    assert now["today"]["cancelReason"] is None  # not ended yet
    assert active_ids(stigg) == ["today"]

    clock.now = at("2026-03-01T00:00:00Z")

    then = subscriptions(admin)
    assert then["today"]["status"] == "CANCELED"
    assert then["today"]["cancelReason"] == "UpgradeOrDowngrade"
    assert then["in-march"]["status"] == "ACTIVE"
    assert then["in-march"]["currentBillingPeriodStart"] == "2026-03-01T00:00:00.000Z"
    assert then["in-march"]["currentBillingPeriodEnd"] == "2026-04-01T00:00:00.000Z"
    assert active_ids(stigg) == ["in-march"]


def test_a_new_schedule_supersedes_one_not_started_yet(stigg, admin, clock, customer):
    provision(stigg, planId="plan-free", subscriptionId="today")
    provision(stigg, planId="plan-free", subscriptionId="march", startDate="2026-03-01T00:00:00Z")
    provision(stigg, planId="plan-free", subscriptionId="june", startDate="2026-06-01T00:00:00Z")

    state = subscriptions(admin)
    assert state["march"]["status"] == "CANCELED"
    assert state["march"]["cancelReason"] == "UpgradeOrDowngrade"
    assert state["today"]["endDate"] == "2026-06-01T00:00:00.000Z"  # runs until june now
    clock.now = at("2026-04-01T00:00:00Z")
    assert active_ids(stigg) == ["today"]
    clock.now = at("2026-06-01T00:00:00Z")
    assert active_ids(stigg) == ["june"]


def test_starting_now_replaces_both_the_live_and_the_scheduled_one(stigg, admin, clock, customer):
    provision(stigg, planId="plan-free", subscriptionId="today")
    provision(stigg, planId="plan-free", subscriptionId="march", startDate="2026-03-01T00:00:00Z")
    clock.advance(days=1)
    provision(stigg, planId="plan-free", subscriptionId="tomorrow")

    state = subscriptions(admin)
    assert {name: s["status"] for name, s in state.items()} == {
        "today": "CANCELED",
        "march": "CANCELED",
        "tomorrow": "ACTIVE",
    }
    assert state["today"]["endDate"] == "2026-01-16T12:00:00.000Z"


def test_a_trial_converts_to_paid_at_its_end(stigg, admin, clock, customer):
    result = provision(
        stigg,
        planId="plan-pro",
        billingPeriod="MONTHLY",
        subscriptionId="trial",
        trialOverrideConfiguration={"isTrial": True, "trialEndDate": "2026-01-29T12:00:00Z"},
    )
    subscription = result["subscription"]
    assert subscription["status"] == "IN_TRIAL"
    # While in trial, the current period is the trial.
    assert subscription["currentBillingPeriodStart"] == "2026-01-15T12:00:00.000Z"
    assert subscription["currentBillingPeriodEnd"] == "2026-01-29T12:00:00.000Z"

    clock.now = at("2026-02-10T00:00:00Z")
    converted = subscriptions(admin)["trial"]
    assert converted["status"] == "ACTIVE"
    assert converted["currentBillingPeriodStart"] == "2026-01-29T12:00:00.000Z"
    assert converted["currentBillingPeriodEnd"] == "2026-02-28T12:00:00.000Z"


def test_a_trial_set_to_cancel_expires_at_its_end(stigg, admin, clock, customer):
    provision(
        stigg,
        planId="plan-pro",
        billingPeriod="MONTHLY",
        subscriptionId="trial",
        trialOverrideConfiguration={
            "isTrial": True,
            "trialEndDate": "2026-01-29T12:00:00Z",
            "trialEndBehavior": "CANCEL_SUBSCRIPTION",
        },
    )
    clock.now = at("2026-01-29T12:00:00Z")
    expired = subscriptions(admin)["trial"]
    assert (expired["status"], expired["cancelReason"]) == ("EXPIRED", "TrialEnded")
    assert expired["endDate"] == "2026-01-29T12:00:00.000Z"
    assert expired["cancellationDate"] is None
    assert active_ids(stigg) == []


def test_a_cancellation_date_ends_the_subscription(stigg, admin, clock, customer):
    provision(
        stigg, planId="plan-free", subscriptionId="s", cancellationDate="2026-02-01T00:00:00Z"
    )
    assert subscriptions(admin)["s"]["status"] == "ACTIVE"
    clock.now = at("2026-02-01T00:00:00Z")
    ended = subscriptions(admin)["s"]
    assert (ended["status"], ended["cancelReason"]) == ("CANCELED", "ScheduledCancellation")


def test_a_replacement_does_not_postpone_an_earlier_cancellation(stigg, admin, clock, customer):
    provision(
        stigg, planId="plan-free", subscriptionId="s", cancellationDate="2026-02-01T00:00:00Z"
    )
    provision(stigg, planId="plan-free", subscriptionId="later", startDate="2026-05-01T00:00:00Z")
    assert subscriptions(admin)["s"]["endDate"] == "2026-02-01T00:00:00.000Z"


def test_a_cancellation_date_not_after_the_start_is_refused(stigg, admin, clock, customer):
    error = stigg.error(
        "ProvisionSubscription",
        {
            "customerId": "cust-1",
            "planId": "plan-free",
            "startDate": "2026-02-01T00:00:00Z",
            "cancellationDate": "2026-02-01T00:00:00Z",
        },
    )
    assert error["extensions"] == {"code": "InvalidCancellationDate", "isValidationError": True}
    assert subscriptions(admin) == {}


@pytest.mark.parametrize(
    ("start", "period", "now", "expected"),
    [
        pytest.param(
            "2026-01-31T00:00:00Z",
            "MONTHLY",
            "2026-02-15T00:00:00Z",
            ("2026-01-31T00:00:00.000Z", "2026-02-28T00:00:00.000Z"),
            id="month-end-clamped",
        ),
        pytest.param(
            "2026-01-31T00:00:00Z",
            "MONTHLY",
            "2026-03-30T00:00:00Z",
            ("2026-02-28T00:00:00.000Z", "2026-03-31T00:00:00.000Z"),
            id="anchor-day-returns",
        ),
        pytest.param(
            "2024-02-29T00:00:00Z",
            "ANNUALLY",
            "2026-01-15T12:00:00Z",
            ("2025-02-28T00:00:00.000Z", "2026-02-28T00:00:00.000Z"),
            id="annual-from-leap-day",
        ),
        pytest.param(
            "2025-06-01T00:00:00Z",
            "MONTHLY",
            "2026-01-01T00:00:00Z",
            ("2026-01-01T00:00:00.000Z", "2026-02-01T00:00:00.000Z"),
            id="boundary-starts-a-period",
        ),
    ],
)
def test_current_billing_period(stigg, admin, clock, customer, start, period, now, expected):
    clock.now = min(at(start), clock.now)
    provision(
        stigg, planId="plan-pro", billingPeriod=period, subscriptionId="paid", startDate=start
    )
    clock.now = at(now)
    paid = subscriptions(admin)["paid"]
    assert (paid["currentBillingPeriodStart"], paid["currentBillingPeriodEnd"]) == expected


def test_free_plans_have_no_billing_period(stigg, admin, clock, customer):
    result = provision(stigg, planId="plan-free")
    assert result["subscription"]["currentBillingPeriodStart"] is None
    assert result["subscription"]["currentBillingPeriodEnd"] is None


GRANT = {
    "customerId": "cust-1",
    "currencyId": "cred-type-ai-tokens",
    "displayName": "Grant",
    "amount": 100,
    "grantType": "PROMOTIONAL",
}


def test_grants_become_active_and_expire_on_their_dates(stigg, admin, clock, customer):
    start = datetime(2026, 2, 1, tzinfo=UTC)
    grant = stigg.grant(effectiveAt=iso(start), expireAt="2026-03-01T00:00:00Z")
    assert grant["status"] == "SCHEDULED"

    def status() -> str:
        [listed] = admin.get("/_admin/state").get_json()["creditGrants"]
        return listed["status"]

    clock.now = start
    assert status() == "ACTIVE"
    clock.now = at("2026-03-01T00:00:00Z")
    assert status() == "EXPIRED"
