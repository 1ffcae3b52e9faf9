"""Creating something in Stigg at most once, when Stigg itself offers no idempotency.

Subscriptions and credit grants are tagged in their `additionalMetaData` with the
request's key. When an attempt may have reached Stigg without an answer (timeout, dropped
connection, 5xx), we look for the tag instead of guessing; and a request carrying a
caller's Idempotency-Key looks first, so that a retry after a lost answer, or after the
worker running it died, finds what the earlier attempt created instead of creating it
again.
"""

from __future__ import annotations

from collections.abc import Callable

from app.request_context import current_request_id
from app.stigg import StiggFailure

TAG_FIELD = "stiggFlowActionsKey"


def tag_for(idempotency_key: str | None) -> dict:
    """The metadata that marks what this request creates.

    Without an Idempotency-Key the request ID still lets this request recognise its own
    creation after a lost answer; only a caller's key carries over to a retry.
    """
    return {TAG_FIELD: idempotency_key or current_request_id()}


def is_tagged(metadata, tag: dict) -> bool:
    return isinstance(metadata, dict) and metadata.get(TAG_FIELD) == tag[TAG_FIELD]


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
