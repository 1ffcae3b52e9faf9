"""Update Stigg Subscription: `updateOneSubscription` on the subscription the request names.

The subscription is found as actions/subscriptions.py says; its terms map as for
createSubscription (actions/subscription_terms.py, the one copy of that mapping).

Add-ons: each listed add-on gets its new quantity and quantity 0 removes it, while the
others keep theirs. Stigg's `updateOneSubscription.addons` replaces the whole list
(assumed, docs/stigg-fidelity.md), so the subscription's current add-ons are read first
(the look-up selects them) and the full resulting list is sent. Every value sent is
absolute, so resending the update cannot change the outcome (Resend.ALWAYS).

Nothing is written to the subscription's `additionalMetaData`: Stigg replaces metadata
rather than merging it, and it carries the creation tag of createSubscription.
"""

from __future__ import annotations

from actions import subscription_terms as terms
from actions import subscriptions
from actions.once import CreationTag
from app.stigg import StiggSession
from schemas.fields import rfc3339


def run(*, request: dict, stigg: StiggSession, tag: CreationTag | None = None) -> dict:
    subscription = subscriptions.find(stigg=stigg, request=request)
    updated = stigg.execute("UpdateSubscription", {"input": update_input(request, subscription)})
    return subscriptions.answer(stigg, updated)


def update_input(request: dict, subscription: dict) -> dict:
    """The UpdateSubscriptionInput for a loaded request and the subscription it acts on."""
    fields = {"subscriptionId": subscription["subscriptionId"], **terms.shared_terms(request)}
    if "addons" in request:
        fields["addons"] = merged_addons(subscription.get("addons") or [], request["addons"])
    if "trialEndDate" in request:
        fields["trialEndDate"] = rfc3339(request["trialEndDate"])
    return fields


def merged_addons(current: list[dict], changes: list[dict]) -> list[dict]:
    """The subscription's add-on list after the changes: in their current order, new ones
    after them in the order given, quantity 0 removed."""
    quantities = {addon["addonId"]: round(addon["quantity"]) for addon in current}
    for change in changes:
        if change["quantity"] == 0:
            quantities.pop(change["addonId"], None)
        else:
            quantities[change["addonId"]] = change["quantity"]
    return terms.addons(
        [{"addonId": addon_id, "quantity": quantity} for addon_id, quantity in quantities.items()]
    )
