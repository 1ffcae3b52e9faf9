"""Caller authentication: `Authorization: Bearer <key>` against ACTIONS_API_KEYS."""

from __future__ import annotations

import hmac

from app.config import CallerKey
from app.errors import ActionError

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="stigg-flow-actions"'}


def authenticate(authorization: str | None, accepted: tuple[CallerKey, ...]) -> CallerKey:
    """The accepted key the header carries; 401 otherwise.

    Every accepted key is compared, in constant time, whatever matches first, so the
    response time says nothing about which key (or how much of one) was right.
    """
    scheme, _, presented = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise ActionError(
            401,
            "UNAUTHORIZED",
            "Missing API key: send the header 'Authorization: Bearer <key>'.",
            headers=_CHALLENGE,
        )
    presented_bytes = presented.strip().encode()
    match = None
    for key in accepted:
        if hmac.compare_digest(presented_bytes, key.secret.encode()):
            match = key
    if match is None:
        raise ActionError(
            401,
            "UNAUTHORIZED",
            "Unknown API key: check the key configured on the Salesforce External Credential.",
            headers={
                "WWW-Authenticate": 'Bearer realm="stigg-flow-actions", error="invalid_token"'
            },
        )
    return match
