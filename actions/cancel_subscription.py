"""Cancel Stigg Subscription: `cancelSubscription` on the subscription the request names.

Cancelling a subscription that has already ended is a success that says so
(`alreadyCancelled: true`), never an error a Flow must special-case: when the look-up finds
it CANCELED or EXPIRED (by ID, or as the customer's newest subscription when nothing is
current), or when Stigg answers SubscriptionAlreadyCanceledOrExpired (it ended between the
look-up and the call, or a resent cancellation met the first one). Resending is safe: a
repeat sets the same end (Resend.ALWAYS).

Mapping: cancellationTime → subscriptionCancellationTime (END_OF_BILLING_PERIOD when
omitted, sent explicitly); endDate → endDate; prorate → prorate; revokeEntitlements true →
subscriptionCancellationAction REVOKE_ENTITLEMENTS (omitted otherwise: Stigg's DEFAULT).
"""

from __future__ import annotations

from actions import subscriptions
from actions.once import CreationTag
from app.stigg import StiggFailure, StiggSession, is_code
from schemas.fields import rfc3339
from schemas.subscription import DEFAULT_CANCELLATION_TIME


def run(*, request: dict, stigg: StiggSession, tag: CreationTag | None = None) -> dict:
    subscription = subscriptions.find(stigg=stigg, request=request, or_ended=True)
    if subscription["status"] in subscriptions.ENDED_STATUSES:
        return result(stigg, subscription, already_cancelled=True)
    try:
        cancelled = stigg.execute(
            "CancelSubscription", {"input": cancellation_input(request, subscription)}
        )
    except StiggFailure as failure:
        if not is_code(failure, "SubscriptionAlreadyCanceledOrExpired"):
            raise
        ended = subscriptions.find_by_id(
            stigg=stigg, subscription_id=subscription["subscriptionId"]
        )
        return result(stigg, ended, already_cancelled=True)
    return result(stigg, cancelled, already_cancelled=False)


def cancellation_input(request: dict, subscription: dict) -> dict:
    fields = {
        "subscriptionRefId": subscription["subscriptionId"],
        "subscriptionCancellationTime": request.get("cancellationTime", DEFAULT_CANCELLATION_TIME),
        "endDate": rfc3339(request.get("endDate")),
        "prorate": request.get("prorate"),
        "subscriptionCancellationAction": (
            "REVOKE_ENTITLEMENTS" if request.get("revokeEntitlements") else None
        ),
    }
    return {key: value for key, value in fields.items() if value is not None}


def result(stigg: StiggSession, subscription: dict, *, already_cancelled: bool) -> dict:
    return {
        **subscriptions.answer(stigg, subscription),
        "endDate": subscription.get("endDate"),
        "alreadyCancelled": already_cancelled,
    }
