"""In-memory records of what the sandbox has provisioned, and the lock that guards them.

Records use snake_case attributes whose camelCase form is the GraphQL field name, so
the default resolver (see graphql_api.py) can serve them without per-field code.
Everything lives in one process: `serve()` runs a single gunicorn worker for that reason.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sandbox.catalog import Addon, Money, Plan

# Subscription states that still occupy the customer's (or resource's) slot.
LIVE_SUBSCRIPTION_STATUSES = frozenset({"ACTIVE", "IN_TRIAL", "NOT_STARTED"})


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_uuid() -> str:
    return str(uuid.uuid4())


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
        return float(sum(s.status in LIVE_SUBSCRIPTION_STATUSES for s in self.subscriptions))

    @property
    def has_active_subscription(self) -> bool:
        return self.total_active_subscription > 0

    @property
    def has_active_resource(self) -> bool:
        return any(
            s.resource is not None and s.status in LIVE_SUBSCRIPTION_STATUSES
            for s in self.subscriptions
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


@dataclass
class Subscription:
    id: str
    subscription_id: str
    customer: Customer
    plan: Plan
    status: str
    start_date: datetime
    created_at: datetime
    environment_id: str
    payment_collection: str
    pricing_type: str
    billing_period: str | None = None
    payment_collection_method: str | None = None
    trial_end_date: datetime | None = None
    was_in_trial: bool = False
    end_date: datetime | None = None
    cancellation_date: datetime | None = None
    cancel_reason: str | None = None
    is_custom_price_subscription: bool = False
    salesforce_id: str | None = None
    additional_meta_data: Any = None
    addons: list[SubscriptionAddon] = field(default_factory=list)
    resource: CustomerResource | None = None
    # What the caller asked for and Stigg would turn into prices/entitlements; kept so
    # /_admin/state shows it and tests can assert on it.
    price_overrides: list[dict[str, Any]] = field(default_factory=list)
    entitlements: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ref_id(self) -> str:
        return self.subscription_id

    @property
    def effective_end_date(self) -> datetime | None:
        return self.end_date or self.cancellation_date

    @property
    def resource_id(self) -> str | None:
        return self.resource.resource_id if self.resource else None


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
        now = utc_now()
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
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.customers: dict[str, Customer] = {}
            self.subscriptions: dict[str, Subscription] = {}
            self.credit_grants: dict[str, CreditGrant] = {}
            self._sequence = itertools.count(1)

    def next_sequence(self) -> int:
        return next(self._sequence)

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready dump for GET /_admin/state."""
        with self.lock:
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
        "salesforceId": s.salesforce_id,
        "addons": [{"addonId": a.addon_id, "quantity": a.quantity} for a in s.addons],
        "priceOverrides": s.price_overrides,
        "entitlements": s.entitlements,
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
