"""The HTTP shell of every action: the routes generated from ACTIONS.

auth → Idempotency-Key and body read (media type, size, JSON, depth) → the executor
(app/execution.py: log row, validation, idempotency, Stigg) → JSON response. Each HTTP-level
step that fails raises ActionError; the error handlers render it.
"""

from __future__ import annotations

import json
import re

from flask import Flask, Response, current_app, g, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from actions.action import Action
from app.auth import authenticate
from app.errors import ActionError, FieldError, validation_failed
from app.execution import Outcome

# The IETF draft allows any string; we keep keys printable and bounded since they are
# stored and logged.
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")

# No action body nests more than 3 levels (body → addons → item); anything far deeper is
# an attack or a bug, refused before any code walks it.
MAX_JSON_DEPTH = 32

_READ_CHUNK_BYTES = 64 * 1024


def register_actions(app: Flask, actions: list[Action]) -> None:
    for action in actions:
        app.add_url_rule(
            action.path,
            endpoint=action.operation_id,
            view_func=_make_view(action),
            methods=["POST"],
            # OPTIONS gets the JSON 405 (with Allow), like every other answer here.
            provide_automatic_options=False,
        )


def _make_view(action: Action):
    def view():
        runtime = current_app.extensions["runtime"]
        caller = authenticate(request.headers.get("Authorization"), runtime.settings.caller_keys)
        try:
            idempotency_key = read_idempotency_key()
            body = read_json_object(runtime.settings.max_body_bytes)
        except ActionError as error:
            runtime.executor.refuse(
                action.operation_id,
                caller_key_id=caller.key_id,
                error=error,
                correlation_id=g.get("correlation_id"),
            )
            raise
        outcome = runtime.executor.run(
            action.operation_id,
            caller_key_id=caller.key_id,
            payload=body,
            idempotency_key=idempotency_key,
            correlation_id=g.get("correlation_id"),
        )
        g.outcome_logged = True
        return respond(outcome)

    view.__name__ = action.operation_id
    return view


def respond(outcome: Outcome) -> Response:
    response = jsonify(outcome.body)
    response.status_code = outcome.status
    response.headers.update(outcome.headers)
    if outcome.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


def read_json_object(max_bytes: int) -> dict:
    """The body as a JSON object, or ActionError: 413 over `max_bytes` whether or not a
    Content-Length was sent (a chunked body is read up to the limit, never cut at it)."""
    too_large = ActionError(
        413, "PAYLOAD_TOO_LARGE", f"The request body is larger than {max_bytes} bytes."
    )
    if request.content_length is not None and request.content_length > max_bytes:
        raise too_large
    if request.mimetype != "application/json":
        raise ActionError(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            f"Send the body as application/json (got {request.mimetype or 'no Content-Type'}).",
        )
    raw = read_body(max_bytes)
    if raw is None:
        raise too_large
    return parse_json_object(raw)


def read_body(max_bytes: int) -> bytes | None:
    """At most `max_bytes` of the body; None if there is more."""
    chunks: list[bytes] = []
    total = 0
    try:
        stream = request.stream
        while total <= max_bytes:
            chunk = stream.read(min(_READ_CHUNK_BYTES, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except RequestEntityTooLarge:
        return None
    except ActionError:
        raise  # a body that trickles past REQUEST_READ_TIMEOUT_S: 408 (app/serving.py)
    except Exception as exc:
        # The server could not decode the body (a broken chunk size, say): the caller's
        # mistake, never a 500.
        raise ActionError(
            400,
            "MALFORMED_REQUEST",
            f"The request body could not be read ({type(exc).__name__}).",
        ) from None
    return None if total > max_bytes else b"".join(chunks)


def parse_json_object(raw: bytes) -> dict:
    try:
        body = json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:
        raise _too_deep() from None
    except ValueError as exc:
        position = getattr(exc, "pos", None)
        where = f" at character {position}" if position is not None else ""
        raise ActionError(400, "MALFORMED_JSON", f"The body is not valid JSON{where}.") from None
    if not isinstance(body, dict):
        raise validation_failed([FieldError("body", "The body must be a JSON object.")])
    if json_depth(body) > MAX_JSON_DEPTH:
        raise _too_deep()
    return body


def _refuse_constant(name: str):
    # NaN and Infinity are not JSON (Python's parser accepts them by default).
    raise ValueError(f"{name} is not a JSON value")


def _too_deep() -> ActionError:
    return ActionError(
        400,
        "MALFORMED_JSON",
        f"The body nests objects or arrays more than {MAX_JSON_DEPTH} levels deep.",
    )


def json_depth(value) -> int:
    """How deeply objects and arrays nest (a scalar is 0), without recursion."""
    deepest = 0
    pending = [(value, 1)]
    while pending:
        node, depth = pending.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_JSON_DEPTH:
            return deepest
        pending.extend((child, depth + 1) for child in children)
    return deepest


def read_idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    key = key.strip().strip('"')
    if not _IDEMPOTENCY_KEY.match(key):
        raise validation_failed(
            [
                FieldError(
                    "Idempotency-Key",
                    "Must be 1 to 255 printable characters without spaces.",
                )
            ]
        )
    return key
