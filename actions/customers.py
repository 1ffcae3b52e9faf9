"""The customer upsert that every action needing a customer goes through.

Stigg's `provisionCustomer` only creates, so an upsert is: look the customer up, update
what differs if it exists, else create it; a create that loses a race to another request
(DuplicatedEntityNotAllowed) becomes an update.
"""

from __future__ import annotations

from app.stigg import StiggFailure, StiggSession, is_code


def upsert(
    *,
    stigg: StiggSession,
    customer_id: str,
    salesforce_account_id: str,
    name: str | None = None,
    email: str | None = None,
) -> bool:
    """Make the customer exist with these attributes; True when this call created it.

    Attributes given as None are left alone: in particular `email` is never sent as null,
    so "without email" cannot wipe an email set earlier.
    """
    wanted = {"name": name, "email": email, "salesforceId": salesforce_account_id}
    wanted = {key: value for key, value in wanted.items() if value is not None}

    existing = find(stigg=stigg, customer_id=customer_id)
    if existing is None:
        try:
            stigg.execute("ProvisionCustomer", {"input": {"customerId": customer_id, **wanted}})
            return True
        except StiggFailure as failure:
            if not is_code(failure, "DuplicatedEntityNotAllowed"):
                raise
            existing = {}

    # Only what differs: Stigg limits mutations per customer (about 30 a minute).
    changes = {key: value for key, value in wanted.items() if existing.get(key) != value}
    if changes:
        stigg.execute("UpdateCustomer", {"input": {"customerId": customer_id, **changes}})
    return False


def find(*, stigg: StiggSession, customer_id: str) -> dict | None:
    # Stigg answers an unknown ID with null or with CustomerNotFound: both mean "absent".
    try:
        return stigg.execute("GetCustomer", {"input": {"customerId": customer_id}})
    except StiggFailure as failure:
        if is_code(failure, "CustomerNotFound"):
            return None
        raise
