"""provisionSubscriptionV2: Stigg's rejections, results, payment defaults and replacement of
live subscriptions; getActiveSubscriptions."""

from __future__ import annotations

import pytest

FULL_RESULT = """
mutation($input: ProvisionSubscriptionInput!) {
  provisionSubscriptionV2(input: $input) {
    id status checkoutUrl isScheduled
    subscription {
      subscriptionId refId status startDate trialEndDate billingPeriod paymentCollection
      paymentCollectionMethod salesforceId additionalMetaData
      currentBillingPeriodStart currentBillingPeriodEnd
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


def test_paid_plan_success(stigg, clock):
    stigg.customer("cust-1", billingInformation={"paymentMethodId": "pm_1"})
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
    assert subscription["paymentCollectionMethod"] == "CHARGE"  # Stigg's default
    assert subscription["paymentCollection"] == "NOT_REQUIRED"  # charged, and confirmed
    assert subscription["startDate"] == "2026-01-15T12:00:00.000Z"
    assert subscription["currentBillingPeriodStart"] == "2026-01-15T12:00:00.000Z"
    assert subscription["currentBillingPeriodEnd"] == "2026-02-15T12:00:00.000Z"
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
    result = provision(stigg, planId="plan-enterprise", paymentCollectionMethod="INVOICE")
    assert result["subscription"]["billingPeriod"] == "ANNUALLY"


@pytest.mark.parametrize(
    "method", [{"paymentCollectionMethod": "CHARGE"}, {}], ids=["CHARGE", "omitted"]
)
def test_charge_without_payment_method_requires_payment(stigg, admin, customer, method):
    # Stigg's ProvisionSubscriptionInput defaults paymentCollectionMethod to CHARGE.
    result = provision(stigg, planId="plan-pro", billingPeriod="MONTHLY", **method)
    assert result["status"] == "PAYMENT_REQUIRED"
    assert result["checkoutUrl"] == (f"https://checkout.sandbox.stigg.invalid/pay/{result['id']}")
    assert result["isScheduled"] is False
    assert result["subscription"] is None
    [pending] = state(admin)["subscriptions"]
    assert pending["subscriptionId"] == result["id"]
    assert pending["status"] == "PAYMENT_PENDING"
    assert pending["paymentCollectionMethod"] == "CHARGE"
    assert pending["paymentCollection"] == "ACTION_REQUIRED"


def test_a_payment_required_subscription_does_not_replace_the_live_one(stigg, admin, customer):
    live = provision(stigg, planId="plan-free")["id"]
    pending = provision(stigg, planId="plan-pro", billingPeriod="MONTHLY")
    assert pending["status"] == "PAYMENT_REQUIRED"
    statuses = {s["subscriptionId"]: s["status"] for s in state(admin)["subscriptions"]}
    assert statuses == {live: "ACTIVE", pending["id"]: "PAYMENT_PENDING"}


@pytest.mark.parametrize(
    ("input", "status"),
    [
        pytest.param({"planId": "plan-free"}, "ACTIVE", id="free-plan"),
        pytest.param(
            {"planId": "plan-pro", "billingPeriod": "MONTHLY", "paymentCollectionMethod": None},
            "ACTIVE",
            id="method-null",
        ),
        pytest.param(
            {"planId": "plan-pro", "billingPeriod": "MONTHLY", "paymentCollectionMethod": "NONE"},
            "ACTIVE",
            id="method-none",
        ),
        pytest.param(
            {
                "planId": "plan-pro",
                "billingPeriod": "MONTHLY",
                "trialOverrideConfiguration": {"isTrial": True},
            },
            "IN_TRIAL",
            id="trial",
        ),
    ],
)
def test_what_is_not_charged_now_needs_no_payment_method(stigg, customer, input, status):
    result = provision(stigg, **input)
    assert result["status"] == "SUCCESS"
    assert result["checkoutUrl"] is None
    assert result["subscription"]["status"] == status
    assert result["subscription"]["paymentCollection"] == "NOT_REQUIRED"


def test_charge_without_awaiting_confirmation_answers_before_the_payment(stigg, admin):
    stigg.customer("cust-1", billingInformation={"paymentMethodId": "pm_1"})
    result = provision(
        stigg, planId="plan-pro", billingPeriod="MONTHLY", awaitPaymentConfirmation=False
    )
    assert result["status"] == "SUCCESS"
    assert result["subscription"]["status"] == "ACTIVE"
    assert result["subscription"]["paymentCollection"] == "PROCESSING"
    # The charge settles (successfully: the sandbox's cards never fail) by the next request.
    [subscription] = state(admin)["subscriptions"]
    assert subscription["paymentCollection"] == "NOT_REQUIRED"


def test_addon_quantity_defaults_to_one(stigg, customer):
    result = provision(
        stigg,
        planId="plan-pro",
        billingPeriod="MONTHLY",
        paymentCollectionMethod="INVOICE",
        addons=[{"addonId": "addon-storage"}],
    )
    assert result["subscription"]["addons"] == [
        {"addonId": "addon-storage", "quantity": 1.0, "addon": {"refId": "addon-storage"}}
    ]


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
    second = provision(
        stigg, planId="plan-pro", billingPeriod="MONTHLY", paymentCollectionMethod="INVOICE"
    )["id"]
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
    site_a_again = provision(
        stigg,
        planId="plan-pro",
        billingPeriod="MONTHLY",
        paymentCollectionMethod="INVOICE",
        resourceId="site-a",
    )
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


def test_active_subscriptions_are_the_global_ones_unless_a_resource_is_named(stigg, customer):
    replaced = provision(stigg, planId="plan-free", additionalMetaData={"k": "first"})
    current = provision(
        stigg,
        planId="plan-pro",
        billingPeriod="MONTHLY",
        paymentCollectionMethod="INVOICE",
        additionalMetaData={"k": "second"},
    )
    on_a = provision(stigg, planId="plan-free", resourceId="ws-a")
    on_b = provision(stigg, planId="plan-free", resourceId="ws-b")

    # Stigg's docs: without resourceId, only subscriptions that have no resource.
    assert active(stigg) == [
        {
            "subscriptionId": current["id"],
            "status": "ACTIVE",
            "additionalMetaData": {"k": "second"},
            "resource": None,
        }
    ]
    assert replaced["id"] not in [s["subscriptionId"] for s in active(stigg)]
    assert [s["subscriptionId"] for s in active(stigg, resourceId="ws-a")] == [on_a["id"]]
    assert [s["subscriptionId"] for s in active(stigg, resourceIds=["ws-a", "ws-b"])] == [
        on_b["id"],
        on_a["id"],
    ]
    assert active(stigg, resourceId="ws-none") == []


def test_active_means_active_or_in_trial(stigg, customer):
    in_trial = provision(stigg, planId="plan-free", trialOverrideConfiguration={"isTrial": True})
    scheduled = provision(
        stigg, planId="plan-free", resourceId="ws", startDate="2099-01-01T00:00:00Z"
    )
    pending = provision(stigg, planId="plan-pro", billingPeriod="MONTHLY", resourceId="ws-2")
    assert (scheduled["subscription"]["status"], pending["status"]) == (
        "NOT_STARTED",
        "PAYMENT_REQUIRED",
    )

    assert [s["subscriptionId"] for s in active(stigg)] == [in_trial["id"]]
    assert active(stigg, resourceIds=["ws", "ws-2"]) == []


def test_active_subscriptions_of_an_unknown_customer(stigg):
    body = stigg.post(ACTIVE_SUBSCRIPTIONS, {"input": {"customerId": "nobody"}}).get_json()

    assert body["errors"][0]["extensions"]["code"] == "CustomerNotFound"
