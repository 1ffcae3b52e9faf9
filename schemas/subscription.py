"""Create Stigg Subscription.

Parameters (Stigg's Salesforce action): Salesforce Account ID, Stigg Customer ID, Customer
Email, Customer Name, Plan Base Charge Override, Plan ID, Add-ons (ID and quantity),
Billing Period, Payment Collection Method, Trial, Trial End Date, Subscription Credit
Entitlements; and, as Stigg's own package accepts, start date, resource ID and the
Opportunity ID.
"""

from marshmallow import ValidationError, fields, validate, validates_schema

from schemas.base import RequestSchema, ResponseSchema
from schemas.customer import STIGG_CUSTOMER_ID_DESCRIPTION
from schemas.fields import (
    Amount,
    Choice,
    Currency,
    SalesforceId,
    StiggId,
    StrictBoolean,
    StrictInteger,
    Text,
    UtcDateTime,
)

BILLING_PERIODS = {"monthly": "MONTHLY", "annually": "ANNUALLY"}
PAYMENT_COLLECTION_METHODS = {"PAYMENT_METHOD_ON_FILE": "CHARGE", "INVOICE": "INVOICE"}
# What an omitted paymentCollectionMethod means: Stigg's own input default, sent explicitly.
DEFAULT_PAYMENT_COLLECTION_METHOD = PAYMENT_COLLECTION_METHODS["PAYMENT_METHOD_ON_FILE"]
CREDIT_CADENCES = {"MONTH": "MONTH", "YEAR": "YEAR"}
CANCELLATION_TIMES = {
    "END_OF_BILLING_PERIOD": "END_OF_BILLING_PERIOD",
    "IMMEDIATE": "IMMEDIATE",
    "SPECIFIC_DATE": "SPECIFIC_DATE",
}
# What an omitted cancellationTime means; sent explicitly (Stigg's own default is unpublished).
DEFAULT_CANCELLATION_TIME = CANCELLATION_TIMES["END_OF_BILLING_PERIOD"]
SUBSCRIPTION_URL_DESCRIPTION = (
    "Deep link to the subscription in the Stigg app; store it on the Opportunity."
)


class SubscriptionAddon(RequestSchema):
    addonId = Text(required=True, metadata={"description": "Stigg add-on ID."})
    quantity = StrictInteger(
        load_default=1,
        validate=validate.Range(min=1),
        metadata={"description": "How many of the add-on; defaults to 1."},
    )


class SubscriptionCreditEntitlement(RequestSchema):
    customCurrencyId = Text(
        required=True,
        metadata={
            "description": "Stigg custom currency (credit type) ID, e.g. cred-type-ai-tokens."
        },
    )
    amount = Amount(required=True, metadata={"description": "Credits granted each cadence."})
    cadence = Choice(
        CREDIT_CADENCES,
        required=True,
        metadata={"description": "How often the credits are granted."},
    )
    priceOverride = Amount(
        minimum=0,
        exclusive=False,
        metadata={"description": "Price of these credits per billing period (paid plans only)."},
    )


class SubscriptionTerms(RequestSchema):
    """The terms createSubscription and updateSubscription both take, declared once and
    mapped once (actions/subscription_terms.py)."""

    planBaseChargeOverride = Amount(
        minimum=0,
        exclusive=False,
        metadata={"description": "Overrides the plan's base charge per billing period."},
    )
    currency = Currency(
        metadata={
            "description": "ISO 4217 currency of planBaseChargeOverride and credit price "
            "overrides; the plan's currency when omitted."
        }
    )
    billingPeriod = Choice(
        BILLING_PERIODS,
        metadata={"description": "monthly or annually (any case); must be one the plan offers."},
    )
    subscriptionCreditEntitlements = fields.List(
        fields.Nested(SubscriptionCreditEntitlement),
        metadata={"description": "Recurring credit grants included in the subscription."},
    )
    salesforceOpportunityId = SalesforceId(
        key_prefix="006",
        record_kind="Opportunity",
        metadata={"description": "Opportunity ID, stored as the subscription's Salesforce ID."},
    )

    @validates_schema
    def check_terms(self, data, **kwargs):
        _refuse_repeats(
            data.get("subscriptionCreditEntitlements", []),
            "customCurrencyId",
            "subscriptionCreditEntitlements",
        )
        has_price = "planBaseChargeOverride" in data or any(
            "priceOverride" in item for item in data.get("subscriptionCreditEntitlements", [])
        )
        if "currency" in data and not has_price:
            raise ValidationError(
                "Only used with planBaseChargeOverride or a credit priceOverride; none was given.",
                field_name="currency",
            )


