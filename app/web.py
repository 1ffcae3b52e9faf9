"""The Flask application: the HTTP shell around the runtime (app/runtime.py)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping

from flask import Flask, g, jsonify, request

from app.batch.http import register_batches
from app.batch.worker import BatchWorker
from app.config import ConfigError, load_settings
from app.http_errors import register_error_handlers
from app.logs import configure_logging
from app.openapi import build_spec
from app.pipeline import register_actions
from app.request_context import clear_request_id, correlation_id, new_request_id
from app.retention import RetentionJob
from app.runtime import Runtime
from app.stigg.client import LastCall
from app.store import Store, StoreError

log = logging.getLogger(__name__)


def create_app(test_config: Mapping[str, str] | None = None) -> Flask:
    """Build the app. Settings come from the environment; `test_config` (same names as the
    environment variables) overrides them.

    Raises ConfigError, with a one-line message naming the setting, when one is missing or
    malformed.
    """
    # Imported here, not at module level: actions import app.stigg, so a module-level
    # import would make `import actions` and `import app` depend on their order.
    from actions import ACTIONS

    environ = {**os.environ, **(test_config or {})}
    try:
        settings = load_settings(environ)
        configure_logging(settings.log_level)
        runtime = Runtime.build(settings)
    except ConfigError as exc:
        # One line naming the setting; the error goes on to whoever called create_app.
        configure_logging()
        log.error("configuration error: %s", exc)
        raise

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False
    # `//v1//actions/x` is a 404 in JSON, not an HTML redirect.
    app.url_map.merge_slashes = False
    app.extensions["runtime"] = runtime
    # The pieces, by name, for tests and the CLI.
    app.extensions["settings"] = settings
    app.extensions["stigg"] = runtime.stigg
    app.extensions["store"] = runtime.store
    app.extensions["ledger"] = runtime.ledger
    # Built here, started by the serving process (app/serving.py) when BATCH_WORKER is
    # embedded; the web thread that stores a batch wakes it.
    app.extensions["batch_worker"] = BatchWorker(runtime)
    # Likewise started by the serving process: LOG_RETENTION_DAYS, applied hourly.
    app.extensions["retention"] = RetentionJob(runtime.store, days=settings.log_retention_days)

    _register_request_id(app)
    register_error_handlers(app)
    register_actions(app, ACTIONS)
    register_batches(app)
    _register_health(app, runtime.store)
    _register_openapi(app, build_spec(ACTIONS))
    return app


def _register_request_id(app: Flask) -> None:
    @app.before_request
    def start_request():
        g.request_id = new_request_id()
        g.correlation_id = correlation_id(request.headers.get("X-Request-Id"))
        g.started = time.monotonic()

    @app.after_request
    def finish_request(response):
        response.headers["X-Request-Id"] = g.get("request_id", "")
        if g.get("correlation_id"):
            response.headers["X-Correlation-Id"] = g.correlation_id
        if g.get("outcome_logged"):
            # The ledger's "provisioning outcome" line already tells this request's story.
            return response
        log.info(
            "request",
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": int((time.monotonic() - g.get("started", time.monotonic())) * 1000),
            },
        )
        return response

    @app.teardown_request
    def forget_request(exc):
        clear_request_id()


def _register_openapi(app: Flask, spec: dict) -> None:
    @app.get("/v1/openapi.json", provide_automatic_options=False)
    def openapi():
        return jsonify(spec)


def _register_health(app: Flask, store: Store) -> None:
    settings = app.extensions["settings"]
    stigg = app.extensions["stigg"]

    @app.get("/healthz", provide_automatic_options=False)
    def healthz():
        return jsonify({"status": "ok"})

    @app.get("/readyz", provide_automatic_options=False)
    def readyz():
        """Ready: the configuration loaded (or this app would not exist) and the database
        answers at the current schema. Stigg's last answer is reported, never judged: a
        Stigg outage would take every instance out of the load balancer at once, and
        requests are better answered with a retryable 503 than refused by the balancer."""
        body = {
            "status": "ready",
            "database": "ok",
            "stigg": "sandbox" if settings.uses_local_stigg else "stigg",
            "stiggLastCall": _last_call(stigg.last_call),
        }
        try:
            store.check()
        except StoreError as exc:
            log.error("not ready: %s", exc)
            response = jsonify(body | {"status": "not ready", "database": "unavailable"})
            response.status_code = 503
            return response
        return jsonify(body)


def _last_call(last_call: LastCall | None) -> dict | None:
    """This process's last attempt to call Stigg, as information (None before the first)."""
    if last_call is None:
        return None
    return {
        "operation": last_call.stigg_operation,
        "result": last_call.result,
        "at": last_call.at_utc.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "ageSeconds": round(last_call.age_s(), 1),
    }
