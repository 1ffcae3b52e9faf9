"""Create Stigg Credit Grant.

`createCreditGrant` is not idempotent in Stigg: every call grants again. The grant is
created at most once (see `actions.once`): tagged with the request's key, looked up after
an unknown outcome, and looked up first when the caller sent an Idempotency-Key.
"""

from __future__ import annotations

from actions.once import create_once, is_tagged, tag_for
from app.stigg import StiggSession
from schemas.fields import rfc3339

# How many of the customer's grants in this currency we scan for our tag.
LOOKUP_PAGE_SIZE = 100


def run(*, request: dict, stigg: StiggSession, idempotency_key: str | None = None) -> dict:
    grant_input = credit_grant_input(request, tag=tag_for(idempotency_key))
    grant, _created = create_once(
        create=lambda: stigg.execute("GrantCredits", {"input": grant_input}),
        find=lambda: find_tagged_grant(stigg=stigg, grant_input=grant_input),
        look_first=idempotency_key is not None,
    )
    return result(grant)


def credit_grant_input(request: dict, *, tag: dict) -> dict:
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
        "additionalMetaData": tag,
    }
    return {key: value for key, value in fields.items() if value is not None}


def find_tagged_grant(*, stigg: StiggSession, grant_input: dict) -> dict | None:
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
        if is_tagged(node.get("additionalMetaData"), grant_input["additionalMetaData"]):
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
