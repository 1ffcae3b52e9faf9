"""Prometheus metrics: what every process counts, and how they are served.

Names follow Prometheus conventions (`_total` counters, `_seconds` in base units), all
prefixed `stigg_flow_actions_`. Labels are bounded: operations (ours and Stigg's root
fields), outcomes, HTTP statuses and error codes; never a customer, request or key.

Counted where the facts are: a request's outcome where the ledger finishes its log row
(app/ledger.py), each Stigg attempt in the Stigg session (app/stigg/client.py), budget
waits and Stigg's 429s in the rate limiter, batch items in the batch worker. The batch
queue's gauges are read from the database at scrape time (`BatchQueueCollector`).

Processes. gunicorn runs several worker processes, so the metrics live in prometheus
client's multiprocess mode: each process writes its own files in PROMETHEUS_MULTIPROC_DIR
and the endpoint adds them up. gunicorn's master sets the directory up before it forks
(`MetricsEndpoint.start`, from the `on_starting` hook in app/serving.py) and serves
`GET /metrics` on METRICS_PORT from a thread of its own, so a scrape never waits for a
worker thread and sees every worker. The `worker` command writes into the same directory
when PROMETHEUS_MULTIPROC_DIR is set (a service on the same machine serves its counts),
or serves its own on METRICS_PORT. Without METRICS_PORT nothing is served and the counts
stay in each process's memory.

No Flask here: the batch worker records metrics too.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Histogram, values
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from app.config import ConfigError

log = logging.getLogger(__name__)

PREFIX = "stigg_flow_actions"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# A request runs within STIGG_DEADLINE_S (at most 120 s); most take tens of milliseconds.
REQUEST_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 60.0, 120.0)
# One Stigg attempt, bounded by STIGG_TIMEOUT_S.
STIGG_CALL_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# A wait for rate budget: none for most calls, up to minutes for a batch item.
RATE_WAIT_BUCKETS = (0.001, 0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

# What a Stigg attempt can end with, besides "ok" and an HTTP status (`http_503`).
TIMEOUT = "timeout"
CONNECTION_ERROR = "connection_error"
BAD_RESPONSE = "bad_response"
# A GraphQL error code is Stigg's own (an enum of its API); anything else is lumped here.
OTHER_GRAPHQL_ERROR = "graphql_error"
_GRAPHQL_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")

# The idempotency refusals (app/ledger.py): the same key still running, or another body.
IDEMPOTENCY_REFUSALS = ("REQUEST_IN_PROGRESS", "IDEMPOTENCY_KEY_REUSED")


def graphql_result(code: str | None) -> str:
    """The `result` label of an attempt Stigg answered with a GraphQL error."""
    if code and _GRAPHQL_CODE.fullmatch(code):
        return code
    return OTHER_GRAPHQL_ERROR


def http_result(status: int) -> str:
    return f"http_{status}"


class Metrics:
    """This process's metric objects, in a registry of their own."""

    def __init__(self, registry: CollectorRegistry):
        self.registry = registry
        self.requests = Counter(
            f"{PREFIX}_requests",
            "Requests the service accounted for (a provisioning-log row each), by how they "
            "ended: outcome succeeded, rejected, failed or replayed, and the HTTP status.",
            ["operation", "outcome", "status"],
            registry=registry,
        )
        self.request_duration = Histogram(
            f"{PREFIX}_request_duration_seconds",
            "Time from a request's log row to its outcome (validation, idempotency, Stigg).",
            ["operation"],
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self.idempotent_replays = Counter(
            f"{PREFIX}_idempotent_replays",
            "Requests answered from a stored answer of the same Idempotency-Key.",
            ["operation"],
            registry=registry,
        )
        self.idempotency_refusals = Counter(
            f"{PREFIX}_idempotency_refusals",
            "Requests refused by their Idempotency-Key: REQUEST_IN_PROGRESS (still running) "
            "or IDEMPOTENCY_KEY_REUSED (another body).",
            ["operation", "code"],
            registry=registry,
        )
        self.stigg_calls = Counter(
            f"{PREFIX}_stigg_calls",
            "Attempts sent to Stigg, by root field and result: ok, Stigg's GraphQL error "
            "code, http_<status>, timeout, connection_error or bad_response.",
            ["stigg_operation", "result"],
            registry=registry,
        )
        self.stigg_call_duration = Histogram(
            f"{PREFIX}_stigg_call_duration_seconds",
            "Duration of one attempt sent to Stigg (without any wait for rate budget).",
            ["stigg_operation"],
            buckets=STIGG_CALL_BUCKETS,
            registry=registry,
        )
        self.stigg_retries = Counter(
            f"{PREFIX}_stigg_retries",
            "Attempts sent to Stigg again after a failure, by the failure's error code.",
            ["stigg_operation", "code"],
            registry=registry,
        )
        self.rate_limit_wait = Histogram(
            f"{PREFIX}_rate_limit_wait_seconds",
            "Time a Stigg call waited for a slot in the rate limiter's windows.",
            ["stigg_operation"],
            buckets=RATE_WAIT_BUCKETS,
            registry=registry,
        )
        self.rate_limit_exhausted = Counter(
            f"{PREFIX}_rate_limit_exhausted",
            "Stigg calls not sent because the rate budget would not free up in time "
            "(answered 429 STIGG_RATE_LIMITED by the service itself).",
            ["stigg_operation"],
            registry=registry,
        )
        self.stigg_rate_limited = Counter(
            f"{PREFIX}_stigg_rate_limited",
            "429s received from Stigg (HTTP 429 or RateLimitExceeded).",
            ["stigg_operation"],
            registry=registry,
        )
        self.batch_items_finished = Counter(
            f"{PREFIX}_batch_items_finished",
            "Batch items a worker ran to a final outcome: succeeded or failed.",
            ["status"],
            registry=registry,
        )
        self.batch_item_retries = Counter(
            f"{PREFIX}_batch_item_retries",
            "Batch items put back in the queue after a retryable failure.",
            registry=registry,
        )
        self.purged_rows = Counter(
            f"{PREFIX}_purged_rows",
            "Rows deleted by retention (LOG_RETENTION_DAYS) and the idempotency-key purge.",
            ["table"],
            registry=registry,
        )


_metrics: Metrics | None = None
_metrics_lock = threading.Lock()


def get() -> Metrics:
    """This process's metrics, created on first use (in a gunicorn worker: after the fork,
    so each worker writes files of its own)."""
    global _metrics
    if _metrics is None:
        with _metrics_lock:
            if _metrics is None:
                _use_multiprocess_values_if_configured()
                _metrics = Metrics(CollectorRegistry())
    return _metrics


def _use_multiprocess_values_if_configured() -> None:
    # prometheus_client picks its value class when it is first imported; the directory may
    # have been set up later in this process (gunicorn's master imports the app before its
    # on_starting hook runs). Metrics created from now on follow the environment.
    wanted = bool(os.environ.get(MULTIPROC_ENV))
    if wanted != getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.get_value_class()


# Recording: one function per fact, called where the fact is known.


def request_finished(
    *, operation: str, outcome: str, status: int, duration_s: float, error_code: str | None
) -> None:
    metrics = get()
    metrics.requests.labels(operation, outcome, str(status)).inc()
    metrics.request_duration.labels(operation).observe(duration_s)
    if outcome == "replayed":
        metrics.idempotent_replays.labels(operation).inc()
    elif error_code in IDEMPOTENCY_REFUSALS:
        metrics.idempotency_refusals.labels(operation, error_code).inc()


def stigg_call(*, stigg_operation: str, result: str, duration_s: float) -> None:
    metrics = get()
    metrics.stigg_calls.labels(stigg_operation, result).inc()
    metrics.stigg_call_duration.labels(stigg_operation).observe(duration_s)


def stigg_retry(*, stigg_operation: str, code: str) -> None:
    get().stigg_retries.labels(stigg_operation, code).inc()


def rate_limit_wait(*, stigg_operation: str, waited_s: float) -> None:
    get().rate_limit_wait.labels(stigg_operation).observe(waited_s)


def rate_limit_exhausted(*, stigg_operation: str) -> None:
    get().rate_limit_exhausted.labels(stigg_operation).inc()


def stigg_rate_limited(*, stigg_operation: str) -> None:
    get().stigg_rate_limited.labels(stigg_operation).inc()


def batch_item_finished(*, succeeded: bool) -> None:
    get().batch_items_finished.labels("succeeded" if succeeded else "failed").inc()


def batch_item_retried() -> None:
    get().batch_item_retries.inc()


def rows_purged(*, table: str, count: int) -> None:
    if count:
        get().purged_rows.labels(table).inc(count)


# Serving.


class BatchQueueCollector(Collector):
    """The batch queue as gauges, read from the database at each scrape: items queued and
    running, and the age of the oldest queued item (0 when none is). Two indexed queries;
    the connection is closed again after each scrape (the master forks with it idle)."""

    def __init__(self, database_url: str, *, clock=None):
        self._database_url = database_url
        self._clock = clock or (lambda: datetime.now(UTC))
        self._store = None
        self._lock = threading.Lock()

    def collect(self) -> Iterable[GaugeMetricFamily]:
        with self._lock:
            try:
                store = self._open()
                try:
                    counts = store.batches.unfinished_counts()
                    oldest = store.batches.oldest_queued_at()
                finally:
                    store.engine.dispose()
            except Exception as error:
                # Whatever goes wrong here, the scrape still answers, without these gauges
                # (an alert on their absence notices).
                log.warning("metrics: cannot read the batch queue: %s", error)
                return
        items = GaugeMetricFamily(
            f"{PREFIX}_batch_items",
            "Batch items not finished yet, by status: queued (waiting, including delayed "
            "retries) or running (leased to a worker).",
            labels=["status"],
        )
        for status in ("QUEUED", "RUNNING"):
            items.add_metric([status.lower()], counts.get(status, 0))
        yield items
        age_s = 0.0 if oldest is None else max(0.0, (self._clock() - oldest).total_seconds())
        yield GaugeMetricFamily(
            f"{PREFIX}_batch_oldest_queued_item_age_seconds",
            "Age of the oldest queued batch item (0 when none is queued).",
            value=age_s,
        )

    def _open(self):
        if self._store is None:
            from app.store import Store, create_engine_for

            engine = create_engine_for(self._database_url, pool_size=1, max_overflow=0)
            self._store = Store(engine)
        return self._store


@dataclass
class MetricsEndpoint:
    """`GET /metrics` on a port of its own, in a thread of the process that starts it."""

    server: object
    thread: threading.Thread
    directory: str | None
    owns_directory: bool

    @classmethod
    def start(
        cls, *, host: str, port: int, database_url: str, multiprocess: bool
    ) -> MetricsEndpoint:
        """Serve this process's metrics, or (``multiprocess``: gunicorn's master) every
        process's from PROMETHEUS_MULTIPROC_DIR, prepared here before any worker exists.

        Raises ConfigError naming METRICS_PORT when the port cannot be listened on.
        """
        from prometheus_client import start_http_server

        directory, owned = (None, False)
        registry = CollectorRegistry()
        if multiprocess:
            directory, owned = prepare_multiprocess_directory()
            MultiProcessCollector(registry, path=directory)
        else:
            registry.register(_Delegate(get().registry))
        registry.register(BatchQueueCollector(database_url))
        try:
            server, thread = start_http_server(port, addr=host, registry=registry)
        except OSError as error:
            if owned:
                shutil.rmtree(directory, ignore_errors=True)
            raise ConfigError(
                f"METRICS_PORT {port} cannot be listened on on {host} "
                f"({error.strerror or error}); set METRICS_PORT to a free port"
            ) from None
        log.info(f"metrics served on http://{host}:{port}/metrics")
        return cls(server, thread, directory, owned)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self.directory is not None:
            clean_multiprocess_directory(self.directory, remove=self.owns_directory)


class _Delegate(Collector):
    """Lets a registry be served through another registry."""

    def __init__(self, registry: CollectorRegistry):
        self._registry = registry

    def collect(self):
        return self._registry.collect()


def prepare_multiprocess_directory() -> tuple[str, bool]:
    """PROMETHEUS_MULTIPROC_DIR for this process and its children: the operator's, emptied
    of the files of processes that are gone, else a fresh directory of our own. Returns it,
    and whether it is ours (removed again on exit)."""
    given = os.environ.get(MULTIPROC_ENV, "").strip()
    if given:
        if not os.path.isdir(given):
            raise ConfigError(f"{MULTIPROC_ENV} {given!r} is not a directory")
        clean_multiprocess_directory(given, remove=False)
        return given, False
    directory = tempfile.mkdtemp(prefix="stigg-flow-actions-metrics-")
    os.environ[MULTIPROC_ENV] = directory
    return directory, True


def clean_multiprocess_directory(directory: str, *, remove: bool) -> None:
    """Delete the files of processes no longer running (all of them when `remove`, and the
    directory with them). A `worker` process writing into the same directory keeps its."""
    if remove:
        shutil.rmtree(directory, ignore_errors=True)
        return
    for path in glob.glob(os.path.join(directory, "*.db")):
        pid = _pid_of(path)
        if pid is not None and not _running(pid):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)


def process_exited(pid: int) -> None:
    """A worker process is gone: its live gauges go (its counters stay in the totals)."""
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        mark_process_dead(pid, directory)


def _pid_of(path: str) -> int | None:
    # counter_1234.db, histogram_1234.db, gauge_livesum_1234.db
    stem = os.path.basename(path)[: -len(".db")]
    tail = stem.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else None


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
