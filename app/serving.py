"""Running the service under gunicorn, in-process, with the configuration we benchmark.

One source for every way the service runs: `stigg-flow-actions serve`, bare
`gunicorn 'app:create_app()'` from the repository root (through `gunicorn.conf.py`), the
integration tests and the benchmarks all take their gunicorn settings from
`gunicorn_options()`.

Worker class: gthread, extended (`ReadDeadlineWorker`). Each request spends most of its
time waiting on Stigg, so threads let one worker keep many requests in flight without
starving when Stigg is slow; two workers per core keep a CPU-bound moment in one from
stalling the others. A thread reads its request with blocking socket calls, though, and
gunicorn bounds only each wait for data, not the whole read: a client sending one byte a
second would hold a thread for as long as it likes, and as many such clients as threads
stop the service. So every request gets `REQUEST_READ_TIMEOUT_S` from its first byte to
its last, headers and body together.

Each worker freezes the garbage collector's view of everything it loaded at start-up
(`gc.freeze()`): a full collection otherwise walks the whole imported library (gql,
graphql-core, marshmallow, SQLAlchemy, ...) and pauses all of the worker's threads for
tens of milliseconds, which showed up as the service's p99 in `make bench`. The master
freezes what it imported before each fork (`pre_fork`), as Python's `gc` documentation
advises: a worker's first collection would otherwise walk the objects inherited from it,
writing to every page that holds one, and each worker would copy them all (bench/README.md:
47 MiB of private memory per worker against 29, and a slower start).

Start-up refusals happen in gunicorn's master, before any worker forks
(`refuse_bad_configuration`, the `on_starting` hook): one line naming the setting, then
exit 2. Left to the workers, every worker would print a traceback and gunicorn would
retry them.

Metrics (METRICS_PORT): the master prepares the multiprocess directory before it forks and
serves every worker's metrics from a thread of its own (app/metrics.py); `child_exit` tells
it when a worker is gone, `on_exit` removes what is left. Each worker also runs the hourly
retention purge (app/retention.py), started with its embedded batch worker.
"""

from __future__ import annotations

import errno
import gc
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterable, Mapping

from gunicorn import util as gunicorn_util
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.workers.gthread import ThreadWorker

from app.config import ConfigError, load_serving_settings, load_settings
from app.errors import ActionError

log = logging.getLogger(__name__)

# After answering 408, how long a worker thread lingers on the connection before closing
# it (RFC 9112 section 9.6), so that a client still sending reads the answer instead of a
# reset. Part of the time a slow client can hold a thread, so short.
TIMED_OUT_LINGER_S = 1.0
TIMED_OUT_LINGER_BYTES = 64 * 1024


def gunicorn_options(
    *, bind: str | None = None, workers: int | None = None, threads: int | None = None
) -> dict:
    """gunicorn settings; ``bind`` None leaves gunicorn's own default (``--bind``, $PORT).

    Raises ConfigError for a malformed WEB_CONCURRENCY, GUNICORN_THREADS or
    REQUEST_READ_TIMEOUT_S.
    """
    serving = load_serving_settings(os.environ)
    options = {
        "workers": workers or serving.workers,
        "worker_class": f"{__name__}.ReadDeadlineWorker",
        "threads": threads or serving.threads,
        # Salesforce waits up to 120 s per callout; our own deadline (STIGG_DEADLINE_S) is
        # shorter, so a worker is only killed if something is truly stuck.
        "timeout": 120,
        "graceful_timeout": 30,
        "keepalive": 5,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        "on_starting": on_starting,
        "on_exit": on_exit,
        "pre_fork": freeze_before_fork,
        "child_exit": on_child_exit,
        "post_worker_init": on_worker_ready,
        "worker_exit": on_worker_exit,
    }
    if bind is not None:
        options["bind"] = bind
    return options


