"""Create Stigg Subscription: customer upsert first, then the exact provisionSubscriptionV2."""

from datetime import UTC, datetime, timedelta

import pytest
import requests

from actions.once import KEY_FIELD, TAG_FIELD
from tests.conftest import ACCOUNT_15, ACCOUNT_18, OPPORTUNITY_15
from tests.fakes import ANY_TAG, Lost, Reply, data, graphql_error, page, refused

PATH = "create-subscription"
OPPORTUNITY_18 = "006D000000CkYtrIAF"


def minimal(**extra) -> dict:
    return {"salesforceAccountId": ACCOUNT_15, "planId": "plan-pro", **extra}


def test_every_parameter_maps_to_the_documented_stigg_input(caller, stigg):
    response = caller.post(
        PATH,
        {
            "salesforceAccountId": ACCOUNT_15,
            "stiggCustomerId": "acme",
            "customerName": "Acme",
            "customerEmail": "billing@acme.io",
            "planId": "plan-pro",
            "planBaseChargeOverride": 49.5,
            "currency": "usd",
            "addons": [{"addonId": "addon-seats", "quantity": 5}, {"addonId": "addon-storage"}],
            "billingPeriod": "Annually",
            "paymentCollectionMethod": "payment_method_on_file",
            "trial": True,
            "trialEndDate": "2026-12-31",
            "subscriptionCreditEntitlements": [
                {
                    "customCurrencyId": "cred-type-ai-tokens",
                    "amount": 1000,
                    "cadence": "month",
                    "priceOverride": 99,
                },
                {"customCurrencyId": "cred-type-other", "amount": 5, "cadence": "YEAR"},
            ],
            "startDate": "2026-12-01T09:30:00+02:00",
            "resourceId": "workspace-1",
            "salesforceOpportunityId": OPPORTUNITY_15,
        },
        headers={"Idempotency-Key": "006D000000CkYtr-createSubscription"},
    )

    assert response.status_code == 200, response.json
    assert stigg.operations == [
        "GetCustomer",
        "ProvisionCustomer",
        "CustomerSubscriptions",  # an Idempotency-Key: look for an earlier attempt first
        "ProvisionSubscription",
    ]
    # Every status a just-created subscription can have, named; and the resource.
    assert stigg.calls[2].variables == {
        "filter": {
            "customer": {"customerId": {"eq": "acme"}},
            "status": {"in": ["ACTIVE", "IN_TRIAL", "NOT_STARTED", "PAYMENT_PENDING"]},
            "resource": {"resourceId": {"eq": "workspace-1"}},
        },
        "paging": {"first": 50},
    }
    assert stigg.calls[1].input == {
        "customerId": "acme",
        "name": "Acme",
        "email": "billing@acme.io",
        "salesforceId": ACCOUNT_18,
    }
    assert stigg.calls[3].variables == {
        "input": {
            "customerId": "acme",
            "planId": "plan-pro",
            "billingPeriod": "ANNUALLY",
            "paymentCollectionMethod": "CHARGE",
            "addons": [
                {"addonId": "addon-seats", "quantity": 5},
                {"addonId": "addon-storage", "quantity": 1},
            ],
            "priceOverrides": [
                {"baseCharge": True, "price": {"amount": 49.5, "currency": "USD"}},
                {"currencyId": "cred-type-ai-tokens", "price": {"amount": 99.0, "currency": "USD"}},
            ],
            "entitlements": [
                {
                    "credit": {
                        "customCurrencyId": "cred-type-ai-tokens",
                        "amount": 1000.0,
                        "cadence": "MONTH",
                    }
                },
                {
                    "credit": {
                        "customCurrencyId": "cred-type-other",
                        "amount": 5.0,
                        "cadence": "YEAR",
                    }
                },
            ],
            "trialOverrideConfiguration": {"isTrial": True, "trialEndDate": "2026-12-31T00:00:00Z"},
            "startDate": "2026-12-01T07:30:00Z",
            "resourceId": "workspace-1",
            "salesforceId": OPPORTUNITY_18,
            "additionalMetaData": {
                KEY_FIELD: "006D000000CkYtr-createSubscription",
                TAG_FIELD: ANY_TAG,
            },
        }
    }
    subscription_id = response.json["stiggSubscriptionId"]
    assert response.json == {
        "stiggSubscriptionId": subscription_id,
        "stiggSubscriptionUrl": f"https://app.stigg.test/env-1/subscriptions/{subscription_id}",
        "stiggCustomerId": "acme",
        "stiggCustomerUrl": "https://app.stigg.test/env-1/customers/acme",
        "status": "SUCCESS",
        "subscriptionStatus": "ACTIVE",
        "scheduled": False,
    }


