"""updateOneSubscription, cancelSubscription and triggerWorkflow behave as the sandbox models
Stigg (docs/stigg-fidelity.md): update in place, cancel by cancellation time, workflows from
the seeded catalog with their payloads recorded. The state's clock is a FakeClock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.sandbox.conftest import iso

SUBSCRIPTION_FIELDS = """
    subscriptionId status startDate endDate cancellationDate cancelReason trialEndDate
    billingPeriod salesforceId currentBillingPeriodEnd customer { customerId }
    addons { addonId quantity }
"""
UPDATE = f"""
mutation($input: UpdateSubscriptionInput!) {{
  updateOneSubscription(input: $input) {{ {SUBSCRIPTION_FIELDS} }}
}}
"""
CANCEL = f"""
mutation($input: SubscriptionCancellationInput!) {{
  cancelSubscription(input: $input) {{ {SUBSCRIPTION_FIELDS} }}
}}
"""
TRIGGER = """
mutation($input: TriggerWorkflowInput!) { triggerWorkflow(input: $input) { success response } }
"""


@pytest.fixture
def customer(stigg, clock):
    return stigg.customer("cust-1", billingInformation={"paymentMethodId": "pm_1"})


def provision(stigg, **input) -> str:
    result = stigg.subscription(customerId="cust-1", **input)
    assert result["status"] == "SUCCESS", result
    return result["id"]


def run(stigg, document: str, input: dict) -> dict:
    body = stigg.post(document, {"input": input}).get_json()
    assert "errors" not in body, body
    (result,) = body["data"].values()
    return result


def fail(stigg, document: str, input: dict) -> dict:
    body = stigg.post(document, {"input": input}).get_json()
    assert body["data"] is None, body
    (error,) = body["errors"]
    return error["extensions"]


def state_of(admin, subscription_id: str) -> dict:
    state = admin.get("/_admin/state").get_json()
    return next(s for s in state["subscriptions"] if s["subscriptionId"] == subscription_id)


# --- updateOneSubscription ---------------------------------------------------------------


def test_update_changes_the_subscription_in_place(stigg, admin, customer):
    subscription_id = provision(
        stigg,
        planId="plan-pro",
        billingPeriod="MONTHLY",
        addons=[{"addonId": "addon-seats", "quantity": 5}, {"addonId": "addon-storage"}],
    )

    updated = run(
        stigg,
        UPDATE,
        {
            "subscriptionId": subscription_id,
            "billingPeriod": "ANNUALLY",
            "addons": [{"addonId": "addon-seats", "quantity": 12}],
            "priceOverrides": [{"baseCharge": True, "price": {"amount": 400, "currency": "USD"}}],
            "entitlements": [
                {
                    "credit": {
                        "customCurrencyId": "cred-type-ai-tokens",
                        "amount": 9,
                        "cadence": "YEAR",
                    }
                }
            ],
            "salesforceId": "006Dn00000RENEWAL",
        },
    )

    assert updated["subscriptionId"] == subscription_id
    assert updated["status"] == "ACTIVE"
    assert updated["billingPeriod"] == "ANNUALLY"
    # The list replaces the subscription's: addon-storage is gone.
    assert updated["addons"] == [{"addonId": "addon-seats", "quantity": 12.0}]
    assert updated["salesforceId"] == "006Dn00000RENEWAL"
    record = state_of(admin, subscription_id)
    assert record["priceOverrides"] == [
        {"baseCharge": True, "price": {"amount": 400.0, "currency": "USD"}}
    ]
    assert record["entitlements"] == [
        {"credit": {"customCurrencyId": "cred-type-ai-tokens", "amount": 9.0, "cadence": "YEAR"}}
    ]
    assert len(admin.get("/_admin/state").get_json()["subscriptions"]) == 1


def test_fields_left_out_are_left_alone_and_an_empty_list_removes_every_addon(
    stigg, admin, customer
):
    subscription_id = provision(
        stigg, planId="plan-pro", billingPeriod="MONTHLY", addons=[{"addonId": "addon-seats"}]
    )

    updated = run(stigg, UPDATE, {"subscriptionId": subscription_id, "salesforceId": "006x"})
    assert updated["addons"] == [{"addonId": "addon-seats", "quantity": 1.0}]
    assert updated["billingPeriod"] == "MONTHLY"

    emptied = run(stigg, UPDATE, {"subscriptionId": subscription_id, "addons": []})
    assert emptied["addons"] == []


def test_the_trial_end_moves_while_the_trial_runs(stigg, clock, customer):
    subscription_id = provision(
        stigg,
        planId="plan-pro",
        billingPeriod="MONTHLY",
        trialOverrideConfiguration={"isTrial": True, "trialEndDate": "2026-02-01T00:00:00Z"},
    )

    updated = run(
        stigg, UPDATE, {"subscriptionId": subscription_id, "trialEndDate": "2026-03-01T00:00:00Z"}
    )

    assert (updated["status"], updated["trialEndDate"]) == ("IN_TRIAL", "2026-03-01T00:00:00.000Z")
    clock.advance(days=30)  # 2026-02-14: still in the longer trial
    assert run(stigg, UPDATE, {"subscriptionId": subscription_id})["status"] == "IN_TRIAL"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"billingPeriod": "MONTHLY"}, "BillingPeriodMissingError"),
        ({"addons": [{"addonId": "addon-storage"}]}, "IncompatibleSubscriptionAddon"),
        ({"addons": [{"addonId": "addon-nope"}]}, "AddonNotFound"),
        (
            {"addons": [{"addonId": "addon-seats", "quantity": 501}]},
            "AddonQuantityExceedsLimitError",
        ),
        ({"trialEndDate": "2026-06-01T00:00:00Z"}, "InvalidArgumentError"),
        ({"scheduleStrategy": "IMMEDIATE"}, "UnsupportedParameter"),
        ({"entitlements": [{"credit": {"customCurrencyId": "c", "amount": 1, "cadence": "MONTH"}}]},
         "CustomCurrencyNotFound"),
    ],
)  # fmt: skip
def test_a_rejected_update_changes_nothing(stigg, admin, customer, change, code):
    # plan-enterprise is annual only, with addon-seats alone; not in trial.
    subscription_id = provision(
        stigg, planId="plan-enterprise", addons=[{"addonId": "addon-seats", "quantity": 2}]
    )
    before = state_of(admin, subscription_id)

    extensions = fail(stigg, UPDATE, {"subscriptionId": subscription_id, **change})

    assert extensions["code"] == code
    assert state_of(admin, subscription_id) == before


def test_updating_an_unknown_or_ended_subscription_is_refused(stigg, customer):
    assert fail(stigg, UPDATE, {"subscriptionId": "sub-nope"}) == {
        "code": "SubscriptionNotFound",
        "isValidationError": True,
        "refId": "sub-nope",
    }
    subscription_id = provision(stigg, planId="plan-free")
    run(
        stigg,
        CANCEL,
        {"subscriptionRefId": subscription_id, "subscriptionCancellationTime": "IMMEDIATE"},
    )

    assert fail(stigg, UPDATE, {"subscriptionId": subscription_id}) == {
        "code": "SubscriptionAlreadyCanceledOrExpired",
        "isValidationError": True,
        "refId": subscription_id,
        "status": "CANCELED",
    }


# --- cancelSubscription ------------------------------------------------------------------


def test_cancel_immediately_ends_it_now(stigg, clock, customer):
    subscription_id = provision(stigg, planId="plan-pro", billingPeriod="MONTHLY")

    cancelled = run(
        stigg,
        CANCEL,
        {"subscriptionRefId": subscription_id, "subscriptionCancellationTime": "IMMEDIATE"},
    )

    assert cancelled["status"] == "CANCELED"
    assert cancelled["cancelReason"] == "Immediate"
    assert cancelled["endDate"] == iso(clock.now).replace("Z", ".000Z")


@pytest.mark.parametrize("time", [{"subscriptionCancellationTime": "END_OF_BILLING_PERIOD"}, {}])
def test_cancel_at_the_end_of_the_billing_period_keeps_it_live_until_then(
    stigg, clock, customer, time
):
    # Started 2026-01-15 12:00, monthly: the period ends 2026-02-15 12:00.
    subscription_id = provision(stigg, planId="plan-pro", billingPeriod="MONTHLY")

    cancelled = run(stigg, CANCEL, {"subscriptionRefId": subscription_id, **time})

    assert cancelled["status"] == "ACTIVE"
    assert cancelled["endDate"] == "2026-02-15T12:00:00.000Z"
    assert cancelled["cancellationDate"] == "2026-02-15T12:00:00.000Z"
    clock.now = datetime(2026, 2, 15, 12, 0, tzinfo=UTC)
    body = stigg.post(
        "query($f: CustomerSubscriptionFilter!) { customerSubscriptions(filter: $f) "
        "{ edges { node { status cancelReason } } } }",
        {"f": {"subscriptionId": {"eq": subscription_id}}},
    ).get_json()
    [edge] = body["data"]["customerSubscriptions"]["edges"]
    assert edge["node"] == {"status": "CANCELED", "cancelReason": "ScheduledCancellation"}


def test_cancel_on_a_specific_date(stigg, clock, customer):
    subscription_id = provision(stigg, planId="plan-pro", billingPeriod="ANNUALLY")
    given = {"subscriptionRefId": subscription_id, "subscriptionCancellationTime": "SPECIFIC_DATE"}

    assert fail(stigg, CANCEL, given)["code"] == "InvalidCancellationDate"
    assert fail(stigg, CANCEL, {**given, "endDate": "2026-01-01T00:00:00Z"}) == {
        "code": "InvalidCancellationDate",
        "isValidationError": True,
        "refId": subscription_id,
    }
    cancelled = run(stigg, CANCEL, {**given, "endDate": "2026-06-30T00:00:00Z"})

    assert (cancelled["status"], cancelled["endDate"]) == ("ACTIVE", "2026-06-30T00:00:00.000Z")


def test_a_later_cancellation_replaces_the_earlier_one(stigg, customer):
    subscription_id = provision(stigg, planId="plan-pro", billingPeriod="ANNUALLY")
    given = {"subscriptionRefId": subscription_id, "subscriptionCancellationTime": "SPECIFIC_DATE"}
    run(stigg, CANCEL, {**given, "endDate": "2026-06-30T00:00:00Z"})

    again = run(stigg, CANCEL, {**given, "endDate": "2026-09-30T00:00:00Z"})

    assert again["endDate"] == "2026-09-30T00:00:00.000Z"


def test_a_trial_must_be_cancelled_immediately(stigg, customer):
    subscription_id = provision(
        stigg,
        planId="plan-pro",
        billingPeriod="MONTHLY",
        trialOverrideConfiguration={"isTrial": True},
    )

    refused = fail(stigg, CANCEL, {"subscriptionRefId": subscription_id})
    cancelled = run(
        stigg,
        CANCEL,
        {"subscriptionRefId": subscription_id, "subscriptionCancellationTime": "IMMEDIATE"},
    )

    assert refused["code"] == "TrialMustBeCancelledImmediately"
    assert cancelled["status"] == "CANCELED"


def test_a_subscription_without_a_billing_period_ends_now(stigg, customer):
    subscription_id = provision(stigg, planId="plan-free")

    cancelled = run(stigg, CANCEL, {"subscriptionRefId": subscription_id})

    assert (cancelled["status"], cancelled["cancelReason"]) == ("CANCELED", "Immediate")


def test_cancelling_twice_is_already_canceled_with_its_status(stigg, customer):
    subscription_id = provision(stigg, planId="plan-free")
    run(stigg, CANCEL, {"subscriptionRefId": subscription_id})

    assert fail(stigg, CANCEL, {"subscriptionRefId": subscription_id}) == {
        "code": "SubscriptionAlreadyCanceledOrExpired",
        "isValidationError": True,
        "refId": subscription_id,
        "status": "CANCELED",
    }
    assert fail(stigg, CANCEL, {"subscriptionRefId": "sub-nope"})["code"] == "SubscriptionNotFound"


def test_the_cancellation_options_are_recorded(stigg, admin, customer):
    subscription_id = provision(stigg, planId="plan-pro", billingPeriod="MONTHLY")

    run(
        stigg,
        CANCEL,
        {
            "subscriptionRefId": subscription_id,
            "subscriptionCancellationTime": "IMMEDIATE",
            "subscriptionCancellationAction": "REVOKE_ENTITLEMENTS",
            "prorate": True,
        },
    )

    assert state_of(admin, subscription_id)["cancellation"] == {
        "subscriptionCancellationTime": "IMMEDIATE",
        "endDate": None,
        "subscriptionCancellationAction": "REVOKE_ENTITLEMENTS",
        "prorate": True,
        "awaitSubscriptionCancellation": True,  # Stigg's input default
    }


# --- triggerWorkflow ---------------------------------------------------------------------


def test_a_seeded_trigger_runs_and_its_payload_is_recorded(stigg, admin, clock):
    first = run(stigg, TRIGGER, {"triggerId": "wf-renewal-lost", "payload": {"a": [1, "b"]}})
    second = run(stigg, TRIGGER, {"triggerId": "wf-seat-change", "isTest": True})

    assert first["success"] is True
    assert first["response"]["triggerId"] == "wf-renewal-lost"
    runs = admin.get("/_admin/workflow-runs").get_json()["runs"]
    assert runs == [
        {
            "runId": first["response"]["runId"],
            "triggerId": "wf-renewal-lost",
            "payload": {"a": [1, "b"]},
            "isTest": None,
            "triggeredAt": "2026-01-15T12:00:00.000Z",
        },
        {
            "runId": second["response"]["runId"],
            "triggerId": "wf-seat-change",
            "payload": None,
            "isTest": True,
            "triggeredAt": "2026-01-15T12:00:00.000Z",
        },
    ]
    # Not idempotent: the same call runs the workflow again.
    run(stigg, TRIGGER, {"triggerId": "wf-seat-change"})
    assert len(admin.get("/_admin/workflow-runs").get_json()["runs"]) == 3
    admin.post("/_admin/reset")
    assert admin.get("/_admin/workflow-runs").get_json() == {"runs": []}


def test_an_unknown_trigger_is_workflow_trigger_not_found(stigg, admin):
    assert fail(stigg, TRIGGER, {"triggerId": "wf-nope"}) == {
        "code": "WorkflowTriggerNotFound",
        "isValidationError": True,
        "refId": "wf-nope",
    }
    assert admin.get("/_admin/workflow-runs").get_json() == {"runs": []}
