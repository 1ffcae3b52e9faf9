"""The request ID lives in a context variable so every log line and error can carry it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from app.ids import time_ordered_id

_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
# What every log line about the current request carries besides its ID.
_request_fields: ContextVar[dict | None] = ContextVar("request_fields", default=None)

# A caller's X-Request-Id is kept (as a correlation ID) only when short and harmless.
_SAFE_CORRELATION_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")


def new_request_id() -> str:
    """Start a request: request IDs are always ours, so they are unique (the log keys on
    them; time-ordered, see app/ids.py). A caller's own ID is a correlation ID
    (`correlation_id`)."""
    return set_request_id(time_ordered_id())


def set_request_id(request_id: str) -> str:
    _request_id.set(request_id)
    _request_fields.set(None)
    return request_id


def correlation_id(supplied: str | None) -> str | None:
    """The caller's X-Request-Id if it is one we can safely log and echo; else None."""
    if supplied and _SAFE_CORRELATION_ID.match(supplied.strip()):
        return supplied.strip()
    return None


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


@contextmanager
def request_of_its_own() -> Iterator[str]:
    """Run a nested unit of work (a batch item) under a request ID of its own, then go back
    to the enclosing request's ID and fields."""
    saved_id, saved_fields = _request_id.get(), _request_fields.get()
    try:
        yield new_request_id()
    finally:
        _request_id.set(saved_id)
        _request_fields.set(saved_fields)
