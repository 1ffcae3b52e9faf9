"""Create Stigg Credit Grant.

Parameters (Stigg's Salesforce action): Stigg Customer ID, Grant Type, Currency ID, Display
Name, Amount, Resource ID, Comment, Effective Date, Expiration Date, Priority, Payment
Collection Method, Currency; plus `costAmount`, the fiat cost of a paid grant.
"""

from datetime import UTC, datetime

from marshmallow import ValidationError, fields, validate, validates_schema

from schemas.base import RequestSchema, ResponseSchema
from schemas.fields import (
    Amount,
    Choice,
    Currency,
    SalesforceId,
    StiggId,
    StrictInteger,
    Text,
    UtcDateTime,
)
from schemas.subscription import PAYMENT_COLLECTION_METHODS

GRANT_TYPES = {"PROMOTIONAL": "PROMOTIONAL", "PAID": "PAID"}


class CreateCreditGrantRequest(RequestSchema):
    stiggCustomerId = StiggId(required=True, metadata={"description": "Stigg customer ID."})
    grantType = Choice(
        GRANT_TYPES, required=True, metadata={"description": "PROMOTIONAL (free) or PAID."}
    )
    currencyId = Text(
        required=True,
        metadata={
            "description": "Stigg custom currency (credit type) ID, e.g. cred-type-ai-tokens."
        },
    )
    displayName = Text(required=True, metadata={"description": "Name of the grant shown in Stigg."})
    amount = Amount(required=True, metadata={"description": "Number of credits granted."})
    resourceId = StiggId(metadata={"description": "Stigg resource ID the grant is limited to."})
    comment = Text(
        max_length=200, multiline=True, metadata={"description": "Reason for the grant."}
    )
    salesforceOpportunityId = SalesforceId(
        key_prefix="006",
        record_kind="Opportunity",
        metadata={
            "description": "Opportunity the grant was sold on: recorded in the provisioning "
            "log and in the grant's metadata."
        },
    )
    effectiveDate = UtcDateTime(
        metadata={
            "description": "When the credits become usable (start of that day, UTC); now if "
            "omitted."
        }
    )
    expirationDate = UtcDateTime(
        metadata={
            "description": "When unused credits expire (start of that day, UTC); never if omitted."
        }
    )
    priority = StrictInteger(
        validate=validate.Range(min=0, max=100, error="Must be between 0 and 100 (got {input})."),
        metadata={"description": "0-100; grants with a lower number are consumed first."},
    )
    paymentCollectionMethod = Choice(
        PAYMENT_COLLECTION_METHODS,
        metadata={"description": "PAID grants: PAYMENT_METHOD_ON_FILE or INVOICE."},
    )
    costAmount = Amount(
        minimum=0,
        exclusive=False,
        metadata={"description": "PAID grants: the grant's total fiat cost, in `currency`."},
    )
    currency = Currency(metadata={"description": "ISO 4217 currency of costAmount."})

    @validates_schema
    def check_consistency(self, data, **kwargs):
        if "currency" in data and "costAmount" not in data:
            raise ValidationError(
                "Only used with costAmount (the currency of the grant's cost); "
                "costAmount is missing.",
                field_name="currency",
            )
        if data.get("grantType") == "PROMOTIONAL":
            for paid_only in ("costAmount", "paymentCollectionMethod"):
                if paid_only in data:
                    raise ValidationError(
                        "Only for PAID grants; this grant is PROMOTIONAL.", field_name=paid_only
                    )
        expiration = data.get("expirationDate")
        if expiration is not None:
            effective = data.get("effectiveDate")
            if effective is not None and expiration <= effective:
                raise ValidationError("Must be after effectiveDate.", field_name="expirationDate")
            if effective is None and expiration <= datetime.now(UTC):
                raise ValidationError(
                    "Is in the past; the grant would expire before it starts.",
                    field_name="expirationDate",
                )


class CreditGrantResult(ResponseSchema):
    creditGrantId = fields.String(required=True, metadata={"description": "Stigg credit grant ID."})
    stiggCustomerId = fields.String(required=True, metadata={"description": "Stigg customer ID."})
    status = fields.String(
        required=True,
        metadata={"description": "ACTIVE, SCHEDULED, PAYMENT_PENDING, EXPIRED or VOIDED."},
    )
    amount = fields.Float(required=True, metadata={"description": "Number of credits granted."})
    currencyId = fields.String(required=True, metadata={"description": "Custom currency ID."})
    effectiveDate = UtcDateTime(
        openapi_format="date-time", metadata={"description": "When the credits became usable."}
    )
    expirationDate = UtcDateTime(
        openapi_format="date-time", metadata={"description": "When unused credits expire."}
    )
