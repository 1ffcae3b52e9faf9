"""Fault and latency injection: rules that make the sandbox misbehave on purpose.

A rule is JSON, e.g. `{"kind": "status", "status": 503, "count": 2,
"operations": ["createCreditGrant"]}`. Rules are tried in the order they were added;
the first one that matches a request's root fields, still has budget (`count`) and wins
its dice roll (`percent`) fires, and only that one. Without `count` a rule fires on
every match until cleared. Any rule may carry `ms` or `min_ms`..`max_ms`: the sleep that
is the whole point of `delay` / `delay_after`, or a delay before the fault otherwise
(a slow 503, a slow drop).

Kinds (when they act relative to executing the operation):
  status       before: HTTP `status` (429, 500, 502, 503...) with a Stigg-like body;
               `retry_after` (seconds) adds a Retry-After header, which Stigg never sends
  delay        before: sleep, then handle the request normally
  drop         before: close the connection without any response
  drop_after   after:  the operation took effect, then the connection closes unanswered
  delay_after  after:  the operation took effect, then sleep before answering
  non_json     before: HTTP 200 with an HTML body
  graphql_error before: HTTP 200, data null, errors[0].extensions {code, isValidationError};
               `code` must be one Stigg sends: an ErrorCode value of its published schema
               or an Apollo-level code (error_codes.py), anything else is refused
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sandbox.error_codes import INJECTABLE_ERROR_CODES

KINDS = frozenset(
    {"status", "delay", "drop", "drop_after", "delay_after", "non_json", "graphql_error"}
)
# Kinds that act after the operation has executed (and so after it took effect).
AFTER_EXECUTION = frozenset({"drop_after", "delay_after"})

_COMMON_KEYS = {"kind", "count", "percent", "operations", "ms", "min_ms", "max_ms"}
_KIND_KEYS = {
    "status": {"status", "retry_after"},
    "graphql_error": {"code", "message", "isValidationError"},
}


class FaultRuleError(ValueError):
    """A rule the sandbox cannot understand; the admin API answers 400 with it."""


@dataclass
class FaultRule:
    kind: str
    count: int | None = None  # remaining firings; None = unlimited
    percent: float | None = None
    operations: frozenset[str] | None = None  # root field names; None = any request
    min_ms: float = 0.0
    max_ms: float = 0.0
    status: int | None = None
    retry_after: int | None = None
    code: str = "UnexpectedError"
    message: str | None = None
    is_validation_error: bool = False
    fired: int = 0

    @classmethod
    def from_json(cls, raw: Any, known_operations: Iterable[str]) -> FaultRule:
        if not isinstance(raw, dict):
            raise FaultRuleError(f"a fault rule must be a JSON object, got {raw!r}")
        kind = raw.get("kind")
        if kind not in KINDS:
            raise FaultRuleError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
        unknown = raw.keys() - _COMMON_KEYS - _KIND_KEYS.get(kind, set())
        if unknown:
            raise FaultRuleError(f"unknown keys for a {kind} rule: {sorted(unknown)}")
        rule = cls(kind=kind)
        rule.count = _optional_number(raw, "count", int, minimum=0)
        rule.percent = _optional_number(raw, "percent", float, minimum=0)
        if rule.percent is not None and rule.percent > 100:
            raise FaultRuleError("percent must be between 0 and 100")
        if "operations" in raw:
            operations = raw["operations"]
            if not isinstance(operations, list) or not all(isinstance(o, str) for o in operations):
                raise FaultRuleError("operations must be a list of root field names")
            strange = set(operations) - set(known_operations)
            if strange:
                # Catches aliases and operation names, e.g. provisionSubscription.
                raise FaultRuleError(
                    f"operations must be root field names of the schema, not {sorted(strange)}"
                )
            rule.operations = frozenset(operations)
        rule.min_ms, rule.max_ms = _delay_range(raw)
        if kind in ("delay", "delay_after") and rule.max_ms == 0:
            raise FaultRuleError(f"a {kind} rule needs ms or min_ms and max_ms")
        if kind == "status":
            status = raw.get("status")
            if not isinstance(status, int) or not 400 <= status <= 599:
                raise FaultRuleError("a status rule needs an HTTP error status (400..599)")
            rule.status = status
            rule.retry_after = _optional_number(raw, "retry_after", int, minimum=0)
        if kind == "graphql_error":
            rule.code = raw.get("code", rule.code)
            if rule.code not in INJECTABLE_ERROR_CODES:
                raise FaultRuleError(
                    f"code must be one of Stigg's ErrorCode values or an Apollo code "
                    f"(sandbox/error_codes.json), not {rule.code!r}"
                )
            rule.message = raw.get("message")
            rule.is_validation_error = bool(raw.get("isValidationError", False))
        return rule

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "fired": self.fired}
        if self.count is not None:
            data["count"] = self.count
        if self.percent is not None:
            data["percent"] = self.percent
        if self.operations is not None:
            data["operations"] = sorted(self.operations)
        if self.max_ms:
            data["min_ms"], data["max_ms"] = self.min_ms, self.max_ms
        if self.kind == "status":
            data["status"] = self.status
            if self.retry_after is not None:
                data["retry_after"] = self.retry_after
        if self.kind == "graphql_error":
            data.update(code=self.code, isValidationError=self.is_validation_error)
            if self.message is not None:
                data["message"] = self.message
        return data

    @property
    def acts_after_execution(self) -> bool:
        return self.kind in AFTER_EXECUTION

    def applies_to(self, root_fields: Iterable[str]) -> bool:
        return self.operations is None or not self.operations.isdisjoint(root_fields)

    def sleep(self) -> None:
        if self.max_ms:
            time.sleep(random.uniform(self.min_ms, self.max_ms) / 1000)


def _optional_number(raw: dict, key: str, kind: type, *, minimum: float) -> Any:
    if key not in raw:
        return None
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise FaultRuleError(f"{key} must be a number >= {minimum}, got {value!r}")
    return kind(value)


def _delay_range(raw: dict) -> tuple[float, float]:
    if "ms" in raw:
        if "min_ms" in raw or "max_ms" in raw:
            raise FaultRuleError("give either ms or min_ms and max_ms, not both")
        ms = _optional_number(raw, "ms", float, minimum=0)
        return ms, ms
    if ("min_ms" in raw) != ("max_ms" in raw):
        raise FaultRuleError("min_ms and max_ms go together")
    if "min_ms" not in raw:
        return 0.0, 0.0
    low = _optional_number(raw, "min_ms", float, minimum=0)
    high = _optional_number(raw, "max_ms", float, minimum=0)
    if high < low:
        raise FaultRuleError("max_ms must not be less than min_ms")
    return low, high


@dataclass
class FaultInjector:
    """The active rules; thread-safe, since gunicorn serves requests from many threads."""

    known_operations: frozenset[str]
    rules: list[FaultRule] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, raw_rules: Any) -> list[FaultRule]:
        """Parse and append rules (a list of rule objects, or one rule object)."""
        items = raw_rules if isinstance(raw_rules, list) else [raw_rules]
        parsed = [FaultRule.from_json(item, self.known_operations) for item in items]
        with self._lock:
            self.rules.extend(parsed)
        return parsed

    def add_from_env(self, value: str | None) -> None:
        """Rules from SANDBOX_FAULTS (a JSON list); a bad value stops start-up."""
        if not value:
            return
        try:
            raw = json.loads(value)
        except json.JSONDecodeError as error:
            raise FaultRuleError(f"SANDBOX_FAULTS is not JSON: {error}") from error
        self.add(raw)

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            return [rule.to_json() for rule in self.rules]

    def take(self, root_fields: Iterable[str]) -> FaultRule | None:
        """The rule that fires for this request, with one firing consumed, or None."""
        root_fields = list(root_fields)
        with self._lock:
            for rule in self.rules:
                if rule.count == 0 or not rule.applies_to(root_fields):
                    continue
                if rule.percent is not None and random.uniform(0, 100) >= rule.percent:
                    continue
                if rule.count is not None:
                    rule.count -= 1
                rule.fired += 1
                return rule
        return None


# --- what a fired rule answers -----------------------------------------------------------

# Stigg's edge rate limiter body, exactly as documented (and with no Retry-After).
RATE_LIMIT_BODY = {"error": "rate_limit_exceeded", "message": "Too many requests"}
_GATEWAY_REASONS = {
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
    504: "Gateway Timeout",
}
NON_JSON_BODY = (
    "<!DOCTYPE html><html><head><title>Maintenance</title></head>"
    "<body><h1>We'll be right back</h1></body></html>"
)


@dataclass(frozen=True)
class FaultResponse:
    status: int
    body: str
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


def status_response(rule: FaultRule) -> FaultResponse:
    """A status fault as Stigg's infrastructure would send it.

    429 comes from the edge rate limiter (JSON above). 502/503/504 come from the load
    balancer in front of the API, which answers in HTML, so clients must cope with a
    non-JSON error body. Anything else is Apollo's own failure shape.
    """
    assert rule.status is not None
    headers = {"Retry-After": str(rule.retry_after)} if rule.retry_after is not None else {}
    if rule.status == 429:
        return FaultResponse(429, json.dumps(RATE_LIMIT_BODY), "application/json", headers)
    if rule.status in _GATEWAY_REASONS:
        title = f"{rule.status} {_GATEWAY_REASONS[rule.status]}"
        html = f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>"
        return FaultResponse(rule.status, html, "text/html", headers)
    body = {
        "errors": [
            {
                "message": "Internal server error"
                if rule.status >= 500
                else "Request rejected by the sandbox",
                "extensions": {
                    "code": "INTERNAL_SERVER_ERROR" if rule.status >= 500 else "BAD_REQUEST"
                },
            }
        ]
    }
    return FaultResponse(rule.status, json.dumps(body), "application/json", headers)


def graphql_error_body(rule: FaultRule, path: list[str], locations: list[dict]) -> dict[str, Any]:
    return {
        "data": None,
        "errors": [
            {
                "message": rule.message or f"Injected {rule.code}",
                "locations": locations,
                "path": path,
                "extensions": {"code": rule.code, "isValidationError": rule.is_validation_error},
            }
        ],
    }
