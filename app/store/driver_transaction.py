"""A write transaction on the pool's own DBAPI connection, for the writes every request makes.

Every request commits one transaction before any work (its provisioning-log row, its key's
claim and the outcomes carried along: app/store/group_commit.py), and each of its
statements already runs on the driver's cursor (app/store/driver_statement.py). What was
left of SQLAlchemy around them, a `Connection` with its `Transaction` and their events, cost
about 250 us of a credit grant's CPU on the bench machine (bench/parts.py), more than the
row's INSERT. Here the transaction is the driver's: a connection checked out of the same
pool (its checkout and check-in events still run: the ping of a connection idle for a
second, the rollback on return), `BEGIN IMMEDIATE` on SQLite as the engine's own `begin`
event issues it, the writes, `commit()`. On PostgreSQL the BEGIN, the statements and the
COMMIT go out in as few messages as the reads allow (app/store/postgres_script.py), on the
connection switched to psycopg's autocommit for the while and switched back before it
returns to the pool.

Failures are what `transaction()` would have made of them: an outage (the driver's
OperationalError and the like, a pool timeout) is a StoreError, and a connection that broke
is invalidated so the pool never hands it out again; a statement the database refuses
propagates as SQLAlchemy's exception (DriverStatement wraps them).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError

from app.store.errors import database_errors_as_store_error

if TYPE_CHECKING:
    from app.store.postgres_script import PostgresScript


class DriverConnection:
    """What a DriverStatement takes of a SQLAlchemy Connection: the dialect, and the DBAPI
    connection (`connection`), always inside the transaction `driver_transaction` opened.
    On PostgreSQL the statements go through `script` (app/store/postgres_script.py)."""

    __slots__ = ("connection", "dialect", "script")

    def __init__(
        self, connection: Any, dialect: Dialect, script: PostgresScript | None = None
    ) -> None:
        self.connection = connection
        self.dialect = dialect
        self.script = script

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
        script = None
        try:
            try:
                if dialect.name == "postgresql":
                    # Here, not at the top: psycopg is only installed with PostgreSQL.
                    from app.store.postgres_script import PostgresScript

                    # psycopg would send a BEGIN of its own: the script's first message has it.
                    pooled.driver_connection.autocommit = True
                    script = PostgresScript(pooled.driver_connection, pooled.info)
                elif dialect.name == "sqlite":
                    pooled.driver_connection.begin_immediate()
                yield DriverConnection(pooled, dialect, script)
                if script is not None:
                    script.commit()
                else:
                    pooled.commit()
            except dbapi_error as error:  # BEGIN or COMMIT: the statements wrap their own
                raise DBAPIError.instance("BEGIN or COMMIT", None, error, dbapi_error) from error
        except BaseException as error:
            _roll_back(pooled, dialect, error)
            raise
        finally:
            if script is not None:
                _end_script(pooled, script, dialect)
            pooled.close()  # back to the pool


def _end_script(pooled: Any, script: PostgresScript, dialect: Dialect) -> None:
    """Back to what the pool's users expect: psycopg's own transactions."""
    script.close()
    if pooled.dbapi_connection is None:
        return  # invalidated: never handed out again
    try:
        pooled.driver_connection.autocommit = False
    except dialect.loaded_dbapi.Error as error:
        pooled.invalidate(error)


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
