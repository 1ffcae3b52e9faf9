"""A PostgreSQL write transaction sent in as few round trips as its reads allow.

Every request commits one transaction before any work (app/store/group_commit.py): BEGIN,
the outcomes carried from the requests answered just before (UPDATEs and DELETEs whose row
counts nobody reads), the request's row (an INSERT whose id is read), for a keyed request
its key's claim (whose row count is read), and COMMIT. Sent one at a time that was four
round trips for a request without a key, each costing psycopg about 100 us of CPU and the
server a wake-up on the bench machine (bench/README.md). Here a statement whose result is
not read waits, and goes out with the next statement whose result is read, or with the
COMMIT, in one simple-query message. The ledger reads the row's id and the key's claim only
after the commit, so a request's whole transaction is one round trip.

The values are put into the text by psycopg's client-side binding (`ClientCursor.mogrify`:
the adapters of server-side binding, literals quoted by libpq's rules), never by string
formatting. The server runs a message's statements in order and stops at the first one it
refuses; that aborts the transaction, and the error is raised where the message is sent
(the next read, or the COMMIT). The caller then rolls back, as after any failed statement.

An error names the statements of its message as compiled (placeholders, not values): the
values of a whole message can be a request's entire payload.

A statement compiled for it (DriverStatement's `Prepared`) is PREPAREd once per connection,
in a message of its own before the connection's first transaction that uses it, and a
transaction's first message (every request's whole transaction) then carries `EXECUTE
name(values)`: the server no longer parses and
plans the statement every time, which was a quarter to a third of its CPU per request
(bench/README.md, "What changed on 2026-12-02, evening"). The name is a hash of the SQL, so
a server connection that already holds it holds the same statement. A prepared statement
lives on the server connection, and a transaction pooler hands those from client to client:
when an EXECUTE finds no such statement (SQLSTATE 26000) in a transaction's first message,
that message is rolled back, sent again with the values as literals, and the connection
never prepares again. `prepare_threshold=none` in DATABASE_URL turns preparing off from the
start.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
from sqlalchemy.exc import DBAPIError

from app.store.driver_statement import Prepared

log = logging.getLogger(__name__)

# Where a pooled connection keeps what it has prepared (SQLAlchemy's per-connection `info`,
# cleared when the connection is invalidated and replaced).
_PREPARED_INFO_KEY = "stigg_flow_actions.prepared"


@dataclass
class PreparedOnConnection:
    names: set[str] = field(default_factory=set)
    disabled: bool = False  # a pooler lost them once, or DATABASE_URL said never


@dataclass
class _Statement:
    compiled: str  # as compiled (placeholders): what errors name
    parameters: Any  # for the compiled form
    rendered: str  # as sent: the compiled form or an EXECUTE, with literal values
    pending: Pending | None
    executes: bool = False  # `rendered` is an EXECUTE of a prepared statement


class PostgresScript:
    """The statements of one transaction on a psycopg connection in autocommit mode (so
    that psycopg does not send a BEGIN of its own: the first message carries ours).
    `info`: the pooled connection's own dictionary, where its prepared statements are
    remembered between transactions."""

    __slots__ = ("_connection", "_cursor", "_prepared", "_sent_any", "_waiting")

    def __init__(
        self, connection: psycopg.Connection, info: MutableMapping[str, Any] | None = None
    ) -> None:
        self._connection = connection
        self._cursor = psycopg.ClientCursor(connection)
        prepared = (info if info is not None else {}).setdefault(
            _PREPARED_INFO_KEY, PreparedOnConnection()
        )
        if connection.prepare_threshold is None:
            prepared.disabled = True
        self._prepared: PreparedOnConnection = prepared
        self._sent_any = False
        self._waiting: list[_Statement] = [_Statement("BEGIN", None, "BEGIN", None)]

    def add(self, compiled: str, parameters: Any, prepared: Prepared | None = None) -> Pending:
        """Queue a statement (`compiled`, psycopg's placeholders, with `parameters`); its
        result, sent (with whatever waits) when first read. Raises psycopg's error for a
        value it cannot adapt."""
        pending = Pending(self)
        statement = _Statement(compiled, parameters, "", pending)
        if prepared is not None and self._ready(prepared):
            statement.rendered = self._cursor.mogrify(
                f"EXECUTE {prepared.name}({', '.join(['%s'] * len(prepared.order))})",
                [parameters[name] for name in prepared.order],
            )
            statement.executes = True
        else:
            statement.rendered = self._cursor.mogrify(compiled, parameters)
        self._waiting.append(statement)
        return pending

    def send_waiting(self) -> None:
        if self._waiting:
            self._send()

    def commit(self) -> None:
        self._waiting.append(_Statement("COMMIT", None, "COMMIT", None))
        self._send()

    def close(self) -> None:
        self._cursor.close()

    def _ready(self, prepared: Prepared) -> bool:
        """Whether `prepared` can be EXECUTEd in this transaction, PREPAREd now if need be.
        Only in the transaction's first message: if the server connection turns out not to
        hold it, that message can be sent again as text, having changed nothing (a later
        one could not: what went before it would be lost). Before that message the
        connection is outside any transaction, where a PREPARE of its own can go."""
        state = self._prepared
        if state.disabled or self._sent_any:
            return False
        if prepared.name in state.names:
            return True
        try:
            self._cursor.execute(f"PREPARE {prepared.name} AS {prepared.sql}")
        except psycopg.errors.DuplicatePreparedStatement:
            pass  # the same name is the same SQL (a pooler's server connection had it)
        except psycopg.Error as error:
            if self._connection.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                raise  # the connection broke: the transaction fails as any would
            log.warning("could not prepare a statement; this connection sends text: %s", error)
            state.disabled = True
            return False
        state.names.add(prepared.name)
        return True

    def _send(self) -> None:
        """Raises SQLAlchemy's DBAPIError (OperationalError, IntegrityError, ...)."""
        waiting, self._waiting = self._waiting, []
        first = not self._sent_any
        self._sent_any = True
        try:
            self._execute(waiting)
        except psycopg.errors.InvalidSqlStatementName as error:
            if not (first and any(statement.executes for statement in waiting)):
                raise _wrapped(waiting, error) from error
            self._send_again_as_text(waiting, error)
        except psycopg.Error as error:
            raise _wrapped(waiting, error) from error

    def _send_again_as_text(self, waiting: list[_Statement], lost: psycopg.Error) -> None:
        """The transaction's first message, whose EXECUTE found no prepared statement: the
        server connection is not the one that prepared it (a transaction pooler). Nothing
        of the message took effect; it goes again with its values as literals."""
        log.warning(
            "PostgreSQL does not hold this connection's prepared statements (a transaction "
            "pooler?); the connection sends its statements as text from now on: %s",
            lost,
        )
        self._prepared.disabled = True
        self._prepared.names.clear()
        try:
            self._cursor.execute("ROLLBACK")
            for statement in waiting:
                if statement.executes:
                    statement.rendered = self._cursor.mogrify(
                        statement.compiled, statement.parameters
                    )
                    statement.executes = False
            self._execute(waiting)
        except psycopg.Error as error:
            raise _wrapped(waiting, error) from error

    def _execute(self, waiting: list[_Statement]) -> None:
        cursor = self._cursor
        # No parameters: sent as it is, one simple query.
        cursor.execute(";\n".join(statement.rendered for statement in waiting))
        # One result per statement, in order.
        for index, statement in enumerate(waiting):
            if index:
                cursor.nextset()
            if statement.pending is not None:
                first_row = cursor.fetchone() if cursor.description else None
                statement.pending.executed = (cursor.rowcount, first_row)


def _wrapped(waiting: list[_Statement], error: psycopg.Error) -> DBAPIError:
    described = ";\n".join(statement.compiled for statement in waiting)
    return DBAPIError.instance(described, None, error, psycopg.Error)


class Pending:
    """A statement's result (DriverStatement's `Executed`): reading it sends the statement,
    with those waiting before it, if it has not gone out yet."""

    __slots__ = ("_script", "executed")

    def __init__(self, script: PostgresScript) -> None:
        self._script = script
        self.executed: tuple[int, tuple | None] | None = None

    @property
    def rowcount(self) -> int:
        return self._result()[0]

    @property
    def first_row(self) -> tuple | None:
        return self._result()[1]

    def _result(self) -> tuple[int, tuple | None]:
        if self.executed is None:
            self._script.send_waiting()
        if self.executed is None:
            raise RuntimeError("the statement's transaction failed before it was sent")
        return self.executed
