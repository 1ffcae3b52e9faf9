"""Processes sharing one store share one budget: gunicorn workers, batch workers, instances.

Three processes take permits as fast as they can for a little over a window. Whatever the
interleaving, no window of that length may hold more permits than the limit. Counts only:
the small window just keeps the test short.
"""

from __future__ import annotations

import queue

import pytest

from tests.rate_limit import workers

WINDOW_S = 2.0
RUN_S = 3.5
PROCESSES = 3


def most_in_one_window(times: list[float]) -> int:
    times = sorted(times)
    return max(
        (sum(1 for later in times[start:] if later < first + WINDOW_S))
        for start, first in enumerate(times)
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres), "redis"])
def backend(request) -> str:
    """The shared backends only: the in-process store is for one process."""
    return request.param


def run_processes(backend, url, *, operation, customers_per_process, limits) -> list[float]:
    context = workers.process_context()
    barrier = context.Barrier(PROCESSES)
    results = context.Queue()
    processes = [
        context.Process(
            target=workers.hammer,
            args=(backend, url, barrier, results),
            kwargs={
                "operation": operation,
                "customers": customers,
                "limits": {"window_s": WINDOW_S, **limits},
                "run_s": RUN_S,
            },
        )
        for customers in customers_per_process
    ]
    for process in processes:
        process.start()
    reports = []
    try:
        for _ in processes:
            reports.append(results.get(timeout=120))
    except queue.Empty:
        pytest.fail(f"a process did not report; got {reports}")
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    errors = [report for report in reports if isinstance(report, str)]
    assert errors == []
    return [granted for report in reports for granted in report]


def test_processes_share_the_operations_budget(backend, backend_url):
    granted = run_processes(
        backend,
        backend_url,
        operation="provisionCustomer",
        # Every call for another customer: only the operation's limit binds.
        customers_per_process=[[f"p{n}-c{i}" for i in range(50)] for n in range(PROCESSES)],
        limits={"mutations": 5, "per_customer": 100},
    )

    assert most_in_one_window(granted) == 5
    # Two windows began within the run: the second lot came after the first left.
    assert 5 < len(granted) <= 10


def test_processes_share_a_customers_budget(backend, backend_url):
    granted = run_processes(
        backend,
        backend_url,
        operation="createCreditGrant",
        customers_per_process=[["acme"]] * PROCESSES,
        limits={"mutations": 100, "per_customer": 3},
    )

    assert most_in_one_window(granted) == 3
    assert 3 < len(granted) <= 6
