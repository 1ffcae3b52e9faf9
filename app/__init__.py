"""The Flask application factory: `gunicorn 'app:create_app()'`."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping

from flask import Flask, g, jsonify, request

from app.config import ConfigError, Settings, load_settings
from app.errors import register_error_handlers
from app.ledger import Ledger
from app.logs import configure_logging
from app.openapi import build_spec
from app.pipeline import register_actions
from app.request_context import clear_request_id, new_request_id
from app.stigg import StiggClient
from app.stigg.rate_limit import RateLimiter
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
    configure_logging(environ.get("LOG_LEVEL", "INFO"))
    try:
        settings = load_settings(environ)
    except ConfigError as exc:
        log.error("configuration error: %s", exc)
        raise

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False
    app.extensions["settings"] = settings
    # The store first: a bad DATABASE_URL is refused by it, with its message.
    app.extensions["store"] = store = _open_store(settings)
    app.extensions["stigg"] = StiggClient(
        api_url=settings.stigg_api_url,
        api_key=settings.stigg_api_key,
        timeout_s=settings.stigg_timeout_s,
        deadline_s=settings.stigg_deadline_s,
        customer_url_template=settings.stigg_customer_url_template,
        rate_limiter=_open_rate_limiter(settings),
    )

    app.extensions["ledger"] = Ledger(
        store, ttl_s=settings.idempotency_ttl_s, lock_s=settings.idempotency_lock_s
    )

    _register_request_id(app)
    register_error_handlers(app)
    register_actions(app, ACTIONS)
    _register_health(app, settings, store)
    _register_openapi(app, build_spec(ACTIONS))
    return app


def _register_request_id(app: Flask) -> None:
    @app.before_request
    def start_request():
        g.request_id = new_request_id(request.headers.get("X-Request-Id"))
        g.started = time.monotonic()

    @app.after_request
    def finish_request(response):
        response.headers["X-Request-Id"] = g.get("request_id", "")
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
    @app.get("/v1/openapi.json")
    def openapi():
        return jsonify(spec)


def default_database_url() -> str:
    """The embedded default: a SQLite file in the instance folder (created if missing)."""
    instance_path = Flask(__name__).instance_path
    os.makedirs(instance_path, exist_ok=True)
    return f"sqlite:///{os.path.join(instance_path, 'stigg-flow-actions.db')}"


def _open_store(settings: Settings) -> Store:
    url = settings.database_url or default_database_url()
    try:
        return Store.from_url(url)
    except StoreError as exc:
        # Same one-line refusal as a bad setting: the operator must fix DATABASE_URL.
        message = f"DATABASE_URL: {exc}"
        log.error("configuration error: %s", message)
        raise ConfigError(message) from exc


def _open_rate_limiter(settings: Settings) -> RateLimiter:
    """Stigg's rate budget, shared through the store's database (or Redis)."""
    try:
        return RateLimiter.from_settings(
            settings, database_url=settings.database_url or default_database_url()
        )
    except ConfigError as exc:
        log.error("configuration error: %s", exc)
        raise


def _register_health(app: Flask, settings: Settings, store: Store) -> None:
    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok"})

    @app.get("/readyz")
    def readyz():
        try:
            store.check()
        except StoreError as exc:
            log.error("not ready: %s", exc)
            response = jsonify({"status": "not ready", "database": "unavailable"})
            response.status_code = 503
            return response
        return jsonify(
            {
                "status": "ready",
                "database": "ok",
                "stigg": "sandbox" if settings.uses_local_stigg else "stigg",
            }
        )
