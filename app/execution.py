"""Running one action for one caller: the one path every request takes.

An HTTP call, a batch item and a `replay` from the command line all come here, so each
gets the same validation, idempotency record, provisioning-log row and create-once
look-up. No Flask in here: the batch worker runs without it.

    log row → schema load → idempotency claim → handler (Stigg) → response dump
            → idempotency answer + log outcome
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from marshmallow import Schema, ValidationError

from actions.action import Action
from actions.once import CreationTag, key_for_request
from app.errors import ActionError, FieldError, validation_failed
from app.ledger import Ledger
from app.request_context import current_request_id, new_request_id
from app.stigg import StiggClient
from app.store import fingerprint
from schemas.base import flatten_messages

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What the caller is answered: a single action's status, body and extra headers."""

    status: int
    body: dict
    headers: dict[str, str] = field(default_factory=dict)
    replayed: bool = False

    @property
    def succeeded(self) -> bool:
        return self.status == 200

    @classmethod
    def of_error(cls, error: ActionError) -> Outcome:
        return cls(error.status, error.body(), dict(error.headers))


def internal_error() -> ActionError:
    return ActionError(
        500,
        "INTERNAL_ERROR",
        "Unexpected error in the service; it has been logged under this requestId.",
    )


class Executor:
    def __init__(self, *, actions: list[Action], ledger: Ledger, stigg: StiggClient):
        self.actions = {action.operation_id: action for action in actions}
        self.ledger = ledger
        self.stigg = stigg
        # Built once: marshmallow schemas hold no per-call state.
        self._schemas = {
            action.operation_id: (action.request_schema(), action.response_schema())
            for action in actions
        }

    def run(
        self,
        operation: str,
        *,
        caller_key_id: str,
        payload: Any,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
        replay_of: int | None = None,
        batch_item_id: int | None = None,
        session_options: dict | None = None,
    ) -> Outcome:
        """Run `operation` for this caller. Never raises for a failure of the request
        itself: every answer, error or not, is an Outcome (a bug is a 500 Outcome, logged)."""
        if current_request_id() is None:
            new_request_id()
        action = self.actions[operation]
        request = {
            "operation": operation,
            "caller_key_id": caller_key_id,
            "payload": payload,
            "idempotency_key": idempotency_key,
            "correlation_id": correlation_id,
            "replay_of": replay_of,
            "batch_item_id": batch_item_id,
        }
        try:
            # Validation first: it has no side effect, and the claim holds the loaded
            # request's fingerprint.
            loaded = self.load(operation, payload)
        except ActionError as error:
            self.ledger.refuse(error=error, **request)
            return Outcome.of_error(error)
        request_fingerprint = fingerprint(canonical(loaded))
        try:
            entry, replay = self.ledger.open(fingerprint=request_fingerprint, **request)
        except ActionError as error:
            return Outcome.of_error(error)
        if replay is not None:
            return Outcome(replay.status, replay.body, replayed=True)
        if entry.resumed and action.interrupted is not None:
            # The dead attempt may have reached Stigg, and nothing can tell (actions/action.py).
            error = action.interrupted()
            entry.failed(error)
            return Outcome.of_error(error)
        stigg = None
        try:
            tag = CreationTag(
                caller_key_id=caller_key_id,
                operation=operation,
                key=idempotency_key or key_for_request(current_request_id()),
                fingerprint=request_fingerprint,
                look_first=idempotency_key is not None,
            )
            stigg = self.stigg.session(**(session_options or {}))
            result = action.handler(request=loaded, stigg=stigg, tag=tag)
            body = self._schemas[operation][1].dump(result)
        except ActionError as error:
            entry.attempts = stigg.attempts if stigg else 0
            entry.failed(error)
            return Outcome.of_error(error)
        except Exception:
            log.exception("unexpected error", extra={"operation": operation})
            entry.attempts = stigg.attempts if stigg else 0
            entry.crashed()
            return Outcome.of_error(internal_error())
        except BaseException:
            # The process is going down (SystemExit, KeyboardInterrupt): leave the key free
            # for a retry, which looks for whatever this attempt may have created.
            entry.attempts = stigg.attempts if stigg else 0
            entry.crashed()
            raise
        entry.attempts = stigg.attempts
        entry.succeeded(body)
        return Outcome(200, body)

    def load(self, operation: str, payload: Any) -> dict:
        """The request loaded by the action's schema; ActionError (400) when invalid."""
        return load(self._schemas[operation][0], payload)

    def refuse(
        self,
        operation: str,
        *,
        caller_key_id: str,
        error: ActionError,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> None:
        """Log a request refused before its body could be read (too large, not JSON, ...),
        so every authenticated request leaves a row."""
        self.ledger.refuse(
            operation=operation,
            caller_key_id=caller_key_id,
            payload=None,
            error=error,
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
        )


def load(schema: Schema, payload: Any) -> dict:
    try:
        return schema.load(payload)
    except ValidationError as exc:
        hints = getattr(schema, "refused_field_hints", {})
        pairs = flatten_messages(exc.messages, hints)
        raise validation_failed([FieldError(field, message) for field, message in pairs]) from None


def canonical(value: Any) -> Any:
    """A loaded request as JSON-able data, for its fingerprint: dates in ISO 8601."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: canonical(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [canonical(item) for item in value]
    return value
