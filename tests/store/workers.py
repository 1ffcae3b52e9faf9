"""Functions that run in child processes, as gunicorn workers or separate instances would."""

from __future__ import annotations

import multiprocessing
import os
import signal

from sqlalchemy import text

from app.store import Claimed, Store, create_engine_for, migrate
from app.store.idempotency import IdempotencyStore


def process_context():
    """Children forked from a clean server process that has already imported the store.

    Unlike plain ``fork``, they inherit no threads or pooled connections of the test
    process; unlike ``spawn``, they do not each pay for importing SQLAlchemy and Alembic.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["app.store", "tests.store.workers"])
    return context


def run_at_once(target, *args, processes: int, timeout_s: float = 60, **kwargs) -> list:
    """Start `processes` children running `target(*args, barrier, results, **kwargs)`,
    which wait at one barrier to start together and each put one outcome on `results`;
    the outcomes, in the order they came."""
    context = process_context()
    barrier, results = context.Barrier(processes), context.Queue()
    children = [
        context.Process(target=target, args=(*args, barrier, results), kwargs=kwargs)
        for _ in range(processes)
    ]
    for child in children:
        child.start()
    outcomes = [results.get(timeout=timeout_s) for _ in children]
    for child in children:
        child.join(timeout=60)
    return outcomes


def claim_once(url, barrier, results, *, key: str, fingerprint: str) -> None:
    """Like one gunicorn worker receiving the request: its own engine, one claim."""
    engine = create_engine_for(url)
    try:
        barrier.wait(timeout=60)
        claim = IdempotencyStore(engine).claim(
            caller_key_id="caller",
            operation="createSubscription",
            key=key,
            fingerprint=fingerprint,
            request_id=f"request-{os.getpid()}",
            lock_s=60,
        )
        results.put("Claimed" if isinstance(claim, Claimed) else type(claim).__name__)
    except BaseException as error:
        results.put(f"error: {error!r}")
        raise
    finally:
        engine.dispose()


def migrate_once(url, barrier, results) -> None:
    """Like one instance starting up: its own engine, ``migrate``."""
    engine = create_engine_for(url)
    try:
        barrier.wait(timeout=60)
        migrate(engine)
        results.put("migrated")
    except BaseException as error:
        results.put(f"error: {error!r}")
        raise
    finally:
        engine.dispose()


def open_fresh_databases(urls, barrier, results) -> None:
    """Like a gunicorn worker starting on a database file nobody has opened yet, once per
    URL, all processes at the same moment: open a connection (the engine's set-up)."""
    outcomes = []
    for url in urls:
        engine = create_engine_for(url)
        try:
            barrier.wait(timeout=60)
            with engine.connect():
                outcomes.append("opened")
        except Exception as error:
            outcomes.append(f"error: {error!r}")
        finally:
            engine.dispose()
    results.put(outcomes)


def claim_then_die(url, claimed, *, key: str, fingerprint: str, lock_s: float) -> None:
    """A worker that claims a key, starts writing, and is SIGKILLed mid-transaction."""
    engine = create_engine_for(url)
    IdempotencyStore(engine).claim(
        caller_key_id="caller",
        operation="createSubscription",
        key=key,
        fingerprint=fingerprint,
        request_id="request-that-dies",
        lock_s=lock_s,
    )
    connection = engine.connect()
    connection.begin()  # holds SQLite's write lock; an open transaction on PostgreSQL
    connection.exec_driver_sql("DELETE FROM provisioning_log")
    claimed.set()
    os.kill(os.getpid(), signal.SIGKILL)


def write_while_checkpointing(path, committed, checkpoint_began) -> None:
    """Commits numbered rows, one transaction each, as fast as it can, while its store's
    checkpoint thread runs without a pause, until it is killed. `committed` holds the last
    number committed; `checkpoint_began` is set each time a checkpoint starts."""
    store = Store.from_url(f"sqlite:///{path}")
    checkpointer = store.checkpointer
    checkpointer.interval_s = 0.001
    checkpoint = checkpointer.checkpoint

    def announced():
        checkpoint_began.set()
        return checkpoint()

    checkpointer.checkpoint = announced  # the thread looks it up each time
    with store.engine.begin() as connection:
        connection.execute(
            text("CREATE TABLE IF NOT EXISTS numbered (n INTEGER PRIMARY KEY, data BLOB)")
        )
        number = connection.execute(text("SELECT coalesce(max(n), 0) FROM numbered")).scalar()
    while True:
        number += 1
        with store.engine.begin() as connection:
            connection.execute(
                text("INSERT INTO numbered VALUES (:n, :data)"),
                {"n": number, "data": os.urandom(16_384)},
            )
        committed.value = number
