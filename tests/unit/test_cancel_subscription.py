"""Cancel Stigg Subscription: the look-up, the exact cancelSubscription variables, and a
cancelled subscription answered as a success that says so."""

import pytest
import requests

from tests.conftest import ACCOUNT_15, ACCOUNT_18
from tests.fakes import NOW, PERIOD_END, Lost, Reply, graphql_error

PATH = "cancel-subscription"
EVERY_STATUS = ["ACTIVE", "IN_TRIAL", "NOT_STARTED", "PAYMENT_PENDING", "CANCELED", "EXPIRED"]
CURRENT = ["ACTIVE", "IN_TRIAL", "NOT_STARTED", "PAYMENT_PENDING"]
SUBSCRIPTION_URL = "https://app.stigg.test/env-1/subscriptions/"
CUSTOMER_URL = "https://app.stigg.test/env-1/customers/"


def test_by_id_at_the_end_of_the_billing_period_by_default(caller, stigg):
    stigg.add_subscription("acme", "sub-1")

    response = caller.post(PATH, {"stiggSubscriptionId": "sub-1"})

    assert response.status_code == 200, response.json
    assert stigg.operations == ["CustomerSubscriptions", "CancelSubscription"]
    assert stigg.calls[0].variables == {
        "filter": {"subscriptionId": {"eq": "sub-1"}, "status": {"in": EVERY_STATUS}},
        "paging": {"first": 1},
    }
    # The default is sent: Stigg's own default for an omitted time is not published.
    assert stigg.calls[1].variables == {
        "input": {
            "subscriptionRefId": "sub-1",
            "subscriptionCancellationTime": "END_OF_BILLING_PERIOD",
        }
    }
    assert response.json == {
        "stiggSubscriptionId": "sub-1",
        "stiggSubscriptionUrl": SUBSCRIPTION_URL + "sub-1",
        "stiggCustomerId": "acme",
        "stiggCustomerUrl": CUSTOMER_URL + "acme",
        "subscriptionStatus": "ACTIVE",
        "endDate": "2026-12-27T10:00:00Z",
        "alreadyCancelled": False,
    }


@pytest.mark.parametrize(
    ("options", "sent"),
    [
        (
            {"cancellationTime": "immediate"},
            {"subscriptionCancellationTime": "IMMEDIATE"},
        ),
        (
            {"cancellationTime": "SPECIFIC_DATE", "endDate": "2027-03-31"},
            {"subscriptionCancellationTime": "SPECIFIC_DATE", "endDate": "2027-03-31T00:00:00Z"},
        ),
        (
            {"cancellationTime": "END_OF_BILLING_PERIOD", "prorate": True},
            {"subscriptionCancellationTime": "END_OF_BILLING_PERIOD", "prorate": True},
        ),
        (
            {"prorate": False, "revokeEntitlements": False},
            {"subscriptionCancellationTime": "END_OF_BILLING_PERIOD", "prorate": False},
        ),
        (
            {"revokeEntitlements": True},
            {
                "subscriptionCancellationTime": "END_OF_BILLING_PERIOD",
                "subscriptionCancellationAction": "REVOKE_ENTITLEMENTS",
            },
        ),
        (
            {
                "cancellationTime": "SPECIFIC_DATE",
                "endDate": "2027-03-31T18:00:00-05:00",
                "prorate": True,
                "revokeEntitlements": True,
            },
            {
                "subscriptionCancellationTime": "SPECIFIC_DATE",
                "endDate": "2027-03-31T23:00:00Z",
                "prorate": True,
                "subscriptionCancellationAction": "REVOKE_ENTITLEMENTS",
            },
        ),
    ],
    ids=["immediate", "specific-date", "prorate", "defaults-false", "revoke", "everything"],
)
def test_each_option_maps_to_stiggs_input(caller, stigg, options, sent):
    stigg.add_subscription("acme", "sub-1")

    response = caller.post(PATH, {"stiggSubscriptionId": "sub-1", **options})

    assert response.status_code == 200, response.json
    assert stigg.calls_to("CancelSubscription")[0].input == {"subscriptionRefId": "sub-1", **sent}


def test_immediately_answers_the_cancelled_status(caller, stigg):
    stigg.add_subscription("acme", "sub-1")

    response = caller.post(PATH, {"stiggSubscriptionId": "sub-1", "cancellationTime": "IMMEDIATE"})

    assert response.json["subscriptionStatus"] == "CANCELED"
    assert response.json["endDate"] == "2026-11-27T10:00:00Z"
    assert response.json["alreadyCancelled"] is False


