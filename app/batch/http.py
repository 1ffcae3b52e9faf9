"""The HTTP shell of batches: `POST /v1/batches` and `GET /v1/batches/{batchId}`.

The batch request itself is accounted for like a single call: a provisioning-log row, and
its own Idempotency-Key (resubmitting it returns the same batch, as it stands now).
"""

from __future__ import annotations

import re
import time

from flask import Flask, Response, current_app, g, request

from app.auth import authenticate
from app.batch.documents import batch_status, document, estimate_retry_after_s
from app.batch.submission import submit
from app.errors import ActionError
from app.execution import Outcome
from app.pipeline import read_idempotency_key, read_json_object, respond
from app.store import fingerprint
from app.store.batches import CREATE_BATCH_OPERATION

OPERATION = CREATE_BATCH_OPERATION
_WAIT = re.compile(r"^\s*wait\s*=\s*\"?(\d{1,6})\"?\s*$", re.IGNORECASE)


def register_batches(app: Flask) -> None:
    app.add_url_rule(
        "/v1/batches",
        endpoint=OPERATION,
        view_func=create_batch,
        methods=["POST"],
        provide_automatic_options=False,
    )
    app.add_url_rule(
        "/v1/batches/<batch_id>",
        endpoint="getBatch",
        view_func=get_batch,
        methods=["GET"],
        provide_automatic_options=False,
    )


def create_batch() -> Response:
    runtime = current_app.extensions["runtime"]
    settings = runtime.settings.batch
    caller = authenticate(request.headers.get("Authorization"), runtime.settings.caller_keys)
    g.outcome_logged = True
    key = None
    try:
        key = read_idempotency_key()
        request.max_content_length = settings.max_body_bytes
        body = read_json_object(settings.max_body_bytes)
    except ActionError as error:
        runtime.executor.refuse(
            OPERATION,
            caller_key_id=caller.key_id,
            error=error,
            idempotency_key=key,
            correlation_id=g.get("correlation_id"),
        )
        raise
    # Raises (logged, or the store is down) when this key must not run again.
    entry, replay = runtime.ledger.open(
        operation=OPERATION,
        caller_key_id=caller.key_id,
        payload=None,
        idempotency_key=key,
        fingerprint=fingerprint(body),
        correlation_id=g.get("correlation_id"),
    )
    if replay is not None:
        if replay.status != 202:
            return respond(Outcome(replay.status, replay.body, replayed=True))
        return _answer(replay.body["batchId"], wait_s=_preferred_wait_s(), replayed=True)
    try:
        submitted = submit(
            executor=runtime.executor,
            batches=runtime.store.batches,
            caller_key_id=caller.key_id,
            body=body,
            max_items=settings.max_items,
        )
    except ActionError as error:
        entry.failed(error)
        raise
    except Exception:
        entry.crashed()
        raise
    entry.succeeded({"batchId": submitted.batch_id}, status=202)
    worker = current_app.extensions.get("batch_worker")
    if worker is not None:
        worker.notify()
    return _answer(submitted.batch_id, wait_s=_preferred_wait_s())


def get_batch(batch_id: str) -> Response:
    runtime = current_app.extensions["runtime"]
    caller = authenticate(request.headers.get("Authorization"), runtime.settings.caller_keys)
    found = runtime.store.batches.get(batch_id) if len(batch_id) <= 40 else None
    if found is None or found[0]["caller_key_id"] != caller.key_id:
        # Another caller's batch is as good as absent: its existence is not ours to tell.
        raise ActionError(404, "NOT_FOUND", f"No batch {batch_id!r} for this API key.")
    return _answer(batch_id, wait_s=0, status_when_running=200, read=found)


def _answer(
    batch_id: str,
    *,
    wait_s: float,
    status_when_running: int = 202,
    read: tuple[dict, list[dict]] | None = None,
    replayed: bool = False,
) -> Response:
    """The batch document once every item finished or `wait_s` passed: 200 when complete.
    `read`: the batch as the caller just read it, answered as it is when there is no wait."""
    runtime = current_app.extensions["runtime"]
    batches = runtime.store.batches
    deadline = time.monotonic() + wait_s
    pause_s = 0.05
    # While waiting, a count; the whole batch (up to BATCH_MAX_ITEMS rows) is read once.
    while time.monotonic() < deadline and batches.unfinished_in(batch_id):
        time.sleep(min(pause_s, max(0.0, deadline - time.monotonic())))
        pause_s = min(pause_s * 2, 0.5)
    batch, rows = read if read is not None and not wait_s else batches.get(batch_id)
    retry_after_s = None
    if batch_status(rows) != "COMPLETED":
        retry_after_s = _estimate_retry_after_s(runtime, rows)
    body = document(batch, rows, retry_after_s=retry_after_s)
    headers = {"Location": f"/v1/batches/{batch_id}"}
    if retry_after_s is not None:
        headers["Retry-After"] = str(retry_after_s)
    if wait_s:
        headers["Preference-Applied"] = f"wait={int(wait_s)}"
    status = 200 if retry_after_s is None else status_when_running
    return respond(Outcome(status, body, headers, replayed=replayed))


def _estimate_retry_after_s(runtime, rows: list[dict]) -> int:
    last_item_id = max(row["id"] for row in rows)
    queue = runtime.store.batches.queue_ahead(last_item_id)
    return estimate_retry_after_s(queue, runtime.executor.actions, runtime.rate_budget_seconds)


def _preferred_wait_s() -> float:
    """RFC 7240 `Prefer: wait=N`, capped at BATCH_MAX_WAIT_S; other preferences ignored."""
    cap = current_app.extensions["runtime"].settings.batch.max_wait_s
    for preference in request.headers.get("Prefer", "").split(","):
        matched = _WAIT.match(preference.split(";")[0])
        if matched:
            return min(float(matched.group(1)), cap)
    return 0.0
