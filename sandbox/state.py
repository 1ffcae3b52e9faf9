"""In-memory records of what the sandbox has provisioned, and the lock that guards them.

Records use snake_case attributes whose camelCase form is the GraphQL field name, so
the default resolver (see graphql_api.py) can serve them without per-field code.
Everything lives in one process: `serve()` runs a single gunicorn worker for that reason.

Time moves on its own in Stigg: a scheduled subscription starts, a trial ends, a replaced
subscription ends when its successor starts, a future grant becomes active. The sandbox
applies these lazily: statuses are derived from the record's dates and the state's clock
whenever they are read, so nothing has to run in the background and a test can move the
clock (`SandboxState.clock`) to see what a later read would see.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sandbox.catalog import Addon, Money, Plan

# What "active" means in Stigg: `Customer.subscriptions` defaults its filter to these,
# `getActiveSubscriptions` lists these, `hasActiveSubscription` counts these.
ACTIVE_STATUSES = frozenset({"ACTIVE", "IN_TRIAL"})
# Statuses a subscription never leaves: nothing can change or cancel it any more.
ENDED_STATUSES = frozenset({"CANCELED", "EXPIRED"})

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_uuid() -> str:
    return str(uuid.uuid4())


def add_months(moment: datetime, months: int) -> datetime:
    """`moment` plus whole calendar months, the day clamped to the month's length."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    days = [31, 29 if _is_leap(year) else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
    return moment.replace(year=year, month=month, day=min(moment.day, days[month - 1]))


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


BILLING_PERIOD_MONTHS = {"MONTHLY": 1, "ANNUALLY": 12}


@dataclass
class CustomerResource:
    resource_id: str
    customer: Customer
    environment_id: str
    created_at: datetime


@dataclass
class Customer:
    id: str
    customer_id: str
    environment_id: str
    created_at: datetime
    updated_at: datetime
    name: str | None = None
    email: str | None = None
    salesforce_id: str | None = None
    crm_id: str | None = None
    billing_id: str | None = None
    billing_currency: str | None = None
    aws_marketplace_customer_id: str | None = None
    additional_meta_data: Any = None
    # Set from billingInformation.paymentMethodId; decides CHARGE -> PAYMENT_REQUIRED.
    default_payment_method_id: str | None = None
    deleted_at: datetime | None = None
    subscriptions: list[Subscription] = field(default_factory=list, repr=False)
    resources: dict[str, CustomerResource] = field(default_factory=dict, repr=False)

    @property
    def ref_id(self) -> str:
        return self.customer_id

    @property
    def has_payment_method(self) -> bool:
        return self.default_payment_method_id is not None

    @property
    def total_active_subscription(self) -> float:
        return float(sum(s.status in ACTIVE_STATUSES for s in self.subscriptions))

    @property
    def has_active_subscription(self) -> bool:
        return self.total_active_subscription > 0

    @property
    def has_active_resource(self) -> bool:
        return any(
            s.resource is not None and s.status in ACTIVE_STATUSES for s in self.subscriptions
        )


@dataclass
class SubscriptionAddon:
    id: str
    addon: Addon
    quantity: float
    created_at: datetime
    updated_at: datetime

    @property
    def addon_id(self) -> str:
        return self.addon.ref_id


@dataclass(frozen=True)
class PlannedEnd:
    """When a subscription stops, and what it then is (status and cancel reason)."""

    at: datetime
    status: str  # CANCELED or EXPIRED
    reason: str  # a SubscriptionCancelReason value


