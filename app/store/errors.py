"""The one exception the storage layer raises, and how database failures become it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import URL, Connection, Engine, make_url
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError


class StoreError(Exception):
    """The database cannot be used: unreachable, locked, unmigratable, unknown revision.

    The message is one line, ``database at <url, password hidden>: <why>``, fit to print
    at start-up or to log. At request time the pipeline answers it with a retryable 503;
    callers never need to know SQLAlchemy's exception types.

    Only an outage becomes a StoreError. A constraint violation or a value the database
    refuses is a bug in this service: it propagates as it is, so the request fails as an
    internal error (logged in full) instead of telling callers to retry an outage that
    will never end.
    """


def describe(url: str | URL) -> str:
    """The URL as it may appear in messages and logs: password hidden."""
    return make_url(url).render_as_string(hide_password=True)


def first_line(error: BaseException | None) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


# What an unreachable, locked, restarting or overloaded database raises.
OUTAGE_ERRORS = (OperationalError, InterfaceError, PoolTimeoutError)


@contextmanager
def database_errors_as_store_error(engine: Engine) -> Iterator[None]:
    try:
        yield
    except OUTAGE_ERRORS as error:
        cause = getattr(error, "orig", None) or error
        raise StoreError(f"database at {describe(engine.url)}: {first_line(cause)}") from error


@contextmanager
def transaction(engine: Engine, connection: Connection | None = None) -> Iterator[Connection]:
    """`connection` when the caller already has a transaction open (several writes of one
    request commit together), else a transaction of its own; outages as StoreError."""
    if connection is not None:
        yield connection
        return
    with database_errors_as_store_error(engine), engine.begin() as own:
        yield own