def test_minimal_request_sends_the_customer_the_plan_and_the_default_payment_method(caller, stigg):
    response = caller.post(PATH, minimal())

    assert response.status_code == 200
    assert stigg.operations == ["GetCustomer", "ProvisionCustomer", "ProvisionSubscription"]
    assert stigg.calls_to("ProvisionSubscription")[0].variables == {
        "input": {
            "customerId": ACCOUNT_18,
            "planId": "plan-pro",
            # Stigg's own default, sent explicitly (docs/stigg-fidelity.md).
            "paymentCollectionMethod": "CHARGE",
            # Without an Idempotency-Key the tag stands for the request ID: enough to
            # recognise this request's own subscription after a lost answer.
            "additionalMetaData": {
                KEY_FIELD: "request:" + response.headers["X-Request-Id"],
                TAG_FIELD: ANY_TAG,
            },
        }
    }
    # The customer is created with the Account link even when no name or email is given.
    assert stigg.calls_to("ProvisionCustomer")[0].input == {
        "customerId": ACCOUNT_18,
        "salesforceId": ACCOUNT_18,
    }


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        ("monthly", "MONTHLY"),
        ("MONTHLY", "MONTHLY"),
        ("Annually", "ANNUALLY"),
        (" annually ", "ANNUALLY"),
    ],
)
def test_billing_period_is_case_normalised(caller, stigg, given, sent):
    caller.post(PATH, minimal(billingPeriod=given))

    assert stigg.calls_to("ProvisionSubscription")[0].input["billingPeriod"] == sent


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        ("PAYMENT_METHOD_ON_FILE", "CHARGE"),
        ("Payment_Method_On_File", "CHARGE"),
        ("INVOICE", "INVOICE"),
        ("invoice", "INVOICE"),
    ],
)
def test_payment_collection_method_maps_to_stigg(caller, stigg, given, sent):
    caller.post(PATH, minimal(paymentCollectionMethod=given))

    assert stigg.calls_to("ProvisionSubscription")[0].input["paymentCollectionMethod"] == sent


@pytest.mark.parametrize(
    ("extra", "sent"),
    [
        ({"trial": False}, {"isTrial": False}),
        ({"trial": True}, {"isTrial": True}),
        ({"trialEndDate": "2027-01-15"}, {"isTrial": True, "trialEndDate": "2027-01-15T00:00:00Z"}),
    ],
)
def test_trial_configuration(caller, stigg, extra, sent):
    caller.post(PATH, minimal(**extra))

    assert stigg.calls_to("ProvisionSubscription")[0].input["trialOverrideConfiguration"] == sent


def test_base_charge_override_without_currency_leaves_the_plan_currency(caller, stigg):
    caller.post(PATH, minimal(planBaseChargeOverride=0))

    assert stigg.calls_to("ProvisionSubscription")[0].input["priceOverrides"] == [
        {"baseCharge": True, "price": {"amount": 0.0}}
    ]


def test_payment_required_answers_the_checkout_url(caller, stigg):
    stigg.script(
        "ProvisionSubscription",
        data(
            {
                "id": "subscription-plan-pro-x1",
                "status": "PAYMENT_REQUIRED",
                "checkoutUrl": "https://checkout.stripe.test/c/1",
                "isScheduled": False,
                "subscription": None,
            }
        ),
    )

    response = caller.post(PATH, minimal())

    assert response.status_code == 200
    assert response.json == {
        "stiggSubscriptionId": "subscription-plan-pro-x1",
        "stiggSubscriptionUrl": "https://app.stigg.test/env-1/subscriptions/subscription-plan-pro-x1",
        "stiggCustomerId": ACCOUNT_18,
        "stiggCustomerUrl": f"https://app.stigg.test/env-1/customers/{ACCOUNT_18}",
        "status": "PAYMENT_REQUIRED",
        "checkoutUrl": "https://checkout.stripe.test/c/1",
        "scheduled": False,
    }


