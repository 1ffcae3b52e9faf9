"""Creating something in Stigg at most once, when Stigg itself offers no idempotency.

Subscriptions and credit grants carry, in their `additionalMetaData`, a tag that
identifies the request that created them: the caller's key ID, the operation, the
request's Idempotency-Key (or, without one, our request ID) and the fingerprint of the
loaded request, hashed together. When an attempt may have reached Stigg without an answer
(timeout, dropped connection, 5xx) we look for the tag instead of guessing; and a request
carrying an Idempotency-Key looks first, so that a retry after a lost answer, or after the
worker running it died, finds what the earlier attempt created instead of creating it
again. Something found is ours only when the whole tag matches: the same key reused by
another caller, for another operation, or with another body (after its idempotency record
expired, say) is a different request and creates its own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from app.stigg import StiggFailure

# What we write into additionalMetaData. KEY_FIELD is for people reading Stigg's app
# ("which Salesforce record made this?"); only TAG_FIELD decides a match.
KEY_FIELD = "stiggFlowActionsKey"
TAG_FIELD = "stiggFlowActionsTag"
# The key part of a tag for a request without an Idempotency-Key.
REQUEST_KEY_PREFIX = "request:"


def key_for_request(request_id: str) -> str:
    """The Idempotency-Key that stands for a keyless request (`replay` sends it)."""
    return REQUEST_KEY_PREFIX + request_id


@dataclass(frozen=True)
class CreationTag:
    caller_key_id: str
    operation: str
    # The caller's Idempotency-Key, or key_for_request(request ID) without one.
    key: str
    # Fingerprint of the loaded request (app.store.fingerprint).
    fingerprint: str
    # True when a retry of this very request may follow (the caller sent a key): look for
    # an earlier creation before creating.
    look_first: bool

    @cached_property
    def digest(self) -> str:
        # Cached: a look-up compares it with every grant or subscription it pages through.
        parts = (self.caller_key_id, self.operation, self.key, self.fingerprint)
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:40]

    @property
    def metadata(self) -> dict:
        return {KEY_FIELD: self.key, TAG_FIELD: self.digest}

    def marks(self, metadata) -> bool:
        """Whether an object's additionalMetaData says this request created it."""
        return isinstance(metadata, dict) and metadata.get(TAG_FIELD) == self.digest


def create_once(
    *,
    create: Callable[[], dict],
    find: Callable[[], dict | None],
    look_first: bool,
) -> tuple[dict, bool]:
    """(result, created): the creation's result, or what `find` found of an earlier one."""
    if look_first:
        earlier = find()
        if earlier is not None:
            return earlier, False
    try:
        return create(), True
    except StiggFailure as failure:
        if not failure.may_have_executed:
            raise
        found = find()
        if found is None:
            # Not visible (yet): creating again now could double it. The caller retries
            # later with the same Idempotency-Key and the look-up settles it.
            raise
        return found, False
