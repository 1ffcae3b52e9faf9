"""What each root field does: Stigg's rules, applied to the sandbox state.

Each resolver receives the coerced `input` (camelCase keys; a key is absent when the
caller omitted it and None when the caller sent null; input fields with a default in
schema.graphql, such as ProvisionSubscriptionInput.paymentCollectionMethod = CHARGE, are
filled in as Stigg fills them) and raises StiggError where Stigg would reject the
operation. They run with `state.lock` held (see graphql_api.py); "now" is `state.now()`.
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
    check_customer_id,
    check_single_id,
    custom_currency_not_found,
    customer_not_found,
    duplicated_entity,
    subscription_ended,
    subscription_not_found,
)
from sandbox.queries import (
    BOOLEAN,
    DATE,
    ENUM,
    NUMBER,
    STRING,
    UUID,
    Entity,
    Field,
    Ordering,
    matches,
    not_modelled,
    page,
    sort_keys,
)
from sandbox.state import (
    ACTIVE_STATUSES,
    ENDED_STATUSES,
    CreditGrant,
    Customer,
    CustomerResource,
    PlannedEnd,
    SandboxState,
    Subscription,
    SubscriptionAddon,
    WorkflowRun,
    new_uuid,
)

# Stigg plans default to a 14-day trial in its UI; used when isTrial comes without an end.
DEFAULT_TRIAL_DAYS = 14
# The sandbox has no billing provider; this host only makes the URL recognisable.
CHECKOUT_URL_TEMPLATE = "https://checkout.sandbox.stigg.invalid/pay/{subscription_id}"
# creditGrants without paging.first: nestjs-query's default page size, 10 (assumed).
DEFAULT_PAGE_SIZE = 10
# Stigg's REST docs give 50 as the default grant priority.
DEFAULT_GRANT_PRIORITY = 50.0
UNKNOWN_CUSTOMER_ANSWERS = ("error", "null")


@dataclass
class SandboxSettings:
    """Behaviour the sandbox can switch where Stigg's is not documented."""

    # getCustomerByRefId for an unknown ID: a CustomerNotFound error, or null.
    unknown_customer: str = "error"

    def to_json(self) -> dict[str, Any]:
        return {"unknownCustomer": self.unknown_customer}


@dataclass(frozen=True)
class SandboxContext:
    state: SandboxState
    catalog: Catalog
    settings: SandboxSettings


def _short_random() -> str:
    """Six hex characters, like the suffix of Stigg's generated ids."""
    return secrets.token_hex(3)


def _context(info: GraphQLResolveInfo) -> SandboxContext:
    return info.context


def _known_customer(ctx: SandboxContext, customer_id: str) -> Customer:
    customer = ctx.state.customers.get(customer_id)
    if customer is None:
        raise customer_not_found(customer_id)
    return customer


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
    """An unknown ID is Stigg's CustomerNotFound error, or null (SANDBOX_UNKNOWN_CUSTOMER).

    Stigg does not document which; the field is nullable, but the text "Customer not
    found" has been seen from Stigg's API in the wild, so `error` is the default.
    """
    ctx = _context(info)
    customer = ctx.state.customers.get(input["customerId"])
    if customer is None and ctx.settings.unknown_customer == "error":
        raise customer_not_found(input["customerId"])
    return customer


def provision_customer(_root: Any, info: GraphQLResolveInfo, input: dict) -> dict[str, Any]:
    ctx = _context(info)
    customer_id = check_single_id(input.get("customerId"), input.get("refId"), "customer")
    if customer_id is None:
        customer_id = f"customer-{secrets.token_hex(4)}"
    check_customer_id(customer_id)
    if customer_id in ctx.state.customers:
        # Create-only in practice: Stigg does not upsert here.
        raise duplicated_entity("Customer", customer_id)
    now = ctx.state.now()
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
    customer = _known_customer(ctx, customer_id)
    _apply_customer_fields(customer, input)
    customer.updated_at = ctx.state.now()
    return customer


