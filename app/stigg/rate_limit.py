"""Stigg's rate limits, kept on our side: every Stigg call waits for a permit first.

Stigg allows so many calls per window (60 s) per operation, keyed by the GraphQL root field
(250 per mutation, 3,000 per read), and 30 mutations per window per customer, and answers
429 beyond that (reference §4.5; the sandbox counts the same way: a sliding window of the
calls it accepted). A permit is a slot in the window of the call's operation and, for a
mutation, one in the window of its customer: both or neither, in one atomic step, so a
call never holds one slot while it waits for the other.

A call counts from when it is sent until one window after its answer. Stigg counts it when
it arrives, which is somewhere in between: a call that waited in a queue on the way (a
burst does) would otherwise still be in Stigg's window when ours lets the next one go.
While a call is in flight its slot is kept until `in_flight_s` (the HTTP timeout, plus a
margin) and a window have passed, so a process that dies mid-call leaves a slot that
expires on its own.

The state is shared by every thread, gunicorn worker, batch worker and instance that uses
the same store: the service's database (PostgreSQL; for SQLite, a file beside the store's
own, so that the limiter's writes never queue behind the store's) or Redis when REDIS_URL
is set. An in-memory SQLite database (tests) gets an in-process store.

If the store fails at run time the call goes ahead without a permit (logged): Stigg's own
429s are still backed off, so an outage of the limiter's store costs 429s, not provisioning.

No Flask here: the batch worker builds the limiter on its own.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import (
    Column,
    Double,
    Engine,
    Index,
    MetaData,
    String,
    Table,
    bindparam,
    delete,
    func,
    insert,
    make_url,
    select,
    update,
)
from sqlalchemy.exc import SQLAlchemyError

from app import metrics
from app.config import ConfigError, RateLimitSettings, Settings, key_id_for
from app.stigg.operations import load_operations
from app.store.errors import describe, first_line
from app.store.sqlite_checkpoint import WalCheckpointer

log = logging.getLogger(__name__)

# A denied call waits at least this long before it checks again (the slot it waits for
# may still be in flight past the guess of its release).
MIN_WAIT_S = 0.01
# Spreads the waiters that a freed slot wakes at once.
JITTER_S = 0.02
# Added to the HTTP timeout: how long a call may be in flight before its slot is treated
# as answered (a worker that died mid-call).
IN_FLIGHT_MARGIN_S = 1.0


class RateBudgetExhausted(Exception):
    """No permit within the time allowed; `retry_after_s` estimates when one will be free."""

    def __init__(self, retry_after_s: float):
        super().__init__(f"Stigg's rate budget is used up for {retry_after_s:.1f} s")
        self.retry_after_s = retry_after_s


class RateStoreError(Exception):
    """The limiter's store (database or Redis) cannot be used."""


@dataclass(frozen=True)
class Limit:
    key: str
    count: int


def operation_key(operation: str) -> str:
    return f"operation:{operation}"


def customer_key(customer_id: str) -> str:
    return f"customer:{customer_id}"


class Permit:
    """Leave to send one call. `done()` once its answer (or failure) is in."""

    def __init__(self, waited_s: float, finish: Callable[[], None] | None = None):
        self.waited_s = waited_s
        self._finish = finish

    def done(self) -> None:
        finish, self._finish = self._finish, None
        if finish is not None:
            finish()


class WindowStore(Protocol):
    """Sliding windows of calls per key, shared by every process that opens the same store.

    Times are epoch seconds from the caller's clock. A call is "in flight" from `reserve`
    to `complete`; it counts until `window_s` after its answer, or `in_flight_s +
    window_s` after it was sent while no answer came.
    """

    def reserve(self, limits: Sequence[Limit], token: str, now: float) -> float | None:
        """Take a slot under every limit, or none: None when taken, else seconds to wait
        until one may be free (at least MIN_WAIT_S)."""

    def complete(self, keys: Sequence[str], token: str, now: float) -> None:
        """The call of `token` was answered at `now`."""

    def hold(self, keys: Sequence[str], until: float, now: float) -> None:
        """Treat these windows as full until `until` (Stigg answered 429)."""

    def releases(self, key: str, now: float) -> list[float]:
        """When each call now counted under `key` is expected to leave its window, sorted."""

    def close(self) -> None: ...


