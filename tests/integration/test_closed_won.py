"""The actions over real HTTP: gunicorn, sockets and the gql transport, against the sandbox."""

import pytest

from app.demo import ACCOUNT_WITH_EMAIL, ACCOUNT_WITHOUT_EMAIL, play

pytestmark = pytest.mark.integration

ACCOUNT_18_WITHOUT_EMAIL = "001D000000IqhSMIAZ"


def test_the_whole_closed_won_path(service_url, sandbox):
    lines: list[str] = []

    assert (
        play(base_url=service_url, caller_key="integration-caller-key-0123456789", out=lines.append)
        == 0
    )

    state = sandbox.state()
    customers = {customer["customerId"]: customer for customer in state["customers"]}
    assert customers[ACCOUNT_WITH_EMAIL]["email"] == "billing@acme.example"
    assert customers[ACCOUNT_WITH_EMAIL]["salesforceId"] == ACCOUNT_WITH_EMAIL
    assert customers[ACCOUNT_18_WITHOUT_EMAIL]["email"] is None
    [subscription] = state["subscriptions"]
    assert subscription["customerId"] == ACCOUNT_WITH_EMAIL
    assert subscription["planId"] == "plan-pro"
    assert subscription["addons"] == [
        {"addonId": "addon-seats", "quantity": 12.0},
        {"addonId": "addon-storage", "quantity": 1.0},
    ]
    # The trial was cancelled when the renewal was lost.
    assert (subscription["status"], subscription["cancelReason"]) == ("CANCELED", "Immediate")
    [grant] = state["creditGrants"]
    assert grant["amount"] == 500
    [run] = sandbox.workflow_runs()
    assert run["payload"] == {"customerId": ACCOUNT_WITH_EMAIL, "seats": 12}
    assert any(line.startswith("8. Create Stigg Credit Grant again") for line in lines)
    assert "Closed Won path complete." in lines


def test_a_second_opportunity_for_the_same_account_updates_the_customer(service, sandbox):
    body = {
        "salesforceAccountId": ACCOUNT_WITH_EMAIL,
        "customerName": "Acme",
        "customerEmail": "a@acme.io",
    }

    first = service.post("create-customer-with-email", body)
    second = service.post("create-customer-with-email", {**body, "customerName": "Acme Inc"})

    assert (first.status_code, first.json()["created"]) == (200, True)
    assert (second.status_code, second.json()["created"]) == (200, False)
    [customer] = sandbox.state()["customers"]
    assert customer["name"] == "Acme Inc"


def test_a_subscription_creates_a_missing_customer_first(service, sandbox):
    # No payment method: Stigg's default, CHARGE, needs a card the new customer does not
    # have, so the answer is PAYMENT_REQUIRED with a checkout URL (still a success).
    response = service.post(
        "create-subscription",
        {
            "salesforceAccountId": ACCOUNT_WITH_EMAIL,
            "planId": "plan-enterprise",
            "billingPeriod": "ANNUALLY",
            "planBaseChargeOverride": 9000,
            "currency": "usd",
        },
    )

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "PAYMENT_REQUIRED"
    assert response.json()["checkoutUrl"].startswith("https://")
    assert [c["customerId"] for c in sandbox.state()["customers"]] == [ACCOUNT_WITH_EMAIL]
    [subscription] = sandbox.state()["subscriptions"]
    assert (subscription["status"], subscription["paymentCollectionMethod"]) == (
        "PAYMENT_PENDING",
        "CHARGE",
    )


@pytest.mark.parametrize(
    ("body", "stigg_code"),
    [
        ({"planId": "plan-unknown"}, "PlanNotFound"),
        (
            {
                "planId": "plan-pro",
                "billingPeriod": "monthly",
                "addons": [{"addonId": "addon-nope"}],
            },
            "AddonNotFound",
        ),
        (
            {
                "planId": "plan-enterprise",
                "billingPeriod": "annually",
                "addons": [{"addonId": "addon-storage"}],
            },
            "IncompatibleSubscriptionAddon",
        ),
        (
            {
                "planId": "plan-pro",
                "billingPeriod": "monthly",
                "subscriptionCreditEntitlements": [
                    {"customCurrencyId": "cred-type-nope", "amount": 5, "cadence": "MONTH"}
                ],
            },
            "CustomCurrencyNotFound",
        ),
    ],
)
def test_stigg_rejections_reach_flow_as_422_with_stiggs_code(service, body, stigg_code):
    response = service.post(
        "create-subscription", {"salesforceAccountId": ACCOUNT_WITH_EMAIL, **body}
    )

    assert response.status_code == 422, response.text
    assert response.json()["code"] == "STIGG_REJECTED"
    assert response.json()["stiggErrorCode"] == stigg_code
    assert response.json()["retryable"] is False


def test_a_billing_period_the_plan_does_not_offer_is_rejected(service):
    response = service.post(
        "create-subscription",
        {
            "salesforceAccountId": ACCOUNT_WITH_EMAIL,
            "planId": "plan-enterprise",
            "billingPeriod": "monthly",
        },
    )

    assert response.status_code == 422
    assert response.json()["stiggErrorCode"]


def test_a_grant_for_an_unknown_customer_is_customer_not_found(service):
    response = service.post(
        "create-credit-grant",
        {
            "stiggCustomerId": "nobody",
            "grantType": "PROMOTIONAL",
            "currencyId": "cred-type-ai-tokens",
            "displayName": "x",
            "amount": 1,
        },
    )

    assert response.status_code == 422
    assert response.json()["stiggErrorCode"] == "CustomerNotFound"


def test_without_email_keeps_the_email_stigg_has(service, sandbox):
    service.post(
        "create-customer-with-email",
        {
            "salesforceAccountId": ACCOUNT_WITHOUT_EMAIL,
            "customerName": "Globex",
            "customerEmail": "g@globex.io",
        },
    )
    response = service.post(
        "create-customer-without-email",
        {"salesforceAccountId": ACCOUNT_WITHOUT_EMAIL, "customerName": "Globex 2"},
    )

    assert response.status_code == 200
    [customer] = sandbox.state()["customers"]
    assert (customer["name"], customer["email"]) == ("Globex 2", "g@globex.io")


@pytest.mark.parametrize("answer", ["error", "null"])
def test_an_unknown_customer_is_created_whichever_way_stigg_says_unknown(service, sandbox, answer):
    # Stigg may answer getCustomerByRefId for an unknown ID with CustomerNotFound or null.
    sandbox.set_unknown_customer(answer)  # the clean_sandbox reset restores "error"

    response = service.post(
        "create-customer-without-email",
        {"salesforceAccountId": ACCOUNT_WITHOUT_EMAIL, "customerName": "Globex"},
    )

    assert response.status_code == 200, response.text
    assert response.json()["created"] is True
    stats = sandbox.stats()
    assert stats["executed"]["provisionCustomer"] == 1
    assert stats["rejected"].get("getCustomerByRefId", 0) == (1 if answer == "error" else 0)
