"""Create Stigg Credit Grant.

`createCreditGrant` is not idempotent in Stigg: every call grants again. The grant is
created at most once (see `actions.once`): tagged with the request's tag, looked up after
an unknown outcome, and looked up first when the caller sent an Idempotency-Key.
"""

from __future__ import annotations

from actions.once import CreationTag, create_once
from actions.pages import find_in_pages
from app.stigg import StiggSession
from schemas.fields import rfc3339

# The customer's grants in this currency are scanned for our tag a page at a time.
LOOKUP_PAGE_SIZE = 100
# A bound on the scan, so a customer with a huge grant history cannot make one request
# read forever; reaching it is logged (the look-up then counts as "not found").
MAX_LOOKUP_PAGES = 20


def run(*, request: dict, stigg: StiggSession, tag: CreationTag) -> dict:
    grant_input = credit_grant_input(request, tag=tag)
    grant, _created = create_once(
        create=lambda: stigg.execute("GrantCredits", {"input": grant_input}),
        find=lambda: find_tagged_grant(stigg=stigg, grant_input=grant_input, tag=tag),
        look_first=tag.look_first,
    )
    return result(grant)


def credit_grant_input(request: dict, *, tag: CreationTag) -> dict:
    cost = None
    if "costAmount" in request:
        cost = {"amount": request["costAmount"]}
        if "currency" in request:
            cost["currency"] = request["currency"]
    metadata = dict(tag.metadata)
    if "salesforceOpportunityId" in request:
        metadata["salesforceOpportunityId"] = request["salesforceOpportunityId"]
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
        "additionalMetaData": metadata,
    }
    return {key: value for key, value in fields.items() if value is not None}


def find_tagged_grant(*, stigg: StiggSession, grant_input: dict, tag: CreationTag) -> dict | None:
    lookup = {
        "customerId": grant_input["customerId"],
        "currencyId": grant_input["currencyId"],
    }
    if "resourceId" in grant_input:
        lookup["resourceId"] = grant_input["resourceId"]
    return find_in_pages(
        lambda paging: stigg.execute("CreditGrants", {"input": {**lookup, "paging": paging}}),
        lambda node: tag.marks(node.get("additionalMetaData")),
        page_size=LOOKUP_PAGE_SIZE,
        max_pages=MAX_LOOKUP_PAGES,
        what="credit grant",
    )


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