def _wait_from(limit: Limit, releases: list[float], now: float) -> float:
    """Seconds until `limit` has room, given the release times of its live calls."""
    excess = len(releases) - limit.count
    if excess < 0:
        return 0.0
    return max(sorted(releases)[excess] - now, MIN_WAIT_S)


class MemoryWindowStore:
    """One process only: for an in-memory SQLite database (tests) and for unit tests."""

    def __init__(self, *, window_s: float, in_flight_s: float):
        self._window_s = window_s
        self._in_flight_s = in_flight_s
        # key -> token -> [sent_at, answered_at or None]
        self._calls: dict[str, dict[str, list[Any]]] = {}
        self._holds: dict[str, float] = {}
        self._lock = threading.Lock()
        self._next_sweep = 0.0

    def _live(self, key: str, now: float) -> dict[str, list[Any]]:
        calls = self._calls.get(key, {})
        for token, (sent_at, answered_at) in list(calls.items()):
            if self._expiry(sent_at, answered_at) <= now:
                del calls[token]
        return calls

    def _expiry(self, sent_at: float, answered_at: float | None) -> float:
        if answered_at is None:
            return sent_at + self._in_flight_s + self._window_s
        return answered_at + self._window_s

    def _releases(self, key: str, now: float) -> list[float]:
        return sorted(
            (answered_at or sent_at) + self._window_s
            for sent_at, answered_at in self._live(key, now).values()
        )

    def reserve(self, limits: Sequence[Limit], token: str, now: float) -> float | None:
        with self._lock:
            self._sweep(now)
            wait = 0.0
            for limit in limits:
                wait = max(wait, self._holds.get(limit.key, 0.0) - now)
                wait = max(wait, _wait_from(limit, self._releases(limit.key, now), now))
            if wait > 0:
                return wait
            for limit in limits:
                self._calls.setdefault(limit.key, {})[token] = [now, None]
            return None

    def _sweep(self, now: float) -> None:
        """Forget keys with nothing left in their window, about once a window."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + self._window_s
        for key in list(self._calls):
            if not self._live(key, now):
                del self._calls[key]
        self._holds = {key: until for key, until in self._holds.items() if until > now}

    def complete(self, keys: Sequence[str], token: str, now: float) -> None:
        with self._lock:
            for key in keys:
                call = self._calls.get(key, {}).get(token)
                if call is not None:
                    call[1] = now

    def hold(self, keys: Sequence[str], until: float, now: float) -> None:
        with self._lock:
            for key in keys:
                self._holds[key] = max(self._holds.get(key, 0.0), until)

    def releases(self, key: str, now: float) -> list[float]:
        with self._lock:
            return self._releases(key, now)

    def close(self) -> None:
        pass


_metadata = MetaData()
# One row per call and key. Not part of the store's migrations: the rows are only worth a
# window, so a new layout would get a new table name rather than a migration.
_calls = Table(
    "stigg_rate_limit_calls",
    _metadata,
    Column("limit_key", String(320), primary_key=True),
    Column("token", String(32), primary_key=True),
    # Until then the call counts; in flight: sent + in_flight_s + window, else answer + window.
    Column("expires_at", Double, nullable=False),
    # When the call is expected to leave the window (in flight: sent + window, a guess).
    Column("release_at", Double, nullable=False),
    Index("ix_stigg_rate_limit_calls_live", "limit_key", "expires_at"),
    Index("ix_stigg_rate_limit_calls_expires_at", "expires_at"),
)
_holds = Table(
    "stigg_rate_limit_holds",
    _metadata,
    Column("limit_key", String(320), primary_key=True),
    Column("until", Double, nullable=False),
)
# crc32 of "stigg-flow-actions:rate-limit-tables"; any constant shared by all instances.
_CREATE_LOCK_ID = 0x5E1B_7A31

# The hot statements, built once with bound parameters (one key each, so none needs an
# expanding IN list): building and caching statements per call was most of the limiter's
# own CPU (bench/bulk.py --profile).
_COUNT = select(func.count()).where(
    _calls.c.limit_key == bindparam("key"), _calls.c.expires_at > bindparam("now")
)
_HELD = select(_holds.c.until).where(
    _holds.c.limit_key == bindparam("key"), _holds.c.until > bindparam("now")
)
_BLOCKING = (
    select(_calls.c.release_at)
    .where(_calls.c.limit_key == bindparam("key"), _calls.c.expires_at > bindparam("now"))
    .order_by(_calls.c.release_at)
    .offset(bindparam("excess"))
    .limit(1)
)
_RESERVE = insert(_calls)
_COMPLETE = (
    update(_calls)
    .where(_calls.c.token == bindparam("call_token"))
    .values(expires_at=bindparam("answered_until"), release_at=bindparam("answered_until"))
)


def _advisory_lock_id(key: str) -> int:
    digest = hashlib.sha256(f"stigg-flow-actions:rate-limit:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class SqlWindowStore:
    """The windows in two tables of a SQLite or PostgreSQL database.

    A reservation is one transaction that counts and inserts. PostgreSQL: it first takes a
    transaction-scoped advisory lock per key (in a fixed order, so two reservations never
    deadlock), so reservations of the same operation or customer queue for a moment while
    others run in parallel. SQLite: the engine begins every transaction with BEGIN
    IMMEDIATE, whose write lock serialises all reservations of all processes.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        window_s: float,
        in_flight_s: float,
        checkpointer: WalCheckpointer | None = None,
    ):
        self._engine = engine
        self._checkpointer = checkpointer
        self._window_s = window_s
        self._in_flight_s = in_flight_s
        self._postgres = engine.dialect.name == "postgresql"
        self._sweep_lock = threading.Lock()
        self._next_sweep = 0.0

    @classmethod
    def create(cls, engine: Engine, *, window_s: float, in_flight_s: float) -> SqlWindowStore:
        """Create the tables if they are missing (safe when instances start together)."""
        # A SQLite file takes a write per Stigg call: its checkpoints go off that path too,
        # set up before the first connection so that every connection leaves them alone.
        checkpointer = WalCheckpointer.attach(engine)
        try:
            with engine.begin() as connection:
                if engine.dialect.name == "postgresql":
                    connection.execute(select(func.pg_advisory_xact_lock(_CREATE_LOCK_ID)))
                _metadata.create_all(connection)
        except SQLAlchemyError as error:
            if checkpointer is not None:
                checkpointer.close()
            raise RateStoreError(
                f"database at {describe(engine.url)}: {first_line(error.orig or error)}"
            ) from error
        return cls(engine, window_s=window_s, in_flight_s=in_flight_s, checkpointer=checkpointer)

    def reserve(self, limits: Sequence[Limit], token: str, now: float) -> float | None:
        keys = [limit.key for limit in limits]
        with self._errors(), self._engine.begin() as connection:
            if self._postgres:
                for lock_id in sorted({_advisory_lock_id(key) for key in keys}):
                    connection.execute(select(func.pg_advisory_xact_lock(lock_id)))
            wait = self._wait(connection, limits, now)
            if wait == 0:
                connection.execute(
                    _RESERVE,
                    [
                        {
                            "limit_key": key,
                            "token": token,
                            "expires_at": now + self._in_flight_s + self._window_s,
                            "release_at": now + self._window_s,
                        }
                        for key in keys
                    ],
                )
        self._sweep(now)
        return wait or None

    def _wait(self, connection, limits: Sequence[Limit], now: float) -> float:
        wait = 0.0
        for limit in limits:
            held = connection.execute(_HELD, {"key": limit.key, "now": now}).scalar()
            if held is not None:
                wait = max(wait, held - now)
            count = connection.execute(_COUNT, {"key": limit.key, "now": now}).scalar_one()
            excess = count - limit.count
            if excess >= 0:
                blocking = connection.execute(
                    _BLOCKING, {"key": limit.key, "now": now, "excess": excess}
                ).scalar_one()
                wait = max(wait, blocking - now, MIN_WAIT_S)
        return wait

    def complete(self, keys: Sequence[str], token: str, now: float) -> None:
        # The token is one call's own: it names that call's rows under every key.
        with self._errors(), self._engine.begin() as connection:
            connection.execute(
                _COMPLETE, {"call_token": token, "answered_until": now + self._window_s}
            )

    def hold(self, keys: Sequence[str], until: float, now: float) -> None:
        if self._postgres:
            from sqlalchemy.dialects.postgresql import insert as upsert

            later = func.greatest
        else:
            from sqlalchemy.dialects.sqlite import insert as upsert

            later = func.max
        statement = upsert(_holds).values([{"limit_key": key, "until": until} for key in keys])
        statement = statement.on_conflict_do_update(
            index_elements=[_holds.c.limit_key],
            set_={"until": later(_holds.c.until, statement.excluded.until)},
        )
        with self._errors(), self._engine.begin() as connection:
            connection.execute(statement)

    def releases(self, key: str, now: float) -> list[float]:
        with self._errors(), self._engine.connect() as connection:
            return list(
                connection.execute(
                    select(_calls.c.release_at)
                    .where(_calls.c.limit_key == key, _calls.c.expires_at > now)
                    .order_by(_calls.c.release_at)
                ).scalars()
            )

    def _sweep(self, now: float) -> None:
        """Delete expired rows (of every key) about once a window per process."""
        if now < self._next_sweep or not self._sweep_lock.acquire(blocking=False):
            return
        try:
            self._next_sweep = now + self._window_s
            with self._engine.begin() as connection:
                connection.execute(delete(_calls).where(_calls.c.expires_at <= now))
                connection.execute(delete(_holds).where(_holds.c.until <= now))
        except SQLAlchemyError as error:
            # Only housekeeping: expired rows are never counted; the next sweep retries.
            log.warning("rate limiter: sweep failed", extra={"error": first_line(error)})
        finally:
            self._sweep_lock.release()

    def _errors(self):
        return _translated(SQLAlchemyError, lambda error: first_line(error.orig or error))

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
        self._engine.dispose()


