"""The provisioning log as another process reads it.

A request's outcome is committed up to OUTCOME_WRITE_DELAY_MS after its answer
(app/store/deferred.py), so a test that reads the log right after an answer waits for the
outcome to arrive, as the `log` command's user would, instead of racing it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

# Far above the default 10 ms delay: a loaded CI machine may take a while to commit.
SETTLE_TIMEOUT_S = 5.0


class SettledLog:
    def __init__(self, log) -> None:
        self._log = log

    def get(self, entry: int | str) -> dict[str, Any] | None:
        """The entry once it has an outcome (or, after the timeout, as it is)."""
        return _settled(
            lambda: self._log.get(entry),
            lambda row: row is not None and row["outcome"] != "in_progress",
        )

    def list(self, *, until: Callable[[list], bool] | None = None, **filters) -> list[dict]:
        """The entries once `until(rows)` holds (default: none is in progress)."""
        return _settled(
            lambda: self._log.list(**filters),
            until or (lambda rows: all(row["outcome"] != "in_progress" for row in rows)),
        )


def _settled(read: Callable[[], Any], done: Callable[[Any], bool]) -> Any:
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.01)
        value = read()
    return value
