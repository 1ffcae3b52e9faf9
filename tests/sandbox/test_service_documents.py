"""Every document the service sends runs cleanly with every field the service may send.

SAMPLES holds, per document in app/stigg/documents, the variables the service sends (every
field it may send). tests/contract/test_stigg_schema.py coerces the same samples against
Stigg's published schema, so they are the one list of "what the service sends".
"""

from __future__ import annotations

import pytest

from tests.sandbox.conftest import DOCUMENTS_DIR, service_document

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


# The service's subscription look-up (issue 12): every status a just-created subscription
# can have, the customer's, optionally one resource's or one subscription's.
LOOKUP_FILTER = {
    "customer": {"customerId": {"eq": CUSTOMER["customerId"]}},
    "status": {"in": ["ACTIVE", "IN_TRIAL", "NOT_STARTED", "PAYMENT_PENDING"]},
}

# The look-ups of updateSubscription and cancelSubscription: one subscription by its ID in
# any status; a customer's subscriptions that have ended (cancel's "already cancelled").
EVERY_STATUS = ["ACTIVE", "IN_TRIAL", "NOT_STARTED", "PAYMENT_PENDING", "CANCELED", "EXPIRED"]
ENDED_FILTER = {
    "customer": {"customerId": {"eq": CUSTOMER["customerId"]}},
    "status": {"in": ["CANCELED", "EXPIRED"]},
}

UPDATE = {
    "subscriptionId": SUBSCRIPTION["subscriptionId"],
    "billingPeriod": "ANNUALLY",
    "addons": [{"addonId": "addon-seats", "quantity": 12}],
    "priceOverrides": [
        {"baseCharge": True, "price": {"amount": 400, "currency": "USD"}},
        {"currencyId": "cred-type-ai-tokens", "price": {"amount": 150, "currency": "USD"}},
    ],
    "entitlements": [
        {"credit": {"customCurrencyId": "cred-type-ai-tokens", "amount": 2000, "cadence": "YEAR"}}
    ],
    "trialEndDate": "2030-08-01T00:00:00.000Z",
    "salesforceId": "006Dn00000RENEWAL",
}

SAMPLES: dict[str, list[dict]] = {
    "GetCustomer": [{"input": {"customerId": CUSTOMER["customerId"]}}],
    "ProvisionCustomer": [{"input": CUSTOMER}],
    "UpdateCustomer": [{"input": {k: v for k, v in CUSTOMER.items() if k != "email"}}],
    "ProvisionSubscription": [{"input": SUBSCRIPTION}],
    "CustomerSubscriptions": [
        {"filter": LOOKUP_FILTER, "paging": {"first": 50}},
        {
            "filter": {**LOOKUP_FILTER, "resource": {"resourceId": {"eq": "workspace-1"}}},
            "paging": {"first": 50},
        },
        {
            "filter": {**LOOKUP_FILTER, "subscriptionId": {"eq": SUBSCRIPTION["subscriptionId"]}},
            "paging": {"first": 1},
        },
        {
            "filter": {
                "subscriptionId": {"eq": SUBSCRIPTION["subscriptionId"]},
                "status": {"in": EVERY_STATUS},
            },
            "paging": {"first": 1},
        },
        {"filter": ENDED_FILTER, "paging": {"first": 1}},
        {
            "filter": {**ENDED_FILTER, "resource": {"resourceId": {"eq": "workspace-1"}}},
            "paging": {"first": 1},
        },
    ],
    "UpdateSubscription": [
        {"input": UPDATE},
        # Every add-on removed: the list replaces the subscription's.
        {"input": {"subscriptionId": SUBSCRIPTION["subscriptionId"], "addons": []}},
    ],
    "CancelSubscription": [
        {
            "input": {
                "subscriptionRefId": SUBSCRIPTION["subscriptionId"],
                "subscriptionCancellationTime": "SPECIFIC_DATE",
                "endDate": "2030-01-01T00:00:00.000Z",
                "prorate": False,
            }
        },
        {
            "input": {
                "subscriptionRefId": SUBSCRIPTION["subscriptionId"],
                "subscriptionCancellationTime": "IMMEDIATE",
                "subscriptionCancellationAction": "REVOKE_ENTITLEMENTS",
                "prorate": True,
            }
        },
    ],
    "TriggerWorkflow": [
        {"input": {"triggerId": "wf-renewal-lost", "payload": {"customerId": "acme", "n": 1}}},
        {"input": {"triggerId": "wf-seat-change"}},
    ],
    "GrantCredits": [{"input": GRANT}],
    "CreditGrants": [
        {
            "input": {
                "customerId": GRANT["customerId"],
                "currencyId": GRANT["currencyId"],
                "paging": {"first": 100},
            }
        },
        {
            "input": {
                "customerId": GRANT["customerId"],
                "currencyId": GRANT["currencyId"],
                "resourceId": "workspace-1",
                "paging": {"first": 100},
            }
        },
    ],
}


