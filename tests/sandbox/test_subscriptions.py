"""provisionSubscriptionV2: Stigg's rejections, results and replacement of live subscriptions."""

from __future__ import annotations

import pytest

FULL_RESULT = """
mutation($input: ProvisionSubscriptionInput!) {
  provisionSubscriptionV2(input: $input) {
    id status checkoutUrl isScheduled
    subscription {
      subscriptionId refId status startDate trialEndDate billingPeriod paymentCollection
      paymentCollectionMethod salesforceId additionalMetaData
      plan { refId displayName compatibleAddons { refId } }
      addons { addonId quantity addon { refId } }
      customer { customerId }
      resource { resourceId }
    }
  }
}
"""


@pytest.fixture
def customer(stigg):
    return stigg.customer("cust-1")


def provision(stigg, **input):
    body = stigg.post(FULL_RESULT, {"input": {"customerId": "cust-1", **input}}).get_json()
    assert "errors" not in body, body
    return body["data"]["provisionSubscriptionV2"]


def state(admin):
    return admin.get("/_admin/state").get_json()


def test_paid_plan_success(stigg, customer):
    result = provision(
        stigg,
        planId="plan-pro",
        billingPeriod="MONTHLY",
        addons=[{"addonId": "addon-seats", "quantity": 3}],
        salesforceId="006OPP",
        additionalMetaData={"opportunity": "006OPP"},
    )
    assert result["status"] == "SUCCESS"
    assert result["checkoutUrl"] is None
    assert result["isScheduled"] is False
    subscription = result["subscription"]
    assert result["id"] == subscription["subscriptionId"] == subscription["refId"]
    assert subscription["subscriptionId"].startswith("subscription-plan-pro-")
    assert subscription["status"] == "ACTIVE"
    assert subscription["billingPeriod"] == "MONTHLY"
    assert subscription["paymentCollection"] == "NOT_REQUIRED"
    assert subscription["salesforceId"] == "006OPP"
    assert subscription["additionalMetaData"] == {"opportunity": "006OPP"}
    assert subscription["plan"]["refId"] == "plan-pro"
    assert subscription["addons"] == [
        {"addonId": "addon-seats", "quantity": 3.0, "addon": {"refId": "addon-seats"}}
    ]
    assert subscription["customer"] == {"customerId": "cust-1"}


def test_trial_override_gives_in_trial_with_end_date(stigg, customer):
    result = provision(
        stigg,
        planId="plan-pro",
        billingPeriod="ANNUALLY",
        trialOverrideConfiguration={"isTrial": True, "trialEndDate": "2031-02-03T00:00:00Z"},
    )
    assert result["subscription"]["status"] == "IN_TRIAL"
    assert result["subscription"]["trialEndDate"] == "2031-02-03T00:00:00.000Z"


def test_future_start_date_is_not_started(stigg, customer):
    result = provision(stigg, planId="plan-free", startDate="2099-01-01T00:00:00Z")
    assert result["subscription"]["status"] == "NOT_STARTED"
    assert result["subscription"]["startDate"] == "2099-01-01T00:00:00.000Z"


def test_single_period_plan_needs_no_billing_period(stigg, customer):
    result = provision(stigg, planId="plan-enterprise")
    assert result["subscription"]["billingPeriod"] == "ANNUALLY"


def test_charge_without_payment_method_requires_payment(stigg, admin, customer):
    result = provision(
        stigg, planId="plan-pro", billingPeriod="MONTHLY", paymentCollectionMethod="CHARGE"
    )
    assert result["status"] == "PAYMENT_REQUIRED"
    assert result["checkoutUrl"].startswith("https://")
    assert result["subscription"] is None
    [pending] = state(admin)["subscriptions"]
    assert pending["subscriptionId"] == result["id"]
    assert pending["status"] == "PAYMENT_PENDING"


def test_charge_with_payment_method_succeeds(stigg):
    stigg.customer("cust-1", billingInformation={"paymentMethodId": "pm_1"})
    result = provision(
        stigg, planId="plan-pro", billingPeriod="MONTHLY", paymentCollectionMethod="CHARGE"
    )
    assert result["status"] == "SUCCESS"


def test_invoice_on_paid_plan_succeeds(stigg, customer):
    result = provision(
        stigg, planId="plan-pro", billingPeriod="MONTHLY", paymentCollectionMethod="INVOICE"
    )
    assert result["status"] == "SUCCESS"
    assert result["subscription"]["paymentCollectionMethod"] == "INVOICE"


def test_new_subscription_replaces_the_live_one(stigg, admin, customer):
    first = provision(stigg, planId="plan-free")["id"]
    second = provision(stigg, planId="plan-pro", billingPeriod="MONTHLY")["id"]
    by_id = {s["subscriptionId"]: s for s in state(admin)["subscriptions"]}
    assert by_id[first]["status"] == "CANCELED"
    assert by_id[first]["cancelReason"] == "UpgradeOrDowngrade"
    assert by_id[first]["endDate"] is not None
    assert by_id[second]["status"] == "ACTIVE"


def test_replacement_is_per_resource(stigg, admin, customer):
    site_a = provision(stigg, planId="plan-free", resourceId="site-a")
    site_b = provision(stigg, planId="plan-free", resourceId="site-b")
    assert site_a["subscription"]["resource"] == {"resourceId": "site-a"}
    statuses = {s["subscriptionId"]: s["status"] for s in state(admin)["subscriptions"]}
    assert statuses == {site_a["id"]: "ACTIVE", site_b["id"]: "ACTIVE"}
    site_a_again = provision(stigg, planId="plan-pro", billingPeriod="MONTHLY", resourceId="site-a")
    statuses = {s["subscriptionId"]: s["status"] for s in state(admin)["subscriptions"]}
    assert statuses == {
        site_a["id"]: "CANCELED",
        site_b["id"]: "ACTIVE",
        site_a_again["id"]: "ACTIVE",
    }


