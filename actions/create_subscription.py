"""Create Stigg Subscription: upsert the customer, then `provisionSubscriptionV2`.

Mapping (DESIGN.md, reference §2.2 and §3): PAYMENT_METHOD_ON_FILE → CHARGE; the plan base
charge override and credit price overrides → `priceOverrides`; trial →
`trialOverrideConfiguration`; credit entitlements → `entitlements[].credit`; the
Opportunity ID → the subscription's `salesforceId`. The terms updateSubscription shares are
mapped in actions/subscription_terms.py, the one copy of that mapping.
"""

from __future__ import annotations

from actions import customers
from actions import subscription_terms as terms
from actions.action import customer_of
from actions.once import CreationTag, create_once
from actions.pages import find_in_pages
from actions.subscriptions import subscription_filter
from app.stigg import StiggSession
from schemas.fields import rfc3339
from schemas.subscription import DEFAULT_PAYMENT_COLLECTION_METHOD as DEFAULT_PAYMENT

# Every state a subscription we just created can be in: live, scheduled for a later
# start, or waiting for its first payment. Named, not "active": that word's meaning in
# Stigg's API is not documented (docs/stigg-fidelity.md).
JUST_CREATED_STATUSES = ("ACTIVE", "IN_TRIAL", "NOT_STARTED", "PAYMENT_PENDING")
LOOKUP_PAGE_SIZE = 50
MAX_LOOKUP_PAGES = 10


def run(*, request: dict, stigg: StiggSession, tag: CreationTag) -> dict:
    customer_id = customer_of(request)
    # As Stigg's own package does: the customer exists, with what we were told, first.
    customers.upsert(
        stigg=stigg,
        customer_id=customer_id,
        salesforce_account_id=request["salesforceAccountId"],
        name=request.get("customerName"),
        email=request.get("customerEmail"),
    )
    provision_input = subscription_input(request, customer_id, tag=tag)
    result, _created = create_once(
        create=lambda: provisioned(
            stigg.execute("ProvisionSubscription", {"input": provision_input})
        ),
        find=lambda: find_tagged_subscription(
            stigg=stigg, provision_input=provision_input, tag=tag
        ),
        look_first=tag.look_first,
    )
    return {
        **result,
        "stiggSubscriptionUrl": stigg.subscription_url(result["stiggSubscriptionId"]),
        "stiggCustomerId": customer_id,
        "stiggCustomerUrl": stigg.customer_url(customer_id),
    }


def provisioned(result: dict) -> dict:
    subscription = result.get("subscription") or {}
    status = subscription.get("status")
    return {
        "stiggSubscriptionId": subscription.get("subscriptionId") or result["id"],
        "status": result["status"],
        "subscriptionStatus": status,
        "checkoutUrl": result.get("checkoutUrl"),
        "scheduled": bool(result.get("isScheduled")) or status == "NOT_STARTED",
    }


def find_tagged_subscription(
    *, stigg: StiggSession, provision_input: dict, tag: CreationTag
) -> dict | None:
    """The subscription this request created earlier, if Stigg has it."""
    matching = subscription_filter(
        provision_input["customerId"], provision_input.get("resourceId"), JUST_CREATED_STATUSES
    )
    node = find_in_pages(
        lambda paging: stigg.execute(
            "CustomerSubscriptions", {"filter": matching, "paging": paging}
        ),
        lambda node: tag.marks(node.get("additionalMetaData")),
        page_size=LOOKUP_PAGE_SIZE,
        max_pages=MAX_LOOKUP_PAGES,
        what="subscription",
    )
    return found(node) if node is not None else None


def found(subscription: dict) -> dict:
    """The answer for a subscription found by its tag: what provisioning had answered,
    except the checkout URL, which Stigg gives only in the provisioning answer."""
    status = subscription.get("status")
    return {
        "stiggSubscriptionId": subscription["subscriptionId"],
        "status": "PAYMENT_REQUIRED" if status == "PAYMENT_PENDING" else "SUCCESS",
        "subscriptionStatus": status,
        "scheduled": status == "NOT_STARTED",
    }


def subscription_input(request: dict, customer_id: str, *, tag: CreationTag) -> dict:
    """The ProvisionSubscriptionInput for a loaded request; absent values are omitted.

    The terms shared with updateSubscription come from actions/subscription_terms.py."""
    fields = {
        "customerId": customer_id,
        "planId": request["planId"],
        # Always sent: an omitted method is Stigg's own default, CHARGE, made explicit so
        # the outcome does not hang on a server-side default (schemas/subscription.py).
        "paymentCollectionMethod": request.get("paymentCollectionMethod", DEFAULT_PAYMENT),
        "addons": terms.addons(request.get("addons", [])) or None,
        **terms.shared_terms(request),
        "trialOverrideConfiguration": terms.trial_override(request),
        "startDate": rfc3339(request.get("startDate")),
        "resourceId": request.get("resourceId"),
        "additionalMetaData": tag.metadata,
    }
    return {key: value for key, value in fields.items() if value is not None}
