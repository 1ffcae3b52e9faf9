"""Create Stigg Subscription: upsert the customer, then `provisionSubscriptionV2`.

Mapping (DESIGN.md, reference §2.2 and §3): PAYMENT_METHOD_ON_FILE → CHARGE; the plan base
charge override and credit price overrides → `priceOverrides`; trial →
`trialOverrideConfiguration`; credit entitlements → `entitlements[].credit`; the
Opportunity ID → the subscription's `salesforceId`.
"""

from __future__ import annotations

from actions import customers
from actions.once import create_once, is_tagged, tag_for
from app.stigg import StiggSession
from schemas.fields import rfc3339


def run(*, request: dict, stigg: StiggSession, idempotency_key: str | None = None) -> dict:
    customer_id = request.get("stiggCustomerId") or request["salesforceAccountId"]
    # As Stigg's own package does: the customer exists, with what we were told, first.
    customers.upsert(
        stigg=stigg,
        customer_id=customer_id,
        salesforce_account_id=request["salesforceAccountId"],
        name=request.get("customerName"),
        email=request.get("customerEmail"),
    )
    provision_input = subscription_input(request, customer_id, tag=tag_for(idempotency_key))
    result, _created = create_once(
        create=lambda: provisioned(
            stigg.execute("ProvisionSubscription", {"input": provision_input})
        ),
        find=lambda: find_tagged_subscription(stigg=stigg, provision_input=provision_input),
        look_first=idempotency_key is not None,
    )
    return {
        **result,
        "stiggCustomerId": customer_id,
        "stiggCustomerUrl": stigg.customer_url(customer_id),
    }


def provisioned(result: dict) -> dict:
    subscription = result.get("subscription") or {}
    return {
        "stiggSubscriptionId": subscription.get("subscriptionId") or result["id"],
        "status": result["status"],
        "subscriptionStatus": subscription.get("status"),
        "checkoutUrl": result.get("checkoutUrl"),
        "scheduled": result.get("isScheduled"),
    }


def find_tagged_subscription(*, stigg: StiggSession, provision_input: dict) -> dict | None:
    lookup = {"customerId": provision_input["customerId"]}
    if "resourceId" in provision_input:
        lookup["resourceId"] = provision_input["resourceId"]
    for subscription in stigg.execute("ActiveSubscriptions", {"input": lookup}):
        if is_tagged(subscription.get("additionalMetaData"), provision_input["additionalMetaData"]):
            # Found live, so provisioning succeeded (a payment-required one is not live).
            return {
                "stiggSubscriptionId": subscription["subscriptionId"],
                "status": "SUCCESS",
                "subscriptionStatus": subscription.get("status"),
            }
    return None


def subscription_input(request: dict, customer_id: str, *, tag: dict) -> dict:
    """The ProvisionSubscriptionInput for a loaded request; absent values are omitted."""
    fields = {
        "customerId": customer_id,
        "planId": request["planId"],
        "billingPeriod": request.get("billingPeriod"),
        "paymentCollectionMethod": request.get("paymentCollectionMethod"),
        "addons": [
            {"addonId": addon["addonId"], "quantity": addon["quantity"]}
            for addon in request.get("addons", [])
        ]
        or None,
        "priceOverrides": _price_overrides(request) or None,
        "entitlements": [
            {
                "credit": {
                    "customCurrencyId": credit["customCurrencyId"],
                    "amount": credit["amount"],
                    "cadence": credit["cadence"],
                }
            }
            for credit in request.get("subscriptionCreditEntitlements", [])
        ]
        or None,
        "trialOverrideConfiguration": _trial(request),
        "startDate": rfc3339(request.get("startDate")),
        "resourceId": request.get("resourceId"),
        "salesforceId": request.get("salesforceOpportunityId"),
        "additionalMetaData": tag,
    }
    return {key: value for key, value in fields.items() if value is not None}


def _price_overrides(request: dict) -> list[dict]:
    currency = request.get("currency")
    overrides = []
    if "planBaseChargeOverride" in request:
        overrides.append(
            {"baseCharge": True, "price": _money(request["planBaseChargeOverride"], currency)}
        )
    for credit in request.get("subscriptionCreditEntitlements", []):
        if "priceOverride" in credit:
            overrides.append(
                {
                    "currencyId": credit["customCurrencyId"],
                    "price": _money(credit["priceOverride"], currency),
                }
            )
    return overrides


def _money(amount: float, currency: str | None) -> dict:
    # Without a currency Stigg uses the plan's own; never send null.
    return {"amount": amount, "currency": currency} if currency else {"amount": amount}


def _trial(request: dict) -> dict | None:
    end = request.get("trialEndDate")
    if end is not None:
        return {"isTrial": True, "trialEndDate": rfc3339(end)}
    if "trial" in request:
        return {"isTrial": request["trial"]}
    return None
