"""Create Stigg Customer, with and without email.

Parameters (Stigg's Salesforce actions): Salesforce Account ID, Customer Name, Customer
Email (with-email only), optional Stigg Customer ID. Both answer with the Stigg Customer ID
and the Stigg Customer URL the Flow writes back to the Account.
"""

from marshmallow import fields, validate

from schemas.base import RequestSchema, ResponseSchema
from schemas.fields import SalesforceId, StiggId, Text

STIGG_CUSTOMER_ID_DESCRIPTION = (
    "Stigg customer ID. Defaults to the Salesforce Account ID (18-character form), so that "
    "retries and later Opportunities of the same Account reach the same customer."
)


class CreateCustomerWithoutEmailRequest(RequestSchema):
    refused_field_hints = {
        "customerEmail": "This action does not take an email; use createCustomerWithEmail.",
    }

    salesforceAccountId = SalesforceId(
        key_prefix="001",
        record_kind="Account",
        required=True,
        metadata={"description": "Salesforce Account ID (15 or 18 characters)."},
    )
    customerName = Text(required=True, metadata={"description": "Customer name shown in Stigg."})
    stiggCustomerId = StiggId(metadata={"description": STIGG_CUSTOMER_ID_DESCRIPTION})


class CreateCustomerWithEmailRequest(CreateCustomerWithoutEmailRequest):
    refused_field_hints = {}

    customerEmail = fields.Email(
        required=True,
        validate=validate.Length(max=254),
        metadata={"description": "Customer email (for example the Opportunity's primary contact)."},
    )


class CustomerResult(ResponseSchema):
    stiggCustomerId = fields.String(
        required=True, metadata={"description": "Stigg customer ID; store it on the Account."}
    )
    stiggCustomerUrl = fields.String(
        required=True, metadata={"description": "Deep link to the customer in the Stigg app."}
    )
    created = fields.Boolean(
        required=True,
        metadata={
            "description": "true when this call created the customer, false when it updated it."
        },
    )
