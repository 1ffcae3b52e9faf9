"""HTTP face of the sandbox: Stigg's GraphQL endpoint, the admin API, and serving.

`create_app()` returns a Flask WSGI app; `serve()` runs it under gunicorn with ONE worker
process (the state is in memory) of the gthread class, so a request held up by an
injected delay does not block the others.
"""

from __future__ import annotations

import contextlib
import errno
import hmac
import ipaddress
import json
import os
import socket
import sys
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from flask import Flask, Response, request
from gunicorn.app.base import BaseApplication

from sandbox.catalog import describe_catalog, load_catalog
from sandbox.faults import (
    NON_JSON_BODY,
    RATE_LIMIT_BODY,
    FaultInjector,
    FaultRule,
    FaultRuleError,
    graphql_error_body,
    status_response,
)
from sandbox.graphql_api import (
    PreparedRequest,
    execute,
    mutation_entities,
    prepare,
    sandbox_schema,
)
from sandbox.limits import LimitSettings, LimitSettingsError, RateLimiter
from sandbox.resolvers import UNKNOWN_CUSTOMER_ANSWERS, SandboxContext, SandboxSettings
from sandbox.state import SandboxState
from sandbox.stats import RequestStats

DEFAULT_API_KEYS = ("sandbox",)
UNAUTHENTICATED_BODY = {
    "errors": [{"message": "Unauthenticated", "extensions": {"code": "Unauthenticated"}}]
}
# Apollo Server's words for a body it cannot read as a GraphQL request.
UNREADABLE_BODY_MESSAGE = "POST body missing, invalid Content-Type, or JSON object has no keys."
_DROPPED = "sandbox.connection_dropped"


class ConnectionDropped(OSError):
    """The sandbox closed the client connection on purpose (a drop / drop_after fault).

    Under gunicorn the socket is already shut down when this is raised, and gunicorn
    treats ENOTCONN as a client that went away: it writes nothing and closes quietly.
    Under Werkzeug's test client there is no socket, so tests see this exception.
    """

    def __init__(self) -> None:
        super().__init__(errno.ENOTCONN, "sandbox dropped the connection (fault injection)")