def on_starting(server) -> None:
    """In the master, before it listens or forks: refuse a bad configuration, then serve
    the metrics (METRICS_PORT) of every worker to come."""
    refuse_bad_configuration(server)
    server.metrics_endpoint = None
    serving = load_serving_settings(os.environ)
    if serving.metrics_port is None:
        return
    from app.metrics import MetricsEndpoint
    from app.runtime import database_url

    try:
        server.metrics_endpoint = MetricsEndpoint.start(
            host=serving.metrics_host,
            port=serving.metrics_port,
            database_url=database_url(load_settings(os.environ).database_url),
            multiprocess=True,
        )
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)


def on_exit(server) -> None:
    endpoint = getattr(server, "metrics_endpoint", None)
    if endpoint is not None:
        endpoint.stop()


def on_child_exit(server, worker) -> None:
    """In the master, whenever a worker is gone (even killed): its live gauges go. Its
    counters stay part of the totals until the service stops."""
    from app.metrics import process_exited

    process_exited(worker.pid)


def on_worker_ready(worker) -> None:
    freeze_startup_objects()
    flask_app = getattr(worker, "wsgi", None)
    start_embedded_batch_worker(flask_app)
    retention = _extension(flask_app, "retention")
    if retention is not None:
        retention.start()


def on_worker_exit(server, worker) -> None:
    flask_app = getattr(worker, "wsgi", None)
    retention = _extension(flask_app, "retention")
    if retention is not None:
        retention.stop()
    batch_worker = _batch_worker(flask_app)
    if batch_worker is not None:
        batch_worker.stop()
        batch_worker.join(timeout_s=10)
    store = _extension(flask_app, "store")
    if store is not None:
        # Commits the last requests' outcomes (app/store/deferred.py), after the batch
        # items', as the CLI's worker and replay do.
        store.close()


def start_embedded_batch_worker(flask_app) -> None:
    """The embedded default (BATCH_WORKER=embedded): batch items run in the web processes."""
    batch_worker = _batch_worker(flask_app)
    if batch_worker is not None and batch_worker.runtime.settings.batch.worker == "embedded":
        batch_worker.start()


def _batch_worker(flask_app):
    return _extension(flask_app, "batch_worker")


def _extension(flask_app, name: str):
    extensions = getattr(flask_app, "extensions", None) or {}
    return extensions.get(name)


def freeze_before_fork(server=None, worker=None) -> None:
    """In the master, before each fork: what it imported goes into the GC's permanent
    generation, so a worker's collections never walk it (nor write to its pages, which the
    worker would then have to copy)."""
    gc.freeze()


def freeze_startup_objects(worker=None) -> None:
    """Move what the worker loaded into the GC's permanent generation (see module doc)."""
    gc.collect()
    gc.freeze()


def check_configuration(environ: Mapping[str, str], *, addresses: Iterable[object] = ()) -> None:
    """Everything start-up can refuse, checked once: raises ConfigError naming the setting.

    The settings, the database (opened and migrated, then closed again: engines must not
    cross a fork) and each TCP address in ``addresses`` (free to listen on).
    """
    from app.runtime import open_store

    serving = load_serving_settings(environ)
    open_store(load_settings(environ).database_url).close()
    for address in addresses:
        if isinstance(address, tuple):
            _check_free(*address[:2])
            if address[1] == serving.metrics_port:
                raise ConfigError(
                    f"METRICS_PORT {serving.metrics_port} is the service's own port; the "
                    "metrics are served on a port of their own"
                )
    if serving.metrics_port is not None:
        _check_free(serving.metrics_host, serving.metrics_port, setting="METRICS_PORT")


def refuse_bad_configuration(server) -> None:
    """gunicorn's ``on_starting`` hook: in the master, before it listens or forks."""
    # Listening sockets handed over by a re-exec (USR2) or systemd are in use by design.
    inherited = "GUNICORN_FD" in os.environ or "LISTEN_FDS" in os.environ
    addresses = () if inherited or server.cfg.reuse_port else server.cfg.address
    try:
        check_configuration(os.environ, addresses=addresses)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)


