"""Settings read once at start-up from the environment, validated, with one-line errors.

A missing or malformed setting stops start-up with a message that names it; secret values
are never part of a message.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError

DEFAULT_STIGG_API_URL = "https://api.stigg.io/graphql"
DEFAULT_CUSTOMER_URL_TEMPLATE = "https://app.stigg.io/customers/{customerId}"
DEFAULT_SUBSCRIPTION_URL_TEMPLATE = "https://app.stigg.io/subscriptions/{subscriptionId}"
# The local sandbox accepts this key; it is only ever used against a loopback URL.
SANDBOX_STIGG_API_KEY = "sandbox"
# Salesforce gives a callout 120 s at most; our whole upstream budget must fit well inside.
SALESFORCE_CALLOUT_LIMIT_S = 120
MIN_CALLER_KEY_LENGTH = 16
_PLACEHOLDER_KEYS = {"changeme", "change-me", "secret", "password", "test", "example"}
# What an HTTP header can carry unchanged: a key with anything else can never match.
_PRINTABLE_ASCII = re.compile(r"[\x21-\x7e]+")
_WHOLE_NUMBER_DIGITS = 18
_WHOLE_NUMBER = re.compile(rf"[0-9]{{1,{_WHOLE_NUMBER_DIGITS}}}")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DATABASE_BACKENDS = ("sqlite", "postgresql")
MIN_BODY_BYTES = 1024
MAX_BODY_BYTES_LIMIT = 64 * 1024 * 1024
MAX_IDEMPOTENCY_TTL_S = 366 * 24 * 3600
MAX_IDEMPOTENCY_LOCK_S = 24 * 3600
DEFAULT_THREADS = 32
DEFAULT_REQUEST_READ_TIMEOUT_S = 5.0
MAX_REQUEST_READ_TIMEOUT_S = 60.0
DEFAULT_LOG_RETENTION_DAYS = 90
MAX_LOG_RETENTION_DAYS = 36500
DEFAULT_OUTCOME_WRITE_DELAY_MS = 10
MAX_OUTCOME_WRITE_DELAY_MS = 1000
# Metrics are served on a port of their own, on loopback unless METRICS_HOST says otherwise.
DEFAULT_METRICS_HOST = "127.0.0.1"

# Stigg's published rate limits (reference §4.5), per window of STIGG_RATE_LIMIT_WINDOW_S.
DEFAULT_RATE_LIMIT_WINDOW_S = 60.0
DEFAULT_MUTATIONS_PER_WINDOW = 250
DEFAULT_READS_PER_WINDOW = 3000
DEFAULT_MUTATIONS_PER_CUSTOMER = 30
# Reads with a lower published limit than the other reads (the older, lower figure).
PUBLISHED_READ_LIMITS = {"creditGrants": 500}


class ConfigError(Exception):
    """A setting is missing or malformed; the message names it and says why."""


@dataclass(frozen=True)
class CallerKey:
    """An accepted API key, plus an ID that is safe to log (the key itself never is)."""

    secret: str = field(repr=False)
    key_id: str


@dataclass(frozen=True)
class RateLimitSettings:
    """How many Stigg calls may start per window: per operation (its GraphQL root field)
    and, for mutations, per customer."""

    enabled: bool = True
    window_s: float = DEFAULT_RATE_LIMIT_WINDOW_S
    mutations: int = DEFAULT_MUTATIONS_PER_WINDOW
    reads: int = DEFAULT_READS_PER_WINDOW
    per_customer: int = DEFAULT_MUTATIONS_PER_CUSTOMER
    # STIGG_RATE_LIMITS: root field name -> calls per window, winning over the rest.
    overrides: Mapping[str, int] = field(default_factory=dict)

    def limit_for(self, field_name: str, *, is_mutation: bool) -> int:
        if field_name in self.overrides:
            return self.overrides[field_name]
        if is_mutation:
            return self.mutations
        return min(self.reads, PUBLISHED_READ_LIMITS.get(field_name, self.reads))


@dataclass(frozen=True)
class BatchSettings:
    max_items: int
    max_body_bytes: int
    max_wait_s: float
    # "embedded": every web process runs worker threads (the SQLite default);
    # "external": only `stigg-flow-actions worker` processes run items (PostgreSQL default).
    worker: str
    worker_threads: int
    lease_s: float
    item_max_attempts: int


@dataclass(frozen=True)
class Settings:
    stigg_api_url: str
    stigg_api_key: str = field(repr=False)
    stigg_customer_url_template: str
    stigg_subscription_url_template: str
    stigg_timeout_s: float
    stigg_deadline_s: float
    caller_keys: tuple[CallerKey, ...] = field(repr=False)
    database_url: str | None
    max_body_bytes: int
    idempotency_ttl_s: int
    idempotency_lock_s: float
    batch: BatchSettings
    log_level: str = "INFO"
    # LOG_RETENTION_DAYS: finished provisioning-log rows and batches older than this go.
    log_retention_days: int = DEFAULT_LOG_RETENTION_DAYS
    # OUTCOME_WRITE_DELAY_MS: how long a request's outcome may follow its answer before it
    # is committed (app/store/deferred.py); 0 commits it before answering.
    outcome_write_delay_ms: int = DEFAULT_OUTCOME_WRITE_DELAY_MS
    rate_limits: RateLimitSettings = field(default_factory=RateLimitSettings)
    # May carry a password: never logged.
    redis_url: str | None = field(default=None, repr=False)

    @property
    def uses_local_stigg(self) -> bool:
        return is_loopback_url(self.stigg_api_url)


def key_id_for(secret: str) -> str:
    return "key_" + hashlib.sha256(secret.encode()).hexdigest()[:10]


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_settings(environ: Mapping[str, str], *, serving: bool = True) -> Settings:
    """The settings, validated. `serving=False` (the `replay` and `worker` commands, which
    answer no HTTP caller) does not require ACTIONS_API_KEYS."""
    stigg_api_url = _url(environ, "STIGG_API_URL", DEFAULT_STIGG_API_URL)
    stigg_api_key = environ.get("STIGG_API_KEY", "").strip()
    if not stigg_api_key:
        if not is_loopback_url(stigg_api_url):
            raise ConfigError(
                "STIGG_API_KEY is required: set it to the Stigg server API key of the "
                "environment to provision into (or point STIGG_API_URL at the local sandbox)"
            )
        stigg_api_key = SANDBOX_STIGG_API_KEY
    if not _PRINTABLE_ASCII.fullmatch(stigg_api_key):
        raise ConfigError("STIGG_API_KEY has a space or a character outside printable ASCII")

    template = _url_template(
        environ, "STIGG_CUSTOMER_URL_TEMPLATE", DEFAULT_CUSTOMER_URL_TEMPLATE, "{customerId}"
    )
    subscription_template = _url_template(
        environ,
        "STIGG_SUBSCRIPTION_URL_TEMPLATE",
        DEFAULT_SUBSCRIPTION_URL_TEMPLATE,
        "{subscriptionId}",
    )

    timeout_s = _seconds(environ, "STIGG_TIMEOUT_S", 10.0)
    deadline_s = _seconds(environ, "STIGG_DEADLINE_S", 25.0)
    if deadline_s < timeout_s:
        raise ConfigError(
            f"STIGG_DEADLINE_S ({deadline_s:g}) must be at least STIGG_TIMEOUT_S ({timeout_s:g})"
        )
    if deadline_s >= SALESFORCE_CALLOUT_LIMIT_S:
        raise ConfigError(
            f"STIGG_DEADLINE_S must stay below Salesforce's {SALESFORCE_CALLOUT_LIMIT_S} s "
            f"callout limit (got {deadline_s:g})"
        )

    # A claimed key is taken over only when its request must be dead: longer than any
    # request can run (all Stigg calls fit in the deadline; the margin covers the database).
    lock_s = _seconds(
        environ, "IDEMPOTENCY_LOCK_S", deadline_s + 35, at_most=MAX_IDEMPOTENCY_LOCK_S
    )
    if lock_s <= deadline_s:
        raise ConfigError(
            f"IDEMPOTENCY_LOCK_S ({lock_s:g}) must be longer than STIGG_DEADLINE_S ({deadline_s:g})"
        )

    return Settings(
        stigg_api_url=stigg_api_url,
        stigg_api_key=stigg_api_key,
        stigg_customer_url_template=template,
        stigg_subscription_url_template=subscription_template,
        stigg_timeout_s=timeout_s,
        stigg_deadline_s=deadline_s,
        caller_keys=_caller_keys(environ) if serving or environ.get("ACTIONS_API_KEYS") else (),
        database_url=_database_url(environ),
        max_body_bytes=_whole(
            environ, "MAX_BODY_BYTES", 64 * 1024, MIN_BODY_BYTES, MAX_BODY_BYTES_LIMIT
        ),
        idempotency_ttl_s=_whole(environ, "IDEMPOTENCY_TTL_S", 24 * 3600, 1, MAX_IDEMPOTENCY_TTL_S),
        idempotency_lock_s=lock_s,
        batch=_batch_settings(environ),
        log_level=_log_level(environ),
        log_retention_days=log_retention_days(environ),
        outcome_write_delay_ms=_whole(
            environ,
            "OUTCOME_WRITE_DELAY_MS",
            DEFAULT_OUTCOME_WRITE_DELAY_MS,
            0,
            MAX_OUTCOME_WRITE_DELAY_MS,
        ),
        rate_limits=_rate_limits(environ),
        redis_url=_redis_url(environ),
    )


def log_retention_days(environ: Mapping[str, str]) -> int:
    """LOG_RETENTION_DAYS, for the service and for the `purge` command (which needs nothing
    else)."""
    return _whole(
        environ, "LOG_RETENTION_DAYS", DEFAULT_LOG_RETENTION_DAYS, 1, MAX_LOG_RETENTION_DAYS
    )


def _batch_settings(environ: Mapping[str, str]) -> BatchSettings:
    max_wait_s = _seconds(
        environ, "BATCH_MAX_WAIT_S", 100.0, at_most=SALESFORCE_CALLOUT_LIMIT_S - 10
    )
    database_url = environ.get("DATABASE_URL", "").strip()
    default_worker = "external" if database_url.startswith("postgres") else "embedded"
    worker = environ.get("BATCH_WORKER", "").strip().lower() or default_worker
    if worker not in ("embedded", "external"):
        raise ConfigError(f"BATCH_WORKER must be embedded or external (got {worker!r})")
    return BatchSettings(
        max_items=_whole(environ, "BATCH_MAX_ITEMS", 200, 1, 1000),
        max_body_bytes=_whole(
            environ, "BATCH_MAX_BODY_BYTES", 4 * 1024 * 1024, MIN_BODY_BYTES, MAX_BODY_BYTES_LIMIT
        ),
        max_wait_s=max_wait_s,
        worker=worker,
        worker_threads=_whole(environ, "BATCH_WORKER_THREADS", 8, 1, 256),
        lease_s=_seconds(environ, "BATCH_LEASE_S", 60.0, at_most=3600),
        item_max_attempts=_whole(environ, "BATCH_ITEM_MAX_ATTEMPTS", 10, 1, 100),
    )


@dataclass(frozen=True)
class ServingSettings:
    """How gunicorn runs the service (`serve`, `gunicorn.conf.py`, app/serving.py)."""

    workers: int
    threads: int
    request_read_timeout_s: float
    # METRICS_PORT: where the metrics are served (None: not served at all), on METRICS_HOST.
    metrics_port: int | None = None
    metrics_host: str = DEFAULT_METRICS_HOST


def load_serving_settings(environ: Mapping[str, str]) -> ServingSettings:
    """Read without importing gunicorn: gunicorn itself parses WEB_CONCURRENCY on import."""
    metrics_port = None
    if environ.get("METRICS_PORT", "").strip():
        metrics_port = port_setting(environ, "METRICS_PORT", 0)
    return ServingSettings(
        workers=_whole(environ, "WEB_CONCURRENCY", 2 * (os.cpu_count() or 1), 1, 1024),
        threads=_whole(environ, "GUNICORN_THREADS", DEFAULT_THREADS, 1, 1024),
        request_read_timeout_s=_seconds(
            environ,
            "REQUEST_READ_TIMEOUT_S",
            DEFAULT_REQUEST_READ_TIMEOUT_S,
            at_most=MAX_REQUEST_READ_TIMEOUT_S,
        ),
        metrics_port=metrics_port,
        metrics_host=_host(environ, "METRICS_HOST", DEFAULT_METRICS_HOST),
    )


def _host(environ: Mapping[str, str], name: str, default: str) -> str:
    """An address to listen on: an IP address or a host name, nothing else."""
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        ipaddress.ip_address(raw)
    except ValueError:
        if not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})", raw):
            raise ConfigError(
                f"{name} must be an IP address or a host name to listen on (got {raw!r})"
            ) from None
    return raw


def port_setting(environ: Mapping[str, str], name: str, default: int) -> int:
    return _whole(environ, name, default, 1, 65535)


def _caller_keys(environ: Mapping[str, str]) -> tuple[CallerKey, ...]:
    raw = environ.get("ACTIONS_API_KEYS", "")
    secrets = [part.strip() for part in raw.split(",") if part.strip()]
    if not secrets:
        raise ConfigError(
            "ACTIONS_API_KEYS is required: a comma-separated list of the keys callers may use"
        )
    for position, secret in enumerate(secrets, start=1):
        # Say which key is wrong by position, never by value.
        if len(secret) < MIN_CALLER_KEY_LENGTH:
            raise ConfigError(
                f"ACTIONS_API_KEYS key #{position} is shorter than "
                f"{MIN_CALLER_KEY_LENGTH} characters"
            )
        if secret.lower() in _PLACEHOLDER_KEYS or any(ch.isspace() for ch in secret):
            raise ConfigError(f"ACTIONS_API_KEYS key #{position} is a placeholder or has spaces")
        if not _PRINTABLE_ASCII.fullmatch(secret):
            raise ConfigError(
                f"ACTIONS_API_KEYS key #{position} has a character outside printable ASCII, "
                "which an Authorization header cannot carry"
            )
    return tuple(CallerKey(secret=secret, key_id=key_id_for(secret)) for secret in secrets)


def _url_template(environ: Mapping[str, str], name: str, default: str, placeholder: str) -> str:
    """A deep-link template: an http(s) URL once `placeholder` is filled in."""
    template = environ.get(name, "").strip() or default
    if placeholder not in template:
        raise ConfigError(f"{name} must contain the placeholder {placeholder}")
    _url_value(name, template.replace(placeholder, "x"))
    return template


def _url(environ: Mapping[str, str], name: str, default: str) -> str:
    return _url_value(name, environ.get(name, "").strip() or default)


def _url_value(name: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{name} must be an http(s) URL")
    return value


def _database_url(environ: Mapping[str, str]) -> str | None:
    raw = environ.get("DATABASE_URL", "").strip()
    if not raw:
        return None
    # The value may hold a password: messages describe it, never quote it.
    expected = "expected sqlite:///<path> or postgresql://<user>:<password>@<host>/<database>"
    try:
        backend = make_url(raw).get_backend_name()
    except ArgumentError:
        raise ConfigError(f"DATABASE_URL is not a database URL ({expected})") from None
    if backend not in DATABASE_BACKENDS:
        raise ConfigError(f"DATABASE_URL names an unsupported database {backend!r} ({expected})")
    return raw


def _log_level(environ: Mapping[str, str]) -> str:
    raw = environ.get("LOG_LEVEL", "").strip()
    level = raw.upper() or "INFO"
    if level not in LOG_LEVELS:
        raise ConfigError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)} (got {raw!r})")
    return level


def _seconds(
    environ: Mapping[str, str], name: str, default: float, *, at_most: float | None = None
) -> float:
    """A duration: a finite number of seconds above 0 (and at most ``at_most``)."""
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds (got {raw!r})") from None
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be a finite number greater than 0 (got {raw!r})")
    if at_most is not None and value > at_most:
        raise ConfigError(f"{name} must be at most {at_most:g} seconds (got {raw!r})")
    return value


def _whole(
    environ: Mapping[str, str], name: str, default: int, minimum: int, maximum: int | None = None
) -> int:
    raw = environ.get(name, "").strip()
    return _whole_value(name, raw, minimum, maximum) if raw else default


def _whole_value(name: str, raw: str, minimum: int, maximum: int | None = None) -> int:
    # The digit bound first: int() of thousands of digits raises, with a traceback.
    if _WHOLE_NUMBER.fullmatch(raw):
        value = int(raw)
        if value >= minimum and (maximum is None or value <= maximum):
            return value
    span = (
        f"of {minimum} or more (at most {_WHOLE_NUMBER_DIGITS} digits)"
        if maximum is None
        else f"from {minimum} to {maximum}"
    )
    raise ConfigError(f"{name} must be a whole number {span} (got {raw!r})")


def _rate_limits(environ: Mapping[str, str]) -> RateLimitSettings:
    return RateLimitSettings(
        enabled=_boolean(environ, "STIGG_RATE_LIMITS_ENABLED", True),
        window_s=_seconds(
            environ, "STIGG_RATE_LIMIT_WINDOW_S", DEFAULT_RATE_LIMIT_WINDOW_S, at_most=3600
        ),
        mutations=_whole(environ, "STIGG_RATE_LIMIT_MUTATIONS", DEFAULT_MUTATIONS_PER_WINDOW, 1),
        reads=_whole(environ, "STIGG_RATE_LIMIT_READS", DEFAULT_READS_PER_WINDOW, 1),
        per_customer=_whole(
            environ, "STIGG_RATE_LIMIT_PER_CUSTOMER", DEFAULT_MUTATIONS_PER_CUSTOMER, 1
        ),
        overrides=_rate_limit_overrides(environ),
    )


def _rate_limit_overrides(environ: Mapping[str, str]) -> dict[str, int]:
    name = "STIGG_RATE_LIMITS"
    raw = environ.get(name, "").strip()
    if not raw:
        return {}
    # Imported here: the operations are parsed from the .graphql files, which only this
    # setting needs to know about.
    from app.stigg.operations import load_operations

    known = sorted({operation.field_name for operation in load_operations().values()})
    overrides: dict[str, int] = {}
    for part in filter(None, (part.strip() for part in raw.split(","))):
        field_name, equals, count = (piece.strip() for piece in part.partition("="))
        if not equals or not field_name:
            raise ConfigError(
                f"{name} must be a comma-separated list of rootField=count (got {part!r})"
            )
        if field_name not in known:
            raise ConfigError(
                f"{name}: {field_name!r} is not a Stigg operation this service calls "
                f"(it calls {', '.join(known)})"
            )
        if field_name in overrides:
            raise ConfigError(f"{name} sets {field_name} twice")
        overrides[field_name] = _whole_value(f"{name} ({field_name})", count, 1)
    return overrides


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _boolean(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in _TRUE | _FALSE:
        raise ConfigError(f"{name} must be true or false (got {raw!r})")
    return raw in _TRUE


def _redis_url(environ: Mapping[str, str]) -> str | None:
    raw = environ.get("REDIS_URL", "").strip()
    if not raw:
        return None
    parts = urlsplit(raw)
    # The value may carry a password: the message never repeats it.
    if parts.scheme not in ("redis", "rediss", "unix") or not (parts.netloc or parts.path):
        raise ConfigError("REDIS_URL must be a redis://, rediss:// or unix:// URL")
    return raw