@pytest.mark.parametrize(
    ("extra", "field", "message_part"),
    [
        ({"planId": None}, "planId", "Missing data"),
        ({"billingPeriod": "weekly"}, "billingPeriod", "monthly, annually"),
        (
            {"paymentCollectionMethod": "CHARGE"},
            "paymentCollectionMethod",
            "PAYMENT_METHOD_ON_FILE, INVOICE",
        ),
        ({"trial": "yes"}, "trial", "boolean"),
        ({"trial": False, "trialEndDate": "2027-01-01"}, "trialEndDate", "trial is true"),
        ({"trialEndDate": "31/12/2026"}, "trialEndDate", "YYYY-MM-DD"),
        ({"startDate": "2026-12-01T09:00:00"}, "startDate", "time zone"),
        ({"currency": "USD"}, "currency", "planBaseChargeOverride"),
        ({"currency": "XYZ", "planBaseChargeOverride": 1}, "currency", "ISO 4217"),
        ({"planBaseChargeOverride": -1}, "planBaseChargeOverride", "at least 0"),
        ({"planBaseChargeOverride": "NaN"}, "planBaseChargeOverride", "Not a valid number"),
        ({"planBaseChargeOverride": "100"}, "planBaseChargeOverride", "Not a valid number"),
        ({"addons": [{"quantity": 2}]}, "addons[0].addonId", "Missing data"),
        (
            {"addons": [{"addonId": "a", "quantity": 0}]},
            "addons[0].quantity",
            "greater than or equal to 1",
        ),
        ({"addons": [{"addonId": "a", "quantity": 1.5}]}, "addons[0].quantity", "integer"),
        ({"addons": [{"addonId": "a"}, {"addonId": "a"}]}, "addons[1].addonId", "more than once"),
        ({"addons": {"addonId": "a"}}, "addons", "list"),
        (
            {
                "subscriptionCreditEntitlements": [
                    {"customCurrencyId": "c", "amount": 0, "cadence": "MONTH"}
                ]
            },
            "subscriptionCreditEntitlements[0].amount",
            "greater than 0",
        ),
        (
            {
                "subscriptionCreditEntitlements": [
                    {"customCurrencyId": "c", "amount": 1, "cadence": "WEEK"}
                ]
            },
            "subscriptionCreditEntitlements[0].cadence",
            "MONTH, YEAR",
        ),
        (
            {"subscriptionCreditEntitlements": [{"customCurrencyId": "c", "amount": 1}]},
            "subscriptionCreditEntitlements[0].cadence",
            "Missing data",
        ),
        ({"salesforceOpportunityId": ACCOUNT_18}, "salesforceOpportunityId", "start with '006'"),
        ({"couponId": "x"}, "couponId", "Unknown field"),
    ],
)
def test_invalid_input_is_a_400_naming_the_field(caller, stigg, extra, field, message_part):
    body = {key: value for key, value in minimal(**extra).items() if value is not None}

    response = caller.post(PATH, body)

    assert response.status_code == 400
    assert response.json["code"] == "VALIDATION_FAILED"
    assert field in [error["field"] for error in response.json["fieldErrors"]]
    messages = " ".join(e["message"] for e in response.json["fieldErrors"] if e["field"] == field)
    assert message_part in messages
    assert stigg.calls == []


def test_plan_not_found_is_a_422_with_stiggs_code(caller, stigg):
    stigg.script("ProvisionSubscription", graphql_error("PlanNotFound", "Plan not found: plan-x"))

    response = caller.post(PATH, minimal(planId="plan-x"))

    assert response.status_code == 422
    assert response.json == {
        "code": "STIGG_REJECTED",
        "message": "Stigg rejected the request (PlanNotFound): Plan not found: plan-x",
        "retryable": False,
        "requestId": response.headers["X-Request-Id"],
        "stiggErrorCode": "PlanNotFound",
    }


def test_a_subscription_that_may_have_reached_stigg_is_never_resent(caller, stigg):
    stigg.script("ProvisionSubscription", Reply(status=502, raw="<html>Bad gateway</html>"))

    response = caller.post(PATH, minimal())

    assert response.status_code == 503
    assert response.json["code"] == "STIGG_UNAVAILABLE"
    assert response.json["retryable"] is True
    assert len(stigg.calls_to("ProvisionSubscription")) == 1


def test_a_subscription_refused_at_connect_is_resent(caller, stigg, sleeps):
    stigg.script("ProvisionSubscription", refused())

    response = caller.post(PATH, minimal())

    assert response.status_code == 200
    assert len(stigg.calls_to("ProvisionSubscription")) == 2
    assert len(sleeps) == 1


