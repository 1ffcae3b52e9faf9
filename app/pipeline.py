"""The request pipeline every action goes through, and the routes generated from ACTIONS.

auth → media type and size → JSON → schema load → handler → response dump. Each step that
fails raises ActionError; the error handlers render it.
"""

from __future__ import annotations

import json
import re

from flask import Flask, current_app, g, jsonify, request
from marshmallow import Schema, ValidationError

from actions.action import Action
from app.auth import authenticate
from app.config import Settings
from app.errors import ActionError, FieldError, validation_failed
from app.ledger import Ledger
from schemas.base import flatten_messages

# The IETF draft allows any string; we keep keys printable and bounded since they are
# stored and logged.
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


def register_actions(app: Flask, actions: list[Action]) -> None:
    for action in actions:
        app.add_url_rule(
            action.path,
            endpoint=action.operation_id,
            view_func=_make_view(action),
            methods=["POST"],
        )


def _make_view(action: Action):
    request_schema = action.request_schema()
    response_schema = action.response_schema()

    def view():
        settings: Settings = current_app.extensions["settings"]
        ledger: Ledger = current_app.extensions["ledger"]
        caller = authenticate(request.headers.get("Authorization"), settings.caller_keys)
        body = read_json_object(settings.max_body_bytes)
        idempotency_key = read_idempotency_key()
        entry = ledger.open(
            operation=action.operation_id,
            caller=caller,
            idempotency_key=idempotency_key,
            body=body,
            replay_of=read_replay_of(),
        )
        g.outcome_logged = True
        if entry.replay is not None:
            response = jsonify(entry.replay.body)
            response.status_code = entry.replay.status
            response.headers["Idempotent-Replayed"] = "true"
            return response
        stigg = current_app.extensions["stigg"].session()
        try:
            loaded = load(request_schema, body)
            result = action.handler(request=loaded, stigg=stigg, idempotency_key=idempotency_key)
            payload = response_schema.dump(result)
        except ActionError as error:
            entry.attempts = stigg.attempts
            entry.failed(error)
            raise
        except BaseException:
            entry.attempts = stigg.attempts
            entry.crashed()
            raise
        entry.attempts = stigg.attempts
        entry.succeeded(payload)
        return jsonify(payload)

    view.__name__ = action.operation_id
    return view


def read_json_object(max_bytes: int) -> dict:
    if request.content_length is not None and request.content_length > max_bytes:
        raise ActionError(
            413, "PAYLOAD_TOO_LARGE", f"The request body is larger than {max_bytes} bytes."
        )
    if request.mimetype != "application/json":
        raise ActionError(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            f"Send the body as application/json (got {request.mimetype or 'no Content-Type'}).",
        )
    raw = request.get_data(cache=False)
    if len(raw) > max_bytes:
        raise ActionError(
            413, "PAYLOAD_TOO_LARGE", f"The request body is larger than {max_bytes} bytes."
        )
    try:
        body = json.loads(raw)
    except ValueError as exc:
        position = getattr(exc, "pos", None)
        where = f" at character {position}" if position is not None else ""
        raise ActionError(400, "MALFORMED_JSON", f"The body is not valid JSON{where}.") from None
    if not isinstance(body, dict):
        raise validation_failed([FieldError("body", "The body must be a JSON object.")])
    return body


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


def read_replay_of() -> int | None:
    """`X-Replay-Of: <log entry id>` (sent by `stigg-flow-actions replay`) annotates the log."""
    value = request.headers.get("X-Replay-Of", "").strip()
    return int(value) if value.isdigit() and len(value) < 18 else None


def load(schema: Schema, body: dict) -> dict:
    try:
        return schema.load(body)
    except ValidationError as exc:
        hints = getattr(schema, "refused_field_hints", {})
        pairs = flatten_messages(exc.messages, hints)
        raise validation_failed([FieldError(field, message) for field, message in pairs]) from None
