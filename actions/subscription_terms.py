"""The subscription fields createSubscription and updateSubscription share: one mapping.

Both actions take the same Salesforce-side fields for the terms of a subscription and send
them to Stigg the same way (`provisionSubscriptionV2` and `updateOneSubscription` have the
same input types for them). Values are normalised by the shared schema fields first
(schemas/subscription.py: `monthly` → `MONTHLY`, `PAYMENT_METHOD_ON_FILE` → `CHARGE`,
`month` → `MONTH`, currency upper-case); this module shapes them into Stigg's inputs.

    billingPeriod                    → billingPeriod
    planBaseChargeOverride, currency → priceOverrides: [{baseCharge: true, price: {amount,
                                       currency}}]
    subscriptionCreditEntitlements[] → entitlements: [{credit: {customCurrencyId, amount,
                                       cadence}}]; a priceOverride (+ currency) adds
                                       priceOverrides: [{currencyId, price}]
    addons[{addonId, quantity}]      → addons: [{addonId, quantity}]
    trial, trialEndDate (create)     → trialOverrideConfiguration {isTrial, trialEndDate}
    trialEndDate (update)            → trialEndDate (UpdateSubscriptionInput has no trial switch)
    salesforceOpportunityId          → salesforceId

The payment collection method is create's only: Stigg's `UpdateSubscriptionInput` has no
such field.
"""

from __future__ import annotations

from schemas.fields import rfc3339


def shared_terms(request: dict) -> dict:
    """The Stigg input fields both actions send for a loaded request; absent ones omitted."""
    fields = {
        "billingPeriod": request.get("billingPeriod"),
        "priceOverrides": price_overrides(request) or None,
        "entitlements": credit_entitlements(request) or None,
        "salesforceId": request.get("salesforceOpportunityId"),
    }
    return {key: value for key, value in fields.items() if value is not None}


def addons(items: list[dict]) -> list[dict]:
    """`SubscriptionAddonInput`s, in the order given."""
    return [{"addonId": item["addonId"], "quantity": item["quantity"]} for item in items]


def credit_entitlements(request: dict) -> list[dict]:
    return [
        {
            "credit": {
                "customCurrencyId": credit["customCurrencyId"],
                "amount": credit["amount"],
                "cadence": credit["cadence"],
            }
        }
        for credit in request.get("subscriptionCreditEntitlements", [])
    ]


def price_overrides(request: dict) -> list[dict]:
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


def trial_override(request: dict) -> dict | None:
    """Create's `trialOverrideConfiguration`: a `trialEndDate` implies a trial."""
    end = request.get("trialEndDate")
    if end is not None:
        return {"isTrial": True, "trialEndDate": rfc3339(end)}
    if "trial" in request:
        return {"isTrial": request["trial"]}
    return None


def _money(amount: float, currency: str | None) -> dict:
    # Without a currency Stigg uses the plan's own; never send null.
    return {"amount": amount, "currency": currency} if currency else {"amount": amount}