def test_a_lost_answer_is_resolved_by_finding_the_tagged_subscription(caller, stigg):
    key = {"Idempotency-Key": "006D000000CkYtr-createSubscription-2"}
    stigg.script("ProvisionSubscription", Lost(requests.ReadTimeout("read timed out")))

    response = caller.post(PATH, minimal(), headers=key)

    assert response.status_code == 200
    assert response.json["stiggSubscriptionId"] == stigg.subscriptions[0]["subscriptionId"]
    assert response.json["subscriptionStatus"] == "ACTIVE"
    assert response.json["status"] == "SUCCESS"
    assert response.json["scheduled"] is False
    assert len(stigg.calls_to("ProvisionSubscription")) == 1
    assert stigg.operations[-2:] == ["ProvisionSubscription", "CustomerSubscriptions"]


@pytest.mark.parametrize(
    ("stigg_status", "status", "scheduled"),
    [
        ("PAYMENT_PENDING", "PAYMENT_REQUIRED", False),
        ("NOT_STARTED", "SUCCESS", True),
        ("IN_TRIAL", "SUCCESS", False),
    ],
)
def test_a_retry_after_a_lost_answer_finds_a_pending_or_scheduled_subscription(
    caller, stigg, stigg_status, status, scheduled
):
    key = {"Idempotency-Key": f"006D000000CkYtr-createSubscription-{stigg_status}"}
    stigg.script("ProvisionSubscription", Lost(requests.ReadTimeout("read timed out")))
    stigg.script("CustomerSubscriptions", data(page([], {})), data(page([], {})))
    first = caller.post(PATH, minimal(), headers=key)
    assert first.status_code == 504
    stigg.subscriptions[0]["status"] = stigg_status

    retry = caller.post(PATH, minimal(), headers=key)

    assert retry.status_code == 200
    subscription_id = stigg.subscriptions[0]["subscriptionId"]
    assert retry.json == {
        "stiggSubscriptionId": subscription_id,
        "stiggSubscriptionUrl": f"https://app.stigg.test/env-1/subscriptions/{subscription_id}",
        "stiggCustomerId": ACCOUNT_18,
        "stiggCustomerUrl": f"https://app.stigg.test/env-1/customers/{ACCOUNT_18}",
        "status": status,
        "subscriptionStatus": stigg_status,
        "scheduled": scheduled,
    }
    assert len(stigg.calls_to("ProvisionSubscription")) == 1


def test_another_body_under_the_same_key_is_not_taken_for_the_earlier_subscription(
    app, caller, stigg
):
    key = {"Idempotency-Key": "006D000000CkYtr-createSubscription-plans"}
    assert caller.post(PATH, minimal(), headers=key).status_code == 200
    # The stored answer expires; the same key now comes with another plan.
    app.extensions["store"].idempotency.purge_expired(datetime.now(UTC) + timedelta(days=2))

    other = caller.post(PATH, minimal(planId="plan-enterprise"), headers=key)

    assert other.status_code == 200
    assert [c.input["planId"] for c in stigg.calls_to("ProvisionSubscription")] == [
        "plan-pro",
        "plan-enterprise",
    ]
    assert other.json["stiggSubscriptionId"] == stigg.subscriptions[0]["subscriptionId"]


def test_a_lost_answer_not_yet_visible_is_a_retryable_error_not_a_second_provision(caller, stigg):
    stigg.script("ProvisionSubscription", requests.ReadTimeout("read timed out"))

    response = caller.post(PATH, minimal(), headers={"Idempotency-Key": "opp-sub-4"})

    assert response.status_code == 504
    assert response.json["retryable"] is True
    assert len(stigg.calls_to("ProvisionSubscription")) == 1
    assert stigg.operations[-1] == "CustomerSubscriptions"


def test_the_subscription_link_url_encodes_the_id(caller, stigg):
    stigg.script(
        "ProvisionSubscription",
        data(
            {
                "id": "sub/with space",
                "status": "SUCCESS",
                "checkoutUrl": None,
                "isScheduled": False,
                "subscription": {"subscriptionId": "sub/with space", "status": "ACTIVE"},
            }
        ),
    )

    response = caller.post(PATH, minimal())

    assert response.json["stiggSubscriptionUrl"] == (
        "https://app.stigg.test/env-1/subscriptions/sub%2Fwith%20space"
    )
