"""What each root field does: Stigg's rules, applied to the sandbox state.

Each resolver receives the coerced `input` (camelCase keys; a key is absent when the
caller omitted it and None when the caller sent null) and raises StiggError where Stigg
would reject the operation. They run with `state.lock` held (see graphql_api.py).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from graphql import GraphQLResolveInfo

from sandbox.catalog import Catalog, Money, Plan
from sandbox.errors import (
    StiggError,
    check_single_id,
    custom_currency_not_found,
    customer_not_found,
    duplicated_entity,
)
from sandbox.state import (
    LIVE_SUBSCRIPTION_STATUSES,
    CreditGrant,
    Customer,
    CustomerResource,
    SandboxState,
    Subscription,
    SubscriptionAddon,
    new_uuid,
    utc_now,
)

# Stigg plans default to a 14-day trial in its UI; used when isTrial comes without an end.
DEFAULT_TRIAL_DAYS = 14
# The sandbox has no billing provider; this host only makes the URL recognisable.
CHECKOUT_URL_TEMPLATE = "https://checkout.sandbox.stigg.invalid/pay/{subscription_id}"
# Stigg's connections come from nestjs-query, whose default page size is 10.
DEFAULT_PAGE_SIZE = 10
# Stigg's REST docs give 50 as the default grant priority.
DEFAULT_GRANT_PRIORITY = 50.0


@dataclass(frozen=True)
class SandboxContext:
    state: SandboxState
    catalog: Catalog


def _short_random() -> str:
    """Six hex characters, like the suffix of Stigg's generated ids."""
    return secrets.token_hex(3)


def _context(info: GraphQLResolveInfo) -> SandboxContext:
    return info.context


# --- customers ----------------------------------------------------------------------------

# Input keys copied onto the customer record as they are (null clears the value).
_CUSTOMER_FIELDS = {
    "name": "name",
    "email": "email",
    "salesforceId": "salesforce_id",
    "crmId": "crm_id",
    "billingId": "billing_id",
    "awsMarketplaceCustomerId": "aws_marketplace_customer_id",
    # Replaced as a whole, not merged: Stigg's REST docs say so for metadata.
    "additionalMetaData": "additional_meta_data",
}


def _apply_customer_fields(customer: Customer, data: dict[str, Any]) -> None:
    for input_key, attribute in _CUSTOMER_FIELDS.items():
        if input_key in data:
            setattr(customer, attribute, data[input_key])
    billing = data.get("billingInformation") or {}
    if billing.get("paymentMethodId"):
        customer.default_payment_method_id = billing["paymentMethodId"]
    if billing.get("currency"):
        customer.billing_currency = billing["currency"]


def get_customer_by_ref_id(_root: Any, info: GraphQLResolveInfo, input: dict) -> Customer | None:
    # Unknown id: null data and no error (the sandbox's reading of an undocumented case).
    return _context(info).state.customers.get(input["customerId"])


def provision_customer(_root: Any, info: GraphQLResolveInfo, input: dict) -> dict[str, Any]:
    ctx = _context(info)
    customer_id = check_single_id(input.get("customerId"), input.get("refId"), "customer")
    if customer_id is None:
        customer_id = f"customer-{secrets.token_hex(4)}"
    if customer_id in ctx.state.customers:
        # Create-only in practice: Stigg does not upsert here.
        raise duplicated_entity("Customer", customer_id)
    now = utc_now()
    customer = Customer(
        id=new_uuid(),
        customer_id=customer_id,
        environment_id=ctx.catalog.environment_id,
        created_at=input.get("createdAt") or now,
        updated_at=now,
    )
    _apply_customer_fields(customer, input)
    subscription_params = input.get("subscriptionParams")
    # A rejected initial subscription rejects the whole provision: no customer is left.
    ctx.state.customers[customer_id] = customer
    try:
        result = (
            _provision_subscription(ctx, customer, subscription_params)
            if subscription_params
            else None
        )
    except StiggError:
        del ctx.state.customers[customer_id]
        raise
    strategy = "REQUESTED_PLAN" if subscription_params else "SKIPPED_SUBSCRIPTION_CREATION"
    return {
        "customer": customer,
        "subscription": result["subscription"] if result else None,
        "subscriptionDecisionStrategy": strategy,
        "subscriptionStrategyDecision": strategy,
    }


