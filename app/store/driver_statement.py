"""A statement run on the driver's cursor, for the few every request makes.

Every request writes its provisioning-log row before any work and its outcome after, and a
request with an Idempotency-Key also claims the key and keeps its answer: two to four
statements per request, on SQLite and PostgreSQL alike. Executing a Core statement costs
SQLAlchemy about 30 µs on top of the driver's own work (its execution context, parameter
processing, result object), a third of what inserting the row costs in all (bench/README.md).

A DriverStatement is still SQLAlchemy's: the statement is built from the table, compiled by
the connection's dialect (once per dialect), and its values go through the column types'
own bind processors (`TypeEngine.bind_processor`), so what lands in the database is exactly
what `Connection.execute` would have written. Only the execution goes straight to the
DBAPI cursor of the SQLAlchemy connection, inside its transaction. A driver error is
wrapped as SQLAlchemy would wrap it (`DBAPIError.instance`: OperationalError,
IntegrityError, ...), so an outage still becomes a StoreError and a constraint violation
still propagates as a bug.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.expression import Executable

# Paramstyles that take a sequence in the compiled order, not a mapping by name.
_POSITIONAL = ("qmark", "numeric", "format")


@dataclass(frozen=True)
class Executed:
    rowcount: int  # rows inserted, updated or deleted
    first_row: tuple | None  # a RETURNING statement's (first) row


@dataclass(frozen=True)
class Prepared:
    """A statement as PREPARE takes it: `sql` with $1, $2... for the values of `order`."""

    name: str
    sql: str
    order: tuple[str, ...]


@dataclass(frozen=True)
class _Compiled:
    sql: str
    order: tuple[str, ...] | None  # the parameter names in positional order
    processors: dict[str, Any]  # name -> the column type's bind processor
    literals: dict[str, Any]  # name -> value, for the statement's own literals
    names: frozenset[str]  # every parameter the statement takes
    prepared: Prepared | None = None  # on PostgreSQL: the form PREPARE takes


class DriverStatement:
    """`statement` (an INSERT, UPDATE or DELETE), run with values for its `columns` (the
    columns an INSERT or UPDATE sets from values of the same name: SQLAlchemy's
    `column_keys`) and for its named `bindparam`s. Literals in the statement keep their
    values.

    Thread-safe: the compiled form per dialect is built once and never changes."""

    def __init__(self, statement: Executable, columns: Sequence[str] = ()) -> None:
        self._statement = statement
        self._columns = list(columns)
        self._by_dialect: dict[str, _Compiled] = {}

    def execute(self, connection: Connection, values: dict[str, Any]) -> Executed:
        """Run with `values` (every key, None for NULL) in `connection`'s transaction."""
        if getattr(connection, "script", None) is not None:
            pending = self.execute_later(connection, values)  # reading it sends it
            return Executed(pending.rowcount, pending.first_row)
        compiled, parameters = self._parameters(connection, values)
        dbapi_error = connection.dialect.loaded_dbapi.Error
        cursor = connection.connection.cursor()
        try:
            cursor.execute(compiled.sql, parameters)
            first_row = cursor.fetchone() if cursor.description else None
            return Executed(cursor.rowcount, first_row)
        except dbapi_error as error:
            raise DBAPIError.instance(compiled.sql, parameters, error, dbapi_error) from error
        finally:
            cursor.close()

    def execute_later(self, connection: Connection, values: dict[str, Any]) -> Any:
        """`execute`, for a caller that reads the result later or never. In a PostgreSQL
        driver transaction (app/store/postgres_script.py) the statement waits, and goes to
        the server when its result (a `Pending`: `rowcount`, `first_row`) is first read, or
        with a later statement's message, at the latest with the COMMIT; an error it causes
        is raised there. Elsewhere it runs at once."""
        script = getattr(connection, "script", None)
        if script is None:
            return self.execute(connection, values)
        compiled, parameters = self._parameters(connection, values)
        dbapi_error = connection.dialect.loaded_dbapi.Error
        try:
            return script.add(compiled.sql, parameters, compiled.prepared)
        except dbapi_error as error:  # a value the driver cannot adapt, or a broken connection
            raise DBAPIError.instance(compiled.sql, parameters, error, dbapi_error) from error

    def _parameters(self, connection: Connection, values: dict[str, Any]) -> tuple[_Compiled, Any]:
        """The compiled statement, and `values` as its driver takes them."""
        if not connection.in_transaction():
            # What SQLAlchemy's autobegin does on a connection's first statement; without it
            # the driver would run this outside any transaction SQLAlchemy knows of (and
            # SQLAlchemy's rollback on return to the pool would drop it on PostgreSQL).
            connection.begin()
        dialect = connection.dialect
        compiled = self._by_dialect.get(dialect.name) or self._compile(dialect)
        if not values.keys() <= compiled.names:
            # The driver would drop it without a word (a positional statement takes only
            # its own parameters): a value added to a call but not to `columns`.
            unknown = ", ".join(sorted(values.keys() - compiled.names))
            raise ValueError(f"DriverStatement takes no parameter {unknown}: add it to `columns`")
        processors = compiled.processors
        if compiled.literals:
            values = compiled.literals | values
        bound = {
            name: processor(value) if (processor := processors.get(name)) else value
            for name, value in values.items()
        }
        if compiled.order is not None:
            return compiled, tuple(bound[name] for name in compiled.order)
        return compiled, bound

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self._statement.compile(dialect=dialect, column_keys=self._columns)
        processors = {
            name: processor
            for name, bind in compiled.binds.items()
            if (processor := bind.type.dialect_impl(dialect).bind_processor(dialect))
        }
        # `state == "in_progress"`, `.values(state="completed")`: binds that carry a value
        literals = {name: bind.value for name, bind in compiled.binds.items() if not bind.required}
        # A column default (`default=`, `onupdate=`) is computed by SQLAlchemy's execution,
        # which this skips: such a column would silently be written NULL.
        table = getattr(self._statement, "table", None)
        defaulted = {
            column.key
            for column in (table.columns if table is not None else ())
            if column.default is not None or column.onupdate is not None
        }
        unfilled = sorted(name for name in defaulted & literals.keys() if literals[name] is None)
        if unfilled:
            raise ValueError(
                f"DriverStatement does not apply column defaults: give {', '.join(unfilled)} "
                "a value (list it in `columns`)"
            )
        order = tuple(compiled.positiontup or ()) if dialect.paramstyle in _POSITIONAL else None
        names = frozenset(compiled.binds)
        prepared = self._prepared_form(dialect, names) if dialect.name == "postgresql" else None
        found = _Compiled(compiled.string, order, processors, literals, names, prepared)
        self._by_dialect[dialect.name] = found
        return found

    def _prepared_form(self, dialect: Dialect, names: frozenset[str]) -> Prepared | None:
        """The statement with $1, $2... (PREPARE's placeholders), compiled by the same
        dialect; named by a hash of that SQL."""
        numbered = self._statement.compile(
            dialect=type(dialect)(paramstyle="numeric_dollar"), column_keys=self._columns
        )
        order = tuple(numbered.positiontup or ())
        if not set(order) <= names or "POSTCOMPILE" in numbered.string:
            # Compiled otherwise than the statement it stands for, or completed per call
            # (an expanding IN): sent as text.
            return None
        digest = hashlib.sha256(numbered.string.encode()).hexdigest()[:24]
        return Prepared(f"stigg_flow_actions_{digest}", numbered.string, order)
