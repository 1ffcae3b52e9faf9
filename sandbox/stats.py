"""Counters behind GET /_admin/stats: what reached the sandbox and what took effect."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from typing import Any


class RequestStats:
    """Per root field: requests received, and operations executed or rejected.

    `received` counts every /graphql request by root field as soon as its document is
    read (before auth, faults or validation). `executed` counts root fields whose
    resolver ran and succeeded: for a mutation, the change took effect in the state.
    `rejected` counts root fields whose resolver raised a Stigg error. `faults` counts
    fired fault rules by kind. `rateLimited` counts, per root field, requests refused with
    429 by Stigg's rate limits (limits.py).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.requests = 0
            self.received: Counter[str] = Counter()
            self.executed: Counter[str] = Counter()
            self.rejected: Counter[str] = Counter()
            self.faults: Counter[str] = Counter()
            self.rate_limited: Counter[str] = Counter()

    def record_received(self, root_fields: Iterable[str]) -> None:
        with self._lock:
            self.requests += 1
            self.received.update(root_fields)

    def record_outcome(self, succeeded: Iterable[str], failed: Iterable[str]) -> None:
        with self._lock:
            self.executed.update(succeeded)
            self.rejected.update(failed)

    def record_rate_limited(self, root_fields: Iterable[str]) -> None:
        with self._lock:
            self.rate_limited.update(root_fields)

    def record_fault(self, kind: str) -> None:
        with self._lock:
            self.faults[kind] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self.requests,
                "received": dict(self.received),
                "executed": dict(self.executed),
                "rejected": dict(self.rejected),
                "faults": dict(self.faults),
                "rateLimited": dict(self.rate_limited),
            }
