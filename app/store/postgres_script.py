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
"""

from __future__ import annotations

from typing import Any

import psycopg
from sqlalchemy.exc import DBAPIError


class PostgresScript:
    """The statements of one transaction on a psycopg connection in autocommit mode (so
    that psycopg does not send a BEGIN of its own: the first message carries ours)."""

    __slots__ = ("_cursor", "_waiting")

    def __init__(self, connection: psycopg.Connection) -> None:
        self._cursor = psycopg.ClientCursor(connection)
        # (the statement as compiled, as sent, where its result goes), not yet sent
        self._waiting: list[tuple[str, str, Pending | None]] = [("BEGIN", "BEGIN", None)]

    def render(self, sql: str, parameters: Any) -> str:
        """`sql` (psycopg's placeholders) with `parameters` as literals."""
        return self._cursor.mogrify(sql, parameters)

    def add(self, compiled: str, rendered: str) -> Pending:
        """Queue a statement; its result, sent (with whatever waits) when first read."""
        pending = Pending(self)
        self._waiting.append((compiled, rendered, pending))
        return pending

    def send_waiting(self) -> None:
        if self._waiting:
            self._send()

    def commit(self) -> None:
        self._waiting.append(("COMMIT", "COMMIT", None))
        self._send()

    def close(self) -> None:
        self._cursor.close()

    def _send(self) -> None:
        """Raises SQLAlchemy's DBAPIError (OperationalError, IntegrityError, ...)."""
        waiting, self._waiting = self._waiting, []
        message = ";\n".join(rendered for _compiled, rendered, _pending in waiting)
        cursor = self._cursor
        try:
            cursor.execute(message)  # no parameters: sent as it is, one simple query
        except psycopg.Error as error:
            described = ";\n".join(compiled for compiled, _rendered, _pending in waiting)
            raise DBAPIError.instance(described, None, error, psycopg.Error) from error
        # One result per statement, in order.
        for index, (_compiled, _rendered, pending) in enumerate(waiting):
            if index:
                cursor.nextset()
            if pending is not None:
                first_row = cursor.fetchone() if cursor.description else None
                pending.executed = (cursor.rowcount, first_row)


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