def _check_free(host: str, port: int, *, setting: str = "PORT") -> None:
    """Raises ConfigError naming `setting` (PORT or METRICS_PORT) unless the port is free."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As gunicorn binds: a port left in TIME_WAIT is free, one being listened on is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            ours = setting == "PORT"
            where = "PORT (or --bind)" if ours else setting
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"{setting} {port} is already in use on {host}; set {where} to a free port"
                ) from None
            hosts = "HOST and PORT (or --bind)" if ours else f"METRICS_HOST and {setting}"
            raise ConfigError(
                f"{setting} {port} on {host} cannot be listened on ({exc.strerror or exc}); "
                f"check {hosts}"
            ) from None


class RequestReadTimeout(ActionError):
    """The client did not send its whole request within REQUEST_READ_TIMEOUT_S.

    Raised by a read on the client's socket. Inside the application (reading the body) it
    is an ActionError like any other and is answered 408 by the error handlers; it is not
    an OSError, which Werkzeug would turn into "client disconnected" (400).
    """

    def __init__(self, timeout_s: float):
        super().__init__(
            408,
            "REQUEST_TIMEOUT",
            f"The request did not arrive within {timeout_s:g} s; send it again.",
            retryable=True,
        )


class _DeadlineSocket:
    """A client socket whose reads, while armed, share one deadline.

    The deadline starts at the first read after `arm()`; before each read the socket
    timeout is set to what is left of it. Everything else is the socket's own. Once the
    deadline has passed, every later read fails at once, so nothing lingers on the
    connection (gunicorn's graceful close on its main loop would otherwise wait on a
    client that keeps trickling).
    """

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self._timeout_s: float | None = None
        self._deadline: float | None = None
        self.expired = False
        # The request whose headers were read (None while reading headers).
        self.message = None

    def __getattr__(self, name):
        return getattr(self._sock, name)

    def arm(self, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        self._deadline = None
        self.message = None

    def disarm(self) -> None:
        self._timeout_s = None

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        return self._bounded(self._sock.recv, bufsize, flags)

    def recv_into(self, buffer, nbytes: int = 0, flags: int = 0) -> int:
        return self._bounded(self._sock.recv_into, buffer, nbytes, flags)

    def _bounded(self, read, *args):
        if self.expired and self._timeout_s is None:
            raise ConnectionAbortedError(errno.ECONNABORTED, "request read timed out")
        if self._timeout_s is None:
            return read(*args)
        now = time.monotonic()
        if self._deadline is None:
            self._deadline = now + self._timeout_s
        remaining = self._deadline - now
        if remaining <= 0:
            self._expire()
        prior = self._sock.gettimeout()
        if prior == 0.0:
            return read(*args)  # non-blocking: the caller waits, not this read
        # A caller's own shorter timeout (gunicorn's body drain) stays the caller's.
        ours = prior is None or remaining <= prior
        self._sock.settimeout(remaining if ours else prior)
        try:
            return read(*args)
        except TimeoutError:
            if ours:
                self._expire()
            raise
        finally:
            self._sock.settimeout(prior)

    def _expire(self):
        self.expired = True
        if self.message is not None:
            # Makes gunicorn answer "Connection: close" and not keep the connection.
            self.message.must_close = True
        raise RequestReadTimeout(self._timeout_s)

    def linger(self, timeout_s: float, max_bytes: int) -> None:
        """Send FIN after the answer, then read (and drop) what the client still sends."""
        deadline = time.monotonic() + timeout_s
        drained = 0
        try:
            self._sock.shutdown(socket.SHUT_WR)
            while drained < max_bytes and (remaining := deadline - time.monotonic()) > 0:
                self._sock.settimeout(remaining)
                data = self._sock.recv(4096)
                if not data:
                    break
                drained += len(data)
        except OSError:
            pass


# Codes for what gunicorn refuses before the application sees a request.
_PROTOCOL_ERROR_CODES = {
    400: "MALFORMED_REQUEST",
    403: "FORBIDDEN",
    414: "URI_TOO_LONG",
    417: "EXPECTATION_FAILED",
    431: "HEADERS_TOO_LARGE",
    500: "INTERNAL_ERROR",
    501: "NOT_IMPLEMENTED",
}


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's util.write_error, answering with the service's error body."""
    body = json.dumps(
        {
            "code": _PROTOCOL_ERROR_CODES.get(status_int, "HTTP_ERROR"),
            "message": (mesg or reason)[:255],
            "retryable": False,
        }
    ).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode("latin-1")
    gunicorn_util.write_nonblock(sock, head + body)


