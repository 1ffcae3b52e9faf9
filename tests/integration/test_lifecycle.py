"""After Closed Won, over real HTTP against the sandbox: updateSubscription and
cancelSubscription in combinations of their fields, triggerStiggWorkflow with and without
a payload. The sandbox validates every request against Stigg's published input types."""

from __future__ import annotations

import itertools
import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from app.demo import ACCOUNT_WITH_EMAIL

pytestmark = pytest.mark.integration

ACCOUNT_15 = ACCOUNT_WITH_EMAIL[:15]
OPPORTUNITY = "006D000000CkYtrIAF"
RENEWAL = "006D000000CkYtsIAF"


def create(service, **extra) -> str:
    """A live subscription of the Account's customer (INVOICE: live without a card)."""
    response = service.post(
        "create-subscription",
        {
            "salesforceAccountId": ACCOUNT_WITH_EMAIL,
            "planId": "plan-pro",
            "billingPeriod": "monthly",
            "paymentCollectionMethod": "INVOICE",
            "addons": [{"addonId": "addon-seats", "quantity": 5}],
            **extra,
        },
    )
    assert response.status_code == 200, response.text
    return response.json()["stiggSubscriptionId"]


def subscription(sandbox, subscription_id: str) -> dict:
    return next(
        s for s in sandbox.state()["subscriptions"] if s["subscriptionId"] == subscription_id
    )


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- updateSubscription ------------------------------------------------------------------

UPDATE_FIELDS = {
    "addons": {
        "addons": [
            {"addonId": "addon-seats", "quantity": 12},
            {"addonId": "addon-storage", "quantity": 2},
        ]
    },
    "billingPeriod": {"billingPeriod": "Annually"},
    "planBaseChargeOverride": {"planBaseChargeOverride": 420, "currency": "usd"},
    "subscriptionCreditEntitlements": {
        "subscriptionCreditEntitlements": [
            {"customCurrencyId": "cred-type-ai-tokens", "amount": 750, "cadence": "YEAR"}
        ]
    },
    "salesforceOpportunityId": {"salesforceOpportunityId": RENEWAL},
}
COMBINATIONS = [
    combination
    for size in range(1, len(UPDATE_FIELDS) + 1)
    for combination in itertools.combinations(UPDATE_FIELDS, size)
]


@pytest.mark.parametrize("fields", COMBINATIONS, ids="+".join)
def test_an_update_changes_exactly_the_fields_given(service, sandbox, fields):
    subscription_id = create(service, salesforceOpportunityId=OPPORTUNITY)
    before = subscription(sandbox, subscription_id)
    body = {"salesforceAccountId": ACCOUNT_15}
    for name in fields:
        body.update(UPDATE_FIELDS[name])

    response = service.post("update-subscription", body)

    assert response.status_code == 200, response.text
    assert response.json() == {
        "stiggSubscriptionId": subscription_id,
        "stiggSubscriptionUrl": f"https://app.stigg.io/subscriptions/{subscription_id}",
        "stiggCustomerId": ACCOUNT_WITH_EMAIL,
        "stiggCustomerUrl": f"https://app.stigg.io/customers/{ACCOUNT_WITH_EMAIL}",
        "subscriptionStatus": "ACTIVE",
    }
    after = subscription(sandbox, subscription_id)
    expected = dict(before)
    if "addons" in fields:
        expected["addons"] = [
            {"addonId": "addon-seats", "quantity": 12.0},
            {"addonId": "addon-storage", "quantity": 2.0},
        ]
    if "billingPeriod" in fields:
        expected["billingPeriod"] = "ANNUALLY"
        expected["currentBillingPeriodEnd"] = after["currentBillingPeriodEnd"]
    overrides = []
    if "planBaseChargeOverride" in fields:
        overrides.append({"baseCharge": True, "price": {"amount": 420.0, "currency": "USD"}})
    if overrides:
        expected["priceOverrides"] = overrides
    if "subscriptionCreditEntitlements" in fields:
        expected["entitlements"] = [
            {
                "credit": {
                    "customCurrencyId": "cred-type-ai-tokens",
                    "amount": 750.0,
                    "cadence": "YEAR",
                }
            }
        ]
    if "salesforceOpportunityId" in fields:
        expected["salesforceId"] = RENEWAL
    assert after == expected
    assert len(sandbox.state()["subscriptions"]) == 1  # changed in place