# --- subscriptions ------------------------------------------------------------------------


def provision_subscription_v2(_root: Any, info: GraphQLResolveInfo, input: dict) -> dict[str, Any]:
    ctx = _context(info)
    return _provision_subscription(ctx, _known_customer(ctx, input["customerId"]), input)


def _provision_subscription(
    ctx: SandboxContext, customer: Customer, data: dict[str, Any]
) -> dict[str, Any]:
    """Shared by provisionSubscriptionV2 and provisionCustomer.subscriptionParams.

    Payment (the input defaults are Stigg's: paymentCollectionMethod CHARGE,
    awaitPaymentConfirmation true): a paid plan collected by CHARGE from a customer with no
    payment method on file needs a checkout, so the answer is PAYMENT_REQUIRED with a
    checkout URL and the subscription waits in PAYMENT_PENDING. With a card on file the
    charge succeeds: at once when awaiting confirmation, else the answer comes before it
    (paymentCollection PROCESSING until the next request). INVOICE and NONE (and null)
    need nothing now. A trial is not charged.

    Scheduling: a start in the future makes a NOT_STARTED subscription (isScheduled true);
    the customer's live subscription in the same slot (customer, resource) keeps running
    and ends when the new one starts. A subscription that starts now replaces the live one
    at once. Either way a subscription still waiting to start in that slot is superseded.
    """
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

    now = ctx.state.now()
    start_date = data.get("startDate") or now
    trial = data.get("trialOverrideConfiguration") or {}
    is_trial = bool(trial.get("isTrial")) and not data.get("skipTrial")
    trial_end_date = (
        (trial.get("trialEndDate") or start_date + timedelta(days=DEFAULT_TRIAL_DAYS))
        if is_trial
        else None
    )
    cancellation_date = data.get("cancellationDate")
    if cancellation_date is not None and cancellation_date <= start_date:
        raise StiggError("InvalidCancellationDate", "cancellationDate must be later than startDate")
    method = data.get("paymentCollectionMethod")
    charged_now = plan.is_paid and not is_trial and method == "CHARGE"
    payment_required = charged_now and not customer.has_payment_method
    payment_in_flight = (
        charged_now and not payment_required and data.get("awaitPaymentConfirmation") is False
    )
    if payment_required:
        payment_collection = "ACTION_REQUIRED"
    elif payment_in_flight:
        payment_collection = "PROCESSING"
    else:
        payment_collection = "NOT_REQUIRED"

    subscription = Subscription(
        id=new_uuid(),
        subscription_id=subscription_id,
        customer=customer,
        plan=plan,
        start_date=start_date,
        created_at=now,
        environment_id=ctx.catalog.environment_id,
        payment_collection=payment_collection,
        pricing_type=plan.pricing_type,
        clock=ctx.state.now,
        sequence=ctx.state.next_sequence(),
        billing_period=billing_period,
        payment_collection_method=method,
        trial_end_date=trial_end_date,
        was_in_trial=is_trial,
        payment_pending=payment_required,
        own_end=_own_end(cancellation_date, trial_end_date, trial.get("trialEndBehavior")),
        is_custom_price_subscription=bool(data.get("priceOverrides") or data.get("entitlements")),
        salesforce_id=data.get("salesforceId"),
        additional_meta_data=data.get("additionalMetaData"),
        addons=addons,
        resource=_resource(ctx, customer, data.get("resourceId"), now),
        price_overrides=_plain(data.get("priceOverrides") or []),
        entitlements=_plain(data.get("entitlements") or []),
    )
    subscription.planned_end = subscription.own_end
    if not payment_required:
        _replace_in_slot(customer, subscription, now)
    if payment_in_flight:
        ctx.state.unsettled.append(subscription)
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
        # Assumed: "scheduled" means the new subscription starts later (NOT_STARTED).
        "isScheduled": False if payment_required else start_date > now,
        "subscription": None if payment_required else subscription,
    }


