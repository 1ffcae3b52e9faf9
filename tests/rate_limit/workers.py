"""Functions that run in child processes, as gunicorn workers or other instances would."""

from __future__ import annotations

import multiprocessing
import time

from app.config import RateLimitSettings
from app.stigg.rate_limit import RateBudgetExhausted, RateLimiter
from tests.rate_limit.conftest import open_window_store


def process_context():
    """Children forked from a clean server process (see tests/store/workers.py)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["app.stigg.rate_limit", "tests.rate_limit.workers"])
    return context


def hammer(backend, url, barrier, results, *, operation, customers, limits, run_s):
    """Take permits as fast as they come for `run_s` seconds; report when each came."""
    limits = RateLimitSettings(**limits)
    store = open_window_store(backend, url, window_s=limits.window_s, in_flight_s=1.0)
    limiter = RateLimiter(store, limits=limits)
    granted = []
    try:
        barrier.wait(timeout=60)
        end = time.time() + run_s
        while (left := end - time.time()) > 0:
            try:
                permit = limiter.acquire(
                    operation, customers[len(granted) % len(customers)], timeout_s=left
                )
            except RateBudgetExhausted:
                break
            # Noted before the answer, so the slot outlasts this time by a window.
            granted.append(time.time())
            permit.done()
        results.put(granted)
    except BaseException as error:
        results.put(f"error: {error!r}")
        raise
    finally:
        store.close()
