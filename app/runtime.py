"""What a process needs to run actions, built once, without Flask: the Stigg client, the
store, the ledger and the executor. The web app, the batch worker and the `replay`
command all build one of these from the same settings."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from app.config import ConfigError, Settings
from app.execution import Executor
from app.ledger import Ledger
from app.stigg import StiggClient
from app.stigg.rate_limit import RateLimiter
from app.store import Store, StoreError

# Time kept free, inside IDEMPOTENCY_LOCK_S, for the database work around a batch item.
BATCH_LOCK_MARGIN_S = 5.0


def instance_dir() -> Path:
    """Flask's instance folder for the `app` package (instance/ in a checkout), whichever
    directory a command runs in, so `serve`, `worker`, `log` and `replay` share one file."""
    from flask.sansio.scaffold import find_package

    prefix, package_path = find_package("app")
    if prefix is None:
        return Path(package_path) / "instance"
    return Path(prefix) / "var" / "app-instance"


def database_url(configured: str | None) -> str:
    """DATABASE_URL when it is set, else the embedded default: a SQLite file in the
    instance folder (created if missing)."""
    if configured:
        return configured
    folder = instance_dir()
    os.makedirs(folder, exist_ok=True)
    return f"sqlite:///{folder / 'stigg-flow-actions.db'}"


def open_store(configured: str | None, *, outcome_delay_s: float = 0.0) -> Store:
    try:
        return Store.from_url(database_url(configured), outcome_delay_s=outcome_delay_s)
    except StoreError as exc:
        # Same one-line refusal as a bad setting: the operator must fix DATABASE_URL.
        raise ConfigError(f"DATABASE_URL: {exc}") from None


@dataclass
class Runtime:
    settings: Settings
    stigg: StiggClient
    store: Store
    ledger: Ledger
    executor: Executor
    rate_limiter: RateLimiter | None = None
    # Given to the Stigg session of every batch item (how long it may wait for budget).
    batch_session_options: dict | None = None

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        """Raises ConfigError (one line naming the setting) when something cannot be used."""
        from actions import ACTIONS

        # The store first: a bad DATABASE_URL is refused by it, with its message.
        store = open_store(
            settings.database_url, outcome_delay_s=settings.outcome_write_delay_ms / 1000
        )
        rate_limiter = RateLimiter.from_settings(
            settings, database_url=database_url(settings.database_url)
        )
        stigg = StiggClient(
            api_url=settings.stigg_api_url,
            api_key=settings.stigg_api_key,
            timeout_s=settings.stigg_timeout_s,
            deadline_s=settings.stigg_deadline_s,
            customer_url_template=settings.stigg_customer_url_template,
            subscription_url_template=settings.stigg_subscription_url_template,
            rate_limiter=rate_limiter,
        )
        ledger = Ledger(store, ttl_s=settings.idempotency_ttl_s, lock_s=settings.idempotency_lock_s)
        executor = Executor(actions=ACTIONS, ledger=ledger, stigg=stigg)
        # A batch item may wait for Stigg's rate budget, but its run (budget wait + Stigg
        # calls) must end before its idempotency claim could be taken over; past that it
        # goes back to the queue with the limiter's Retry-After (app/batch/worker.py).
        budget_wait_s = max(
            0.0, settings.idempotency_lock_s - settings.stigg_deadline_s - BATCH_LOCK_MARGIN_S
        )
        return cls(
            settings,
            stigg,
            store,
            ledger,
            executor,
            rate_limiter=rate_limiter,
            batch_session_options={"budget_wait_s": budget_wait_s},
        )

    def rate_budget_seconds(self, root_field: str, count: int) -> float:
        """How long `count` more calls of a Stigg mutation take within the rate budget."""
        return self.rate_limiter.estimate_wait_s(root_field, count)