class CreateSubscriptionRequest(SubscriptionTerms):
    salesforceAccountId = SalesforceId(
        key_prefix="001",
        record_kind="Account",
        required=True,
        metadata={"description": "Salesforce Account ID of the customer (15 or 18 characters)."},
    )
    stiggCustomerId = StiggId(metadata={"description": STIGG_CUSTOMER_ID_DESCRIPTION})
    customerName = Text(metadata={"description": "Customer name, set on the Stigg customer."})
    customerEmail = fields.Email(
        validate=validate.Length(max=254),
        metadata={"description": "Customer email, set on the Stigg customer when given."},
    )
    planId = Text(required=True, metadata={"description": "Stigg plan ID."})
    addons = fields.List(
        fields.Nested(SubscriptionAddon), metadata={"description": "Add-ons with quantities."}
    )
    paymentCollectionMethod = Choice(
        PAYMENT_COLLECTION_METHODS,
        metadata={
            "description": "PAYMENT_METHOD_ON_FILE charges the payment method on file; INVOICE "
            "generates an invoice to pay manually. Omitted: PAYMENT_METHOD_ON_FILE (Stigg's "
            "default); a paid plan for a customer with no payment method on file then answers "
            "PAYMENT_REQUIRED with a checkoutUrl."
        },
    )
    trial = StrictBoolean(metadata={"description": "Start the subscription as a trial."})
    trialEndDate = UtcDateTime(
        metadata={"description": "Last day of the trial (start of that day, UTC). Implies trial."}
    )
    startDate = UtcDateTime(
        metadata={"description": "Start date (start of that day, UTC); defaults to now."}
    )
    resourceId = StiggId(
        metadata={"description": "Stigg resource ID, for products with several subscriptions."}
    )

    @validates_schema
    def check_consistency(self, data, **kwargs):
        if data.get("trial") is False and "trialEndDate" in data:
            raise ValidationError("Only allowed when trial is true.", field_name="trialEndDate")
        _refuse_repeats(data.get("addons", []), "addonId", "addons")


def _refuse_repeats(items: list[dict], key: str, list_name: str) -> None:
    seen = set()
    for index, item in enumerate(items):
        if item[key] in seen:
            raise ValidationError(
                {list_name: {index: {key: [f"{item[key]!r} appears more than once."]}}}
            )
        seen.add(item[key])


class SubscriptionIdentity(ResponseSchema):
    """What every subscription answer names: the subscription and its customer, with links."""

    stiggSubscriptionId = fields.String(
        required=True, metadata={"description": "Stigg subscription ID."}
    )
    stiggSubscriptionUrl = fields.String(
        required=True, metadata={"description": SUBSCRIPTION_URL_DESCRIPTION}
    )
    stiggCustomerId = fields.String(required=True, metadata={"description": "Stigg customer ID."})
    stiggCustomerUrl = fields.String(
        required=True, metadata={"description": "Deep link to the customer in the Stigg app."}
    )


class SubscriptionResult(SubscriptionIdentity):
    status = fields.String(
        required=True,
        metadata={
            "enum": ["SUCCESS", "PAYMENT_REQUIRED"],
            "description": "PAYMENT_REQUIRED: not active until paid through checkoutUrl.",
        },
    )
    subscriptionStatus = fields.String(
        metadata={"description": "ACTIVE, IN_TRIAL, NOT_STARTED, PAYMENT_PENDING, ..."}
    )
    checkoutUrl = fields.String(metadata={"description": "Where the customer pays, when required."})
    scheduled = fields.Boolean(
        metadata={"description": "true when Stigg scheduled the change for a later date."}
    )


# --- updateSubscription and cancelSubscription ------------------------------------------


class SubscriptionLookup(RequestSchema):
    """Which subscription an update or a cancellation acts on: one named by its Stigg ID, or
    the customer's one live (ACTIVE or IN_TRIAL) subscription, optionally of one resource."""

    stiggSubscriptionId = StiggId(
        metadata={
            "description": "Stigg subscription ID (e.g. the Opportunity's Stigg Subscription ID). "
            "Leave empty to act on the customer's live subscription."
        }
    )
    stiggCustomerId = StiggId(
        metadata={
            "description": "Stigg customer ID whose live (ACTIVE or IN_TRIAL) subscription to "
            "act on; defaults to salesforceAccountId (18-character form)."
        }
    )
    salesforceAccountId = SalesforceId(
        key_prefix="001",
        record_kind="Account",
        metadata={
            "description": "Salesforce Account ID: its customer's live subscription (when "
            "stiggCustomerId is empty, the Account ID is the Stigg customer ID)."
        },
    )
    resourceId = StiggId(
        metadata={
            "description": "Stigg resource ID, when the customer has a subscription per resource."
        }
    )

    @validates_schema
    def check_lookup(self, data, **kwargs):
        named = ("stiggCustomerId", "salesforceAccountId", "resourceId")
        customer_fields = [name for name in named if name in data]
        if "stiggSubscriptionId" in data and customer_fields:
            raise ValidationError(
                "stiggSubscriptionId names the subscription itself: leave stiggCustomerId, "
                "salesforceAccountId and resourceId empty.",
                field_name=customer_fields[0],
            )
        if "stiggSubscriptionId" not in data and not (
            "stiggCustomerId" in data or "salesforceAccountId" in data
        ):
            raise ValidationError(
                "Give stiggSubscriptionId, or stiggCustomerId or salesforceAccountId to act on "
                "the customer's live subscription.",
                field_name="stiggSubscriptionId",
            )


