"""Finding the subscription an update or a cancellation acts on.

By `stiggSubscriptionId`: that subscription, whatever its status. Otherwise the customer's
(`stiggCustomerId`, defaulting to the 18-character Account ID) one live subscription,
optionally of one resource. Which statuses count is named, never Stigg's undocumented
notion of "active" (docs/stigg-fidelity.md):

- live, and so picked: ACTIVE and IN_TRIAL (what Stigg's own `Customer.subscriptions`
  defaults to);
- not live yet, never picked by customer: NOT_STARTED (a scheduled start, e.g. a downgrade
  waiting for the period's end) and PAYMENT_PENDING (waiting for its first payment). They
  are named in the not-found message, to be passed by `stiggSubscriptionId`;
- ended: CANCELED and EXPIRED. Only a cancellation looks for them, when the customer has
  nothing current: the newest one is the subscription that is "already cancelled".

No live subscription is SUBSCRIPTION_NOT_FOUND, more than one SUBSCRIPTION_AMBIGUOUS (422,
listing the candidates), rather than a guess.
"""

from __future__ import annotations

from actions.action import customer_of
from actions.pages import nodes_in_pages
from app.errors import subscription_ambiguous, subscription_not_found
from app.stigg import StiggSession

LIVE_STATUSES = ("ACTIVE", "IN_TRIAL")
NOT_LIVE_YET_STATUSES = ("NOT_STARTED", "PAYMENT_PENDING")
ENDED_STATUSES = ("CANCELED", "EXPIRED")
EVERY_STATUS = LIVE_STATUSES + NOT_LIVE_YET_STATUSES + ENDED_STATUSES
LOOKUP_PAGE_SIZE = 50
MAX_LOOKUP_PAGES = 10
# How many candidate IDs a message lists (Flow cuts messages at 255 characters).
LISTED_IDS = 4


def entity_of(request: dict) -> str:
    """What a batch orders an update or a cancellation by: the customer when the request
    names one, else the subscription."""
    return customer_of(request) or f"subscription:{request['stiggSubscriptionId']}"


def find(*, stigg: StiggSession, request: dict, or_ended: bool = False) -> dict:
    """The subscription node (CustomerSubscriptions' selection) the request acts on.

    `or_ended`: a customer with nothing current answers its newest ended subscription
    instead of SUBSCRIPTION_NOT_FOUND (cancellation: "already cancelled").
    """
    if "stiggSubscriptionId" in request:
        return find_by_id(stigg=stigg, subscription_id=request["stiggSubscriptionId"])
    customer_id = customer_of(request)
    resource_id = request.get("resourceId")
    whose = f"customer {customer_id}" + (f", resource {resource_id}" if resource_id else "")
    current = _subscriptions(
        stigg, subscription_filter(customer_id, resource_id, LIVE_STATUSES + NOT_LIVE_YET_STATUSES)
    )
    live = [node for node in current if node["status"] in LIVE_STATUSES]
    if len(live) == 1:
        return live[0]
    if live:
        raise subscription_ambiguous(
            f"{whose} has {len(live)} live subscriptions ({_ids(live)}): pass "
            "stiggSubscriptionId" + ("" if resource_id else " or resourceId") + " to pick one."
        )
    if or_ended and not current:
        ended = _subscriptions(
            stigg,
            subscription_filter(customer_id, resource_id, ENDED_STATUSES),
            pages=1,
            page_size=1,
        )
        if ended:
            return ended[0]
    message = f"No live (ACTIVE or IN_TRIAL) subscription for {whose}."
    if current:
        message += (
            f" Not live yet: {_ids(current, with_status=True)}; pass stiggSubscriptionId to "
            "act on one."
        )
    raise subscription_not_found(message)


def find_by_id(*, stigg: StiggSession, subscription_id: str) -> dict:
    found = _subscriptions(
        stigg,
        {"subscriptionId": {"eq": subscription_id}, "status": {"in": list(EVERY_STATUS)}},
        pages=1,
        page_size=1,
    )
    if not found:
        raise subscription_not_found(f"Stigg has no subscription {subscription_id}.")
    return found[0]


def customer_id_of(subscription: dict) -> str:
    return (subscription.get("customer") or {})["customerId"]


def answer(stigg: StiggSession, subscription: dict) -> dict:
    """What update and cancel answer about a subscription."""
    customer_id = customer_id_of(subscription)
    return {
        "stiggSubscriptionId": subscription["subscriptionId"],
        "stiggSubscriptionUrl": stigg.subscription_url(subscription["subscriptionId"]),
        "stiggCustomerId": customer_id,
        "stiggCustomerUrl": stigg.customer_url(customer_id),
        "subscriptionStatus": subscription["status"],
    }


def subscription_filter(
    customer_id: str, resource_id: str | None, statuses: tuple[str, ...]
) -> dict:
    """customerSubscriptions' filter: the customer's subscriptions in these statuses (and
    this resource's, when one is named)."""
    found = {
        "customer": {"customerId": {"eq": customer_id}},
        "status": {"in": list(statuses)},
    }
    if resource_id is not None:
        found["resource"] = {"resourceId": {"eq": resource_id}}
    return found


def _subscriptions(
    stigg: StiggSession,
    matching: dict,
    *,
    pages: int = MAX_LOOKUP_PAGES,
    page_size: int = LOOKUP_PAGE_SIZE,
) -> list[dict]:
    """Every node matching the filter (newest first, Stigg's default order), up to `pages`."""
    return list(
        nodes_in_pages(
            lambda paging: stigg.execute(
                "CustomerSubscriptions", {"filter": matching, "paging": paging}
            ),
            page_size=page_size,
            max_pages=pages,
            what="subscription",
        )
    )


def _ids(nodes: list[dict], *, with_status: bool = False) -> str:
    shown = [
        f"{node['subscriptionId']} ({node['status']})" if with_status else node["subscriptionId"]
        for node in nodes[:LISTED_IDS]
    ]
    more = len(nodes) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more else "")