def test_explicit_subscription_id_is_used_and_cannot_be_reused(stigg, customer):
    result = provision(stigg, planId="plan-free", subscriptionId="sub-from-sf-006")
    assert result["id"] == "sub-from-sf-006"
    error = stigg.error(
        "ProvisionSubscription",
        {"customerId": "cust-1", "planId": "plan-free", "subscriptionId": "sub-from-sf-006"},
    )
    assert error["path"] == ["provisionSubscription"]
    assert error["extensions"] == {
        "code": "DuplicatedEntityNotAllowed",
        "isValidationError": True,
        "entityName": "Subscription",
        "identifier": "sub-from-sf-006",
    }


REJECTIONS = [
    pytest.param(
        {"customerId": "ghost", "planId": "plan-free"},
        {"code": "CustomerNotFound", "refId": "ghost"},
        id="unknown-customer",
    ),
    pytest.param(
        {"planId": "plan-gold"}, {"code": "PlanNotFound", "refId": "plan-gold"}, id="unknown-plan"
    ),
    pytest.param(
        {"planId": "plan-pro", "billingPeriod": "MONTHLY", "addons": [{"addonId": "addon-x"}]},
        {"code": "AddonNotFound", "refId": "addon-x"},
        id="unknown-addon",
    ),
    pytest.param(
        {"planId": "plan-enterprise", "addons": [{"addonId": "addon-storage", "quantity": 1}]},
        {
            "code": "IncompatibleSubscriptionAddon",
            "nonCompatibleAddons": ["addon-storage"],
            "planDisplayName": "Enterprise",
        },
        id="incompatible-addon",
    ),
    pytest.param(
        {
            "planId": "plan-pro",
            "billingPeriod": "MONTHLY",
            "addons": [{"addonId": "addon-seats", "quantity": 501}],
        },
        {"code": "AddonQuantityExceedsLimitError", "refId": "addon-seats"},
        id="addon-quantity-over-limit",
    ),
    pytest.param(
        {
            "planId": "plan-pro",
            "billingPeriod": "MONTHLY",
            "entitlements": [
                {"credit": {"customCurrencyId": "cred-type-gold", "amount": 5, "cadence": "MONTH"}}
            ],
        },
        {"code": "CustomCurrencyNotFound", "refId": "cred-type-gold"},
        id="unknown-credit-currency-in-entitlements",
    ),
    pytest.param(
        {
            "planId": "plan-pro",
            "billingPeriod": "MONTHLY",
            "priceOverrides": [
                {"currencyId": "cred-type-gold", "price": {"amount": 9, "currency": "USD"}}
            ],
        },
        {"code": "CustomCurrencyNotFound", "refId": "cred-type-gold"},
        id="unknown-credit-currency-in-price-overrides",
    ),
    pytest.param(
        {"planId": "plan-enterprise", "billingPeriod": "MONTHLY"},
        {"code": "BillingPeriodMissingError", "refId": "plan-enterprise"},
        id="billing-period-the-plan-does-not-offer",
    ),
    pytest.param(
        {"planId": "plan-pro"},
        {"code": "BillingPeriodMissingError", "refId": "plan-pro"},
        id="multi-period-plan-without-billing-period",
    ),
]


@pytest.mark.parametrize(("input", "expected"), REJECTIONS)
def test_rejections(stigg, admin, customer, input, expected):
    error = stigg.error("ProvisionSubscription", {"customerId": "cust-1", **input})
    assert error["path"] == ["provisionSubscription"]
    assert error["extensions"] == {"isValidationError": True, **expected}
    assert state(admin)["subscriptions"] == []  # nothing half-done


ACTIVE_SUBSCRIPTIONS = """
query($input: GetActiveSubscriptionsInput!) {
  getActiveSubscriptions(input: $input) {
    subscriptionId status additionalMetaData resource { resourceId }
  }
}
"""


def active(stigg, **input):
    body = stigg.post(ACTIVE_SUBSCRIPTIONS, {"input": {"customerId": "cust-1", **input}}).get_json()
    assert "errors" not in body, body
    return body["data"]["getActiveSubscriptions"]


def test_active_subscriptions_list_only_live_ones_newest_first(stigg, customer):
    replaced = provision(stigg, planId="plan-free", additionalMetaData={"k": "first"})
    current = provision(
        stigg, planId="plan-pro", billingPeriod="MONTHLY", additionalMetaData={"k": "second"}
    )
    on_resource = provision(stigg, planId="plan-free", resourceId="ws-1")

    everything = active(stigg)
    assert [s["subscriptionId"] for s in everything] == [
        on_resource["id"],
        current["id"],
    ]
    assert replaced["id"] not in [s["subscriptionId"] for s in everything]
    assert everything[1]["additionalMetaData"] == {"k": "second"}
    assert [s["subscriptionId"] for s in active(stigg, resourceId="ws-1")] == [on_resource["id"]]


def test_active_subscriptions_of_an_unknown_customer(stigg):
    body = stigg.post(ACTIVE_SUBSCRIPTIONS, {"input": {"customerId": "nobody"}}).get_json()

    assert body["errors"][0]["extensions"]["code"] == "CustomerNotFound"
