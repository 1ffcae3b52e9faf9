"""Requests' rows committed together: one transaction for the threads that arrive at once.

Every request commits its provisioning-log row (and its key's claim) before any work. In
a worker process whose threads arrive at the store together, each used to take the
process's one connection in turn, and on SQLite the write lock between processes, and
commit alone: a BEGIN, a commit of a row with its index entries, and a lock hand-over
per request.

Here the first thread to arrive leads: it opens one transaction, runs its own write and
those of every thread that queued behind it, commits once and hands each thread its own
result. A thread that arrives while a leader commits queues and waits; the leader, once
done, wakes each thread of its batch with its result and hands the lead to the first
thread that queued meanwhile, which commits the next batch. Each waiting thread is woken
exactly once (a lock of its own, released for it): waking them all on every commit, to
let them find out which of them had been carried, cost 2% of a worker's CPU at 32
connections (py-spy, bench/README.md). Alone (one request at a time) a thread leads at
once: nothing is added but a lock.

Nothing a request is told depends on the others' writes: its results are handed over
only after the commit, a write refused by the database (a bug, never an outage) is run
again alone so that only its own request fails, and an outage fails each request of the
batch with the retryable StoreError it would have had alone. The outcomes the process
deferred (app/store/deferred.py) ride in the same transaction, as they rode in each
request's before.

PostgreSQL: two batches in two processes that claim the same two new keys in opposite
orders can deadlock; PostgreSQL aborts one after `deadlock_timeout` (1 s), and its
requests get the retryable 503. Two keys claimed at the same moment by two requests
each: not something Salesforce sends.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from sqlalchemy import Engine

from app.store.deferred import DeferredWrites
from app.store.driver_transaction import DriverConnection, driver_transaction
from app.store.errors import StoreError

Result = TypeVar("Result")


class _Ticket(Generic[Result]):
    """One thread's write, and what became of it once its batch was committed."""

    __slots__ = ("_signal", "error", "lead", "result", "settled", "write")

    def __init__(self, write: Callable[[DriverConnection], Result]) -> None:
        self.write = write
        self.settled = False
        self.result: Any = None
        self.error: BaseException | None = None
        # Set (under GroupCommit's lock) when the thread is handed the lead.
        self.lead = False
        # Held until the thread is woken: settled, or handed the lead.
        self._signal = threading.Lock()
        self._signal.acquire()

    def wait(self) -> None:
        self._signal.acquire()

    def wake(self) -> None:
        self._signal.release()

    def succeed(self, result: Result) -> None:
        self.result, self.settled = result, True

    def fail(self, error: BaseException) -> None:
        self.error, self.settled = error, True

    def outcome(self) -> Result:
        if self.error is not None:
            raise self.error
        return self.result


class GroupCommit:
    """Thread-safe; one per process (a Store's)."""

    def __init__(self, engine: Engine, deferred: DeferredWrites) -> None:
        self._engine = engine
        self._deferred = deferred
        self._lock = threading.Lock()
        # Threads waiting for the next batch, in arrival order; the first of them leads it.
        self._queued: list[_Ticket] = []
        self._leading = False
        # Transactions committed (only the leader commits, one at a time).
        self.commits = 0

    def run(self, write: Callable[[DriverConnection], Result]) -> Result:
        """`write(connection)` committed, perhaps with other threads' writes; its result.
        Its statements are DriverStatements (app/store/driver_statement.py).

        Raises StoreError if the database is down (nothing of it was committed), or what
        `write` raised when run alone.
        """
        ticket = _Ticket(write)
        with self._lock:
            self._queued.append(ticket)
            follows = self._leading
            self._leading = True
        if follows:
            try:
                ticket.wait()
            except BaseException:
                self._abandon(ticket)
                raise
            if ticket.settled:
                return ticket.outcome()
            # Handed the lead: this ticket is the first of the queue.
        with self._lock:
            batch, self._queued = self._queued, []
        try:
            self._commit(batch)
        finally:
            with self._lock:
                successor = self._next_leader()
            # The next commit first: every thread queued behind it waits for it.
            if successor is not None:
                successor.wake()
            for other in batch:
                if other is not ticket:
                    other.wake()
        return ticket.outcome()

    def _next_leader(self) -> _Ticket | None:
        """With the lock held: the thread to lead the next batch, if any is queued."""
        if not self._queued:
            self._leading = False
            return None
        successor = self._queued[0]
        successor.lead = True
        return successor

    def _abandon(self, ticket: _Ticket) -> None:
        """A waiting thread is being stopped: it leaves the queue, and passes the lead on
        if it had been handed it, so that no thread queued behind it waits for ever."""
        with self._lock:
            if ticket in self._queued:
                self._queued.remove(ticket)
            successor = self._next_leader() if ticket.lead else None
        if successor is not None:
            successor.wake()

    def _commit(self, batch: list[_Ticket]) -> None:
        """Settle every ticket of the batch, whatever happens."""
        carried = self._deferred.take()
        try:
            # The writes are DriverStatements: no SQLAlchemy Connection around them
            # (app/store/driver_transaction.py).
            with driver_transaction(self._engine) as connection:
                for deferred_write in carried:
                    deferred_write(connection)
                results = [ticket.write(connection) for ticket in batch]
        except StoreError as error:
            self._deferred.give_back(carried)
            for ticket in batch:
                ticket.fail(_own_copy(error))
            return
        except Exception as error:
            # One of the writes was refused. The outcomes go back to the background
            # thread, which commits them one by one; each request's write is run alone.
            self._deferred.give_back(carried)
            if len(batch) == 1 and not carried:
                batch[0].fail(error)
                return
            for ticket in batch:
                self._commit_alone(ticket)
            return
        except BaseException as error:
            # The leading thread itself is being stopped: it raises this, the others a
            # StoreError, so that no thread waits for ever.
            self._deferred.give_back(carried)
            for ticket in batch:
                ticket.fail(_interrupted(error))
            raise
        self.commits += 1
        for ticket, result in zip(batch, results, strict=True):
            ticket.succeed(result)

    def _commit_alone(self, ticket: _Ticket) -> None:
        try:
            with driver_transaction(self._engine) as connection:
                result = ticket.write(connection)
        except Exception as error:
            ticket.fail(error)
        else:
            self.commits += 1
            ticket.succeed(result)


def _own_copy(error: StoreError) -> StoreError:
    """Each waiting thread raises an exception of its own (one exception object raised
    in several threads at once would have its traceback written by all of them)."""
    copy = StoreError(str(error))
    copy.__cause__ = error.__cause__
    return copy


def _interrupted(error: BaseException) -> StoreError:
    return StoreError(f"the thread committing this request's row was stopped ({error!r})")
