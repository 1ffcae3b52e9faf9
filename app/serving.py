"""Running the service under gunicorn, in-process, with the configuration we benchmark.

Worker class gthread: each request spends most of its time waiting on Stigg, so threads
let one worker keep many requests in flight without starving when Stigg is slow; two
workers per core keep a CPU-bound moment in one from stalling the others.

Each worker freezes the garbage collector's view of everything it loaded at start-up
(`gc.freeze()`): a full collection otherwise walks the whole imported library (gql,
graphql-core, marshmallow, SQLAlchemy, ...) and pauses all of the worker's threads for
tens of milliseconds, which showed up as the service's p99 in `make bench`.
"""

from __future__ import annotations

import gc
import multiprocessing
import os

from gunicorn.app.base import BaseApplication

DEFAULT_THREADS = 32


def gunicorn_options(*, bind: str, workers: int | None = None, threads: int | None = None) -> dict:
    return {
        "bind": bind,
        "workers": workers
        or int(os.environ.get("WEB_CONCURRENCY", 2 * multiprocessing.cpu_count())),
        "worker_class": "gthread",
        "threads": threads or int(os.environ.get("GUNICORN_THREADS", DEFAULT_THREADS)),
        # Salesforce waits up to 120 s per callout; our own deadline (STIGG_DEADLINE_S) is
        # shorter, so a worker is only killed if something is truly stuck.
        "timeout": 120,
        "graceful_timeout": 30,
        "keepalive": 5,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        "post_worker_init": on_worker_ready,
        "worker_exit": on_worker_exit,
    }


def on_worker_ready(worker) -> None:
    freeze_startup_objects()
    start_embedded_batch_worker(getattr(worker, "wsgi", None))


def on_worker_exit(server, worker) -> None:
    batch_worker = _batch_worker(getattr(worker, "wsgi", None))
    if batch_worker is not None:
        batch_worker.stop()
        batch_worker.join(timeout_s=10)


def start_embedded_batch_worker(flask_app) -> None:
    """The embedded default (BATCH_WORKER=embedded): batch items run in the web processes."""
    batch_worker = _batch_worker(flask_app)
    if batch_worker is not None and batch_worker.runtime.settings.batch.worker == "embedded":
        batch_worker.start()


def _batch_worker(flask_app):
    extensions = getattr(flask_app, "extensions", None) or {}
    return extensions.get("batch_worker")


def freeze_startup_objects(worker=None) -> None:
    """Move what the worker loaded into the GC's permanent generation (see module doc)."""
    gc.collect()
    gc.freeze()


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
