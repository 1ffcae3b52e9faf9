"""The sandbox's product catalog: plans, add-ons and custom (credit) currencies.

The catalog is read-only seed data kept in a JSON file so that a reader can see at a
glance what the sandbox will accept; `sandbox/catalog.json` is the default.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

BILLING_PERIOD_LABELS = {"MONTHLY": "month", "ANNUALLY": "year"}

# Stable internal UUIDs for packages, so `Plan.id` does not change between runs.
_PACKAGE_ID_NAMESPACE = uuid.UUID("6f1c3c5e-2f43-4d7e-9a4e-5a11dbc0ffee")


class _PublishedPackage:
    """What Stigg reports about a published, latest-version plan or add-on."""

    ref_id: str
    status = "PUBLISHED"
    version_number = 1
    is_latest = True

    @property
    def id(self) -> str:
        return str(uuid.uuid5(_PACKAGE_ID_NAMESPACE, self.ref_id))


@dataclass(frozen=True)
class Money:
    amount: float
    currency: str


@dataclass(frozen=True)
class Plan(_PublishedPackage):
    ref_id: str
    environment_id: str
    display_name: str
    pricing_type: str  # FREE | PAID | CUSTOM, as Stigg's PricingType
    base_charge: dict[str, Money]  # billing period -> flat price per period
    compatible_addons: tuple[str, ...]

    @property
    def billing_periods(self) -> tuple[str, ...]:
        return tuple(self.base_charge)

    @property
    def is_paid(self) -> bool:
        return self.pricing_type == "PAID"


@dataclass(frozen=True)
class Addon(_PublishedPackage):
    ref_id: str
    environment_id: str
    display_name: str
    pricing_type: str
    max_quantity: float | None
    price: dict[str, Money]


@dataclass(frozen=True)
class CustomCurrency:
    currency_id: str
    display_name: str
    unit_singular: str
    unit_plural: str


@dataclass(frozen=True)
class WorkflowTrigger:
    """An API-triggered workflow of the environment (in Stigg: a workflow with an API trigger)."""

    trigger_id: str
    display_name: str


@dataclass(frozen=True)
class Catalog:
    environment_id: str
    plans: dict[str, Plan] = field(default_factory=dict)
    addons: dict[str, Addon] = field(default_factory=dict)
    custom_currencies: dict[str, CustomCurrency] = field(default_factory=dict)
    workflow_triggers: dict[str, WorkflowTrigger] = field(default_factory=dict)


def _prices(raw: dict[str, Any]) -> dict[str, Money]:
    return {period: Money(float(p["amount"]), p["currency"]) for period, p in raw.items()}


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Read a catalog file; None means the one shipped with the package."""
    if path is None:
        text = resources.files("sandbox").joinpath("catalog.json").read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    raw = json.loads(text)
    environment_id = raw["environmentId"]
    plans = {
        p["refId"]: Plan(
            ref_id=p["refId"],
            environment_id=environment_id,
            display_name=p["displayName"],
            pricing_type=p["pricingType"],
            base_charge=_prices(p.get("baseCharge", {})),
            compatible_addons=tuple(p.get("compatibleAddons", ())),
        )
        for p in raw["plans"]
    }
    addons = {
        a["refId"]: Addon(
            ref_id=a["refId"],
            environment_id=environment_id,
            display_name=a["displayName"],
            pricing_type=a["pricingType"],
            max_quantity=a.get("maxQuantity"),
            price=_prices(a.get("price", {})),
        )
        for a in raw["addons"]
    }
    currencies = {
        c["currencyId"]: CustomCurrency(
            currency_id=c["currencyId"],
            display_name=c["displayName"],
            unit_singular=c.get("unitSingular", "credit"),
            unit_plural=c.get("unitPlural", "credits"),
        )
        for c in raw["customCurrencies"]
    }
    triggers = {
        t["triggerId"]: WorkflowTrigger(t["triggerId"], t.get("displayName", t["triggerId"]))
        for t in raw.get("workflowTriggers", [])
    }
    unknown = {a for p in plans.values() for a in p.compatible_addons} - addons.keys()
    if unknown:
        raise ValueError(f"catalog: plans name unknown compatible add-ons {sorted(unknown)}")
    return Catalog(environment_id, plans, addons, currencies, triggers)


def _format_prices(prices: dict[str, Money]) -> str:
    return ", ".join(
        f"{m.amount:g} {m.currency}/{BILLING_PERIOD_LABELS.get(period, period)}"
        for period, m in prices.items()
    )


def describe_catalog(catalog: Catalog | None = None) -> list[str]:
    """Human-readable lines about what the sandbox sells (printed by `make run`)."""
    catalog = catalog or load_catalog()
    lines = ["Stigg sandbox catalog:"]
    for plan in catalog.plans.values():
        price = _format_prices(plan.base_charge) or "free"
        addons = ", ".join(plan.compatible_addons) or "none"
        lines.append(f"  plan {plan.ref_id} ({plan.display_name}): {price}; add-ons: {addons}")
    for addon in catalog.addons.values():
        limit = f", max {addon.max_quantity:g}" if addon.max_quantity is not None else ""
        lines.append(
            f"  add-on {addon.ref_id} ({addon.display_name}): {_format_prices(addon.price)}{limit}"
        )
    for currency in catalog.custom_currencies.values():
        lines.append(
            f"  credit currency {currency.currency_id} ({currency.display_name}, "
            f"unit: {currency.unit_singular})"
        )
    for trigger in catalog.workflow_triggers.values():
        lines.append(f"  workflow trigger {trigger.trigger_id} ({trigger.display_name})")
    return lines
