"""Stigg's rate limits, enforced by the sandbox (reference §4.5).

Two kinds of limit apply within a window (Stigg's is a minute):

- per operation: how many calls of one root field (provisionCustomer, creditGrants, ...)
  the whole environment may make;
- per entity: how many mutations, of any kind, may name one customer (the `customerId`, or
  its legacy alias `refId`, of the mutation's `input`); a mutation of one subscription
  (updateOneSubscription, cancelSubscription), whose input names no customer, counts
  against that subscription, as Stigg's REST limits key subscription calls (assumed for
  GraphQL).

The window slides: a request is admitted when fewer than the limit of requests of its
kind were ADMITTED in the last `windowSeconds` (an exact log, not fixed buckets). Refused
requests are not counted, so a client that keeps retrying too early does not push its own
budget further away; this is the sandbox's choice, Stigg does not document it. A request
is admitted only if every limit it touches has room (each root field counts once, aliases
included), and then counts against all of them; a refused one executes nothing.

Over a limit Stigg's edge answers HTTP 429 with
`{"error":"rate_limit_exceeded","message":"Too many requests"}` and no Retry-After.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

# Stigg's published limits per minute (reference §4.5). createCreditGrant: 500 on the older
# docs page, 250 on the newer one; the lower is assumed.
DEFAULT_PER_OPERATION = {
    "provisionCustomer": 250,
    "updateOneCustomer": 250,
    "provisionSubscriptionV2": 250,
    "createCreditGrant": 250,
    # Not on Stigg's rate-limit pages: the mutations' 250 assumed.
    "updateOneSubscription": 250,
    "cancelSubscription": 250,
    "triggerWorkflow": 250,
    "getCustomerByRefId": 3000,
    "creditGrants": 500,
}
DEFAULT_READ_LIMIT = 3000  # every other read
DEFAULT_PER_ENTITY = 30
DEFAULT_WINDOW_S = 60.0


class LimitSettingsError(ValueError):
    """Settings the sandbox cannot use; the admin API answers 400, start-up stops."""


@dataclass(frozen=True)
class LimitSettings:
    enabled: bool
    window_s: float
    per_operation: dict[str, int]
    per_entity: int

    @classmethod
    def defaults(cls, operations: Iterable[str], *, enabled: bool = True) -> LimitSettings:
        per_operation = {
            name: DEFAULT_PER_OPERATION.get(name, DEFAULT_READ_LIMIT) for name in operations
        }
        return cls(enabled, DEFAULT_WINDOW_S, per_operation, DEFAULT_PER_ENTITY)

    @classmethod
    def from_env(cls, environ: dict[str, str], operations: Iterable[str]) -> LimitSettings:
        """SANDBOX_RATE_LIMITS=on|off (default on), SANDBOX_RATE_WINDOW_S (default 60)."""
        switch = environ.get("SANDBOX_RATE_LIMITS", "on").strip().lower()
        if switch not in ("on", "off"):
            raise LimitSettingsError(f"SANDBOX_RATE_LIMITS must be on or off, not {switch!r}")
        settings = cls.defaults(operations, enabled=switch == "on")
        window = environ.get("SANDBOX_RATE_WINDOW_S")
        if window:
            try:
                seconds = float(window)
            except ValueError:
                seconds = 0.0
            if not seconds > 0:
                raise LimitSettingsError(
                    f"SANDBOX_RATE_WINDOW_S must be a number of seconds above 0, not {window!r}"
                )
            settings = replace(settings, window_s=seconds)
        return settings

    def updated(self, raw: Any) -> LimitSettings:
        """These settings with the changes of a POST /_admin/limits body applied."""
        if not isinstance(raw, dict):
            raise LimitSettingsError("send a JSON object of limit settings")
        unknown = raw.keys() - {"enabled", "windowSeconds", "perOperation", "perEntity"}
        if unknown:
            raise LimitSettingsError(f"unknown limit settings: {sorted(unknown)}")
        settings = self
        if "enabled" in raw:
            if not isinstance(raw["enabled"], bool):
                raise LimitSettingsError("enabled must be true or false")
            settings = replace(settings, enabled=raw["enabled"])
        if "windowSeconds" in raw:
            window = raw["windowSeconds"]
            if isinstance(window, bool) or not isinstance(window, int | float) or window <= 0:
                raise LimitSettingsError("windowSeconds must be a number above 0")
            settings = replace(settings, window_s=float(window))
        if "perOperation" in raw:
            changes = raw["perOperation"]
            if not isinstance(changes, dict):
                raise LimitSettingsError("perOperation must map root field names to limits")
            strange = changes.keys() - self.per_operation.keys()
            if strange:
                raise LimitSettingsError(
                    f"perOperation names root fields of the schema, not {sorted(strange)}"
                )
            for name, limit in changes.items():
                _check_limit(f"perOperation.{name}", limit)
            settings = replace(settings, per_operation={**settings.per_operation, **changes})
        if "perEntity" in raw:
            _check_limit("perEntity", raw["perEntity"])
            settings = replace(settings, per_entity=raw["perEntity"])
        return settings

    def to_json(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "windowSeconds": self.window_s,
            "perOperation": dict(self.per_operation),
            "perEntity": self.per_entity,
        }


def _check_limit(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise LimitSettingsError(f"{name} must be a whole number >= 0, got {value!r}")


@dataclass(frozen=True)
class Refusal:
    """Why a request was refused: the limit it would have broken."""

    kind: str  # "perOperation" or "perEntity"
    key: str  # the root field, or the customer ID
    limit: int


@dataclass
class RateLimiter:
    """Sliding-window logs of admitted requests, per root field and per customer."""

    settings: LimitSettings
    clock: Callable[[], float] = time.monotonic
    _operations: dict[str, deque[float]] = field(default_factory=dict, repr=False)
    _entities: dict[str, deque[float]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def configure(self, settings: LimitSettings) -> None:
        """New settings; what was admitted before still counts (it still happened)."""
        with self._lock:
            self.settings = settings

    def clear(self) -> None:
        with self._lock:
            self._operations.clear()
            self._entities.clear()

    def admit(self, operations: Iterable[str], entities: Iterable[str]) -> Refusal | None:
        """Count the request in, or say which limit refuses it (and count nothing).

        `operations`: the request's root fields; `entities`: the customer ID of each of its
        mutations. While the limits are off nothing is counted.
        """
        wanted_operations = Counter(name for name in operations if not name.startswith("__"))
        wanted_entities = Counter(entities)
        with self._lock:
            settings = self.settings
            if not settings.enabled:
                return None
            now = self.clock()
            since = now - settings.window_s
            for name, count in wanted_operations.items():
                limit = settings.per_operation.get(name, DEFAULT_READ_LIMIT)
                if _recent(self._operations, name, since) + count > limit:
                    return Refusal("perOperation", name, limit)
            for customer_id, count in wanted_entities.items():
                if _recent(self._entities, customer_id, since) + count > settings.per_entity:
                    return Refusal("perEntity", customer_id, settings.per_entity)
            for logs, wanted in (
                (self._operations, wanted_operations),
                (self._entities, wanted_entities),
            ):
                for key, count in wanted.items():
                    logs.setdefault(key, deque()).extend([now] * count)
            if len(self._entities) > 10_000:
                self._forget_idle(since)
            return None

    def _forget_idle(self, since: float) -> None:
        for key in [k for k in self._entities if _recent(self._entities, k, since) == 0]:
            del self._entities[key]


def _recent(logs: dict[str, deque[float]], key: str, since: float) -> int:
    """How many admissions of `key` are newer than `since` (older ones are dropped)."""
    log = logs.get(key)
    if log is None:
        return 0
    while log and log[0] <= since:
        log.popleft()
    return len(log)