def _own_end(
    cancellation_date: datetime | None, trial_end: datetime | None, trial_end_behavior: Any
) -> PlannedEnd | None:
    """The end the caller asked for: a cancellation date, or a trial that does not convert."""
    ends = []
    if cancellation_date is not None:
        ends.append(PlannedEnd(cancellation_date, "CANCELED", "ScheduledCancellation"))
    if trial_end is not None and trial_end_behavior == "CANCEL_SUBSCRIPTION":
        ends.append(PlannedEnd(trial_end, "EXPIRED", "TrialEnded"))
    return min(ends, key=lambda end: end.at, default=None)


def _replace_in_slot(customer: Customer, new: Subscription, now: datetime) -> None:
    """At most one live subscription per (customer, resource): the new one replaces it."""
    for old in customer.subscriptions:
        if old.resource_id != new.resource_id:
            continue
        status = old.status
        if status == "NOT_STARTED":
            old.end(now, "UpgradeOrDowngrade")  # superseded before it started
        elif status in ACTIVE_STATUSES:
            old.end(max(new.start_date, now), "UpgradeOrDowngrade")


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
    now = ctx.state.now()
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


def _plain(value: Any) -> Any:
    """Coerced input with datetimes as strings, for the state dump."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


# --- changing and ending subscriptions ---------------------------------------------------

# UpdateSubscriptionInput fields the sandbox applies; any other field sent is refused as not
# modelled (awaitPaymentConfirmation always arrives: it has a default).
_UPDATE_FIELDS = {
    "subscriptionId",
    "refId",
    "addons",
    "billingPeriod",
    "priceOverrides",
    "entitlements",
    "trialEndDate",
    "cancellationDate",
    "salesforceId",
    "additionalMetaData",
    "awaitPaymentConfirmation",
}


def _known_subscription(ctx: SandboxContext, subscription_id: str) -> Subscription:
    subscription = ctx.state.subscriptions.get(subscription_id)
    if subscription is None:
        raise subscription_not_found(subscription_id)
    return subscription


def _live_subscription(ctx: SandboxContext, subscription_id: str) -> Subscription:
    subscription = _known_subscription(ctx, subscription_id)
    status = subscription.status
    if status in ENDED_STATUSES:
        raise subscription_ended(subscription_id, status)
    return subscription


def update_one_subscription(_root: Any, info: GraphQLResolveInfo, input: dict) -> Subscription:
    """Changes the subscription in place. A list that is sent (addons, priceOverrides,
    entitlements) replaces the subscription's list ([] empties it); a field left out is left
    alone. An ended subscription is SubscriptionAlreadyCanceledOrExpired.

    Assumed (docs/stigg-fidelity.md): the change takes effect at once (Stigg may schedule a
    downgrade for the period's end per its Customer Journey settings; the sandbox does not),
    and trialEndDate can only move while the subscription is in trial.
    """
    ctx = _context(info)
    unmodelled = sorted(key for key, value in input.items() if key not in _UPDATE_FIELDS)
    if unmodelled:
        raise not_modelled(f"UpdateSubscriptionInput.{unmodelled[0]}")
    subscription_id = check_single_id(
        input.get("subscriptionId"), input.get("refId"), "subscription"
    )
    if subscription_id is None:
        raise StiggError("MissingEntityIdError", "subscriptionId is required to update one")
    subscription = _live_subscription(ctx, subscription_id)
    plan = subscription.plan
    now = ctx.state.now()
    # Validate everything first: a rejected update changes nothing.
    billing_period = subscription.billing_period
    if "billingPeriod" in input and input["billingPeriod"] is not None:
        billing_period = _billing_period(plan, input["billingPeriod"])
    addons = subscription.addons
    if input.get("addons") is not None:
        addons = _subscription_addons(ctx, plan, input["addons"])
    _check_custom_currencies(ctx, input)
    trial_end_date = subscription.trial_end_date
    if input.get("trialEndDate") is not None:
        if subscription.status not in ("IN_TRIAL", "NOT_STARTED") or trial_end_date is None:
            raise StiggError(
                "InvalidArgumentError", "trialEndDate can only change while the trial runs"
            )
        if input["trialEndDate"] <= max(now, subscription.start_date):
            raise StiggError("InvalidArgumentError", "trialEndDate must be in the future")
        trial_end_date = input["trialEndDate"]
    cancellation_date = input.get("cancellationDate")
    if cancellation_date is not None and cancellation_date <= max(now, subscription.start_date):
        raise StiggError(
            "InvalidCancellationDate",
            "cancellationDate must be in the future",
            refId=subscription_id,
        )

    subscription.billing_period = billing_period
    subscription.trial_end_date = trial_end_date
    subscription.addons = addons
    if input.get("priceOverrides") is not None:
        subscription.price_overrides = _plain(input["priceOverrides"])
    if input.get("entitlements") is not None:
        subscription.entitlements = _plain(input["entitlements"])
    if subscription.price_overrides or subscription.entitlements:
        subscription.is_custom_price_subscription = True
    if "salesforceId" in input:
        subscription.salesforce_id = input["salesforceId"]
    if "additionalMetaData" in input:
        # Replaced, not merged (like the customer's).
        subscription.additional_meta_data = input["additionalMetaData"]
    if cancellation_date is not None:
        _set_end(subscription, PlannedEnd(cancellation_date, "CANCELED", "ScheduledCancellation"))
    return subscription


def cancel_subscription(_root: Any, info: GraphQLResolveInfo, input: dict) -> Subscription:
    """Ends the subscription according to subscriptionCancellationTime:

    - IMMEDIATE: now (CANCELED, cancelReason Immediate);
    - END_OF_BILLING_PERIOD (assumed when omitted): at the end of the current billing period;
      it stays live until then, with endDate and cancellationDate set. A subscription with
      no billing period (free plan) ends now; one in trial must be cancelled IMMEDIATE
      (TrialMustBeCancelledImmediately, assumed from the code's name);
    - SPECIFIC_DATE: at `endDate`, which must be given and in the future
      (InvalidCancellationDate).

    One that has not started or waits for its first payment ends now. A cancellation of a
    subscription still live replaces its planned end; an ended one is
    SubscriptionAlreadyCanceledOrExpired. `prorate` and `subscriptionCancellationAction` are
    recorded (`cancellation` in /_admin/state); the sandbox bills nothing and keeps no
    entitlements to revoke.
    """
    ctx = _context(info)
    subscription_id = input["subscriptionRefId"]
    subscription = _live_subscription(ctx, subscription_id)
    now = ctx.state.now()
    time = input.get("subscriptionCancellationTime") or "END_OF_BILLING_PERIOD"
    status = subscription.status
    if time == "SPECIFIC_DATE":
        end_date = input.get("endDate")
        if end_date is None or end_date <= now:
            raise StiggError(
                "InvalidCancellationDate",
                "endDate is required with SPECIFIC_DATE and must be in the future",
                refId=subscription_id,
            )
        end = PlannedEnd(end_date, "CANCELED", "ScheduledCancellation")
    elif time == "END_OF_BILLING_PERIOD" and status in ACTIVE_STATUSES:
        if status == "IN_TRIAL":
            raise StiggError(
                "TrialMustBeCancelledImmediately",
                "A subscription in trial can only be cancelled immediately",
            )
        period_end = subscription.current_billing_period_end
        end = (
            PlannedEnd(period_end, "CANCELED", "ScheduledCancellation")
            if period_end is not None
            else PlannedEnd(now, "CANCELED", "Immediate")
        )
    else:
        end = PlannedEnd(now, "CANCELED", "Immediate")
    _set_end(subscription, end)
    subscription.cancellation = {
        "subscriptionCancellationTime": time,
        "endDate": _plain(input.get("endDate")),
        "subscriptionCancellationAction": input.get("subscriptionCancellationAction"),
        "prorate": input.get("prorate"),
        "awaitSubscriptionCancellation": input.get("awaitSubscriptionCancellation"),
    }
    return subscription


def _set_end(subscription: Subscription, end: PlannedEnd) -> None:
    """The caller's own end replaces any earlier one asked for; an earlier end a
    replacement planned (a successor starting first) stays in force."""
    subscription.own_end = end
    planned = subscription.planned_end
    by_successor = planned is not None and planned.reason == "UpgradeOrDowngrade"
    subscription.planned_end = planned if by_successor and planned.at < end.at else end


# --- workflows ----------------------------------------------------------------------------


def trigger_workflow(_root: Any, info: GraphQLResolveInfo, input: dict) -> dict[str, Any]:
    """Runs a seeded workflow trigger (catalog.json `workflowTriggers`) and records the call.

    The answer's `response` is what the sandbox's workflows return: the run's ID and the
    trigger (assumed; a real workflow answers whatever it was built to).
    """
    ctx = _context(info)
    trigger = ctx.catalog.workflow_triggers.get(input["triggerId"])
    if trigger is None:
        raise StiggError(
            "WorkflowTriggerNotFound", "Workflow trigger not found", refId=input["triggerId"]
        )
    run = WorkflowRun(
        run_id=f"run-{secrets.token_hex(6)}",
        trigger_id=trigger.trigger_id,
        payload=input.get("payload"),
        is_test=input.get("isTest"),
        triggered_at=ctx.state.now(),
    )
    ctx.state.workflow_runs.append(run)
    return {"success": True, "response": {"runId": run.run_id, "triggerId": trigger.trigger_id}}


# --- credits ------------------------------------------------------------------------------


def create_credit_grant(_root: Any, info: GraphQLResolveInfo, input: dict) -> CreditGrant:
    """A grant; a PAID one is paid as Stigg's collection method says.

    INVOICE waits for the invoice (PAYMENT_PENDING) unless billingInformation marks it
    paid. CHARGE is charged at once, and succeeds: with awaitPaymentConfirmation (Stigg's
    default) the answer is ACTIVE; without, the answer comes first (PAYMENT_PENDING,
    PROCESSING) and the charge settles by the next request. The sandbox does not model a
    charge without a card on file, nor failed payments.
    """
    ctx = _context(info)
    _known_customer(ctx, input["customerId"])
    if input["currencyId"] not in ctx.catalog.custom_currencies:
        raise custom_currency_not_found(input["currencyId"])
    now = ctx.state.now()
    effective_at = input.get("effectiveAt") or now
    expire_at = input.get("expireAt")
    if expire_at is not None and expire_at <= effective_at:
        raise StiggError(
            "ExpireAtMustBeLaterThanEffectiveAtError", "expireAt must be later than effectiveAt"
        )
    method = input.get("paymentCollectionMethod")
    billing = input.get("billingInformation") or {}
    paid = input["grantType"] == "PAID"
    awaiting_invoice = paid and method == "INVOICE" and not billing.get("isInvoicePaid")
    charge_in_flight = (
        paid and method == "CHARGE" and input.get("awaitPaymentConfirmation") is False
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
        payment_collection="PROCESSING" if awaiting_invoice or charge_in_flight else "NOT_REQUIRED",
        clock=ctx.state.now,
        awaiting_payment=awaiting_invoice or charge_in_flight,
        payment_collection_method=method,
        resource_id=input.get("resourceId"),
        comment=input.get("comment"),
        additional_meta_data=input.get("additionalMetaData"),
        sequence=ctx.state.next_sequence(),
    )
    if charge_in_flight:
        ctx.state.unsettled.append(grant)
    ctx.state.credit_grants[grant.grant_id] = grant
    return grant


_GRANTS_NEWEST_FIRST = Ordering(keys=[], sequence=lambda grant: -grant.sequence)


def credit_grants(_root: Any, info: GraphQLResolveInfo, input: dict) -> dict[str, Any]:
    """The customer's grants, newest first, a page at a time (GetCreditGrantsInput.paging).

    GetCreditGrantsInput has no sorting: newest first is the order Stigg's UI lists them
    in (assumed). Without paging.first a page holds DEFAULT_PAGE_SIZE grants (assumed).
    """
    ctx = _context(info)
    _known_customer(ctx, input["customerId"])
    grants = [
        g
        for g in ctx.state.credit_grants.values()
        if g.customer_id == input["customerId"]
        and input.get("currencyId") in (None, g.currency_id)
        and input.get("resourceId") in (None, g.resource_id)
    ]
    paging = dict(input.get("paging") or {})
    if paging.get("first") is None and paging.get("last") is None:
        paging["first"] = DEFAULT_PAGE_SIZE
    return page(grants, _GRANTS_NEWEST_FIRST, paging)


# --- subscription look-ups ----------------------------------------------------------------


def get_active_subscriptions(_root: Any, info: GraphQLResolveInfo, input: dict) -> list[Any]:
    """ACTIVE and IN_TRIAL subscriptions, newest first.

    Stigg's docs: without resourceId the customer's global subscriptions (no resource);
    with resourceId / resourceIds those of the resources named.
    """
    ctx = _context(info)
    customer = _known_customer(ctx, input["customerId"])
    wanted_resources = set(input.get("resourceIds") or [])
    if input.get("resourceId") is not None:
        wanted_resources.add(input["resourceId"])
    active = [
        s
        for s in customer.subscriptions
        if s.status in ACTIVE_STATUSES
        and (s.resource_id in wanted_resources if wanted_resources else s.resource is None)
    ]
    return sorted(active, key=lambda s: s.sequence, reverse=True)


CUSTOMER_FILTER = Entity(
    "CustomerSubscriptionFilterCustomerFilter",
    {
        "customerId": Field(lambda c: c.customer_id, STRING),
        "refId": Field(lambda c: c.customer_id, STRING),
        "name": Field(lambda c: c.name, STRING),
        "email": Field(lambda c: c.email, STRING),
        "salesforceId": Field(lambda c: c.salesforce_id, STRING),
        "billingId": Field(lambda c: c.billing_id, STRING),
        "crmId": Field(lambda c: c.crm_id, STRING),
        "awsMarketplaceCustomerId": Field(lambda c: c.aws_marketplace_customer_id, STRING),
        "id": Field(lambda c: c.id, UUID),
        "environmentId": Field(lambda c: c.environment_id, UUID),
        "createdAt": Field(lambda c: c.created_at, DATE),
        "updatedAt": Field(lambda c: c.updated_at, DATE),
        "deletedAt": Field(lambda c: c.deleted_at, DATE),
    },
)
RESOURCE_FILTER = Entity(
    "CustomerSubscriptionFilterCustomerResourceFilter",
    {
        "resourceId": Field(lambda r: r.resource_id, STRING),
        "environmentId": Field(lambda r: r.environment_id, UUID),
        "createdAt": Field(lambda r: r.created_at, DATE),
    },
)
PLAN_FILTER = Entity(
    "CustomerSubscriptionFilterPlanFilter",
    {
        "refId": Field(lambda p: p.ref_id, STRING),
        "displayName": Field(lambda p: p.display_name, STRING),
        "id": Field(lambda p: p.id, UUID),
        "environmentId": Field(lambda p: p.environment_id, UUID),
        "pricingType": Field(lambda p: p.pricing_type, ENUM),
        "status": Field(lambda p: p.status, ENUM),
        "isLatest": Field(lambda p: p.is_latest, BOOLEAN),
        "versionNumber": Field(lambda p: p.version_number, NUMBER),
    },
)
# Dates a subscription can be filtered and sorted by.
_SUBSCRIPTION_DATES = {
    "createdAt": lambda s: s.created_at,
    "startDate": lambda s: s.start_date,
    "endDate": lambda s: s.end_date,
    "cancellationDate": lambda s: s.cancellation_date,
    "effectiveEndDate": lambda s: s.effective_end_date,
    "trialEndDate": lambda s: s.trial_end_date,
    "currentBillingPeriodStart": lambda s: s.current_billing_period_start,
    "currentBillingPeriodEnd": lambda s: s.current_billing_period_end,
}
SUBSCRIPTION_FILTER = Entity(
    "CustomerSubscriptionFilter",
    {
        "subscriptionId": Field(lambda s: s.subscription_id, STRING),
        "refId": Field(lambda s: s.subscription_id, STRING),
        "status": Field(lambda s: s.status, ENUM),
        "cancelReason": Field(lambda s: s.cancel_reason, ENUM),
        "paymentCollection": Field(lambda s: s.payment_collection, ENUM),
        "pricingType": Field(lambda s: s.pricing_type, ENUM),
        "salesforceId": Field(lambda s: s.salesforce_id, STRING),
        "billingId": Field(lambda s: None, STRING),
        "crmId": Field(lambda s: None, STRING),
        "id": Field(lambda s: s.id, UUID),
        "customerId": Field(lambda s: s.customer.id, UUID),
        "environmentId": Field(lambda s: s.environment_id, UUID),
        **{name: Field(get, DATE) for name, get in _SUBSCRIPTION_DATES.items()},
    },
    relations={
        "customer": (lambda s: s.customer, CUSTOMER_FILTER),
        "resource": (lambda s: s.resource, RESOURCE_FILTER),
        "plan": (lambda s: s.plan, PLAN_FILTER),
    },
)


def _subscription_ordering(sorting: list[dict[str, Any]]) -> Ordering:
    keys = sort_keys(sorting, _SUBSCRIPTION_DATES, "CustomerSubscription")
    return Ordering(keys=keys, sequence=lambda s: s.sequence)


def customer_subscriptions(
    _root: Any, info: GraphQLResolveInfo, filter: dict, paging: dict, sorting: list[dict]
) -> dict[str, Any]:
    """Subscriptions of the environment matching `filter`, as a connection.

    The arguments' defaults are Stigg's (schema.graphql): no filter, the first 10,
    newest first. An explicit null means none: no filter, no page limit, no order but
    creation.
    """
    ctx = _context(info)
    ordering = _subscription_ordering(sorting or [])
    found = [
        s for s in ctx.state.subscriptions.values() if matches(SUBSCRIPTION_FILTER, s, filter or {})
    ]
    return page(found, ordering, paging or {})


def customer_subscriptions_field(
    customer: Customer, _info: GraphQLResolveInfo, filter: dict, sorting: list[dict]
) -> list[Subscription]:
    """`Customer.subscriptions`: by default ACTIVE and IN_TRIAL, newest first."""
    found = [s for s in customer.subscriptions if matches(SUBSCRIPTION_FILTER, s, filter or {})]
    return _subscription_ordering(sorting or []).sort(found)


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
        "customerSubscriptions": customer_subscriptions,
    },
    "Mutation": {
        "provisionCustomer": provision_customer,
        "updateOneCustomer": update_one_customer,
        "provisionSubscriptionV2": provision_subscription_v2,
        "createCreditGrant": create_credit_grant,
        "updateOneSubscription": update_one_subscription,
        "cancelSubscription": cancel_subscription,
        "triggerWorkflow": trigger_workflow,
    },
    "Customer": {"subscriptions": customer_subscriptions_field},
    "Plan": {"compatibleAddons": plan_compatible_addons},
}
