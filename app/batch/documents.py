"""What a batch looks like to its caller (schemas/batch.py's BatchDocument)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from actions.action import Action

FINISHED = ("SUCCEEDED", "FAILED")
# However short the queue, a poll sooner than this only costs a callout.
MIN_RETRY_AFTER_S = 1
MAX_RETRY_AFTER_S = 3600


def document(batch: dict, rows: list[dict], *, retry_after_s: int | None = None) -> dict:
    counts = Counter(row["status"] for row in rows)
    status = batch_status(rows)
    body = {
        "batchId": batch["id"],
        "status": status,
        "createdAt": _rfc3339(batch["created_at"]),
        "counts": {
            "total": len(rows),
            "queued": counts["QUEUED"],
            "running": counts["RUNNING"],
            "succeeded": counts["SUCCEEDED"],
            "failed": counts["FAILED"],
        },
        "items": [_item(row) for row in rows],
    }
    if status == "COMPLETED":
        body["finishedAt"] = _rfc3339(max(row["finished_at"] for row in rows))
    elif retry_after_s is not None:
        body["retryAfterSeconds"] = retry_after_s
    return body


def batch_status(rows: list[dict]) -> str:
    if all(row["status"] in FINISHED for row in rows):
        return "COMPLETED"
    if any(row["status"] != "QUEUED" or row["attempts"] for row in rows):
        return "RUNNING"
    return "QUEUED"


def _item(row: dict) -> dict:
    item = {
        "index": row["item_index"],
        "operation": row["operation"],
        "idempotencyKey": row["idempotency_key"],
        "status": row["status"],
    }
    if row["reference"] is not None:
        item["reference"] = row["reference"]
    if row["status"] == "SUCCEEDED":
        item["httpStatus"] = row["http_status"]
        item["result"] = row["result"]
    elif row["status"] == "FAILED":
        item["httpStatus"] = row["http_status"]
        item["error"] = row["error"]
    return item


def estimate_retry_after_s(
    queue_ahead: Mapping[str, int],
    actions: Mapping[str, Action],
    seconds_for: Callable[[str, int], float],
) -> int:
    """When the batch can be expected to finish: the work queued up to its last item, priced
    at Stigg's rate budget. `seconds_for(root_field, count)` is how long `count` more calls
    of that mutation take within the budget; the slowest mutation decides."""
    needed: Counter[str] = Counter()
    for operation, count in queue_ahead.items():
        action = actions.get(operation)
        for field in action.stigg_mutations if action else ():
            needed[field] += count
    seconds = max((seconds_for(field, count) for field, count in needed.items()), default=0.0)
    return min(MAX_RETRY_AFTER_S, max(MIN_RETRY_AFTER_S, math.ceil(seconds)))


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