@pytest.mark.parametrize("status", ["CANCELED", "EXPIRED"])
def test_a_subscription_that_has_ended_is_already_cancelled_not_an_error(caller, stigg, status):
    stigg.add_subscription("acme", "sub-1", status=status)

    response = caller.post(PATH, {"stiggSubscriptionId": "sub-1", "cancellationTime": "IMMEDIATE"})

    assert response.status_code == 200, response.json
    assert response.json == {
        "stiggSubscriptionId": "sub-1",
        "stiggSubscriptionUrl": SUBSCRIPTION_URL + "sub-1",
        "stiggCustomerId": "acme",
        "stiggCustomerUrl": CUSTOMER_URL + "acme",
        "subscriptionStatus": status,
        "endDate": "2026-11-27T10:00:00Z",
        "alreadyCancelled": True,
    }
    assert stigg.operations == ["CustomerSubscriptions"]  # nothing sent to cancel


def test_a_customer_whose_subscription_has_ended_is_already_cancelled(caller, stigg):
    stigg.add_subscription(ACCOUNT_18, "sub-older", status="EXPIRED")
    stigg.add_subscription(ACCOUNT_18, "sub-newest", status="CANCELED")

    response = caller.post(PATH, {"salesforceAccountId": ACCOUNT_15})

    assert response.status_code == 200, response.json
    assert [call.variables for call in stigg.calls] == [
        {
            "filter": {"customer": {"customerId": {"eq": ACCOUNT_18}}, "status": {"in": CURRENT}},
            "paging": {"first": 50},
        },
        {
            "filter": {
                "customer": {"customerId": {"eq": ACCOUNT_18}},
                "status": {"in": ["CANCELED", "EXPIRED"]},
            },
            "paging": {"first": 1},
        },
    ]
    assert response.json["stiggSubscriptionId"] == "sub-newest"
    assert response.json["alreadyCancelled"] is True


def test_cancelling_the_same_subscription_twice_succeeds_both_times(caller, stigg):
    stigg.add_subscription(ACCOUNT_18, "sub-1")
    body = {"salesforceAccountId": ACCOUNT_15, "cancellationTime": "IMMEDIATE"}

    first = caller.post(PATH, body)
    second = caller.post(PATH, body)

    assert (first.status_code, first.json["alreadyCancelled"]) == (200, False)
    assert (second.status_code, second.json["alreadyCancelled"]) == (200, True)
    assert second.json["stiggSubscriptionId"] == "sub-1"
    assert len(stigg.calls_to("CancelSubscription")) == 1


def test_stigg_saying_already_cancelled_is_already_cancelled(caller, stigg):
    # It ended between the look-up and the call.
    subscription = stigg.add_subscription("acme", "sub-1")

    def ended_meanwhile(call):
        subscription.update(status="CANCELED", endDate=NOW)
        return graphql_error("SubscriptionAlreadyCanceledOrExpired", "Already canceled")

    stigg.script("CancelSubscription", ended_meanwhile)

    response = caller.post(PATH, {"stiggSubscriptionId": "sub-1"})

    assert response.status_code == 200, response.json
    assert response.json["alreadyCancelled"] is True
    assert response.json["subscriptionStatus"] == "CANCELED"
    assert stigg.operations == [
        "CustomerSubscriptions",
        "CancelSubscription",
        "CustomerSubscriptions",
    ]


def test_a_cancellation_whose_answer_was_lost_is_resent(caller, stigg, sleeps):
    stigg.add_subscription("acme", "sub-1")
    stigg.script("CancelSubscription", Lost(requests.ReadTimeout("read timed out")))

    response = caller.post(PATH, {"stiggSubscriptionId": "sub-1"})

    assert response.status_code == 200, response.json
    calls = stigg.calls_to("CancelSubscription")
    assert len(calls) == 2 and calls[0].variables == calls[1].variables
    assert response.json["endDate"] == "2026-12-27T10:00:00Z" == PERIOD_END.replace(".000", "")


def test_no_live_subscription_is_a_422(caller, stigg):
    stigg.add_subscription("acme", "sub-scheduled", status="NOT_STARTED")

    response = caller.post(PATH, {"stiggCustomerId": "acme"})

    assert response.status_code == 422
    assert response.json == {
        "code": "SUBSCRIPTION_NOT_FOUND",
        "message": "No live (ACTIVE or IN_TRIAL) subscription for customer acme. Not live yet: "
        "sub-scheduled (NOT_STARTED); pass stiggSubscriptionId to act on one.",
        "retryable": False,
        "requestId": response.headers["X-Request-Id"],
    }
    assert stigg.operations == ["CustomerSubscriptions"]