class ReadDeadlineWorker(ThreadWorker):
    """gthread, with a deadline (REQUEST_READ_TIMEOUT_S) on reading each whole request.

    Headers not in by then: the connection is closed without an answer. Body not in by
    then: the application answers 408 REQUEST_TIMEOUT (`RequestReadTimeout`) and the
    connection is closed. Either way the thread is free again after the deadline (plus
    `TIMED_OUT_LINGER_S`). Connections that gunicorn itself terminates TLS on are not
    covered (TLS terminates in front of this service).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.request_read_timeout_s = load_serving_settings(os.environ).request_read_timeout_s

    # gthread accepts while it holds fewer than `worker_connections` (1,000) connections,
    # however many of them wait for a thread: a burst of new connections can land mostly
    # on one worker (53 of 64 in `make bench`), whose 32 threads then queue the rest while
    # the other workers idle. Its accept loop reads this attribute before each wait; here
    # it also stops accepting while every thread has a connection, so the kernel hands the
    # next connection to a worker with a thread free. Idle kept-alive connections and those
    # still waiting for their first byte hold no thread.
    @property
    def worker_connections(self) -> int:
        idle = len(self.keepalived_conns) + len(self.pending_conns)
        return min(self._connection_limit, idle + self.cfg.threads)

    @worker_connections.setter
    def worker_connections(self, limit: int) -> None:
        self._connection_limit = limit

    def init_process(self):
        # What gunicorn answers itself (a malformed request line, headers too large, a bad
        # chunk) is JSON with the one error body too, not an HTML page. gunicorn writes it
        # with util.write_error; in this worker process that is ours.
        gunicorn_util.write_error = write_json_error
        super().init_process()

    @classmethod
    def check_config(cls, cfg, log):
        super().check_config(cfg, log)
        if cfg.is_ssl:
            log.warning("REQUEST_READ_TIMEOUT_S does not apply to TLS connections gunicorn ends")

    def load_wsgi(self):
        try:
            super().load_wsgi()
        except ConfigError:
            # create_app logged the one line that names the setting; no traceback on top.
            sys.exit(Arbiter.APP_LOAD_ERROR)

    def handle(self, conn):
        if self.cfg.is_ssl:
            return super().handle(conn)
        if not isinstance(conn.sock, _DeadlineSocket):
            conn.sock = _DeadlineSocket(conn.sock)
        sock = conn.sock
        sock.arm(self.request_read_timeout_s)
        try:
            keepalive = super().handle(conn)
        finally:
            sock.disarm()
        if sock.expired:
            if sock.message is not None:
                sock.linger(TIMED_OUT_LINGER_S, TIMED_OUT_LINGER_BYTES)
            return False
        return keepalive

    def handle_request(self, req, conn):
        if isinstance(conn.sock, _DeadlineSocket):
            conn.sock.message = req
        return super().handle_request(req, conn)

    def handle_error(self, req, client, addr, exc):
        if not isinstance(exc, RequestReadTimeout):
            return super().handle_error(req, client, addr, exc)
        if req is None:
            log.info(
                "closed a connection whose request headers did not arrive within %g s",
                self.request_read_timeout_s,
            )
        # Otherwise the application has answered already and only the rest of the body
        # (which nothing reads) was late: there is nothing left to say.


class ServiceApplication(BaseApplication):
    def __init__(self, options: dict, app_factory=None):
        self._options = options
        self._app_factory = app_factory
        super().__init__()

    def load_config(self):
        for key, value in self._options.items():
            if key in self.cfg.settings and value is not None:
                self.cfg.set(key, value)

    def load(self):
        if self._app_factory is not None:
            return self._app_factory()
        from app import create_app

        return create_app()