@dataclass
class Subscription:
    id: str
    subscription_id: str
    customer: Customer
    plan: Plan
    start_date: datetime
    created_at: datetime
    environment_id: str
    payment_collection: str
    pricing_type: str
    clock: Clock = field(repr=False)
    sequence: int = 0  # creation order, the tie-break of "newest first"
    billing_period: str | None = None
    payment_collection_method: str | None = None
    trial_end_date: datetime | None = None
    was_in_trial: bool = False
    # Created by a provision that answered PAYMENT_REQUIRED: waits for the checkout.
    payment_pending: bool = False
    # The end the caller asked for (cancellationDate, or a trial that cancels at its end)
    # and the end in force, which a replacement may bring forward.
    own_end: PlannedEnd | None = None
    planned_end: PlannedEnd | None = None
    is_custom_price_subscription: bool = False
    salesforce_id: str | None = None
    additional_meta_data: Any = None
    addons: list[SubscriptionAddon] = field(default_factory=list)
    resource: CustomerResource | None = None
    # What the caller asked for and Stigg would turn into prices/entitlements; kept so
    # /_admin/state shows it and tests can assert on it.
    price_overrides: list[dict[str, Any]] = field(default_factory=list)
    entitlements: list[dict[str, Any]] = field(default_factory=list)
    # The last cancelSubscription input (time, action, prorate), for /_admin/state.
    cancellation: dict[str, Any] | None = None

    @property
    def ref_id(self) -> str:
        return self.subscription_id

    @property
    def resource_id(self) -> str | None:
        return self.resource.resource_id if self.resource else None

    @property
    def has_ended(self) -> bool:
        return self.planned_end is not None and self.planned_end.at <= self.clock()

    @property
    def status(self) -> str:
        now = self.clock()
        if self.planned_end is not None and self.planned_end.at <= now:
            return self.planned_end.status
        if self.payment_pending:
            return "PAYMENT_PENDING"
        if self.start_date > now:
            return "NOT_STARTED"
        if self.trial_end_date is not None and now < self.trial_end_date:
            return "IN_TRIAL"
        return "ACTIVE"

    @property
    def cancel_reason(self) -> str | None:
        return self.planned_end.reason if self.has_ended else None  # type: ignore[union-attr]

    @property
    def end_date(self) -> datetime | None:
        return self.planned_end.at if self.planned_end else None

    @property
    def cancellation_date(self) -> datetime | None:
        """The date a cancellation takes effect; a trial that simply runs out has none."""
        end = self.planned_end
        return end.at if end is not None and end.status == "CANCELED" else None

    @property
    def effective_end_date(self) -> datetime | None:
        return self.end_date

    def end(self, at: datetime, reason: str) -> None:
        """Cancel at `at` (now, or when a successor starts), unless it ends earlier anyway."""
        planned = PlannedEnd(at, "CANCELED", reason)
        if self.own_end is not None and self.own_end.at <= at:
            planned = self.own_end
        self.planned_end = planned

    # Current billing period: for a live paid subscription, the trial while in trial, then
    # monthly or annual periods counted from the start (from the trial's end after a
    # trial), each the same day of the month as the first (clamped: Jan 31 -> Feb 28).
    @property
    def current_billing_period_start(self) -> datetime | None:
        return self._current_billing_period()[0]

    @property
    def current_billing_period_end(self) -> datetime | None:
        return self._current_billing_period()[1]

    def _current_billing_period(self) -> tuple[datetime | None, datetime | None]:
        status = self.status
        if not self.plan.is_paid or status not in ACTIVE_STATUSES:
            return None, None
        if status == "IN_TRIAL":
            return self.start_date, self.trial_end_date
        months = BILLING_PERIOD_MONTHS.get(self.billing_period or "")
        if months is None:
            return None, None
        anchor = self.start_date
        if self.trial_end_date is not None and self.trial_end_date > anchor:
            anchor = self.trial_end_date
        now = self.clock()
        elapsed = (now.year - anchor.year) * 12 + now.month - anchor.month
        periods = max(elapsed // months, 0)
        while periods > 0 and add_months(anchor, periods * months) > now:
            periods -= 1
        while add_months(anchor, (periods + 1) * months) <= now:
            periods += 1
        return add_months(anchor, periods * months), add_months(anchor, (periods + 1) * months)


@dataclass(frozen=True)
class WorkflowRun:
    """One triggerWorkflow call the sandbox accepted: what it was sent."""

    run_id: str
    trigger_id: str
    payload: Any
    is_test: bool | None
    triggered_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "runId": self.run_id,
            "triggerId": self.trigger_id,
            "payload": self.payload,
            "isTest": self.is_test,
            "triggeredAt": format_datetime(self.triggered_at),
        }


@dataclass
class CreditGrant:
    id: str
    grant_id: str
    customer_id: str
    currency_id: str
    display_name: str
    grant_type: str
    amount: float
    cost: Money
    priority: float
    effective_at: datetime
    created_at: datetime
    updated_at: datetime
    payment_collection: str
    clock: Clock = field(repr=False)
    awaiting_payment: bool = False
    expire_at: datetime | None = None
    resource_id: str | None = None
    comment: str | None = None
    additional_meta_data: Any = None
    payment_collection_method: str | None = None
    consumed_amount: float = 0.0
    invoice_id: str | None = None
    source_type: str | None = None
    voided_at: datetime | None = None
    # Creation order, to sort "newest first" deterministically within one clock tick.
    sequence: int = 0

    @property
    def status(self) -> str:
        """Derived from the clock, as Stigg moves grants along on its own."""
        now = self.clock()
        if self.voided_at is not None:
            return "VOIDED"
        if self.awaiting_payment:
            return "PAYMENT_PENDING"
        if self.expire_at is not None and self.expire_at <= now:
            return "EXPIRED"
        if self.effective_at > now:
            return "SCHEDULED"
        return "ACTIVE"