def update_one_customer(_root: Any, info: GraphQLResolveInfo, input: dict) -> Customer:
    ctx = _context(info)
    customer_id = check_single_id(input.get("customerId"), input.get("refId"), "customer")
    if customer_id is None:
        raise StiggError("MissingEntityIdError", "customerId is required to update a customer")
    customer = ctx.state.customers.get(customer_id)
    if customer is None:
        raise customer_not_found(customer_id)
    _apply_customer_fields(customer, input)
    customer.updated_at = utc_now()
    return customer


# --- subscriptions ------------------------------------------------------------------------


def provision_subscription_v2(_root: Any, info: GraphQLResolveInfo, input: dict) -> dict[str, Any]:
    ctx = _context(info)
    customer = ctx.state.customers.get(input["customerId"])
    if customer is None:
        raise customer_not_found(input["customerId"])
    return _provision_subscription(ctx, customer, input)


def _provision_subscription(
    ctx: SandboxContext, customer: Customer, data: dict[str, Any]
) -> dict[str, Any]:
    """Shared by provisionSubscriptionV2 and provisionCustomer.subscriptionParams."""
    plan = ctx.catalog.plans.get(data["planId"])
    if plan is None:
        raise StiggError("PlanNotFound", "Plan not found", refId=data["planId"])
    subscription_id = check_single_id(data.get("subscriptionId"), data.get("refId"), "subscription")
    if subscription_id is not None and subscription_id in ctx.state.subscriptions:
        raise duplicated_entity("Subscription", subscription_id)
    if subscription_id is None:
        subscription_id = f"subscription-{plan.ref_id}-{_short_random()}"

    billing_period = _billing_period(plan, data.get("billingPeriod"))
    addons = _subscription_addons(ctx, plan, data.get("addons") or [])
    _check_custom_currencies(ctx, data)

    now = utc_now()
    start_date = data.get("startDate") or now
    trial = data.get("trialOverrideConfiguration") or {}
    is_trial = bool(trial.get("isTrial")) and not data.get("skipTrial")
    method = data.get("paymentCollectionMethod")
    # The sandbox has no billing provider and customers have no card on file unless
    # billingInformation.paymentMethodId gave one. CHARGE on a paid plan then needs a
    # checkout, as Stigg answers PAYMENT_REQUIRED when nothing can be charged. Omitted
    # method = no payment collection (the sandbox environment has no billing integration).
    payment_required = (
        plan.is_paid and not is_trial and method == "CHARGE" and not customer.has_payment_method
    )
    if payment_required:
        status = "PAYMENT_PENDING"
    elif start_date > now:
        status = "NOT_STARTED"
    elif is_trial:
        status = "IN_TRIAL"
    else:
        status = "ACTIVE"

    subscription = Subscription(
        id=new_uuid(),
        subscription_id=subscription_id,
        customer=customer,
        plan=plan,
        status=status,
        start_date=start_date,
        created_at=now,
        environment_id=ctx.catalog.environment_id,
        payment_collection="ACTION_REQUIRED" if payment_required else "NOT_REQUIRED",
        pricing_type=plan.pricing_type,
        billing_period=billing_period,
        payment_collection_method=method,
        trial_end_date=(
            trial.get("trialEndDate") or start_date + timedelta(days=DEFAULT_TRIAL_DAYS)
            if is_trial
            else None
        ),
        was_in_trial=is_trial,
        cancellation_date=data.get("cancellationDate"),
        is_custom_price_subscription=bool(data.get("priceOverrides") or data.get("entitlements")),
        salesforce_id=data.get("salesforceId"),
        additional_meta_data=data.get("additionalMetaData"),
        addons=addons,
        resource=_resource(ctx, customer, data.get("resourceId"), now),
        price_overrides=_plain(data.get("priceOverrides") or []),
        entitlements=_plain(data.get("entitlements") or []),
    )
    if not payment_required:
        # At most one live subscription per (customer, resource): the new one replaces it.
        _cancel_live_subscriptions(customer, subscription.resource_id, now)
    ctx.state.subscriptions[subscription_id] = subscription
    customer.subscriptions.append(subscription)
    return {
        "id": subscription_id,
        "status": "PAYMENT_REQUIRED" if payment_required else "SUCCESS",
        "checkoutUrl": (
            CHECKOUT_URL_TEMPLATE.format(subscription_id=subscription_id)
            if payment_required
            else None
        ),
        "checkoutBillingId": None,
        "isScheduled": False,
        "subscription": None if payment_required else subscription,
    }