def test_a_customer_with_no_subscription_at_all_is_a_422(caller, stigg):
    response = caller.post(PATH, {"stiggCustomerId": "acme"})

    assert response.status_code == 422
    assert response.json["code"] == "SUBSCRIPTION_NOT_FOUND"
    assert (
        response.json["message"] == "No live (ACTIVE or IN_TRIAL) subscription for customer acme."
    )
    assert stigg.operations == ["CustomerSubscriptions", "CustomerSubscriptions"]


def test_two_live_subscriptions_are_a_422_listing_them(caller, stigg):
    stigg.add_subscription("acme", "sub-a", resource_id="ws-a")
    stigg.add_subscription("acme", "sub-b", status="IN_TRIAL")

    response = caller.post(PATH, {"stiggCustomerId": "acme"})

    assert response.status_code == 422
    assert response.json == {
        "code": "SUBSCRIPTION_AMBIGUOUS",
        "message": "customer acme has 2 live subscriptions (sub-b, sub-a): pass "
        "stiggSubscriptionId or resourceId to pick one.",
        "retryable": False,
        "requestId": response.headers["X-Request-Id"],
    }
    assert "CancelSubscription" not in stigg.operations


@pytest.mark.parametrize(
    ("body", "field", "message_part"),
    [
        ({"cancellationTime": "SPECIFIC_DATE"}, "endDate", "SPECIFIC_DATE needs"),
        ({"endDate": "2027-01-01"}, "endDate", "Only used with cancellationTime SPECIFIC_DATE"),
        (
            {"cancellationTime": "IMMEDIATE", "endDate": "2027-01-01"},
            "endDate",
            "Only used with",
        ),
        ({"cancellationTime": "NEXT_WEEK"}, "cancellationTime", "END_OF_BILLING_PERIOD, IMMEDIATE"),
        ({"prorate": "yes"}, "prorate", "boolean"),
        ({"revokeEntitlements": 1}, "revokeEntitlements", "boolean"),
        ({"cancellationTime": "SPECIFIC_DATE", "endDate": "31/03/2027"}, "endDate", "YYYY-MM-DD"),
    ],
)
def test_invalid_input_is_a_400_naming_the_field(caller, stigg, body, field, message_part):
    response = caller.post(PATH, {"stiggSubscriptionId": "sub-1", **body})

    assert response.status_code == 400, response.json
    messages = " ".join(e["message"] for e in response.json["fieldErrors"] if e["field"] == field)
    assert message_part in messages, response.json
    assert stigg.calls == []


def test_a_trial_stigg_cancels_only_immediately_is_a_422_with_stiggs_code(caller, stigg):
    stigg.add_subscription("acme", "sub-1", status="IN_TRIAL")
    stigg.script(
        "CancelSubscription",
        graphql_error("TrialMustBeCancelledImmediately", "Trial must be cancelled immediately"),
    )

    response = caller.post(PATH, {"stiggSubscriptionId": "sub-1"})

    assert response.status_code == 422
    assert response.json["code"] == "STIGG_REJECTED"
    assert response.json["stiggErrorCode"] == "TrialMustBeCancelledImmediately"


def test_the_same_idempotency_key_replays_the_answer(caller, stigg):
    stigg.add_subscription("acme", "sub-1")
    key = {"Idempotency-Key": "006D000000CkYtr:cancelSubscription:1"}

    first = caller.post(PATH, {"stiggSubscriptionId": "sub-1"}, headers=key)
    again = caller.post(PATH, {"stiggSubscriptionId": "sub-1"}, headers=key)

    assert again.json == first.json
    assert again.headers["Idempotent-Replayed"] == "true"
    assert stigg.operations == ["CustomerSubscriptions", "CancelSubscription"]


def test_a_stigg_outage_is_retryable(caller, stigg, sleeps):
    stigg.add_subscription("acme", "sub-1")
    stigg.script("CancelSubscription", *[Reply(status=503, raw="unavailable")] * 4)

    response = caller.post(PATH, {"stiggSubscriptionId": "sub-1"})

    assert response.status_code == 503
    assert response.json["code"] == "STIGG_UNAVAILABLE"
    assert response.json["retryable"] is True
    assert len(stigg.calls_to("CancelSubscription")) == 4
