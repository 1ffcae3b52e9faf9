"""A write transaction on the pool's own DBAPI connection, for the writes every request makes.

Every request commits one transaction before any work (its provisioning-log row, its key's
claim and the outcomes carried along: app/store/group_commit.py), and each of its
statements already runs on the driver's cursor (app/store/driver_statement.py). What was
left of SQLAlchemy around them, a `Connection` with its `Transaction` and their events, cost
about 250 us of a credit grant's CPU on the bench machine (bench/parts.py), more than the
row's INSERT. Here the transaction is the driver's: a connection checked out of the same
pool (its checkout and check-in events still run: the ping of a connection idle for a
second, the rollback on return), `BEGIN IMMEDIATE` on SQLite as the engine's own `begin`
event issues it, the writes, `commit()`.

Failures are what `transaction()` would have made of them: an outage (the driver's
OperationalError and the like, a pool timeout) is a StoreError, and a connection that broke
is invalidated so the pool never hands it out again; a statement the database refuses
propagates as SQLAlchemy's exception (DriverStatement wraps them).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError

from app.store.errors import database_errors_as_store_error


class DriverConnection:
    """What a DriverStatement takes of a SQLAlchemy Connection: the dialect, and the DBAPI
    connection (`connection`), always inside the transaction `driver_transaction` opened."""

    __slots__ = ("connection", "dialect")

    def __init__(self, connection: Any, dialect: Dialect) -> None:
        self.connection = connection
        self.dialect = dialect

    def in_transaction(self) -> bool:
        return True

    def begin(self) -> None:
        raise RuntimeError("a driver transaction is already open")


@contextlib.contextmanager
def driver_transaction(engine: Engine) -> Iterator[DriverConnection]:
    """Yields a DriverConnection; commits when the block ends, rolls back if it raises.

    Raises StoreError when the database is unreachable or fails to begin or commit."""
    dialect = engine.dialect
    dbapi_error = dialect.loaded_dbapi.Error
    with database_errors_as_store_error(engine):
        pooled = engine.raw_connection()
        try:
            try:
                if dialect.name == "sqlite":
                    pooled.driver_connection.begin_immediate()
                yield DriverConnection(pooled, dialect)
                pooled.commit()
            except dbapi_error as error:  # BEGIN or COMMIT: the statements wrap their own
                raise DBAPIError.instance("BEGIN or COMMIT", None, error, dbapi_error) from error
        except BaseException as error:
            _roll_back(pooled, dialect, error)
            raise
        finally:
            pooled.close()  # back to the pool


def _roll_back(pooled: Any, dialect: Dialect, error: BaseException) -> None:
    """Roll back; a connection that broke (or cannot even roll back) is invalidated."""
    original = error.orig if isinstance(error, DBAPIError) else error
    broke = isinstance(original, dialect.loaded_dbapi.Error) and dialect.is_disconnect(
        original, pooled.dbapi_connection, None
    )
    if not broke:
        try:
            pooled.rollback()
            return
        except dialect.loaded_dbapi.Error:
            pass
    pooled.invalidate(original if isinstance(original, Exception) else None)
