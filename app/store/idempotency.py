"""Idempotency-Key records: claim a key before executing, store the final answer after.

Follows the IETF httpapi idempotency-key draft as the design card reads it: a key is
scoped to the calling API key and the operation; the request body's fingerprint is kept,
so the same key with another body is refused; only final outcomes are stored.

Every decision that two workers (or two instances) could race on is made by the database:
the first claim is an INSERT that the unique constraint lets through exactly once, and
every later change of hands is a conditional UPDATE whose row count says who won. Nothing
is decided by reading a row and then writing on the strength of what was read.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, bindparam, delete, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError

from app.ids import time_ordered_id
from app.store.driver_statement import DriverStatement
from app.store.errors import database_errors_as_store_error, transaction
from app.store.models import IdempotencyRecord, utc_now

DEFAULT_TTL_S = 24 * 60 * 60  # IDEMPOTENCY_TTL_S

# A claim loses a round only when another request changed the same record between our
# failed INSERT and our look at it (a release, a purge, a takeover). Several rounds in a
# row mean the key is being hammered; the caller is told to retry, as for a running one.
MAX_CLAIM_ROUNDS = 5

records = IdempotencyRecord.__table__

# The hot-path statements, built once with bound parameters (bench/: building `.values()`
# and its cache key per call cost more than the write itself).
_INSERT = insert(records)
# The claim of a new key inside the request's own transaction: a key that exists makes the
# insert do nothing instead of failing, so no savepoint has to guard the transaction (two
# statements more, and on PostgreSQL two round trips more, per keyed request). Both
# dialects spell it the same way; the row count says which happened (1 claimed, 0 the key
# exists). It, the kept answer and the release run on the driver's cursor
# (app/store/driver_statement.py): they are per-request statements too.
_SCOPE = ("caller_key_id", "operation", "idempotency_key")
_INSERT_IF_NEW = {
    name: DriverStatement(
        dialect.insert(records).on_conflict_do_nothing(index_elements=_SCOPE),
        [column.key for column in records.columns],
    )
    for name, dialect in (("sqlite", sqlite), ("postgresql", postgresql))
}
_COMPLETE = DriverStatement(
    update(records)
    .where(records.c.id == bindparam("record_id"), records.c.state == "in_progress")
    .values(
        state="completed",
        response_status=bindparam("status"),
        response_body=bindparam("body"),
        locked_until=bindparam("now"),
        expires_at=bindparam("expires_at"),
    )
)
_RELEASE = DriverStatement(
    delete(records).where(records.c.id == bindparam("record_id"), records.c.state == "in_progress")
)


def fingerprint(body: Any) -> str:
    """SHA-256 (hex) of the canonical JSON of a request body.

    Canonical: keys sorted, no whitespace, UTF-8, and integral floats written as integers,
    so that bodies equal as JSON (``{"a": 1.0, "b": 2}`` and ``{"b":2,"a":1}``) have one
    fingerprint. NaN and infinities are not JSON and raise ``ValueError``.
    """
    canonical = json.dumps(
        _integral_floats_as_ints(body),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _integral_floats_as_ints(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _integral_floats_as_ints(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_integral_floats_as_ints(item) for item in value]
    return value


@dataclass(frozen=True)
class Claimed:
    """This request owns the key: execute it, then ``complete`` or ``release``.

    ``resumed`` is true when an earlier attempt with this key stopped without an outcome
    (its worker died): it may have reached Stigg, so the action must not blindly repeat a
    side effect that cannot be repeated.
    """

    record_id: str
    resumed: bool = False


@dataclass(frozen=True)
class Replay:
    """The key already has a final outcome for this very body: answer it again."""

    status: int
    body: Any


@dataclass(frozen=True)
class InProgress:
    """The key's first request is still running: 409 REQUEST_IN_PROGRESS (retryable).

    ``locked_until`` is when the running request's claim lapses (None if unknown); it can
    serve as a Retry-After hint.
    """

    locked_until: datetime | None = None


@dataclass(frozen=True)
class Mismatch:
    """The key was used with another body: 422 IDEMPOTENCY_KEY_REUSED."""


Claim = Claimed | Replay | InProgress | Mismatch


class IdempotencyStore:
    """Idempotency records in the ``idempotency_keys`` table.

    Each method is one or two short transactions of its own, so one instance can be shared
    by all threads of a process. Database failures raise ``StoreError``.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], datetime] = utc_now,
        before_read: Callable[[], None] = lambda: None,
    ) -> None:
        self._engine = engine
        self._clock = clock
        # Commits this process's deferred outcomes (app/store/deferred.py), so a repeat
        # of a request it just answered finds the answer kept.
        self._before_read = before_read

    def claim(
        self,
        *,
        caller_key_id: str,
        operation: str,
        key: str,
        fingerprint: str,
        request_id: str,
        lock_s: float,
        ttl_s: float = DEFAULT_TTL_S,
    ) -> Claim:
        """Claim ``key`` for this request, or say why not.

        ``lock_s`` is how long the claim holds before another request may take it over as
        abandoned: longer than the longest a request can run (STIGG_DEADLINE_S plus a
        margin). ``ttl_s`` bounds how long an abandoned claim is kept at all.
        """
        scope = and_(
            records.c.caller_key_id == caller_key_id,
            records.c.operation == operation,
            records.c.idempotency_key == key,
        )
        self._before_read()
        with database_errors_as_store_error(self._engine):
            for _ in range(MAX_CLAIM_ROUNDS):
                fresh = self._fresh_claim(
                    fingerprint=fingerprint, request_id=request_id, lock_s=lock_s, ttl_s=ttl_s
                )
                if self._insert(
                    fresh
                    | {
                        "caller_key_id": caller_key_id,
                        "operation": operation,
                        "idempotency_key": key,
                    }
                ):
                    return Claimed(record_id=fresh["id"])
                with self._engine.begin() as connection:
                    existing = connection.execute(select(records).where(scope)).one_or_none()
                    if existing is None:
                        continue  # released or purged since our INSERT failed: insert again
                    decision = self._decide(
                        connection,
                        existing=existing,
                        fingerprint=fingerprint,
                        lock_s=lock_s,
                        ttl_s=ttl_s,
                        request_id=request_id,
                    )
                if decision is not None:
                    return decision
            return InProgress()

    def claim_if_new(self, connection: Connection, **claim: Any) -> Claimed | None:
        """The common case in the caller's transaction: the key is new, claim it. None when
        it exists (nothing written): then ``claim`` decides, in transactions of its own.

        ``claim``: the keywords of ``queue_claim_if_new``."""
        return self.queue_claim_if_new(connection, **claim)()

    def queue_claim_if_new(
        self,
        connection: Connection,
        *,
        caller_key_id: str,
        operation: str,
        key: str,
        fingerprint: str,
        request_id: str,
        lock_s: float,
        ttl_s: float = DEFAULT_TTL_S,
    ) -> Callable[[], Claimed | None]:
        """``claim_if_new``; what it returns gives the claim, once the transaction has
        committed. On PostgreSQL the INSERT waits for the transaction's next message, the
        COMMIT at the latest (app/store/postgres_script.py)."""
        fresh = self._fresh_claim(
            fingerprint=fingerprint, request_id=request_id, lock_s=lock_s, ttl_s=ttl_s
        )
        values = fresh | {
            "caller_key_id": caller_key_id,
            "operation": operation,
            "idempotency_key": key,
        }
        inserted = _INSERT_IF_NEW[connection.dialect.name].execute_later(connection, values)
        record_id = fresh["id"]
        return lambda: Claimed(record_id=record_id) if inserted.rowcount == 1 else None

    def _insert(self, values: dict[str, Any]) -> bool:
        try:
            with self._engine.begin() as connection:
                connection.execute(_INSERT, values)
        except IntegrityError:
            return False  # the unique constraint says the key exists: someone was first
        return True

    def _fresh_claim(
        self, *, fingerprint: str, request_id: str, lock_s: float, ttl_s: float
    ) -> dict[str, Any]:
        now = self._clock()
        return {
            "id": time_ordered_id(),
            "fingerprint": fingerprint,
            "state": "in_progress",
            "response_status": None,
            "response_body": None,
            "request_id": request_id,
            "created_at": now,
            "locked_until": now + timedelta(seconds=lock_s),
            # An abandoned claim is kept at least as long as a final answer would be.
            "expires_at": now + timedelta(seconds=max(ttl_s, lock_s)),
        }

    def _decide(
        self,
        connection: Connection,
        *,
        existing: Row[Any],
        fingerprint: str,
        request_id: str,
        lock_s: float,
        ttl_s: float,
    ) -> Claim | None:
        """What an existing record means for this request; None if we lost a race."""
        now = self._clock()
        fresh = self._fresh_claim(
            fingerprint=fingerprint, request_id=request_id, lock_s=lock_s, ttl_s=ttl_s
        )
        if existing.state == "completed" and existing.expires_at <= now:
            # An expired answer counts as absent, whatever body it was for: start over.
            taken = connection.execute(
                update(records)
                .where(
                    records.c.id == existing.id,
                    records.c.state == "completed",
                    records.c.expires_at <= now,
                )
                .values(**fresh)
            ).rowcount
            return Claimed(record_id=fresh["id"]) if taken == 1 else None
        if existing.fingerprint != fingerprint:
            return Mismatch()
        if existing.state == "completed":
            return Replay(status=existing.response_status, body=json.loads(existing.response_body))
        if existing.locked_until > now:
            return InProgress(locked_until=existing.locked_until)
        # The claim lapsed: its worker died mid-way. Take it over under a new record id,
        # so that worker, should it wake up, can no longer complete or release it.
        taken = connection.execute(
            update(records)
            .where(
                records.c.id == existing.id,
                records.c.state == "in_progress",
                records.c.locked_until <= now,
            )
            .values(
                id=fresh["id"],
                request_id=request_id,
                locked_until=fresh["locked_until"],
                expires_at=fresh["expires_at"],
            )
        ).rowcount
        return Claimed(record_id=fresh["id"], resumed=True) if taken == 1 else None

    def complete(
        self,
        record_id: str,
        *,
        status: int,
        body: Any,
        ttl_s: float = DEFAULT_TTL_S,
        connection: Connection | None = None,
        answered_at: datetime | None = None,
    ) -> bool:
        """Store the final outcome (a success or a non-retryable rejection) for replays.
        It is kept for ``ttl_s`` from ``answered_at`` (default: now).

        Returns False if this claim was lost (taken over after its lock lapsed); the
        caller still answers its own request, but the stored answer is the other one's.
        """
        values = self._answer(record_id, status, body, ttl_s, answered_at)
        with transaction(self._engine, connection) as connection:
            stored = _COMPLETE.execute(connection, values).rowcount
        return stored == 1

    def send_complete(
        self,
        connection: Connection,
        record_id: str,
        *,
        status: int,
        body: Any,
        ttl_s: float = DEFAULT_TTL_S,
        answered_at: datetime | None = None,
    ) -> None:
        """``complete`` in ``connection``'s transaction, not asking whether the claim was
        lost: the outcomes a later request's transaction carries. On PostgreSQL the UPDATE
        travels with that transaction's next statement (app/store/postgres_script.py)."""
        values = self._answer(record_id, status, body, ttl_s, answered_at)
        _COMPLETE.execute_later(connection, values)

    def _answer(
        self, record_id: str, status: int, body: Any, ttl_s: float, answered_at: datetime | None
    ) -> dict[str, Any]:
        now = answered_at or self._clock()
        return {
            "record_id": record_id,
            "status": status,
            "body": json.dumps(body, ensure_ascii=False, separators=(",", ":")),
            "now": now,
            "expires_at": now + timedelta(seconds=ttl_s),
        }

    def release(self, record_id: str, *, connection: Connection | None = None) -> bool:
        """Drop an in-progress claim after a retryable failure, so a retry executes again.

        Returns False if the claim was already lost.
        """
        with transaction(self._engine, connection) as connection:
            deleted = _RELEASE.execute(connection, {"record_id": record_id}).rowcount
        return deleted == 1

    def send_release(self, connection: Connection, record_id: str) -> None:
        """``release`` in ``connection``'s transaction, not asking whether the claim was
        lost (see ``send_complete``)."""
        _RELEASE.execute_later(connection, {"record_id": record_id})

    def purge_expired(self, now: datetime | None = None) -> int:
        """Delete expired records; returns how many. Never deletes a live claim."""
        now = now or self._clock()
        with transaction(self._engine) as connection:
            return connection.execute(
                delete(records).where(
                    records.c.expires_at <= now,
                    or_(records.c.state == "completed", records.c.locked_until <= now),
                )
            ).rowcount