def service_documents() -> list[str]:
    return sorted(path.stem for path in DOCUMENTS_DIR.glob("*.graphql"))


def test_every_document_has_samples():
    # A new document in app/stigg/documents must get full variables in SAMPLES.
    assert set(service_documents()) <= set(SAMPLES)


@pytest.mark.parametrize("name", service_documents())
def test_each_document_runs_cleanly_with_each_sample(stigg, name):
    if name != "ProvisionCustomer":
        stigg.ok("ProvisionCustomer", CUSTOMER)
    if name in ("UpdateSubscription", "CancelSubscription"):
        stigg.ok("ProvisionSubscription", SUBSCRIPTION)
    for variables in SAMPLES[name]:
        response = stigg.post(service_document(name), variables)
        body = response.get_json()
        assert (response.status_code, body.get("errors")) == (200, None), variables


def test_the_whole_service_flow_with_full_variables(stigg, admin):
    unknown = stigg.document("GetCustomer", {"customerId": CUSTOMER["customerId"]}).get_json()
    assert unknown["data"] == {"getCustomerByRefId": None}
    assert unknown["errors"][0]["extensions"]["code"] == "CustomerNotFound"
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
    found = stigg.post(
        service_document("CustomerSubscriptions"),
        {
            "filter": {**LOOKUP_FILTER, "resource": {"resourceId": {"eq": "workspace-1"}}},
            "paging": {"first": 50},
        },
    ).get_json()
    connection = found["data"]["customerSubscriptions"]
    assert connection["edges"] == [
        {
            "node": {
                "subscriptionId": "sub-006Dn00000OPPORTU",
                "status": "IN_TRIAL",
                "startDate": SUBSCRIPTION["startDate"],
                "endDate": None,
                "additionalMetaData": {"opportunityId": "006Dn00000OPPORTU"},
                "customer": {"customerId": CUSTOMER["customerId"]},
                "resource": {"resourceId": "workspace-1"},
                "addons": [
                    {"addonId": "addon-seats", "quantity": 5.0},
                    {"addonId": "addon-storage", "quantity": 1.0},
                ],
            }
        }
    ]
    assert connection["pageInfo"]["hasNextPage"] is False

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
    assert admin.get("/_admin/stats").get_json()["rejected"] == {"getCustomerByRefId": 1}
    assert admin.get("/_admin/stats").get_json()["executed"] == {
        "getCustomerByRefId": 1,
        "provisionCustomer": 1,
        "updateOneCustomer": 1,
        "provisionSubscriptionV2": 1,
        "createCreditGrant": 1,
        "creditGrants": 1,
        "customerSubscriptions": 1,
    }


@pytest.mark.parametrize("method", [{"paymentCollectionMethod": "CHARGE"}, {}])
def test_paid_subscription_with_charge_and_minimal_fields(stigg, method):
    stigg.customer(CUSTOMER["customerId"])
    result = stigg.ok(
        "ProvisionSubscription",
        {
            "customerId": CUSTOMER["customerId"],
            "planId": "plan-pro",
            "billingPeriod": "ANNUALLY",
            **method,
        },
    )["provisionSubscription"]
    assert result["status"] == "PAYMENT_REQUIRED"
    assert result["checkoutUrl"]
    assert result["subscription"] is None