class SubscriptionAddonQuantity(RequestSchema):
    addonId = Text(required=True, metadata={"description": "Stigg add-on ID."})
    quantity = StrictInteger(
        required=True,
        validate=validate.Range(min=0),
        metadata={"description": "The add-on's new quantity; 0 removes it."},
    )


# What can change on an update: everything else is refused (a plan change is a new
# subscription; Stigg's UpdateSubscriptionInput has no payment method or trial switch).
UPDATE_FIELDS = (
    "addons",
    "billingPeriod",
    "planBaseChargeOverride",
    "subscriptionCreditEntitlements",
    "trialEndDate",
    "salesforceOpportunityId",
)


class UpdateSubscriptionRequest(SubscriptionLookup, SubscriptionTerms):
    refused_field_hints = {
        "planId": "An update keeps the plan: to move to another plan use createSubscription "
        "(the new subscription replaces the live one).",
        "paymentCollectionMethod": "Stigg cannot change a subscription's payment collection "
        "method (updateOneSubscription has no such field).",
        "trial": "Only trialEndDate can change on an update, while the trial runs.",
        "startDate": "A subscription's start date cannot change.",
    }

    addons = fields.List(
        fields.Nested(SubscriptionAddonQuantity),
        metadata={
            "description": "Add-ons to change: each gets its new quantity, 0 removes it; add-ons "
            "not listed keep theirs."
        },
    )
    trialEndDate = UtcDateTime(
        metadata={
            "description": "New last day of the trial (start of that day, UTC); only while the "
            "subscription is in trial."
        }
    )

    @validates_schema
    def check_changes(self, data, **kwargs):
        _refuse_repeats(data.get("addons", []), "addonId", "addons")
        if not any(name in data for name in UPDATE_FIELDS):
            raise ValidationError(
                f"Nothing to change: give at least one of {', '.join(UPDATE_FIELDS)}."
            )


class CancelSubscriptionRequest(SubscriptionLookup):
    cancellationTime = Choice(
        CANCELLATION_TIMES,
        metadata={
            "description": "When the subscription ends: END_OF_BILLING_PERIOD (the default), "
            "IMMEDIATE, or SPECIFIC_DATE (give endDate). Stigg cancels a subscription in trial "
            "only IMMEDIATE."
        },
    )
    endDate = UtcDateTime(
        metadata={
            "description": "With SPECIFIC_DATE: when the subscription ends (start of that day, "
            "UTC)."
        }
    )
    prorate = StrictBoolean(
        metadata={"description": "Credit the unused part of the period (Stigg's proration)."}
    )
    revokeEntitlements = StrictBoolean(
        metadata={"description": "Revoke the customer's entitlements when the subscription ends."}
    )

    @validates_schema
    def check_end_date(self, data, **kwargs):
        specific = data.get("cancellationTime") == CANCELLATION_TIMES["SPECIFIC_DATE"]
        if specific and "endDate" not in data:
            raise ValidationError(
                "Missing: SPECIFIC_DATE needs the date the subscription ends.",
                field_name="endDate",
            )
        if "endDate" in data and not specific:
            raise ValidationError(
                "Only used with cancellationTime SPECIFIC_DATE.", field_name="endDate"
            )


class UpdateSubscriptionResult(SubscriptionIdentity):
    subscriptionStatus = fields.String(
        required=True,
        metadata={"description": "ACTIVE, IN_TRIAL, NOT_STARTED, PAYMENT_PENDING, ..."},
    )


class CancelSubscriptionResult(UpdateSubscriptionResult):
    endDate = UtcDateTime(
        openapi_format="date-time",
        metadata={"description": "When the subscription ends or ended."},
    )
    alreadyCancelled = fields.Boolean(
        required=True,
        metadata={
            "description": "true when the subscription had already ended (CANCELED or EXPIRED): "
            "nothing was changed. Not an error."
        },
    )
