"""Update Stigg Subscription: the look-up, then the exact updateOneSubscription variables."""

import pytest

from actions import ACTIONS
from actions.create_subscription import subscription_input
from actions.once import CreationTag
from actions.update_subscription import update_input
from schemas.subscription import CreateSubscriptionRequest, UpdateSubscriptionRequest
from tests.conftest import ACCOUNT_15, ACCOUNT_18, OPPORTUNITY_15
from tests.fakes import Reply, graphql_error

PATH = "update-subscription"
OPPORTUNITY_18 = "006D000000CkYtrIAF"
EVERY_STATUS = ["ACTIVE", "IN_TRIAL", "NOT_STARTED", "PAYMENT_PENDING", "CANCELED", "EXPIRED"]
CURRENT = ["ACTIVE", "IN_TRIAL", "NOT_STARTED", "PAYMENT_PENDING"]
SUBSCRIPTION_URL = "https://app.stigg.test/env-1/subscriptions/"
CUSTOMER_URL = "https://app.stigg.test/env-1/customers/"


def by_id_lookup(subscription_id: str) -> dict:
    return {
        "filter": {"subscriptionId": {"eq": subscription_id}, "status": {"in": EVERY_STATUS}},
        "paging": {"first": 1},
    }


def test_every_field_maps_to_the_documented_stigg_input(caller, stigg):
    stigg.add_subscription(
        "acme", "sub-1", addons=(("addon-seats", 5), ("addon-storage", 1), ("addon-gpu", 2))
    )

    response = caller.post(
        PATH,
        {
            "stiggSubscriptionId": "sub-1",
            "addons": [
                {"addonId": "addon-seats", "quantity": 12},
                {"addonId": "addon-storage", "quantity": 0},
                {"addonId": "addon-new", "quantity": 3},
            ],
            "billingPeriod": "Annually",
            "planBaseChargeOverride": 400,
            "currency": "eur",
            "subscriptionCreditEntitlements": [
                {
                    "customCurrencyId": "cred-type-ai-tokens",
                    "amount": 2000,
                    "cadence": "year",
                    "priceOverride": 150,
                }
            ],
            "trialEndDate": "2027-01-31",
            "salesforceOpportunityId": OPPORTUNITY_15,
        },
    )

    assert response.status_code == 200, response.json
    assert stigg.operations == ["CustomerSubscriptions", "UpdateSubscription"]
    assert stigg.calls[0].variables == by_id_lookup("sub-1")
    assert stigg.calls[1].variables == {
        "input": {
            "subscriptionId": "sub-1",
            # The full resulting list: changed, kept (gpu), removed (storage), added.
            "addons": [
                {"addonId": "addon-seats", "quantity": 12},
                {"addonId": "addon-gpu", "quantity": 2},
                {"addonId": "addon-new", "quantity": 3},
            ],
            "billingPeriod": "ANNUALLY",
            "priceOverrides": [
                {"baseCharge": True, "price": {"amount": 400.0, "currency": "EUR"}},
                {
                    "currencyId": "cred-type-ai-tokens",
                    "price": {"amount": 150.0, "currency": "EUR"},
                },
            ],
            "entitlements": [
                {
                    "credit": {
                        "customCurrencyId": "cred-type-ai-tokens",
                        "amount": 2000.0,
                        "cadence": "YEAR",
                    }
                }
            ],
            "trialEndDate": "2027-01-31T00:00:00Z",
            "salesforceId": OPPORTUNITY_18,
        }
    }
    assert response.json == {
        "stiggSubscriptionId": "sub-1",
        "stiggSubscriptionUrl": SUBSCRIPTION_URL + "sub-1",
        "stiggCustomerId": "acme",
        "stiggCustomerUrl": CUSTOMER_URL + "acme",
        "subscriptionStatus": "ACTIVE",
    }


