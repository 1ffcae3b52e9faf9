"""Engine, migrations and the ``Store`` that the request pipeline holds.

SQLite (one machine, several gunicorn workers) and PostgreSQL (several machines) are both
first-class; everything that differs between them is decided here.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import URL, Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.exc import ArgumentError, DisconnectionError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from app.store.batches import BatchStore
from app.store.deferred import DeferredWrites
from app.store.errors import StoreError, describe, first_line, transaction
from app.store.group_commit import GroupCommit
from app.store.idempotency import IdempotencyStore
from app.store.models import utc_now
from app.store.provisioning_log import ProvisioningLog
from app.store.retention import Retention
from app.store.sqlite_checkpoint import WalCheckpointer
from app.store.sqlite_writer import WriterLockedConnection

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# How long SQLite waits for another connection's write lock before failing. Every write
# transaction here is a few statements, so waiting this long means something is wrong.
SQLITE_BUSY_TIMEOUT_MS = 10_000
SQLITE_WAL_SWITCH_RETRY_S = 0.005

# Any constant works; it only has to be the same in every instance of this service.
# (crc32 of "stigg-flow-actions:migrate")
POSTGRES_MIGRATION_LOCK_ID = 0x98A1399D

# A start-up migration that waits this long for a table lock (a future ALTER TABLE behind
# a long transaction) fails with a clear message instead of hanging the deploy.
POSTGRES_MIGRATION_LOCK_TIMEOUT = "60s"

# Sized for the threads of one gunicorn worker: SQLAlchemy's pool of 5 + 10 overflow. A
# request that finds every connection busy for POOL_TIMEOUT_S fails as StoreError (the
# pipeline's retryable 503) instead of waiting out the caller's deadline. Keep
# workers x instances x 15 under PostgreSQL's max_connections (100 by default).
POOL_OPTIONS = {"pool_size": 5, "max_overflow": 10, "pool_timeout": 5}

# The DATABASE_URL parameter that sets when psycopg prepares statements (none: never).
PREPARE_THRESHOLD = "prepare_threshold"

# A pooled PostgreSQL connection is pinged before use only when it sat unused this long.
# What kills a pooled connection (a failover, a restart, an idle timeout in a proxy) finds
# it idle; pinging one handed back a moment ago cost a round trip per transaction, a
# fifth of a log write's time (bench/README.md). One that dies within this second anyway
# fails its request with the retryable 503 before anything was sent to Stigg.
PING_IF_IDLE_S = 1.0


def create_engine_for(url: str | URL, **engine_options: Any) -> Engine:
    """An engine for ``url`` (``DATABASE_URL``), safe to share between threads.

    SQLite: WAL journal (readers never block the writer), a busy timeout, foreign keys on,
    and every transaction starts with ``BEGIN IMMEDIATE``. The last point matters: with
    the driver's default deferred BEGIN, a transaction that reads and then writes can fail
    at once with "database is locked" when another worker wrote in between, instead of
    waiting; taking the write lock up front makes concurrent writers queue. They queue on
    a file lock beside the database (app/store/sqlite_writer.py), which hands the lock
    over within a fraction of a millisecond, instead of SQLite's busy handler, which
    sleeps whole milliseconds. PostgreSQL: psycopg 3, and a connection that sat idle in
    the pool is pinged before use, so connections dropped by a failover or an idle
    timeout are replaced instead of failing a request.
    """
    url = make_url(url)
    if url.get_backend_name() == "sqlite":
        return _create_sqlite_engine(url, **engine_options)
    if url.drivername in ("postgres", "postgresql"):
        # A URL without a driver would mean psycopg2, which is not installed: use psycopg 3.
        url = url.set(drivername="postgresql+psycopg")
    url, connect_args = _psycopg_connect_args(url)
    if connect_args:
        engine_options = engine_options | {
            "connect_args": engine_options.get("connect_args", {}) | connect_args
        }
    engine = create_engine(url, **(POOL_OPTIONS | engine_options))
    _ping_when_idle(engine, PING_IF_IDLE_S)
    return engine


def _psycopg_connect_args(url: URL) -> tuple[URL, dict[str, Any]]:
    """`?prepare_threshold=` taken out of the URL (libpq would refuse it) for psycopg.

    psycopg prepares a statement once a connection has run it five times. A pooler that
    hands a server connection to another client between transactions (PgBouncer in
    transaction mode before 1.21, or without `max_prepared_statements`) then fails requests
    with "prepared statement ... does not exist"; `none` turns preparing off, a number sets
    after how many runs it starts (0: at once).
    """
    if PREPARE_THRESHOLD not in url.query:
        return url, {}
    raw = url.query[PREPARE_THRESHOLD]
    bare = url.difference_update_query([PREPARE_THRESHOLD])
    where = f"database at {describe(bare)}"
    if isinstance(raw, tuple):
        raise StoreError(f"{where}: {PREPARE_THRESHOLD} is given more than once")
    value = raw.strip().lower()
    if value == "none":
        return bare, {PREPARE_THRESHOLD: None}
    if value.isdigit() and value.isascii() and len(value) <= 9:
        return bare, {PREPARE_THRESHOLD: int(value)}
    raise StoreError(
        f"{where}: {PREPARE_THRESHOLD} must be a whole number of runs, or none to never "
        f"prepare statements (got {raw[:20]!r})"
    )


def _ping_when_idle(engine: Engine, idle_s: float) -> None:
    """SQLAlchemy's pool_pre_ping, for connections idle at least ``idle_s`` only (the
    pattern of SQLAlchemy's "custom pessimistic ping": a DisconnectionError on checkout
    makes the pool replace the connection and try again)."""

    @event.listens_for(engine, "checkin")
    def remember_when_returned(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        returned_at = record.info.get("returned_at")
        if returned_at is None or time.monotonic() - returned_at < idle_s:
            return  # new, or used a moment ago
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            raise DisconnectionError(f"ping failed: {first_line(error)}") from error


def _create_sqlite_engine(url: URL, **engine_options: Any) -> Engine:
    options: dict[str, Any] = {
        "connect_args": {"check_same_thread": False, "factory": WriterLockedConnection}
    }
    in_memory = url.database in (None, "", ":memory:")
    if in_memory:
        # One shared in-memory database for all threads (tests only: nothing survives).
        options["poolclass"] = StaticPool
    else:
        # SQLite has one writer at a time anyway. One connection per process makes the
        # worker's threads queue in the pool (woken in turn) rather than each sleep-poll
        # the file lock, which under load gave tails of seconds (bench/).
        options |= POOL_OPTIONS | {"pool_size": 1, "max_overflow": 0, "pool_timeout": 10}
    engine = create_engine(url, **(options | engine_options))

    @event.listens_for(engine, "connect")
    def configure_connection(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below decide how transactions start.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        _switch_to_wal(cursor)
        # With WAL, NORMAL still survives a crash of the process (only a power cut can lose
        # the last commits) and halves the cost of each commit (bench/).
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()
        if not in_memory:
            dbapi_connection.use_writer_lock(
                f"{url.database}-writer.lock", give_up_after_s=SQLITE_BUSY_TIMEOUT_MS / 1000
            )

    @event.listens_for(engine, "begin")
    def begin_immediate(connection: Any) -> None:
        # On the driver's connection: a statement through SQLAlchemy costs more than the
        # BEGIN itself. Its errors wrapped as SQLAlchemy would have (an outage: StoreError).
        try:
            connection.connection.driver_connection.begin_immediate()
        except sqlite3.Error as error:
            raise OperationalError("BEGIN IMMEDIATE", None, error) from error

    return engine


def _switch_to_wal(cursor: sqlite3.Cursor) -> None:
    """`PRAGMA journal_mode = WAL`, retried while another process holds the lock it needs.

    On a file still in rollback-journal mode (a new database) the switch needs a lock for
    which SQLite does not call its busy handler: processes opening a new file at the same
    moment (gunicorn's workers on a first start, the rate limiter beside the store) failed
    about one race in three with "database is locked" (tests/store/test_db.py). Once the
    file is in WAL mode the statement changes nothing and returns at once.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() >= deadline:
                raise
            time.sleep(SQLITE_WAL_SWITCH_RETRY_S)


@contextmanager
def _alembic_quiet() -> Iterator[None]:
    """Alembic logs several INFO lines per migration step and per process; keep ours."""
    alembic_log = logging.getLogger("alembic")
    level = alembic_log.level
    alembic_log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        alembic_log.setLevel(level)


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None, "no Alembic revision in app/store/migrations"
    return head


def current_revision(engine: Engine) -> str | None:
    with _alembic_quiet(), engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def migrate(engine: Engine, *, attempts: int = 5) -> None:
    """Bring the database to the newest revision (Alembic ``upgrade head``), or refuse.

    Safe to call from every worker and instance at start-up at the same time: the upgrade
    runs in one transaction that first takes a database-wide lock (an advisory lock on
    PostgreSQL, the write lock of ``BEGIN IMMEDIATE`` on SQLite), so one process migrates
    and the others then find the database at head and do nothing.

    Raises ``StoreError("database at <url>: <why>")`` when that is impossible.
    """
    where = f"database at {describe(engine.url)}"
    known = {
        script.revision
        for script in ScriptDirectory.from_config(_alembic_config()).walk_revisions()
    }
    for attempt in range(1, attempts + 1):
        try:
            with _alembic_quiet(), engine.begin() as connection:
                if engine.dialect.name == "postgresql":
                    connection.execute(
                        text(f"SET LOCAL lock_timeout = '{POSTGRES_MIGRATION_LOCK_TIMEOUT}'")
                    )
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(:lock_id)"),
                        {"lock_id": POSTGRES_MIGRATION_LOCK_ID},
                    )
                found = MigrationContext.configure(connection).get_current_revision()
                if found is not None and found not in known:
                    raise StoreError(
                        f"{where}: it is at schema revision {found!r}, which this version "
                        f"of the service does not know (newest known: {head_revision()!r}); "
                        "deploy the newer version or restore a matching database"
                    )
                if found == head_revision():
                    return
                config = _alembic_config()
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
            # One line, from the one process that migrated (Alembic's own are per step).
            log.info(f"database schema upgraded from {found or 'empty'} to {head_revision()}")
            return
        except StoreError:
            raise
        except OperationalError as error:
            # SQLite: another process held the write lock past the busy timeout. Anything
            # else operational (unreachable server, unopenable file) will not heal itself.
            if attempt < attempts and "locked" in str(error.orig):
                time.sleep(0.2 * attempt)
                continue
            raise StoreError(f"{where}: cannot migrate: {first_line(error.orig)}") from error
        except SQLAlchemyError as error:
            raise StoreError(f"{where}: cannot migrate: {first_line(error)}") from error


