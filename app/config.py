"""Settings read once at start-up from the environment, validated, with one-line errors.

A missing or malformed setting stops start-up with a message that names it; secret values
are never part of a message.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

DEFAULT_STIGG_API_URL = "https://api.stigg.io/graphql"
DEFAULT_CUSTOMER_URL_TEMPLATE = "https://app.stigg.io/customers/{customerId}"
# The local sandbox accepts this key; it is only ever used against a loopback URL.
SANDBOX_STIGG_API_KEY = "sandbox"
# Salesforce gives a callout 120 s at most; our whole upstream budget must fit well inside.
SALESFORCE_CALLOUT_LIMIT_S = 120
MIN_CALLER_KEY_LENGTH = 16
_PLACEHOLDER_KEYS = {"changeme", "change-me", "secret", "password", "test", "example"}


class ConfigError(Exception):
    """A setting is missing or malformed; the message names it and says why."""


@dataclass(frozen=True)
class CallerKey:
    """An accepted API key, plus an ID that is safe to log (the key itself never is)."""

    secret: str = field(repr=False)
    key_id: str


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
    stigg_timeout_s: float
    stigg_deadline_s: float
    caller_keys: tuple[CallerKey, ...] = field(repr=False)
    database_url: str | None
    max_body_bytes: int
    idempotency_ttl_s: int
    idempotency_lock_s: float
    batch: BatchSettings

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

    template = environ.get("STIGG_CUSTOMER_URL_TEMPLATE", DEFAULT_CUSTOMER_URL_TEMPLATE).strip()
    if "{customerId}" not in template:
        raise ConfigError("STIGG_CUSTOMER_URL_TEMPLATE must contain the placeholder {customerId}")
    _url_value("STIGG_CUSTOMER_URL_TEMPLATE", template.replace("{customerId}", "x"))

    timeout_s = _positive_float(environ, "STIGG_TIMEOUT_S", 10.0)
    deadline_s = _positive_float(environ, "STIGG_DEADLINE_S", 25.0)
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
    lock_s = _positive_float(environ, "IDEMPOTENCY_LOCK_S", deadline_s + 35)
    if lock_s <= deadline_s:
        raise ConfigError(
            f"IDEMPOTENCY_LOCK_S ({lock_s:g}) must be longer than STIGG_DEADLINE_S ({deadline_s:g})"
        )

    return Settings(
        stigg_api_url=stigg_api_url,
        stigg_api_key=stigg_api_key,
        stigg_customer_url_template=template,
        stigg_timeout_s=timeout_s,
        stigg_deadline_s=deadline_s,
        caller_keys=_caller_keys(environ) if serving or environ.get("ACTIONS_API_KEYS") else (),
        database_url=environ.get("DATABASE_URL", "").strip() or None,
        max_body_bytes=int(_positive_float(environ, "MAX_BODY_BYTES", 64 * 1024)),
        idempotency_ttl_s=int(_positive_float(environ, "IDEMPOTENCY_TTL_S", 24 * 3600)),
        idempotency_lock_s=lock_s,
        batch=_batch_settings(environ),
    )


def _batch_settings(environ: Mapping[str, str]) -> BatchSettings:
    max_wait_s = _positive_float(environ, "BATCH_MAX_WAIT_S", 100.0)
    if max_wait_s >= SALESFORCE_CALLOUT_LIMIT_S:
        raise ConfigError(
            f"BATCH_MAX_WAIT_S must stay below Salesforce's {SALESFORCE_CALLOUT_LIMIT_S} s "
            f"callout limit (got {max_wait_s:g})"
        )
    database_url = environ.get("DATABASE_URL", "").strip()
    default_worker = "external" if database_url.startswith("postgres") else "embedded"
    worker = environ.get("BATCH_WORKER", "").strip().lower() or default_worker
    if worker not in ("embedded", "external"):
        raise ConfigError(f"BATCH_WORKER must be embedded or external (got {worker!r})")
    return BatchSettings(
        max_items=_whole_number(environ, "BATCH_MAX_ITEMS", 200, maximum=1000),
        max_body_bytes=_whole_number(environ, "BATCH_MAX_BODY_BYTES", 4 * 1024 * 1024),
        max_wait_s=max_wait_s,
        worker=worker,
        worker_threads=_whole_number(environ, "BATCH_WORKER_THREADS", 8, maximum=256),
        lease_s=_positive_float(environ, "BATCH_LEASE_S", 60.0),
        item_max_attempts=_whole_number(environ, "BATCH_ITEM_MAX_ATTEMPTS", 10, maximum=100),
    )


def _whole_number(
    environ: Mapping[str, str], name: str, default: int, *, maximum: int | None = None
) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"{name} must be a whole number of at least 1 (got {raw!r})")
    if maximum is not None and int(raw) > maximum:
        raise ConfigError(f"{name} must be at most {maximum} (got {raw!r})")
    return int(raw)


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
    return tuple(CallerKey(secret=secret, key_id=key_id_for(secret)) for secret in secrets)


def _url(environ: Mapping[str, str], name: str, default: str) -> str:
    return _url_value(name, environ.get(name, "").strip() or default)


def _url_value(name: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{name} must be an http(s) URL")
    return value


def _positive_float(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number (got {raw!r})") from None
    if not value > 0:
        raise ConfigError(f"{name} must be greater than 0 (got {raw!r})")
    return value
