"""A request's log row written inside a transaction a test opened, for the tests of the
transactions around it (group commit, the driver's transaction)."""

from __future__ import annotations

from app.store import Store

PAYLOAD = {"stiggCustomerId": "acme", "currencyId": "credits", "amount": 100}


def start_row(store: Store, connection, request_id: str) -> int:
    return store.log.start(
        connection=connection,
        request_id=request_id,
        operation="createCreditGrant",
        caller_key_id="caller",
        payload=PAYLOAD,
    )
