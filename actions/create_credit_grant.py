"""Create Stigg Credit Grant.

`createCreditGrant` is not idempotent in Stigg: every call grants again. So each grant is
tagged in `additionalMetaData` with the request's key, and when an attempt may have reached
Stigg without an answer (timeout, dropped connection) we look for the tag instead of
guessing. With a caller's Idempotency-Key, a later retry looks first and returns the grant
an earlier attempt created rather than granting twice.
"""

from __future__ import annotations

from app.request_context import current_request_id
from app.stigg import StiggFailure, StiggSession
from schemas.fields import rfc3339

GRANT_KEY_FIELD = "stiggFlowActionsKey"
# How many of the customer's grants in this currency we scan for our tag.
LOOKUP_PAGE_SIZE = 100


def run(*, request: dict, stigg: StiggSession, idempotency_key: str | None = None) -> dict:
    grant_input = credit_grant_input(request, grant_key=idempotency_key or current_request_id())
    if idempotency_key:
        earlier = find_tagged_grant(stigg=stigg, grant_input=grant_input)
        if earlier is not None:
            return result(earlier)
    try:
        grant = stigg.execute("GrantCredits", {"input": grant_input})
    except StiggFailure as failure:
        if not failure.may_have_executed:
            raise
        grant = find_tagged_grant(stigg=stigg, grant_input=grant_input)
        if grant is None:
            # Not visible (yet): re-sending now could grant twice; the caller retries
            # later with the same Idempotency-Key and the lookup above settles it.
            raise
    return result(grant)


def credit_grant_input(request: dict, *, grant_key: str | None) -> dict:
    cost = None
    if "costAmount" in request:
        cost = {"amount": request["costAmount"]}
        if "currency" in request:
            cost["currency"] = request["currency"]
    fields = {
        "customerId": request["stiggCustomerId"],
        "grantType": request["grantType"],
        "currencyId": request["currencyId"],
        "displayName": request["displayName"],
        "amount": request["amount"],
        "resourceId": request.get("resourceId"),
        "comment": request.get("comment"),
        "effectiveAt": rfc3339(request.get("effectiveDate")),
        "expireAt": rfc3339(request.get("expirationDate")),
        "priority": request.get("priority"),
        "paymentCollectionMethod": request.get("paymentCollectionMethod"),
        "cost": cost,
        "additionalMetaData": {GRANT_KEY_FIELD: grant_key} if grant_key else None,
    }
    return {key: value for key, value in fields.items() if value is not None}


def find_tagged_grant(*, stigg: StiggSession, grant_input: dict) -> dict | None:
    key = (grant_input.get("additionalMetaData") or {}).get(GRANT_KEY_FIELD)
    lookup = {
        "customerId": grant_input["customerId"],
        "currencyId": grant_input["currencyId"],
        "paging": {"first": LOOKUP_PAGE_SIZE},
    }
    if "resourceId" in grant_input:
        lookup["resourceId"] = grant_input["resourceId"]
    connection = stigg.execute("CreditGrants", {"input": lookup})
    for edge in connection.get("edges") or []:
        node = edge.get("node") or {}
        if (node.get("additionalMetaData") or {}).get(GRANT_KEY_FIELD) == key:
            return node
    return None


def result(grant: dict) -> dict:
    return {
        "creditGrantId": grant["grantId"],
        "stiggCustomerId": grant["customerId"],
        "status": grant["status"],
        "amount": grant["amount"],
        "currencyId": grant["currencyId"],
        "effectiveDate": grant.get("effectiveAt"),
        "expirationDate": grant.get("expireAt"),
    }