@pytest.mark.parametrize(
    ("change", "sent"),
    [
        ({"billingPeriod": "monthly"}, {"billingPeriod": "MONTHLY"}),
        (
            {"planBaseChargeOverride": 0},
            {"priceOverrides": [{"baseCharge": True, "price": {"amount": 0.0}}]},
        ),
        (
            {
                "subscriptionCreditEntitlements": [
                    {"customCurrencyId": "cred-type-ai-tokens", "amount": 5, "cadence": "MONTH"}
                ]
            },
            {
                "entitlements": [
                    {
                        "credit": {
                            "customCurrencyId": "cred-type-ai-tokens",
                            "amount": 5.0,
                            "cadence": "MONTH",
                        }
                    }
                ]
            },
        ),
        ({"trialEndDate": "2027-02-01T09:30:00+02:00"}, {"trialEndDate": "2027-02-01T07:30:00Z"}),
        ({"salesforceOpportunityId": OPPORTUNITY_18}, {"salesforceId": OPPORTUNITY_18}),
        (
            {"addons": [{"addonId": "addon-seats", "quantity": 0}]},
            {"addons": [{"addonId": "addon-storage", "quantity": 1}]},
        ),
        (
            {
                "addons": [
                    {"addonId": "addon-seats", "quantity": 0.0},
                    {"addonId": "x", "quantity": 0},
                ]
            },
            {"addons": [{"addonId": "addon-storage", "quantity": 1}]},
        ),
        (
            # Every add-on removed: an empty list, not an omitted one.
            {
                "addons": [
                    {"addonId": "addon-seats", "quantity": 0},
                    {"addonId": "addon-storage", "quantity": 0},
                ]
            },
            {"addons": []},
        ),
    ],
    ids=[
        "billing-period",
        "base-charge",
        "credit-entitlements",
        "trial-end",
        "opportunity",
        "addon-removed",
        "addon-unknown-removed",
        "all-addons-removed",
    ],
)
def test_each_field_alone_sends_only_its_mapping(caller, stigg, change, sent):
    stigg.add_subscription("acme", "sub-1", addons=(("addon-seats", 5), ("addon-storage", 1)))

    response = caller.post(PATH, {"stiggSubscriptionId": "sub-1", **change})

    assert response.status_code == 200, response.json
    assert stigg.calls_to("UpdateSubscription")[0].input == {"subscriptionId": "sub-1", **sent}


def test_create_and_update_map_the_shared_terms_the_same_way():
    terms = {
        "billingPeriod": "annually",
        "planBaseChargeOverride": 99.5,
        "currency": "gbp",
        "subscriptionCreditEntitlements": [
            {"customCurrencyId": "c", "amount": 10, "cadence": "YEAR", "priceOverride": 5}
        ],
        "salesforceOpportunityId": OPPORTUNITY_15,
    }
    tag = CreationTag("k", "createSubscription", "key", "f", look_first=False)
    created = subscription_input(
        CreateSubscriptionRequest().load(
            {"salesforceAccountId": ACCOUNT_15, "planId": "p", **terms}
        ),
        "acme",
        tag=tag,
    )
    updated = update_input(
        UpdateSubscriptionRequest().load({"stiggSubscriptionId": "sub-1", **terms}),
        {"subscriptionId": "sub-1", "addons": []},
    )

    shared = ("billingPeriod", "priceOverrides", "entitlements", "salesforceId")
    assert {key: created[key] for key in shared} == {key: updated[key] for key in shared}
    assert set(updated) == {"subscriptionId", *shared}


def test_the_customers_live_subscription_is_found_by_the_account(caller, stigg):
    stigg.add_subscription(ACCOUNT_18, "sub-old", status="CANCELED")
    stigg.add_subscription(ACCOUNT_18, "sub-live", status="IN_TRIAL", addons=(("addon-seats", 2),))

    response = caller.post(
        PATH,
        {"salesforceAccountId": ACCOUNT_15, "addons": [{"addonId": "addon-seats", "quantity": 3}]},
    )

    assert response.status_code == 200, response.json
    assert stigg.calls[0].variables == {
        "filter": {"customer": {"customerId": {"eq": ACCOUNT_18}}, "status": {"in": CURRENT}},
        "paging": {"first": 50},
    }
    assert stigg.calls[1].input == {
        "subscriptionId": "sub-live",
        "addons": [{"addonId": "addon-seats", "quantity": 3}],
    }
    assert response.json["stiggSubscriptionId"] == "sub-live"
    assert response.json["subscriptionStatus"] == "IN_TRIAL"


def test_a_stigg_customer_id_and_a_resource_narrow_the_look_up(caller, stigg):
    stigg.add_subscription("acme", "sub-a", resource_id="ws-a")
    stigg.add_subscription("acme", "sub-b", resource_id="ws-b")

    response = caller.post(
        PATH, {"stiggCustomerId": "acme", "resourceId": "ws-b", "billingPeriod": "MONTHLY"}
    )

    assert response.status_code == 200, response.json
    assert stigg.calls[0].variables["filter"] == {
        "customer": {"customerId": {"eq": "acme"}},
        "status": {"in": CURRENT},
        "resource": {"resourceId": {"eq": "ws-b"}},
    }
    assert stigg.calls[1].input["subscriptionId"] == "sub-b"