@contextmanager
def _translated(kind: type[BaseException], why: Callable[[Any], str]) -> Iterator[None]:
    """Turns a backend's exceptions into RateStoreError."""
    try:
        yield
    except kind as error:
        raise RateStoreError(why(error)) from error


# Every key in one Redis Cluster hash slot ({...}), as the scripts touch several at once.
REDIS_PREFIX = "stigg-flow-actions:{rate-limit}:"

# KEYS: (flying, answered, hold) per limit. ARGV: now, window, in_flight, min_wait, token,
# then each limit's count. Flying calls are scored by when they were sent, answered ones by
# when their answer came. Returns nil when the slots were taken, else the wait as a string
# (Redis truncates Lua numbers to integers).
_RESERVE_LUA = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local in_flight = tonumber(ARGV[3])
local min_wait = tonumber(ARGV[4])
local wait = 0
local n = #KEYS / 3
for i = 1, n do
  local flying, answered, hold = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local limit = tonumber(ARGV[5 + i])
  redis.call('ZREMRANGEBYSCORE', flying, '-inf', now - in_flight - window)
  redis.call('ZREMRANGEBYSCORE', answered, '-inf', now - window)
  local held = tonumber(redis.call('GET', hold) or '0')
  if held > now then wait = math.max(wait, held - now) end
  local excess = redis.call('ZCARD', flying) + redis.call('ZCARD', answered) - limit
  if excess >= 0 then
    local times = {}
    local found = redis.call('ZRANGE', answered, 0, excess, 'WITHSCORES')
    for j = 2, #found, 2 do times[#times + 1] = tonumber(found[j]) end
    found = redis.call('ZRANGE', flying, 0, excess, 'WITHSCORES')
    for j = 2, #found, 2 do times[#times + 1] = tonumber(found[j]) end
    table.sort(times)
    wait = math.max(wait, times[excess + 1] + window - now, min_wait)
  end
