"""The provisioning log: one row per accepted request, from start to outcome.

A row is written with outcome ``in_progress`` before any work, and finished after. A row
still ``in_progress`` long after its request's deadline is a request that crashed
mid-way; it stays visible and can be replayed with its original Idempotency-Key.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, insert, or_, select, update

from app.store.driver_statement import DriverStatement
from app.store.errors import transaction
from app.store.models import LOG_OUTCOMES, ProvisioningLogEntry, utc_now

FINAL_OUTCOMES = tuple(outcome for outcome in LOG_OUTCOMES if outcome != "in_progress")

REDACTED = "[REDACTED]"

# A key is secret when, lower-cased with separators dropped, it contains one of these:
# "apiKey", "X-Api-Key", "authorization", "accessToken", "client_secret", "password"...
SECRET_KEY_MARKERS = ("apikey", "authorization", "token", "password", "passwd", "secret")

entries = ProvisioningLogEntry.__table__

# The two statements every request makes, run on the driver's cursor
# (app/store/driver_statement.py). The row's id comes back from RETURNING, which SQLite
# has had since 3.35 and PostgreSQL always.
_START_KEYS = (
    "request_id",
    "correlation_id",
    "operation",
    "caller_key_id",
    "idempotency_key",
    "salesforce_account_id",
    "salesforce_opportunity_id",
    "payload",
    "replay_of",
    "batch_item_id",
    "outcome",
    "attempts",
    "created_at",
)
_START = DriverStatement(insert(entries).returning(entries.c.id), _START_KEYS)
_FINISH_KEYS = (
    "outcome",
    "http_status",
    "error_code",
    "stigg_error_code",
    "message",
    "stigg_customer_id",
    "stigg_subscription_id",
    "stigg_credit_grant_id",
    "attempts",
    "duration_ms",
    "finished_at",
)
_FINISH = DriverStatement(
    update(entries).where(entries.c.id == bindparam("entry_id")), _FINISH_KEYS
)
_MARK_REPLAYED = DriverStatement(
    update(entries)
    .where(entries.c.id == bindparam("original_id"))
    .values(replayed_by=bindparam("replayed_by"))
)


def redact(payload: Any) -> Any:
    """A copy of ``payload`` fit to store: the values of secret-looking keys masked, at any
    depth, and NUL characters replaced (PostgreSQL cannot store them in text or JSON).

    Only keys decide: customer names and emails are what the log is for and are kept.
    Iterative, so no payload can exhaust the recursion limit.
    """
    root: list[Any] = [None]
    pending: list[tuple[Any, Any, Any]] = [(payload, root, 0)]
    while pending:
        value, parent, slot = pending.pop()
        if isinstance(value, dict):
            copy: Any = {}
            for key, item in value.items():
                name = str(key)
                clean_key = storable_text(name)
                if _is_secret_name(name):
                    copy[clean_key] = REDACTED
                else:
                    pending.append((item, copy, clean_key))
        elif isinstance(value, list | tuple):
            copy = [None] * len(value)
            pending.extend((item, copy, index) for index, item in enumerate(value))
        elif isinstance(value, str):
            copy = storable_text(value)
        else:
            copy = value
        parent[slot] = copy
    return root[0]


def storable_text(value: str) -> str:
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


# A request's keys are nearly always the schema's own few dozen field names: deciding once
# per name saved a third of redacting a payload. Bounded, as callers choose the keys.
@functools.lru_cache(maxsize=4096)
def _is_secret_name(name: str) -> bool:
    normalised = _NOT_A_LETTER.sub("", name.lower())
    return any(marker in normalised for marker in SECRET_KEY_MARKERS)


_NOT_A_LETTER = re.compile(r"[^a-z]")


class ProvisioningLog:
    """The ``provisioning_log`` table. Thread-safe; database failures raise ``StoreError``."""

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], datetime] = utc_now,
        before_read: Callable[[], None] = lambda: None,
    ) -> None:
        self._engine = engine
        self._clock = clock
        # Commits this process's deferred outcomes first (app/store/deferred.py).
        self._before_read = before_read

    def start(self, *, connection: Connection | None = None, **row: Any) -> int:
        """Record an accepted request before any work; returns the entry id. With
        ``connection``, inside the caller's transaction.

        ``row``: the keywords of ``_start_values``. A replay (``replay_of``) also marks the
        original entry as replayed by this one, in the same transaction.
        """
        with transaction(self._engine, connection) as connection:
            return self.queue_start(connection, **row)()

    def queue_start(self, connection: Connection, **row: Any) -> Callable[[], int]:
        """``start`` in ``connection``'s transaction; what it returns gives the entry id,
        once the transaction has committed. On PostgreSQL the INSERT waits for the
        transaction's next message, the COMMIT at the latest (app/store/postgres_script.py).
        """
        inserted = _START.execute_later(connection, self._start_values(**row))
        replay_of = row.get("replay_of")
        if replay_of is None:
            return lambda: inserted.first_row[0]
        entry_id = inserted.first_row[0]  # the mark needs it now (replays are rare)
        _MARK_REPLAYED.execute_later(
            connection, {"original_id": replay_of, "replayed_by": entry_id}
        )
        return lambda: entry_id

    def _start_values(
        self,
        *,
        request_id: str,
        operation: str,
        caller_key_id: str,
        idempotency_key: str | None = None,
        salesforce_account_id: str | None = None,
        salesforce_opportunity_id: str | None = None,
        payload: Any = None,
        replay_of: int | None = None,
        correlation_id: str | None = None,
        batch_item_id: int | None = None,
    ) -> dict[str, Any]:
        return {
            "request_id": request_id,
            "correlation_id": correlation_id,
            "operation": operation,
            "caller_key_id": caller_key_id,
            "idempotency_key": idempotency_key,
            "salesforce_account_id": salesforce_account_id,
            "salesforce_opportunity_id": salesforce_opportunity_id,
            "payload": redact(payload),
            "replay_of": replay_of,
            "batch_item_id": batch_item_id,
            "outcome": "in_progress",
            "attempts": 0,
            "created_at": self._clock(),
        }

    def finish(
        self, entry_id: int, *, connection: Connection | None = None, **outcome: Any
    ) -> bool:
        """Record how the request ended; returns False if there is no such entry. With
        ``connection``, inside the caller's transaction.

        ``outcome``: the keywords of ``_finish_values``.
        """
        values = self._finish_values(entry_id, **outcome)
        with transaction(self._engine, connection) as connection:
            updated = _FINISH.execute(connection, values).rowcount
        return updated == 1

    def send_finish(self, connection: Connection, entry_id: int, **outcome: Any) -> None:
        """``finish`` in ``connection``'s transaction, not asking whether the entry was
        there: the outcomes a later request's transaction carries. On PostgreSQL the UPDATE
        travels with that transaction's next statement (app/store/postgres_script.py)."""
        _FINISH.execute_later(connection, self._finish_values(entry_id, **outcome))

    def _finish_values(
        self,
        entry_id: int,
        *,
        outcome: str,
        http_status: int,
        attempts: int,
        duration_ms: int,
        error_code: str | None = None,
        stigg_error_code: str | None = None,
        message: str | None = None,
        stigg_customer_id: str | None = None,
        stigg_subscription_id: str | None = None,
        stigg_credit_grant_id: str | None = None,
        finished_at: datetime | None = None,
    ) -> dict[str, Any]:
        """The finished entry (at ``finished_at``, default now).

        ``outcome``: succeeded, rejected (a final no), failed (may succeed if replayed) or
        replayed (answered from the idempotency store).
        """
        if outcome not in FINAL_OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(FINAL_OUTCOMES)}: {outcome!r}")
        return {
            "entry_id": entry_id,
            "outcome": outcome,
            "http_status": http_status,
            "error_code": error_code,
            "stigg_error_code": stigg_error_code,
            "message": storable_text(message) if message else message,
            "stigg_customer_id": stigg_customer_id,
            "stigg_subscription_id": stigg_subscription_id,
            "stigg_credit_grant_id": stigg_credit_grant_id,
            "attempts": attempts,
            "duration_ms": duration_ms,
            "finished_at": finished_at or self._clock(),
        }

    def list(
        self,
        *,
        outcome: str | None = None,
        operation: str | None = None,
        salesforce_id: str | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        """Entries newest first; ``salesforce_id`` matches the Account or the Opportunity."""
        query = select(entries).order_by(entries.c.created_at.desc(), entries.c.id.desc())
        if outcome is not None:
            query = query.where(entries.c.outcome == outcome)
        if operation is not None:
            query = query.where(entries.c.operation == operation)
        if salesforce_id is not None:
            query = query.where(
                or_(
                    entries.c.salesforce_account_id == salesforce_id,
                    entries.c.salesforce_opportunity_id == salesforce_id,
                )
            )
        self._before_read()
        with transaction(self._engine) as connection:
            rows = connection.execute(query.limit(limit)).mappings().all()
        return [dict(row) for row in rows]

    def get(self, entry: int | str) -> dict[str, Any] | None:
        """One entry: by its request ID, by its id (an int, or digits as typed on the CLI),
        or by the caller's correlation ID (the newest entry that carries it)."""
        found = None
        if isinstance(entry, str):
            found = self._first(entries.c.request_id == entry)
        if found is None and (isinstance(entry, int) or entry.isdigit()):
            found = self._first(entries.c.id == int(entry))
        if found is None and isinstance(entry, str):
            found = self._first(entries.c.correlation_id == entry, newest=True)
        return found

    def _first(self, condition: Any, *, newest: bool = False) -> dict[str, Any] | None:
        query = select(entries).where(condition)
        if newest:
            query = query.order_by(entries.c.id.desc())
        self._before_read()
        with transaction(self._engine) as connection:
            row = connection.execute(query).mappings().first()
        return dict(row) if row is not None else None
