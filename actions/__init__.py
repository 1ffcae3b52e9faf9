"""The Flow actions. `ACTIONS` is the single source of truth: the Flask routes, the OpenAPI
document and the sfdx/ External Service registration are all generated from it.

Adding an action: a schema pair in schemas/, a handler module here, one entry below.
"""

from actions import create_credit_grant, create_customer, create_subscription
from actions.action import Action
from schemas.credit_grant import CreateCreditGrantRequest, CreditGrantResult
from schemas.customer import (
    CreateCustomerWithEmailRequest,
    CreateCustomerWithoutEmailRequest,
    CustomerResult,
)
from schemas.subscription import CreateSubscriptionRequest, SubscriptionResult

ACTIONS = [
    Action(
        operation_id="createCustomerWithEmail",
        path="/v1/actions/create-customer-with-email",
        summary="Create Stigg Customer with email",
        description=(
            "Creates the Stigg customer for a Salesforce Account, or updates its name, email "
            "and Account link if it exists. Answers the Stigg customer ID and a deep link."
        ),
        request_schema=CreateCustomerWithEmailRequest,
        response_schema=CustomerResult,
        handler=create_customer.run,
        stigg_mutations=("provisionCustomer",),
        example={
            "salesforceAccountId": "001D000000IqhSLIAZ",
            "customerName": "Acme Corp",
            "customerEmail": "billing@acme.example",
        },
    ),
    Action(
        operation_id="createCustomerWithoutEmail",
        path="/v1/actions/create-customer-without-email",
        summary="Create Stigg Customer without email",
        description=(
            "Like createCustomerWithEmail, for Accounts whose contact has no email: no email "
            "is sent, and an email Stigg already has is kept."
        ),
        request_schema=CreateCustomerWithoutEmailRequest,
        response_schema=CustomerResult,
        handler=create_customer.run,
        stigg_mutations=("provisionCustomer",),
        example={"salesforceAccountId": "001D000000IqhSM", "customerName": "Globex"},
    ),
    Action(
        operation_id="createSubscription",
        path="/v1/actions/create-subscription",
        summary="Create Stigg Subscription",
        description=(
            "Makes sure the customer exists, then provisions a subscription to a plan with "
            "add-ons, trial, price overrides and credit entitlements. A new subscription "
            "replaces the customer's active one."
        ),
        request_schema=CreateSubscriptionRequest,
        response_schema=SubscriptionResult,
        handler=create_subscription.run,
        stigg_mutations=("provisionSubscriptionV2",),
        example={
            "salesforceAccountId": "001D000000IqhSLIAZ",
            "salesforceOpportunityId": "006D000000CkYtrIAF",
            "planId": "plan-pro",
            "billingPeriod": "monthly",
            "paymentCollectionMethod": "INVOICE",
            "addons": [{"addonId": "addon-seats", "quantity": 5}],
            "subscriptionCreditEntitlements": [
                {"customCurrencyId": "cred-type-ai-tokens", "amount": 1000, "cadence": "MONTH"}
            ],
        },
    ),
    Action(
        operation_id="createCreditGrant",
        path="/v1/actions/create-credit-grant",
        summary="Create Stigg Credit Grant",
        description=(
            "Grants promotional or paid credits to a Stigg customer. Send an Idempotency-Key: "
            "a retry with the same key never grants twice."
        ),
        request_schema=CreateCreditGrantRequest,
        response_schema=CreditGrantResult,
        handler=create_credit_grant.run,
        stigg_mutations=("createCreditGrant",),
        example={
            "stiggCustomerId": "001D000000IqhSLIAZ",
            "grantType": "PROMOTIONAL",
            "currencyId": "cred-type-ai-tokens",
            "displayName": "Welcome credits",
            "amount": 500,
        },
    ),
]

__all__ = ["ACTIONS", "Action"]