def test_no_live_subscription_is_a_422_naming_what_is_not_live_yet(caller, stigg):
    stigg.add_subscription("acme", "sub-scheduled", status="NOT_STARTED")
    stigg.add_subscription("acme", "sub-unpaid", status="PAYMENT_PENDING")

    response = caller.post(PATH, {"stiggCustomerId": "acme", "billingPeriod": "MONTHLY"})

    assert response.status_code == 422
    assert response.json == {
        "code": "SUBSCRIPTION_NOT_FOUND",
        "message": "No live (ACTIVE or IN_TRIAL) subscription for customer acme. Not live yet: "
        "sub-unpaid (PAYMENT_PENDING), sub-scheduled (NOT_STARTED); pass stiggSubscriptionId "
        "to act on one.",
        "retryable": False,
        "requestId": response.headers["X-Request-Id"],
    }
    assert stigg.operations == ["CustomerSubscriptions"]


def test_a_customer_without_subscriptions_is_a_422(caller, stigg):
    response = caller.post(
        PATH, {"stiggCustomerId": "acme", "resourceId": "ws-1", "billingPeriod": "MONTHLY"}
    )

    assert response.status_code == 422
    assert response.json["code"] == "SUBSCRIPTION_NOT_FOUND"
    assert response.json["message"] == (
        "No live (ACTIVE or IN_TRIAL) subscription for customer acme, resource ws-1."
    )


def test_an_unknown_subscription_id_is_a_422(caller, stigg):
    response = caller.post(PATH, {"stiggSubscriptionId": "sub-nope", "billingPeriod": "MONTHLY"})

    assert response.status_code == 422
    assert response.json == {
        "code": "SUBSCRIPTION_NOT_FOUND",
        "message": "Stigg has no subscription sub-nope.",
        "retryable": False,
        "requestId": response.headers["X-Request-Id"],
    }
    assert stigg.operations == ["CustomerSubscriptions"]


def test_several_live_subscriptions_are_a_422_listing_them(caller, stigg):
    for number in range(1, 7):
        stigg.add_subscription("acme", f"sub-{number}", resource_id=f"ws-{number}")

    response = caller.post(PATH, {"stiggCustomerId": "acme", "billingPeriod": "MONTHLY"})

    assert response.status_code == 422
    assert response.json == {
        "code": "SUBSCRIPTION_AMBIGUOUS",
        "message": "customer acme has 6 live subscriptions (sub-6, sub-5, sub-4, sub-3 and 2 "
        "more): pass stiggSubscriptionId or resourceId to pick one.",
        "retryable": False,
        "requestId": response.headers["X-Request-Id"],
    }
    assert "UpdateSubscription" not in stigg.operations


def test_the_look_up_follows_pages(caller, stigg):
    for number in range(60):
        stigg.add_subscription("acme", f"sub-old-{number}", status="NOT_STARTED")
    stigg.subscriptions.append(stigg.add_subscription("acme", "sub-live"))
    stigg.subscriptions.pop(0)  # the live one is the oldest: on the second page

    response = caller.post(PATH, {"stiggCustomerId": "acme", "billingPeriod": "MONTHLY"})

    assert response.status_code == 200, response.json
    assert [c.operation for c in stigg.calls] == [
        "CustomerSubscriptions",
        "CustomerSubscriptions",
        "UpdateSubscription",
    ]
    assert stigg.calls[1].variables["paging"] == {"first": 50, "after": "49"}
    assert stigg.calls[2].input["subscriptionId"] == "sub-live"