class _DropConnectionMiddleware:
    """Raises ConnectionDropped outside Flask, which would turn it into a 500 response."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict, start_response: Any) -> Iterable[bytes]:
        result = self.app(environ, start_response)
        if environ.get(_DROPPED):
            if hasattr(result, "close"):
                result.close()
            raise ConnectionDropped()
        return result


def _drop_connection() -> Response:
    client_socket = request.environ.get("gunicorn.socket")
    if client_socket is not None:
        # An OSError means the client is already gone: the same outcome.
        with contextlib.suppress(OSError):
            client_socket.shutdown(socket.SHUT_RDWR)
    request.environ[_DROPPED] = True
    return Response(status=500)  # never sent: the middleware raises instead


def _json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    # json.dumps, not jsonify: Flask would sort keys and put "errors" before "data".
    return Response(json.dumps(body), status, headers, mimetype="application/json")


def _api_keys_from_env() -> frozenset[str]:
    raw = os.environ.get("SANDBOX_API_KEYS", "")
    keys = frozenset(k.strip() for k in raw.split(",") if k.strip())
    return keys or frozenset(DEFAULT_API_KEYS)


def _settings_from_env() -> SandboxSettings:
    answer = os.environ.get("SANDBOX_UNKNOWN_CUSTOMER", "error").strip().lower()
    if answer not in UNKNOWN_CUSTOMER_ANSWERS:
        raise ValueError(
            f"SANDBOX_UNKNOWN_CUSTOMER must be one of {list(UNKNOWN_CUSTOMER_ANSWERS)}, "
            f"not {answer!r}"
        )
    return SandboxSettings(unknown_customer=answer)


def _updated_settings(settings: SandboxSettings, raw: Any) -> SandboxSettings:
    """The settings with a POST /_admin/settings body applied; ValueError if it is wrong."""
    if not isinstance(raw, dict) or raw.keys() - {"unknownCustomer"}:
        raise ValueError('send {"unknownCustomer": "error" | "null"}')
    answer = raw.get("unknownCustomer", settings.unknown_customer)
    if answer not in UNKNOWN_CUSTOMER_ANSWERS:
        raise ValueError(f"unknownCustomer must be one of {list(UNKNOWN_CUSTOMER_ANSWERS)}")
    return SandboxSettings(unknown_customer=answer)


class Sandbox:
    """Everything one sandbox instance holds; lives in app.extensions["stigg_sandbox"]."""

    def __init__(self, catalog_path: str | None, api_keys: Iterable[str] | None) -> None:
        self.catalog = load_catalog(catalog_path)
        self.api_keys = frozenset(api_keys) if api_keys is not None else _api_keys_from_env()
        self.state = SandboxState()
        self.stats = RequestStats()
        schema = sandbox_schema()
        root_fields = {
            name
            for root in (schema.query_type, schema.mutation_type)
            if root is not None
            for name in root.fields
        }
        self.faults = FaultInjector(known_operations=frozenset(root_fields))
        self.faults.add_from_env(os.environ.get("SANDBOX_FAULTS"))
        # What /_admin/reset goes back to: the settings the sandbox started with.
        self.startup_settings = _settings_from_env()
        self.startup_limits = LimitSettings.from_env(dict(os.environ), sorted(root_fields))
        self.limiter = RateLimiter(self.startup_limits)
        self.context = SandboxContext(self.state, self.catalog, replace(self.startup_settings))

    def is_authorised(self, api_key: str | None) -> bool:
        if not api_key:
            return False
        # Compare against every key, so the time taken does not tell which one was close.
        matches = [hmac.compare_digest(api_key, key) for key in self.api_keys]
        return any(matches)

    def reset(self) -> None:
        self.state.reset()
        self.stats.reset()
        self.faults.clear()
        self.limiter.configure(self.startup_limits)
        self.limiter.clear()
        self.set_settings(self.startup_settings)

    def set_settings(self, settings: SandboxSettings) -> None:
        with self.state.lock:  # not while an operation reads them
            self.context.settings.unknown_customer = settings.unknown_customer

    def handle_graphql(self) -> Response:
        payload = request.get_json(silent=True)
        if payload is None:
            return _json_response(
                {
                    "errors": [
                        {"message": UNREADABLE_BODY_MESSAGE, "extensions": {"code": "BAD_REQUEST"}}
                    ]
                },
                400,
            )
        prepared = prepare(payload)
        root_names = [root.name for root in prepared.root_fields]
        self.stats.record_received(root_names)
        if not self.is_authorised(request.headers.get("X-API-KEY")):
            return _json_response(UNAUTHENTICATED_BODY, 401)

        rule = self.faults.take(root_names)
        if rule is not None:
            self.stats.record_fault(rule.kind)
            if not rule.acts_after_execution:
                rule.sleep()
                early = self._fault_before_execution(rule, prepared)
                if early is not None:
                    return early

        if prepared.rejection is not None:
            return _json_response(prepared.rejection.body, prepared.rejection.status)
        # Faults first, then Stigg's rate limits: a request a fault answered never reached
        # the limiter, and one the limiter refuses executes nothing.
        refusal = self.limiter.admit(root_names, mutation_entities(prepared))
        if refusal is not None:
            self.stats.record_rate_limited(root_names)
            return _json_response(RATE_LIMIT_BODY, 429)
        outcome = execute(prepared, self.context)
        self.stats.record_outcome(outcome.succeeded, outcome.failed)

        if rule is not None and rule.acts_after_execution:
            if rule.kind == "drop_after":
                return _drop_connection()
            rule.sleep()  # delay_after
        return _json_response(outcome.body, outcome.status)

    def _fault_before_execution(
        self, rule: FaultRule, prepared: PreparedRequest
    ) -> Response | None:
        if rule.kind == "status":
            fault = status_response(rule)
            return Response(
                fault.body, fault.status, fault.headers, content_type=fault.content_type
            )
        if rule.kind == "drop":
            return _drop_connection()
        if rule.kind == "non_json":
            return Response(NON_JSON_BODY, 200, content_type="text/html; charset=utf-8")
        if rule.kind == "graphql_error":
            first = prepared.root_fields[0] if prepared.root_fields else None
            path = [first.response_key] if first else []
            loc = first.node.loc if first else None
            locations = []
            if loc is not None and loc.source is not None:
                position = loc.source.get_location(loc.start)
                locations = [{"line": position.line, "column": position.column}]
            return _json_response(graphql_error_body(rule, path, locations))
        return None  # delay: the sleep was the fault


def _is_loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def create_app(catalog_path: str | None = None, api_keys: Iterable[str] | None = None) -> Flask:
    """The sandbox WSGI app.

    api_keys: accepted X-API-KEY values; default from SANDBOX_API_KEYS (comma-separated),
    else "sandbox". SANDBOX_FAULTS (a JSON list of rules) pre-loads fault rules.
    SANDBOX_RATE_LIMITS (on|off, default on) and SANDBOX_RATE_WINDOW_S (default 60) set
    Stigg's rate limits; SANDBOX_UNKNOWN_CUSTOMER (error|null, default error) what
    getCustomerByRefId answers for an unknown ID. A bad value stops start-up.
    """
    app = Flask("sandbox")
    sandbox = Sandbox(catalog_path, api_keys)
    app.extensions["stigg_sandbox"] = sandbox

    @app.post("/graphql")
    def graphql() -> Response:
        return sandbox.handle_graphql()

    @app.get("/healthz")
    def healthz() -> Response:
        return _json_response({"status": "ok"})

    @app.before_request
    def admin_is_loopback_only() -> Response | None:
        if request.path.startswith("/_admin/") and not _is_loopback(request.remote_addr):
            return _json_response({"error": "the admin API answers loopback clients only"}, 403)
        return None

    @app.post("/_admin/faults")
    def add_faults() -> Response:
        raw = request.get_json(silent=True)
        if raw is None:
            return _json_response({"error": "send a JSON list of fault rules"}, 400)
        try:
            sandbox.faults.add(raw)
        except FaultRuleError as error:
            return _json_response({"error": str(error)}, 400)
        return _json_response({"faults": sandbox.faults.describe()})

    @app.get("/_admin/faults")
    def list_faults() -> Response:
        return _json_response({"faults": sandbox.faults.describe()})

    @app.delete("/_admin/faults")
    def clear_faults() -> Response:
        sandbox.faults.clear()
        return _json_response({"faults": []})

    @app.post("/_admin/reset")
    def reset() -> Response:
        sandbox.reset()
        return _json_response({"status": "reset"})

    @app.get("/_admin/limits")
    def get_limits() -> Response:
        return _json_response(sandbox.limiter.settings.to_json())

    @app.post("/_admin/limits")
    def set_limits() -> Response:
        try:
            settings = sandbox.limiter.settings.updated(request.get_json(silent=True))
        except LimitSettingsError as error:
            return _json_response({"error": str(error)}, 400)
        sandbox.limiter.configure(settings)
        return _json_response(settings.to_json())

    @app.get("/_admin/settings")
    def get_settings() -> Response:
        return _json_response(sandbox.context.settings.to_json())

    @app.post("/_admin/settings")
    def set_settings() -> Response:
        try:
            settings = _updated_settings(sandbox.context.settings, request.get_json(silent=True))
        except ValueError as error:
            return _json_response({"error": str(error)}, 400)
        sandbox.set_settings(settings)
        return _json_response(settings.to_json())

    @app.get("/_admin/stats")
    def stats() -> Response:
        return _json_response(sandbox.stats.snapshot())

    @app.get("/_admin/state")
    def state() -> Response:
        return _json_response(sandbox.state.snapshot())

    @app.get("/_admin/workflow-runs")
    def workflow_runs() -> Response:
        with sandbox.state.lock:
            runs = [run.to_json() for run in sandbox.state.workflow_runs]
        return _json_response({"runs": runs})

    app.wsgi_app = _DropConnectionMiddleware(app.wsgi_app)  # type: ignore[method-assign]
    return app


class _GunicornServer(BaseApplication):
    def __init__(self, app: Flask, options: dict[str, Any]) -> None:
        self.application = app
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self.application


def serve(
    host: str = "127.0.0.1",
    port: int = 8090,
    *,
    catalog_path: str | None = None,
    api_keys: Iterable[str] | None = None,
    threads: int = 32,
) -> None:
    """Serve the sandbox until interrupted (blocks; call from the main thread)."""
    app = create_app(catalog_path, api_keys)
    options = {
        "bind": f"{host}:{port}",
        "workers": 1,  # the state lives in this one process
        "worker_class": "gthread",
        "threads": threads,
        # Injected delays can be long; the worker heartbeat is separate, so this only
        # bounds a stuck request.
        "timeout": 120,
        "graceful_timeout": 5,
        "loglevel": "warning",
    }
    print(f"Stigg sandbox on http://{host}:{port}/graphql", file=sys.stderr, flush=True)
    for line in describe_catalog(app.extensions["stigg_sandbox"].catalog):
        print(line, file=sys.stderr, flush=True)
    _GunicornServer(app, options).run()
