"""Accepting a batch: validate the envelope and every item, store it in one transaction.

An item whose envelope or body is invalid is answered at once with exactly the error (and
the provisioning-log row) a single call would get; the others are stored QUEUED with the
batch. Problems with the batch as a whole (no items, too many, a key used twice) refuse the
whole batch with one error, as a single call's malformed body would.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from marshmallow import ValidationError

from app.errors import ActionError, FieldError, validation_failed
from app.execution import Executor
from app.request_context import request_of_its_own
from app.store.batches import BatchStore, NewItem
from schemas.base import flatten_messages
from schemas.batch import BatchItemRequest

_ITEM_ENVELOPE = BatchItemRequest()


@dataclass(frozen=True)
class Submitted:
    batch_id: str
    item_count: int
    refused: int


def new_batch_id() -> str:
    return "bat_" + uuid.uuid4().hex


def submit(
    *,
    executor: Executor,
    batches: BatchStore,
    caller_key_id: str,
    body: dict,
    max_items: int,
) -> Submitted:
    """Check and store a batch; raises ActionError for a problem with the batch as a whole."""
    raw_items = body.get("items") if isinstance(body, dict) else None
    _check_batch(body, raw_items, max_items)
    new_items = []
    for index, raw in enumerate(raw_items):
        new_items.append(_item(executor, caller_key_id, index, raw))
    batch_id = new_batch_id()
    batches.create(batch_id=batch_id, caller_key_id=caller_key_id, new_items=new_items)
    return Submitted(batch_id, len(new_items), sum(item.refused is not None for item in new_items))


def _check_batch(body: dict, raw_items, max_items: int) -> None:
    unknown = sorted(set(body) - {"items"})
    if unknown:
        raise validation_failed([FieldError(name, "Unknown field.") for name in unknown])
    if not isinstance(raw_items, list) or not raw_items:
        raise validation_failed([FieldError("items", "Send a list of 1 or more items.")])
    if len(raw_items) > max_items:
        raise validation_failed(
            [
                FieldError(
                    "items",
                    f"At most {max_items} items per batch (got {len(raw_items)}); "
                    "split them into several batches.",
                )
            ]
        )
    first_use: dict[str, int] = {}
    for index, raw in enumerate(raw_items):
        key = raw.get("idempotencyKey") if isinstance(raw, dict) else None
        if not isinstance(key, str):
            continue
        if key in first_use:
            raise validation_failed(
                [
                    FieldError(
                        f"items[{index}].idempotencyKey",
                        f"Already used by items[{first_use[key]}]: each item needs its own key.",
                    )
                ]
            )
        first_use[key] = index


def _item(executor: Executor, caller_key_id: str, index: int, raw) -> NewItem:
    if not isinstance(raw, dict):
        error = validation_failed([FieldError("item", "Each item must be a JSON object.")])
        return _refused(index, raw, error)
    try:
        envelope = _ITEM_ENVELOPE.load(raw)
    except ValidationError as exc:
        error = validation_failed(
            [FieldError(field, message) for field, message in flatten_messages(exc.messages)]
        )
        return _refused(index, raw, error)
    operation = envelope["operation"]
    action = executor.actions.get(operation)
    if action is None:
        error = validation_failed(
            [
                FieldError(
                    "operation",
                    f"Unknown operation {operation!r}; one of: {', '.join(executor.actions)}.",
                )
            ]
        )
        return _refused(index, raw, error)
    key = envelope["idempotencyKey"]
    refused = None
    entity_key = None
    try:
        entity_key = action.entity(executor.load(operation, envelope["body"]))
    except ActionError:
        # Exactly what a single call answers, with its log row: run it the same way (it
        # stops at validation, before any claim or Stigg call).
        with request_of_its_own():
            outcome = executor.run(
                operation,
                caller_key_id=caller_key_id,
                payload=envelope["body"],
                idempotency_key=key,
            )
        refused = (outcome.status, outcome.body)
    return NewItem(
        index=index,
        operation=operation,
        idempotency_key=key,
        reference=envelope.get("reference"),
        payload=envelope["body"],
        entity_key=entity_key,
        refused=refused,
    )


def _refused(index: int, raw, error: ActionError) -> NewItem:
    """An item refused for its envelope: stored as sent, cut to what the columns hold."""
    raw = raw if isinstance(raw, dict) else {}

    def text(name: str, limit: int) -> str | None:
        value = raw.get(name)
        return value[:limit] if isinstance(value, str) else None

    return NewItem(
        index=index,
        operation=text("operation", 64) or "",
        idempotency_key=text("idempotencyKey", 255) or "",
        reference=text("reference", 255),
        payload=raw.get("body") if isinstance(raw.get("body"), dict) else None,
        entity_key=None,
        refused=(error.status, error.body()),
    )
