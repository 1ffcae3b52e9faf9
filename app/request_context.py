"""The request ID lives in a context variable so every log line and error can carry it."""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
# What every log line about the current request carries besides its ID.
_request_fields: ContextVar[dict | None] = ContextVar("request_fields", default=None)

# A caller-supplied X-Request-Id is echoed only when it is short and harmless.
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def new_request_id(supplied: str | None = None) -> str:
    request_id = supplied if supplied and _SAFE_REQUEST_ID.match(supplied) else uuid.uuid4().hex
    _request_id.set(request_id)
    return request_id


def current_request_id() -> str | None:
    return _request_id.get()


def bind_request_fields(**fields) -> None:
    """Attach fields (operation, Salesforce IDs, ...) to every later log line of this request."""
    current = dict(_request_fields.get() or {})
    current.update({name: value for name, value in fields.items() if value is not None})
    _request_fields.set(current)


def current_request_fields() -> dict:
    return _request_fields.get() or {}


def clear_request_id() -> None:
    _request_id.set(None)
    _request_fields.set(None)