def _billing_period(plan: Plan, requested: str | None) -> str | None:
    """The period the subscription is billed by, or BillingPeriodMissingError.

    Stigg has no separate "unsupported billing period" code. BillingPeriodMissingError is
    its code for "this paid plan needs a billing period it can price", so the sandbox uses
    it both when the period is omitted on a multi-period plan and when the plan has no
    price for the requested one (PriceNotFound is the other plausible reading; the
    service treats both as validation errors).
    """
    if not plan.is_paid:
        return requested  # free plans have nothing to bill; Stigg keeps what it is given
    if requested is None:
        if len(plan.billing_periods) == 1:
            return plan.billing_periods[0]
        raise StiggError(
            "BillingPeriodMissingError",
            f"Billing period is required for plan {plan.ref_id}",
            refId=plan.ref_id,
        )
    if requested not in plan.billing_periods:
        raise StiggError(
            "BillingPeriodMissingError",
            f"Plan {plan.ref_id} has no {requested} price",
            refId=plan.ref_id,
        )
    return requested


def _subscription_addons(
    ctx: SandboxContext, plan: Plan, requested: list[dict[str, Any]]
) -> list[SubscriptionAddon]:
    seen: set[str] = set()
    incompatible: list[str] = []
    addons = []
    now = utc_now()
    for item in requested:
        addon = ctx.catalog.addons.get(item["addonId"])
        if addon is None:
            raise StiggError("AddonNotFound", "Addon not found", refId=item["addonId"])
        if addon.ref_id in seen:
            raise StiggError(
                "DuplicateAddonProvisionedError",
                f"Add-on {addon.ref_id} is listed twice",
                refId=addon.ref_id,
            )
        seen.add(addon.ref_id)
        if addon.ref_id not in plan.compatible_addons:
            incompatible.append(addon.ref_id)
            continue
        quantity = item.get("quantity")
        quantity = 1 if quantity is None else quantity
        if quantity < 1:
            raise StiggError("InvalidQuantity", "Add-on quantity must be at least 1")
        if addon.max_quantity is not None and quantity > addon.max_quantity:
            raise StiggError(
                "AddonQuantityExceedsLimitError",
                f"Add-on {addon.ref_id} allows at most {addon.max_quantity:g}",
                refId=addon.ref_id,
            )
        addons.append(SubscriptionAddon(new_uuid(), addon, float(quantity), now, now))
    if incompatible:
        raise StiggError(
            "IncompatibleSubscriptionAddon",
            "Addons are not compatible with the plan",
            nonCompatibleAddons=incompatible,
            planDisplayName=plan.display_name,
        )
    return addons


def _check_custom_currencies(ctx: SandboxContext, data: dict[str, Any]) -> None:
    wanted = [
        (e.get("credit") or {}).get("customCurrencyId") for e in data.get("entitlements") or []
    ] + [o.get("currencyId") for o in data.get("priceOverrides") or []]
    for currency_id in wanted:
        if currency_id is not None and currency_id not in ctx.catalog.custom_currencies:
            raise custom_currency_not_found(currency_id)
    for override in data.get("priceOverrides") or []:
        addon_id = override.get("addonId")
        if addon_id is not None and addon_id not in ctx.catalog.addons:
            raise StiggError("AddonNotFound", "Addon not found", refId=addon_id)


def _resource(
    ctx: SandboxContext, customer: Customer, resource_id: str | None, now: datetime
) -> CustomerResource | None:
    if resource_id is None:
        return None
    if resource_id not in customer.resources:
        customer.resources[resource_id] = CustomerResource(
            resource_id, customer, ctx.catalog.environment_id, now
        )
    return customer.resources[resource_id]


def _cancel_live_subscriptions(customer: Customer, resource_id: str | None, now: datetime) -> None:
    for old in customer.subscriptions:
        if old.resource_id == resource_id and old.status in LIVE_SUBSCRIPTION_STATUSES:
            old.status = "CANCELED"
            old.cancel_reason = "UpgradeOrDowngrade"
            old.end_date = now