@pytest.mark.parametrize(
    ("body", "field", "message_part"),
    [
        ({"stiggSubscriptionId": "sub-1"}, "body", "Nothing to change"),
        ({"billingPeriod": "MONTHLY"}, "stiggSubscriptionId", "Give stiggSubscriptionId"),
        ({"resourceId": "r", "billingPeriod": "MONTHLY"}, "stiggSubscriptionId", "Give"),
        (
            {"stiggSubscriptionId": "s", "salesforceAccountId": ACCOUNT_15, "billingPeriod": "M"},
            "billingPeriod",
            "monthly, annually",
        ),
        (
            {
                "stiggSubscriptionId": "s",
                "salesforceAccountId": ACCOUNT_15,
                "trialEndDate": "2027-01-01",
            },
            "salesforceAccountId",
            "leave stiggCustomerId",
        ),
        (
            {"stiggSubscriptionId": "s", "addons": [{"addonId": "a"}]},
            "addons[0].quantity",
            "Missing data",
        ),
        (
            {"stiggSubscriptionId": "s", "addons": [{"addonId": "a", "quantity": -1}]},
            "addons[0].quantity",
            "greater than or equal to 0",
        ),
        (
            {"stiggSubscriptionId": "s", "addons": [{"addonId": "a", "quantity": 1}] * 2},
            "addons[1].addonId",
            "more than once",
        ),
        ({"stiggSubscriptionId": "s", "planId": "p"}, "planId", "use createSubscription"),
        (
            {"stiggSubscriptionId": "s", "paymentCollectionMethod": "INVOICE"},
            "paymentCollectionMethod",
            "cannot change",
        ),
        ({"stiggSubscriptionId": "s", "trial": True}, "trial", "Only trialEndDate"),
        ({"stiggSubscriptionId": "s", "currency": "USD"}, "currency", "planBaseChargeOverride"),
        ({"stiggSubscriptionId": " ", "billingPeriod": "MONTHLY"}, "stiggSubscriptionId", "Give"),
        (
            {"stiggSubscriptionId": "a\x00b", "billingPeriod": "MONTHLY"},
            "stiggSubscriptionId",
            "control characters",
        ),
    ],
)
def test_invalid_input_is_a_400_naming_the_field(caller, stigg, body, field, message_part):
    response = caller.post(PATH, body)

    assert response.status_code == 400, response.json
    assert response.json["code"] == "VALIDATION_FAILED"
    messages = " ".join(e["message"] for e in response.json["fieldErrors"] if e["field"] == field)
    assert message_part in messages, response.json
    assert stigg.calls == []


def test_stigg_rejections_are_422_with_stiggs_code(caller, stigg):
    stigg.add_subscription("acme", "sub-1")
    stigg.script(
        "UpdateSubscription",
        graphql_error("IncompatibleSubscriptionAddon", "Addons are not compatible with the plan"),
    )

    response = caller.post(
        PATH, {"stiggSubscriptionId": "sub-1", "addons": [{"addonId": "a", "quantity": 1}]}
    )

    assert response.status_code == 422
    assert response.json["code"] == "STIGG_REJECTED"
    assert response.json["stiggErrorCode"] == "IncompatibleSubscriptionAddon"


def test_an_update_whose_answer_was_lost_is_resent(caller, stigg, sleeps):
    # Absolute values: sending them again leaves the subscription as the first did.
    stigg.add_subscription("acme", "sub-1")
    stigg.script("UpdateSubscription", Reply(status=502, raw="<html>Bad gateway</html>"))

    response = caller.post(PATH, {"stiggSubscriptionId": "sub-1", "billingPeriod": "MONTHLY"})

    assert response.status_code == 200, response.json
    calls = stigg.calls_to("UpdateSubscription")
    assert len(calls) == 2 and calls[0].variables == calls[1].variables
    assert len(sleeps) == 1


def test_the_same_idempotency_key_replays_the_answer(caller, stigg):
    stigg.add_subscription("acme", "sub-1")
    key = {"Idempotency-Key": "006D000000CkYtr:updateSubscription:1"}
    body = {"stiggSubscriptionId": "sub-1", "addons": [{"addonId": "addon-seats", "quantity": 4}]}

    first = caller.post(PATH, body, headers=key)
    again = caller.post(PATH, body, headers=key)

    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json == first.json
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(stigg.calls_to("UpdateSubscription")) == 1


def test_batches_order_updates_by_customer_or_subscription():
    action = next(a for a in ACTIONS if a.operation_id == "updateSubscription")
    load = action.request_schema().load

    assert action.stigg_mutations == ("updateOneSubscription",)
    assert action.entity(load({"salesforceAccountId": ACCOUNT_15, "billingPeriod": "monthly"})) == (
        ACCOUNT_18
    )
    assert action.entity(load({"stiggCustomerId": "acme", "billingPeriod": "monthly"})) == "acme"
    assert action.entity(load({"stiggSubscriptionId": "s-1", "billingPeriod": "monthly"})) == (
        "subscription:s-1"
    )
