"""Every document the service sends runs cleanly with every field the service may send."""

from __future__ import annotations

from tests.sandbox.conftest import DOCUMENTS_DIR

CUSTOMER = {
    "customerId": "001Dn00000ABCDEFGH",
    "name": "Acme Corp",
    "email": "billing@acme.test",
    "salesforceId": "001Dn00000ABCDEFGH",
    "additionalMetaData": {"sfAccountId": "001Dn00000ABCDEFGH", "source": "salesforce-flow"},
}

SUBSCRIPTION = {
    "customerId": "001Dn00000ABCDEFGH",
    "planId": "plan-pro",
    "billingPeriod": "MONTHLY",
    "addons": [
        {"addonId": "addon-seats", "quantity": 5},
        {"addonId": "addon-storage", "quantity": 1},
    ],
    "paymentCollectionMethod": "INVOICE",
    "priceOverrides": [
        {"baseCharge": True, "price": {"amount": 39, "currency": "USD"}},
        {"currencyId": "cred-type-ai-tokens", "price": {"amount": 99, "currency": "USD"}},
    ],
    "trialOverrideConfiguration": {"isTrial": True, "trialEndDate": "2030-07-01T00:00:00.000Z"},
    "entitlements": [
        {"credit": {"customCurrencyId": "cred-type-ai-tokens", "amount": 1000, "cadence": "MONTH"}}
    ],
    "salesforceId": "006Dn00000OPPORTU",
    "startDate": "2025-06-01T00:00:00.000Z",
    "resourceId": "workspace-1",
    "subscriptionId": "sub-006Dn00000OPPORTU",
    "additionalMetaData": {"opportunityId": "006Dn00000OPPORTU"},
}

GRANT = {
    "customerId": "001Dn00000ABCDEFGH",
    "currencyId": "cred-type-ai-tokens",
    "displayName": "Q3 top-up",
    "amount": 5000,
    "grantType": "PAID",
    "resourceId": "workspace-1",
    "comment": "Closed Won 006Dn00000OPPORTU",
    "effectiveAt": "2025-06-01T00:00:00.000Z",
    "expireAt": "2099-06-01T00:00:00.000Z",
    "priority": 10,
    "paymentCollectionMethod": "CHARGE",
    "cost": {"amount": 250, "currency": "USD"},
    "additionalMetaData": {"idempotencyKey": "a0X-grant-1"},
}


def test_the_documents_are_the_ones_exercised_here():
    # A new document in app/stigg/documents must get full variables below.
    assert sorted(p.stem for p in DOCUMENTS_DIR.glob("*.graphql")) == [
        "ActiveSubscriptions",
        "CreditGrants",
        "GetCustomer",
        "GrantCredits",
        "ProvisionCustomer",
        "ProvisionSubscription",
        "UpdateCustomer",
    ]


def test_the_whole_service_flow_with_full_variables(stigg, admin):
    assert stigg.ok("GetCustomer", {"customerId": CUSTOMER["customerId"]}) == {
        "getCustomerByRefId": None
    }
    stigg.ok("ProvisionCustomer", CUSTOMER)
    found = stigg.ok("GetCustomer", {"customerId": CUSTOMER["customerId"]})["getCustomerByRefId"]
    assert found == {key: CUSTOMER[key] for key in ("customerId", "name", "email", "salesforceId")}

    without_email = {k: v for k, v in CUSTOMER.items() if k != "email"}
    assert stigg.ok("UpdateCustomer", {**without_email, "name": "Acme Corporation"}) == {
        "updateCustomer": {"customerId": CUSTOMER["customerId"]}
    }

    result = stigg.ok("ProvisionSubscription", SUBSCRIPTION)["provisionSubscription"]
    assert result == {
        "id": "sub-006Dn00000OPPORTU",
        "status": "SUCCESS",
        "checkoutUrl": None,
        "isScheduled": False,
        "subscription": {"subscriptionId": "sub-006Dn00000OPPORTU", "status": "IN_TRIAL"},
    }
    live = stigg.ok(
        "ActiveSubscriptions", {"customerId": CUSTOMER["customerId"], "resourceId": "workspace-1"}
    )
    assert live == {
        "getActiveSubscriptions": [
            {
                "subscriptionId": "sub-006Dn00000OPPORTU",
                "status": "IN_TRIAL",
                "additionalMetaData": {"opportunityId": "006Dn00000OPPORTU"},
            }
        ]
    }

    grant = stigg.ok("GrantCredits", GRANT)["createCreditGrant"]
    assert grant["status"] == "ACTIVE"
    listed = stigg.ok(
        "CreditGrants", {"customerId": GRANT["customerId"], "currencyId": GRANT["currencyId"]}
    )
    [edge] = listed["creditGrants"]["edges"]
    assert edge["node"]["grantId"] == grant["grantId"]
    assert edge["node"]["additionalMetaData"] == {"idempotencyKey": "a0X-grant-1"}

    state = admin.get("/_admin/state").get_json()
    [subscription] = state["subscriptions"]
    assert subscription["priceOverrides"] == SUBSCRIPTION["priceOverrides"]
    assert subscription["entitlements"] == SUBSCRIPTION["entitlements"]
    assert subscription["resourceId"] == "workspace-1"
    assert state["customers"][0]["name"] == "Acme Corporation"
    assert state["customers"][0]["email"] == "billing@acme.test"  # omitted = unchanged
    assert admin.get("/_admin/stats").get_json()["executed"] == {
        "getCustomerByRefId": 2,
        "provisionCustomer": 1,
        "updateOneCustomer": 1,
        "provisionSubscriptionV2": 1,
        "createCreditGrant": 1,
        "creditGrants": 1,
        "getActiveSubscriptions": 1,
    }


def test_paid_subscription_with_charge_and_minimal_fields(stigg):
    stigg.customer(CUSTOMER["customerId"])
    result = stigg.ok(
        "ProvisionSubscription",
        {
            "customerId": CUSTOMER["customerId"],
            "planId": "plan-pro",
            "billingPeriod": "ANNUALLY",
            "paymentCollectionMethod": "CHARGE",
        },
    )["provisionSubscription"]
    assert result["status"] == "PAYMENT_REQUIRED"
    assert result["checkoutUrl"]