end
if wait > 0 then return tostring(wait) end
local ttl = math.ceil((in_flight + window) * 1000) + 1000
for i = 1, n do
  redis.call('ZADD', KEYS[3 * i - 2], ARGV[1], ARGV[5])
  redis.call('PEXPIRE', KEYS[3 * i - 2], ttl)
end
return nil
"""

# KEYS: (flying, answered) per key. ARGV: now, token, ttl in ms.
_COMPLETE_LUA = """
for i = 1, #KEYS / 2 do
  redis.call('ZREM', KEYS[2 * i - 1], ARGV[2])
  redis.call('ZADD', KEYS[2 * i], ARGV[1], ARGV[2])
  redis.call('PEXPIRE', KEYS[2 * i], ARGV[3])
end
"""

# KEYS: hold keys. ARGV: until, ttl in ms. Keeps the later of two holds.
_HOLD_LUA = """
for i = 1, #KEYS do
  local held = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tonumber(ARGV[1]) > held then redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2]) end
end
"""


class RedisWindowStore:
    """The windows in Redis: per key, sorted sets of calls in flight and answered, changed
    only by Lua scripts, which Redis runs one at a time. Every key expires on its own."""

    def __init__(self, client, *, window_s: float, in_flight_s: float, prefix: str = REDIS_PREFIX):
        from redis.exceptions import RedisError

        self._client = client
        self._window_s = window_s
        self._in_flight_s = in_flight_s
        self._prefix = prefix
        self._reserve = client.register_script(_RESERVE_LUA)
        self._complete = client.register_script(_COMPLETE_LUA)
        self._hold = client.register_script(_HOLD_LUA)
        self._error_kind = RedisError

    @classmethod
    def from_url(
        cls, url: str, *, window_s: float, in_flight_s: float, prefix: str = REDIS_PREFIX
    ) -> RedisWindowStore:
        try:
            import redis
        except ImportError as error:
            raise RateStoreError(
                "the redis package is missing: pip install 'stigg-flow-actions[redis]'"
            ) from error

        client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        try:
            client.ping()
        except redis.RedisError as error:
            client.close()
            # The URL may carry a password: only the error's kind and first line.
            raise RateStoreError(f"{type(error).__name__}: {first_line(error)}") from error
        return cls(client, window_s=window_s, in_flight_s=in_flight_s, prefix=prefix)

    def _key(self, key: str, part: str) -> str:
        return f"{self._prefix}{key}:{part}"

    def reserve(self, limits: Sequence[Limit], token: str, now: float) -> float | None:
        keys = [
            self._key(limit.key, part)
            for limit in limits
            for part in ("flying", "answered", "hold")
        ]
        args = [repr(now), self._window_s, self._in_flight_s, MIN_WAIT_S, token]
        with self._errors():
            wait = self._reserve(keys=keys, args=[*args, *(limit.count for limit in limits)])
        return None if wait is None else float(wait)

    def complete(self, keys: Sequence[str], token: str, now: float) -> None:
        redis_keys = [self._key(key, part) for key in keys for part in ("flying", "answered")]
        ttl_ms = int(self._window_s * 1000) + 1000
        with self._errors():
            self._complete(keys=redis_keys, args=[repr(now), token, ttl_ms])

    def hold(self, keys: Sequence[str], until: float, now: float) -> None:
        ttl_ms = max(1, int((until - now) * 1000)) + 1000
        with self._errors():
            self._hold(keys=[self._key(key, "hold") for key in keys], args=[repr(until), ttl_ms])

    def releases(self, key: str, now: float) -> list[float]:
        with self._errors():
            pipeline = self._client.pipeline(transaction=False)
            pipeline.zrangebyscore(
                self._key(key, "answered"), f"({now - self._window_s!r}", "+inf", withscores=True
            )
            pipeline.zrangebyscore(
                self._key(key, "flying"),
                f"({now - self._in_flight_s - self._window_s!r}",
                "+inf",
                withscores=True,
            )
            answered, flying = pipeline.execute()
        return sorted(score + self._window_s for _, score in [*answered, *flying])

    def _errors(self):
        return _translated(self._error_kind, lambda error: f"Redis: {first_line(error)}")

    def close(self) -> None:
        self._client.close()


def open_store(
    *,
    database_url: str,
    redis_url: str | None,
    window_s: float,
    in_flight_s: float,
    redis_prefix: str = REDIS_PREFIX,
) -> WindowStore:
    """Redis when configured, else the service's database (see the module's docstring).

    Raises ConfigError naming REDIS_URL or DATABASE_URL when the store cannot be used.
    """
    if redis_url:
        try:
            return RedisWindowStore.from_url(
                redis_url, window_s=window_s, in_flight_s=in_flight_s, prefix=redis_prefix
            )
        except RateStoreError as error:
            raise ConfigError(
                f"REDIS_URL: cannot use Redis for the rate limiter: {error}"
            ) from error
    # Imported here: the store package pulls in Alembic, which the Redis path never needs.
    from app.store import create_engine_for

    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database in (None, "", ":memory:") or url.query.get("mode") == "memory":
            return MemoryWindowStore(window_s=window_s, in_flight_s=in_flight_s)
        path = Path(url.database)
        url = url.set(database=str(path.with_name(f"{path.stem}-rate-limits{path.suffix}")))
        engine = create_engine_for(url)
    else:
        # Reservations are short transactions: a few connections per process are plenty.
        engine = create_engine_for(url, pool_size=2, max_overflow=8)
    try:
        return SqlWindowStore.create(engine, window_s=window_s, in_flight_s=in_flight_s)
    except RateStoreError as error:
        engine.dispose()
        raise ConfigError(f"DATABASE_URL: cannot keep the rate limiter's state: {error}") from error


class RateLimiter:
    """The permits for Stigg calls of one process, on a store shared with the others.

    Build one per process with `from_settings` and share it between threads.
    """

    def __init__(
        self,
        store: WindowStore | None,
        *,
        limits: RateLimitSettings,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self._store = store
        self._limits = limits
        self._clock = clock
        self._sleep = sleep
        self._is_mutation = {op.field_name: op.is_mutation for op in load_operations().values()}
        self._stigg_429s: Counter[str] = Counter()
        self._counter_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, *, database_url: str) -> RateLimiter:
        """Raises ConfigError (naming DATABASE_URL or REDIS_URL) if the store is unusable."""
        limits = settings.rate_limits
        if not limits.enabled:
            return cls(None, limits=limits)
        store = open_store(
            database_url=database_url,
            redis_url=settings.redis_url,
            window_s=limits.window_s,
            in_flight_s=settings.stigg_timeout_s + IN_FLIGHT_MARGIN_S,
            # One Redis may serve deployments on different Stigg environments: their
            # budgets are apart, keyed by the Stigg key's ID (never the key itself).
            redis_prefix=f"{REDIS_PREFIX}{key_id_for(settings.stigg_api_key)}:",
        )
        return cls(store, limits=limits)

    @classmethod
    def disabled(cls) -> RateLimiter:
        return cls(None, limits=RateLimitSettings(enabled=False))

    @property
    def enabled(self) -> bool:
        return self._store is not None

    def limit_for(self, operation: str) -> int:
        """Calls of `operation` (a root field) per window. Unknown ones count as mutations."""
        return self._limits.limit_for(operation, is_mutation=self._is_mutation.get(operation, True))

    def _limits_of(self, operation: str, customer_id: str | None) -> list[Limit]:
        limits = [Limit(operation_key(operation), self.limit_for(operation))]
        if customer_id and self._is_mutation.get(operation, True):
            limits.append(Limit(customer_key(customer_id), self._limits.per_customer))
        return limits

    def acquire(self, operation: str, customer_id: str | None, *, timeout_s: float) -> Permit:
        """A permit for one call of `operation` (a root field, e.g. createCreditGrant) for
        `customer_id` (counted only for mutations), waiting up to `timeout_s` for it.

        Raises RateBudgetExhausted, without waiting further, as soon as the budget is known
        not to free up within `timeout_s`.
        """
        if self._store is None:
            return Permit(0.0)
        limits = self._limits_of(operation, customer_id)
        keys = [limit.key for limit in limits]
        token = uuid.uuid4().hex
        started = self._clock()
        while True:
            now = self._clock()
            waited = max(0.0, now - started)
            try:
                wait = self._store.reserve(limits, token, now)
            except RateStoreError as error:
                log.warning(
                    "rate limiter unavailable: calling Stigg without a permit",
                    extra={"operation": operation, "error": str(error)},
                )
                return Permit(waited)
            if wait is None:
                return Permit(waited, lambda: self._complete(keys, token))
            left = timeout_s - waited
            if wait > left:
                raise RateBudgetExhausted(wait)
            # The wait is a lower bound (a slot in flight leaves its window after the guess,
            # never before), so sleeping it through misses nothing.
            self._sleep(min(wait + random.uniform(0, JITTER_S), left))

    def _complete(self, keys: list[str], token: str) -> None:
        try:
            self._store.complete(keys, token, self._clock())
        except RateStoreError as error:
            # The slot then stays counted until its in-flight limit: safe, only slower.
            log.warning(
                "rate limiter unavailable: call not marked answered", extra={"error": str(error)}
            )

    def estimate_wait_s(self, operation: str, count: int) -> float:
        """How long until `count` more calls of `operation` could all have started, at the
        current budget (the operation's window only; customers and other callers are not
        foreseen)."""
        if self._store is None or count <= 0:
            return 0.0
        limit = self.limit_for(operation)
        now = self._clock()
        try:
            releases = self._store.releases(operation_key(operation), now)
        except RateStoreError:
            return 0.0
        # When each slot is next free: now for the free ones, then as the calls leave the
        # window; a slot is used again a window after each call it serves.
        free_at = ([now] * max(0, limit - len(releases)) + releases)[-limit:]
        last = count - 1
        return max(0.0, free_at[last % limit] + (last // limit) * self._limits.window_s - now)

    def stigg_rate_limited(self, operation: str) -> None:
        """Count a 429 from Stigg (HTTP 429 or RateLimitExceeded) to a call of `operation`."""
        with self._counter_lock:
            self._stigg_429s[operation] += 1
        metrics.stigg_rate_limited(stigg_operation=operation)

    def cool_down(self, operation: str, customer_id: str | None, *, seconds: float) -> None:
        """Hold the windows a call of `operation` uses for `seconds` (the call that Stigg
        answered 429 is backing off that long), so every process sharing them waits too."""
        if self._store is None or seconds <= 0:
            return
        keys = [limit.key for limit in self._limits_of(operation, customer_id)]
        try:
            now = self._clock()
            self._store.hold(keys, now + seconds, now)
        except RateStoreError as error:
            log.warning("rate limiter unavailable: no cool-down", extra={"error": str(error)})

    @property
    def stigg_429s(self) -> dict[str, int]:
        """Stigg's 429s (HTTP 429 or RateLimitExceeded) seen by this process, per operation."""
        with self._counter_lock:
            return dict(self._stigg_429s)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