def test_add_on_quantities_merge_into_the_current_list(service, sandbox):
    subscription_id = create(
        service,
        addons=[{"addonId": "addon-seats", "quantity": 5}, {"addonId": "addon-storage"}],
    )

    removed = service.post(
        "update-subscription",
        {
            "stiggSubscriptionId": subscription_id,
            "addons": [{"addonId": "addon-seats", "quantity": 0}],
        },
    )
    assert removed.status_code == 200, removed.text
    assert subscription(sandbox, subscription_id)["addons"] == [
        {"addonId": "addon-storage", "quantity": 1.0}
    ]

    added = service.post(
        "update-subscription",
        {
            "stiggSubscriptionId": subscription_id,
            "addons": [{"addonId": "addon-seats", "quantity": 7}],
        },
    )
    assert added.status_code == 200, added.text
    assert subscription(sandbox, subscription_id)["addons"] == [
        {"addonId": "addon-storage", "quantity": 1.0},
        {"addonId": "addon-seats", "quantity": 7.0},
    ]


def test_the_trial_end_moves_on_a_subscription_in_trial(service, sandbox):
    subscription_id = create(service, trial=True)
    new_end = (datetime.now(UTC) + timedelta(days=40)).date()

    response = service.post(
        "update-subscription",
        {"salesforceAccountId": ACCOUNT_15, "trialEndDate": new_end.isoformat()},
    )

    assert response.status_code == 200, response.text
    assert response.json()["subscriptionStatus"] == "IN_TRIAL"
    assert at(subscription(sandbox, subscription_id)["trialEndDate"]).date() == new_end


def test_a_resource_picks_one_of_the_customers_subscriptions(service, sandbox):
    first = create(service, resourceId="workspace-1")
    second = create(service, resourceId="workspace-2")

    ambiguous = service.post(
        "update-subscription", {"salesforceAccountId": ACCOUNT_15, "billingPeriod": "annually"}
    )
    picked = service.post(
        "update-subscription",
        {
            "salesforceAccountId": ACCOUNT_15,
            "resourceId": "workspace-2",
            "billingPeriod": "annually",
        },
    )

    assert ambiguous.status_code == 422
    assert ambiguous.json()["code"] == "SUBSCRIPTION_AMBIGUOUS"
    assert first in ambiguous.json()["message"] and second in ambiguous.json()["message"]
    assert picked.status_code == 200, picked.text
    assert subscription(sandbox, second)["billingPeriod"] == "ANNUALLY"
    assert subscription(sandbox, first)["billingPeriod"] == "MONTHLY"


def test_stigg_refusing_an_update_reaches_flow_as_a_422(service, sandbox):
    subscription_id = create(service)

    response = service.post(
        "update-subscription",
        {
            "stiggSubscriptionId": subscription_id,
            "addons": [{"addonId": "addon-nope", "quantity": 1}],
        },
    )

    assert response.status_code == 422
    assert response.json()["stiggErrorCode"] == "AddonNotFound"
    assert subscription(sandbox, subscription_id)["addons"] == [
        {"addonId": "addon-seats", "quantity": 5.0}
    ]


# --- cancelSubscription ------------------------------------------------------------------

LOOKUPS = {
    "by-id": lambda subscription_id: {"stiggSubscriptionId": subscription_id},
    "by-account": lambda _: {"salesforceAccountId": ACCOUNT_15},
    "by-customer-and-resource": lambda _: {
        "stiggCustomerId": ACCOUNT_WITH_EMAIL,
        "resourceId": "workspace-1",
    },
}
SPECIFIC_DATE = (datetime.now(UTC) + timedelta(days=90)).date().isoformat()
TIMES = {
    "default": {},
    "END_OF_BILLING_PERIOD": {"cancellationTime": "END_OF_BILLING_PERIOD"},
    "IMMEDIATE": {"cancellationTime": "IMMEDIATE"},
    "SPECIFIC_DATE": {"cancellationTime": "SPECIFIC_DATE", "endDate": SPECIFIC_DATE},
}
OPTIONS = {
    "no-options": {},
    "prorate": {"prorate": True},
    "revoke": {"revokeEntitlements": True},
    "prorate+revoke": {"prorate": True, "revokeEntitlements": True},
}


