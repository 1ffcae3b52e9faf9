"""A PostgreSQL write transaction sent in as few round trips as its reads allow.

Every request commits one transaction before any work (app/store/group_commit.py): BEGIN,
the outcomes carried from the requests answered just before (UPDATEs and DELETEs whose row
counts nobody reads), the request's row (an INSERT whose id is read), for a keyed request
its key's claim (whose row count is read), and COMMIT. Sent one at a time that was four
round trips for a request without a key, each costing psycopg about 100 us of CPU and the
server a wake-up on the bench machine (bench/README.md). Here a statement whose result is
not read waits, and goes out with the next statement whose result is read, or with the
COMMIT, in one simple-query message: BEGIN and the carried outcomes travel with the row's
INSERT, and a request without a key takes two round trips.

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

    __slots__ = ("_cursor", "_waiting", "messages")

    def __init__(self, connection: psycopg.Connection) -> None:
        self._cursor = psycopg.ClientCursor(connection)
        # (the statement as compiled, as sent), not yet sent
        self._waiting: list[tuple[str, str]] = [("BEGIN", "BEGIN")]
        self.messages = 0  # messages sent to the server: round trips

    def render(self, sql: str, parameters: Any) -> str:
        """`sql` (psycopg's placeholders) with `parameters` as literals."""
        return self._cursor.mogrify(sql, parameters)

    def send_later(self, compiled: str, rendered: str) -> None:
        """Queue a statement whose result nobody reads."""
        self._waiting.append((compiled, rendered))

    def execute(self, compiled: str, rendered: str) -> tuple[int, tuple | None]:
        """Send the waiting statements and this one; this one's row count and first row."""
        self._waiting.append((compiled, rendered))
        cursor = self._send()
        return cursor.rowcount, cursor.fetchone() if cursor.description else None

    def commit(self) -> None:
        self._waiting.append(("COMMIT", "COMMIT"))
        self._send()

    def close(self) -> None:
        self._cursor.close()

    def _send(self) -> psycopg.ClientCursor:
        """Raises SQLAlchemy's DBAPIError (OperationalError, IntegrityError, ...)."""
        waiting, self._waiting = self._waiting, []
        message = ";\n".join(rendered for _compiled, rendered in waiting)
        self.messages += 1
        cursor = self._cursor
        try:
            cursor.execute(message)  # no parameters: sent as it is, one simple query
        except psycopg.Error as error:
            described = ";\n".join(compiled for compiled, _rendered in waiting)
            raise DBAPIError.instance(described, None, error, psycopg.Error) from error
        while cursor.nextset():  # to the last statement's result
            pass
        return cursor
