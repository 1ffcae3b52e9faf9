"""Create Stigg Customer (with or without email): an upsert keyed by the Stigg customer ID.

One handler serves both Flow nodes; the request schema decides whether an email can be
present, and an absent email is never sent to Stigg.
"""

from __future__ import annotations

from actions import customers
from actions.action import customer_of
from actions.once import CreationTag
from app.stigg import StiggSession


def run(*, request: dict, stigg: StiggSession, tag: CreationTag | None = None) -> dict:
    customer_id = customer_of(request)
    created = customers.upsert(
        stigg=stigg,
        customer_id=customer_id,
        salesforce_account_id=request["salesforceAccountId"],
        name=request["customerName"],
        email=request.get("customerEmail"),
    )
    return {
        "stiggCustomerId": customer_id,
        "stiggCustomerUrl": stigg.customer_url(customer_id),
        "created": created,
    }
