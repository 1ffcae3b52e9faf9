"""Create Stigg Subscription: customer upsert first, then the exact provisionSubscriptionV2."""

import pytest
import requests

from actions.once import TAG_FIELD
from tests.conftest import ACCOUNT_15, ACCOUNT_18, OPPORTUNITY_15
from tests.fakes import Reply, data, graphql_error, refused

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
        "ActiveSubscriptions",  # an Idempotency-Key: look for an earlier attempt first
        "ProvisionSubscription",
    ]
    assert stigg.calls[2].variables == {
        "input": {"customerId": "acme", "resourceId": "workspace-1"}
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
            "additionalMetaData": {TAG_FIELD: "006D000000CkYtr-createSubscription"},
        }
    }
    subscription_id = response.json["stiggSubscriptionId"]
    assert response.json == {
        "stiggSubscriptionId": subscription_id,
        "stiggCustomerId": "acme",
        "stiggCustomerUrl": "https://app.stigg.test/env-1/customers/acme",
        "status": "SUCCESS",
        "subscriptionStatus": "ACTIVE",
        "scheduled": False,
    }


def test_minimal_request_sends_only_customer_and_plan(caller, stigg):
    response = caller.post(PATH, minimal())

    assert response.status_code == 200
    assert stigg.operations == ["GetCustomer", "ProvisionCustomer", "ProvisionSubscription"]
    assert stigg.calls_to("ProvisionSubscription")[0].variables == {
        "input": {
            "customerId": ACCOUNT_18,
            "planId": "plan-pro",
            # Without an Idempotency-Key the tag is the request ID: enough to recognise
            # this request's own subscription after a lost answer.
            "additionalMetaData": {TAG_FIELD: response.headers["X-Request-Id"]},
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
        ({"planBaseChargeOverride": "NaN"}, "planBaseChargeOverride", "not permitted"),
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
    stigg.script("ActiveSubscriptions", data([]))  # the look-first finds nothing
    stigg.script("ProvisionSubscription", requests.ReadTimeout("read timed out"))
    stigg.script(
        "ActiveSubscriptions",
        data(
            [
                {"subscriptionId": "sub-other", "status": "ACTIVE", "additionalMetaData": None},
                {
                    "subscriptionId": "sub-ours",
                    "status": "IN_TRIAL",
                    "additionalMetaData": {TAG_FIELD: key["Idempotency-Key"]},
                },
            ]
        ),
    )

    response = caller.post(PATH, minimal(), headers=key)

    assert response.status_code == 200
    assert response.json["stiggSubscriptionId"] == "sub-ours"
    assert response.json["subscriptionStatus"] == "IN_TRIAL"
    assert response.json["status"] == "SUCCESS"
    assert len(stigg.calls_to("ProvisionSubscription")) == 1


def test_a_retry_after_a_lost_answer_finds_the_earlier_subscription(caller, stigg):
    key = {"Idempotency-Key": "006D000000CkYtr-createSubscription-3"}
    stigg.script(
        "ActiveSubscriptions",
        data(
            [
                {
                    "subscriptionId": "sub-earlier",
                    "status": "ACTIVE",
                    "additionalMetaData": {TAG_FIELD: key["Idempotency-Key"]},
                }
            ]
        ),
    )

    response = caller.post(PATH, minimal(), headers=key)

    assert response.status_code == 200
    assert response.json["stiggSubscriptionId"] == "sub-earlier"
    assert stigg.calls_to("ProvisionSubscription") == []


def test_a_lost_answer_not_yet_visible_is_a_retryable_error_not_a_second_provision(caller, stigg):
    stigg.script("ProvisionSubscription", requests.ReadTimeout("read timed out"))

    response = caller.post(PATH, minimal(), headers={"Idempotency-Key": "opp-sub-4"})

    assert response.status_code == 504
    assert response.json["retryable"] is True
    assert len(stigg.calls_to("ProvisionSubscription")) == 1
    assert stigg.operations[-1] == "ActiveSubscriptions"