class SandboxState:
    """Customers, subscriptions and credit grants of one sandbox environment.

    `lock` is held for a whole GraphQL operation, so each operation sees and leaves a
    consistent state even with gunicorn's threads serving requests concurrently.
    `clock` gives "now" to every record; tests may replace it.
    """

    def __init__(self, clock: Clock = utc_now) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self.reset()

    def now(self) -> datetime:
        return self.clock()

    def reset(self) -> None:
        with self.lock:
            self.customers: dict[str, Customer] = {}
            self.subscriptions: dict[str, Subscription] = {}
            self.credit_grants: dict[str, CreditGrant] = {}
            # triggerWorkflow calls, oldest first (GET /_admin/workflow-runs).
            self.workflow_runs: list[WorkflowRun] = []
            # Payments taken without awaiting confirmation (awaitPaymentConfirmation:
            # false): they settle when the next request arrives.
            self.unsettled: list[Subscription | CreditGrant] = []
            self._sequence = itertools.count(1)

    def next_sequence(self) -> int:
        return next(self._sequence)

    def settle_payments(self) -> None:
        """Charges made without awaiting confirmation succeed (the sandbox's cards do)."""
        for record in self.unsettled:
            record.payment_collection = "NOT_REQUIRED"
            if isinstance(record, CreditGrant):
                record.awaiting_payment = False
        self.unsettled.clear()

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready dump for GET /_admin/state."""
        with self.lock:
            self.settle_payments()
            return {
                "customers": [_customer_json(c) for c in self.customers.values()],
                "subscriptions": [_subscription_json(s) for s in self.subscriptions.values()],
                "creditGrants": [_grant_json(g) for g in self.credit_grants.values()],
            }


def to_json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, Money):
        return {"amount": value.amount, "currency": value.currency}
    return value


def format_datetime(value: datetime) -> str:
    """JavaScript's toISOString() form, which is what Stigg's Node backend emits."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _customer_json(c: Customer) -> dict[str, Any]:
    return {
        "id": c.id,
        "customerId": c.customer_id,
        "name": c.name,
        "email": c.email,
        "salesforceId": c.salesforce_id,
        "crmId": c.crm_id,
        "billingId": c.billing_id,
        "additionalMetaData": c.additional_meta_data,
        "hasPaymentMethod": c.has_payment_method,
        "createdAt": to_json_value(c.created_at),
        "updatedAt": to_json_value(c.updated_at),
    }


def _subscription_json(s: Subscription) -> dict[str, Any]:
    return {
        "id": s.id,
        "subscriptionId": s.subscription_id,
        "customerId": s.customer.customer_id,
        "resourceId": s.resource_id,
        "planId": s.plan.ref_id,
        "status": s.status,
        "billingPeriod": s.billing_period,
        "paymentCollectionMethod": s.payment_collection_method,
        "paymentCollection": s.payment_collection,
        "startDate": to_json_value(s.start_date),
        "trialEndDate": to_json_value(s.trial_end_date),
        "endDate": to_json_value(s.end_date),
        "cancellationDate": to_json_value(s.cancellation_date),
        "cancelReason": s.cancel_reason,
        "currentBillingPeriodStart": to_json_value(s.current_billing_period_start),
        "currentBillingPeriodEnd": to_json_value(s.current_billing_period_end),
        "salesforceId": s.salesforce_id,
        "addons": [{"addonId": a.addon_id, "quantity": a.quantity} for a in s.addons],
        "priceOverrides": s.price_overrides,
        "entitlements": s.entitlements,
        "cancellation": s.cancellation,
        "additionalMetaData": s.additional_meta_data,
        "createdAt": to_json_value(s.created_at),
    }


def _grant_json(g: CreditGrant) -> dict[str, Any]:
    return {
        "id": g.id,
        "grantId": g.grant_id,
        "customerId": g.customer_id,
        "resourceId": g.resource_id,
        "currencyId": g.currency_id,
        "displayName": g.display_name,
        "grantType": g.grant_type,
        "status": g.status,
        "amount": g.amount,
        "cost": to_json_value(g.cost),
        "priority": g.priority,
        "paymentCollectionMethod": g.payment_collection_method,
        "paymentCollection": g.payment_collection,
        "effectiveAt": to_json_value(g.effective_at),
        "expireAt": to_json_value(g.expire_at),
        "comment": g.comment,
        "additionalMetaData": g.additional_meta_data,
        "createdAt": to_json_value(g.created_at),
    }