@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("time", TIMES)
@pytest.mark.parametrize("lookup", LOOKUPS)
def test_a_cancellation_in_every_combination(service, sandbox, lookup, time, options):
    subscription_id = create(service, resourceId="workspace-1")
    body = {**LOOKUPS[lookup](subscription_id), **TIMES[time], **OPTIONS[options]}

    response = service.post("cancel-subscription", body)

    assert response.status_code == 200, response.text
    answer = response.json()
    record = subscription(sandbox, subscription_id)
    sent_time = TIMES[time].get("cancellationTime", "END_OF_BILLING_PERIOD")
    assert record["cancellation"] == {
        "subscriptionCancellationTime": sent_time,
        "endDate": f"{SPECIFIC_DATE}T00:00:00+00:00" if time == "SPECIFIC_DATE" else None,
        "subscriptionCancellationAction": (
            "REVOKE_ENTITLEMENTS" if OPTIONS[options].get("revokeEntitlements") else None
        ),
        "prorate": OPTIONS[options].get("prorate"),
        "awaitSubscriptionCancellation": True,
    }
    if sent_time == "IMMEDIATE":
        assert (record["status"], record["cancelReason"]) == ("CANCELED", "Immediate")
    else:
        assert record["status"] == "ACTIVE"
        expected_end = (
            record["currentBillingPeriodEnd"]
            if sent_time == "END_OF_BILLING_PERIOD"
            else f"{SPECIFIC_DATE}T00:00:00.000Z"
        )
        assert record["endDate"] == record["cancellationDate"] == expected_end
    assert answer == {
        "stiggSubscriptionId": subscription_id,
        "stiggSubscriptionUrl": f"https://app.stigg.io/subscriptions/{subscription_id}",
        "stiggCustomerId": ACCOUNT_WITH_EMAIL,
        "stiggCustomerUrl": f"https://app.stigg.io/customers/{ACCOUNT_WITH_EMAIL}",
        "subscriptionStatus": record["status"],
        # Whole seconds in every answer (schemas/fields.py).
        "endDate": re.sub(r"\.\d+Z$", "Z", record["endDate"]),
        "alreadyCancelled": False,
    }


@pytest.mark.parametrize("lookup", LOOKUPS)
def test_cancelling_a_cancelled_subscription_is_a_success_that_says_so(service, sandbox, lookup):
    subscription_id = create(service, resourceId="workspace-1")
    body = {**LOOKUPS[lookup](subscription_id), "cancellationTime": "IMMEDIATE"}
    first = service.post("cancel-subscription", body)

    again = service.post("cancel-subscription", body)

    assert (first.status_code, first.json()["alreadyCancelled"]) == (200, False)
    assert again.status_code == 200, again.text
    assert again.json() == {**first.json(), "alreadyCancelled": True}
    assert sandbox.stats()["executed"]["cancelSubscription"] == 1


def test_a_trial_is_cancelled_only_immediately(service, sandbox):
    subscription_id = create(service, trial=True)

    at_period_end = service.post("cancel-subscription", {"stiggSubscriptionId": subscription_id})
    immediately = service.post(
        "cancel-subscription",
        {"stiggSubscriptionId": subscription_id, "cancellationTime": "IMMEDIATE"},
    )

    assert at_period_end.status_code == 422
    assert at_period_end.json()["stiggErrorCode"] == "TrialMustBeCancelledImmediately"
    assert immediately.status_code == 200, immediately.text
    assert immediately.json()["subscriptionStatus"] == "CANCELED"


def test_a_customer_without_a_subscription_is_a_422(service, sandbox):
    response = service.post("cancel-subscription", {"salesforceAccountId": ACCOUNT_15})

    assert response.status_code == 422
    assert response.json()["code"] == "SUBSCRIPTION_NOT_FOUND"
    assert response.json()["retryable"] is False


# --- triggerStiggWorkflow ----------------------------------------------------------------


def test_a_workflow_with_a_payload(service, sandbox):
    payload = {"customerId": ACCOUNT_WITH_EMAIL, "seats": 12, "lines": [{"sku": "A", "qty": 2}]}

    response = service.post(
        "trigger-stigg-workflow",
        {"triggerId": "wf-seat-change", "payloadJson": json.dumps(payload)},
    )

    assert response.status_code == 200, response.text
    [run] = sandbox.workflow_runs()
    assert (run["triggerId"], run["payload"]) == ("wf-seat-change", payload)
    assert response.json() == {
        "success": True,
        "responseJson": json.dumps({"runId": run["runId"], "triggerId": "wf-seat-change"}),
    }


def test_a_workflow_without_a_payload(service, sandbox):
    response = service.post("trigger-stigg-workflow", {"triggerId": "wf-renewal-lost"})

    assert response.status_code == 200, response.text
    [run] = sandbox.workflow_runs()
    assert (run["triggerId"], run["payload"]) == ("wf-renewal-lost", None)
    assert json.loads(response.json()["responseJson"])["runId"] == run["runId"]


def test_an_unknown_trigger_is_a_422(service, sandbox):
    response = service.post("trigger-stigg-workflow", {"triggerId": "wf-nope"})

    assert response.status_code == 422
    assert response.json()["stiggErrorCode"] == "WorkflowTriggerNotFound"
    assert sandbox.workflow_runs() == []


def test_a_workflow_whose_answer_is_lost_is_run_once_and_reported_unknown(service, sandbox):
    sandbox.inject({"kind": "drop_after", "count": 1, "operations": ["triggerWorkflow"]})

    response = service.post("trigger-stigg-workflow", {"triggerId": "wf-seat-change"})

    assert response.status_code == 503
    assert response.json()["code"] == "WORKFLOW_OUTCOME_UNKNOWN"
    assert response.json()["retryable"] is False
    assert len(sandbox.workflow_runs()) == 1
    assert sandbox.stats()["received"]["triggerWorkflow"] == 1