class Store:
    """What the request pipeline holds: one engine and the two stores built on it.

    Build one per process (after gunicorn forks: engines must not cross a fork) and share
    it between threads::

        store = Store.from_url(settings.database_url)   # migrates, or raises StoreError
        claim = store.idempotency.claim(...)
        entry_id = store.log.start(...)
    """

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], datetime] = utc_now,
        outcome_delay_s: float = 0.0,
    ) -> None:
        self.engine = engine
        self.clock = clock
        # On a SQLite file: the WAL checkpoints in a thread of their own, not in a request's
        # COMMIT (None otherwise).
        self.checkpointer = WalCheckpointer.attach(engine)
        # Outcomes committed after the answer (OUTCOME_WRITE_DELAY_MS); reads in this
        # process flush them first, so it always sees its own writes.
        self.deferred = DeferredWrites(engine, delay_s=outcome_delay_s)
        # Each request's row before any work, committed with those of the threads that
        # arrive at the same moment (and the deferred outcomes).
        self.group_commit = GroupCommit(engine, self.deferred)
        self.idempotency = IdempotencyStore(engine, clock=clock, before_read=self.deferred.flush)
        self.log = ProvisioningLog(engine, clock=clock, before_read=self.deferred.flush)
        self.batches = BatchStore(engine, clock=clock)
        self.retention = Retention(engine, clock=clock)

    @classmethod
    def from_url(
        cls,
        url: str | URL,
        *,
        run_migrations: bool = True,
        clock: Callable[[], datetime] = utc_now,
        engine_options: dict[str, Any] | None = None,
        outcome_delay_s: float = 0.0,
    ) -> Store:
        """A store on ``url``, migrated to head unless ``run_migrations`` is false.

        ``engine_options`` go to SQLAlchemy's ``create_engine`` (e.g. a bigger pool for
        more threads per worker). Raises ``StoreError`` if the database cannot be used.
        """
        try:
            engine = create_engine_for(url, **(engine_options or {}))
        except ArgumentError:
            # The URL may hold a password: say what is wrong without quoting it.
            raise StoreError("not a database URL SQLAlchemy can use") from None
        except ImportError as error:
            raise StoreError(
                f"database at {describe(url)}: its driver is not installed ({error.name})"
            ) from None
        store = cls(engine, clock=clock, outcome_delay_s=outcome_delay_s)
        if run_migrations:
            try:
                migrate(store.engine)
            except StoreError:
                store.close()
                raise
        return store

    def transaction(self) -> AbstractContextManager[Connection]:
        """One transaction for several of the stores' writes (they take `connection=`)."""
        return transaction(self.engine)

    def check(self) -> None:
        """For /readyz: raise ``StoreError`` unless the database answers and is at head."""
        where = f"database at {describe(self.engine.url)}"
        try:
            found = current_revision(self.engine)
        except SQLAlchemyError as error:
            raise StoreError(f"{where}: unreachable: {first_line(error)}") from error
        if found != head_revision():
            raise StoreError(f"{where}: schema at {found!r}, expected {head_revision()!r}")

    def close(self) -> None:
        self.deferred.close()
        if self.checkpointer is not None:
            self.checkpointer.close()
        self.engine.dispose()