def _plain(value: Any) -> Any:
    """Coerced input with datetimes as strings, for the state dump."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


# --- credits ------------------------------------------------------------------------------


def create_credit_grant(_root: Any, info: GraphQLResolveInfo, input: dict) -> CreditGrant:
    ctx = _context(info)
    if input["customerId"] not in ctx.state.customers:
        raise customer_not_found(input["customerId"])
    if input["currencyId"] not in ctx.catalog.custom_currencies:
        raise custom_currency_not_found(input["currencyId"])
    now = utc_now()
    effective_at = input.get("effectiveAt") or now
    expire_at = input.get("expireAt")
    if expire_at is not None and expire_at <= effective_at:
        raise StiggError(
            "ExpireAtMustBeLaterThanEffectiveAtError", "expireAt must be later than effectiveAt"
        )
    method = input.get("paymentCollectionMethod")
    billing = input.get("billingInformation") or {}
    # A paid grant collected by invoice waits for the invoice (unless marked paid). CHARGE
    # is treated as charged at once: the sandbox does not model failed card payments.
    awaiting_payment = (
        input["grantType"] == "PAID" and method == "INVOICE" and not billing.get("isInvoicePaid")
    )
    cost = input.get("cost") or {"amount": 0, "currency": "USD"}
    grant = CreditGrant(
        id=new_uuid(),
        grant_id=f"grant-{secrets.token_hex(6)}",
        customer_id=input["customerId"],
        currency_id=input["currencyId"],
        display_name=input["displayName"],
        grant_type=input["grantType"],
        amount=input["amount"],
        cost=Money(float(cost["amount"]), cost.get("currency") or "USD"),
        priority=(
            input["priority"] if input.get("priority") is not None else DEFAULT_GRANT_PRIORITY
        ),
        effective_at=effective_at,
        expire_at=expire_at,
        created_at=now,
        updated_at=now,
        payment_collection="PROCESSING" if awaiting_payment else "NOT_REQUIRED",
        awaiting_payment=awaiting_payment,
        payment_collection_method=method,
        resource_id=input.get("resourceId"),
        comment=input.get("comment"),
        additional_meta_data=input.get("additionalMetaData"),
        sequence=ctx.state.next_sequence(),
    )
    ctx.state.credit_grants[grant.grant_id] = grant
    return grant


def credit_grants(_root: Any, info: GraphQLResolveInfo, input: dict) -> dict[str, Any]:
    ctx = _context(info)
    if input["customerId"] not in ctx.state.customers:
        raise customer_not_found(input["customerId"])
    grants = [
        g
        for g in ctx.state.credit_grants.values()
        if g.customer_id == input["customerId"]
        and input.get("currencyId") in (None, g.currency_id)
        and input.get("resourceId") in (None, g.resource_id)
    ]
    grants.sort(key=lambda g: (g.created_at, g.sequence), reverse=True)
    return _page(grants, input.get("paging") or {})


def get_active_subscriptions(_root: Any, info: GraphQLResolveInfo, input: dict) -> list[Any]:
    ctx = _context(info)
    if input["customerId"] not in ctx.state.customers:
        raise customer_not_found(input["customerId"])
    wanted_resources = set(input.get("resourceIds") or [])
    if input.get("resourceId") is not None:
        wanted_resources.add(input["resourceId"])
    live = [
        (s.created_at, position, s)
        for position, s in enumerate(ctx.state.subscriptions.values())
        if s.customer.customer_id == input["customerId"]
        and s.status in LIVE_SUBSCRIPTION_STATUSES
        and (not wanted_resources or s.resource_id in wanted_resources)
    ]
    # Newest first; creation order breaks ties within one clock tick.
    return [s for _, _, s in sorted(live, key=lambda item: item[:2], reverse=True)]


def _page(grants: list[CreditGrant], paging: dict[str, Any]) -> dict[str, Any]:
    """Forward cursor paging; a cursor is the grantId of the edge it belongs to."""
    start = 0
    after = paging.get("after")
    if after is not None:
        ids = [g.grant_id for g in grants]
        start = ids.index(after) + 1 if after in ids else len(grants)
    size = paging.get("first") or DEFAULT_PAGE_SIZE
    window = grants[start : start + size]
    return {
        "edges": [{"cursor": g.grant_id, "node": g} for g in window],
        "pageInfo": {
            "startCursor": window[0].grant_id if window else None,
            "endCursor": window[-1].grant_id if window else None,
            "hasNextPage": start + size < len(grants),
            "hasPreviousPage": start > 0,
        },
        "totalCount": len(grants),
    }


# --- non-root fields that are not plain attributes ---------------------------------------


def plan_compatible_addons(plan: Plan, info: GraphQLResolveInfo) -> list[Any]:
    addons = _context(info).catalog.addons
    return [addons[ref_id] for ref_id in plan.compatible_addons]


# Type name -> field name -> resolver; every other field is a plain attribute.
FIELD_RESOLVERS = {
    "Query": {
        "getCustomerByRefId": get_customer_by_ref_id,
        "creditGrants": credit_grants,
        "getActiveSubscriptions": get_active_subscriptions,
    },
    "Mutation": {
        "provisionCustomer": provision_customer,
        "updateOneCustomer": update_one_customer,
        "provisionSubscriptionV2": provision_subscription_v2,
        "createCreditGrant": create_credit_grant,
    },
    "Plan": {"compatibleAddons": plan_compatible_addons},
}
