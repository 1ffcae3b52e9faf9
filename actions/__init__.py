"""The Flow actions. `ACTIONS` is the single source of truth: the Flask routes, the OpenAPI
document and the sfdx/ External Service registration are all generated from it.

Adding an action: a schema pair in schemas/, a handler module here, one entry below.
"""

from actions import (
    cancel_subscription,
    create_credit_grant,
    create_customer,
    create_subscription,
    subscriptions,
    trigger_workflow,
    update_subscription,
)
from actions.action import Action
from app.errors import workflow_interrupted
from schemas.credit_grant import CreateCreditGrantRequest, CreditGrantResult
from schemas.customer import (
    CreateCustomerWithEmailRequest,
    CreateCustomerWithoutEmailRequest,
    CustomerResult,
)
from schemas.subscription import (
    CancelSubscriptionRequest,
    CancelSubscriptionResult,
    CreateSubscriptionRequest,
    SubscriptionResult,
    UpdateSubscriptionRequest,
    UpdateSubscriptionResult,
)
from schemas.workflow import TriggerWorkflowRequest, TriggerWorkflowResult

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
    Action(
        operation_id="updateSubscription",
        path="/v1/actions/update-subscription",
        summary="Update Stigg Subscription",
        description=(
            "Changes the subscription named by stiggSubscriptionId, or the customer's one live "
            "(ACTIVE or IN_TRIAL) subscription: add-on quantities (0 removes one; others are "
            "kept), billing period, base charge override, credit entitlements, trial end, "
            "Opportunity. None or several live subscriptions: 422 SUBSCRIPTION_NOT_FOUND or "
            "SUBSCRIPTION_AMBIGUOUS."
        ),
        request_schema=UpdateSubscriptionRequest,
        response_schema=UpdateSubscriptionResult,
        handler=update_subscription.run,
        stigg_mutations=("updateOneSubscription",),
        entity=subscriptions.entity_of,
        example={
            "salesforceAccountId": "001D000000IqhSLIAZ",
            "salesforceOpportunityId": "006D000000CkYtrIAF",
            "addons": [{"addonId": "addon-seats", "quantity": 12}],
        },
    ),
    Action(
        operation_id="cancelSubscription",
        path="/v1/actions/cancel-subscription",
        summary="Cancel Stigg Subscription",
        description=(
            "Cancels the subscription named by stiggSubscriptionId, or the customer's one live "
            "subscription: at the end of the billing period (default), immediately, or on "
            "endDate. One that has already ended is a success with alreadyCancelled true."
        ),
        request_schema=CancelSubscriptionRequest,
        response_schema=CancelSubscriptionResult,
        handler=cancel_subscription.run,
        stigg_mutations=("cancelSubscription",),
        entity=subscriptions.entity_of,
        example={
            "salesforceAccountId": "001D000000IqhSLIAZ",
            "cancellationTime": "END_OF_BILLING_PERIOD",
        },
    ),
    Action(
        operation_id="triggerStiggWorkflow",
        path="/v1/actions/trigger-stigg-workflow",
        summary="Trigger Stigg Workflow",
        description=(
            "Runs an API-triggered Stigg workflow by its trigger ID. The payload is a JSON "
            "object written as text in payloadJson (External Services cannot declare a "
            "free-form object); Stigg's response comes back as text in responseJson. Not "
            "resent once it may have run: a lost answer is WORKFLOW_OUTCOME_UNKNOWN, not "
            "retryable."
        ),
        request_schema=TriggerWorkflowRequest,
        response_schema=TriggerWorkflowResult,
        handler=trigger_workflow.run,
        interrupted=workflow_interrupted,
        stigg_mutations=("triggerWorkflow",),
        # The payload may name anything; the request names no customer to order by.
        entity=lambda request: None,
        example={
            "triggerId": "wf-seat-change",
            "payloadJson": '{"customerId": "001D000000IqhSLIAZ", "seats": 12}',
        },
    ),
]

__all__ = ["ACTIONS", "Action"]
