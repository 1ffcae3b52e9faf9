"""Every accepted request is accounted for, and a repeated one is never executed twice.

For each request that passes authentication: a provisioning-log row is written before any
work (so a request that crashes mid-way stays visible as `in_progress` and can be
replayed) and finished with its outcome. With an `Idempotency-Key`, the key is claimed
first: a repeat of a finished request replays its answer, a repeat of a running one is
told so, and the same key with another body is refused.

Only final answers are stored under a key: a success, or a refusal that sending again
cannot change (a 4xx with `retryable: false`). Anything else releases the key, so a retry
executes again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from app.config import CallerKey
from app.errors import ActionError
from app.request_context import bind_request_fields, current_request_id
from app.store import Claimed, InProgress, Mismatch, Replay, Store, StoreError, fingerprint
from schemas.salesforce_id import InvalidSalesforceId, to_18

log = logging.getLogger(__name__)

# How often (per process) expired idempotency records are purged.
PURGE_INTERVAL_S = 3600


def store_unavailable(error: StoreError) -> ActionError:
    log.error("store unavailable: %s", error)
    return ActionError(
        503,
        "STORE_UNAVAILABLE",
        "The service's database is unavailable; nothing was sent to Stigg. Try again later.",
        retryable=True,
    )


@dataclass
class Entry:
    """One request's passage through the ledger."""

    ledger: Ledger
    log_id: int
    operation: str
    started: float
    record_id: str | None = None
    resumed: bool = False
    replay: Replay | None = None
    attempts: int = 0
    finished: bool = field(default=False)

    def succeeded(self, body: dict) -> None:
        self._complete(200, body)
        self._finish(
            "succeeded",
            200,
            stigg_customer_id=body.get("stiggCustomerId"),
            stigg_subscription_id=body.get("stiggSubscriptionId"),
            stigg_credit_grant_id=body.get("creditGrantId"),
        )

    def failed(self, error: ActionError) -> None:
        final = 400 <= error.status < 500 and not error.retryable
        if final:
            self._complete(error.status, error.body())
        else:
            self._release()
        self._finish(
            "rejected" if final else "failed",
            error.status,
            error_code=error.code,
            stigg_error_code=error.stigg_error_code,
            message=error.message,
        )

    def crashed(self) -> None:
        self._release()
        self._finish("failed", 500, error_code="INTERNAL_ERROR", message="unexpected error")

    def _complete(self, status: int, body: dict) -> None:
        if self.record_id is None:
            return
        try:
            self.ledger.store.idempotency.complete(
                self.record_id, status=status, body=body, ttl_s=self.ledger.ttl_s
            )
        except StoreError as error:
            # The work is done; the answer still goes out. The key stays claimed until its
            # lock lapses, and the retry after that resumes (credit grants look first).
            log.error("could not store the idempotent answer: %s", error)

    def _release(self) -> None:
        if self.record_id is None:
            return
        try:
            self.ledger.store.idempotency.release(self.record_id)
        except StoreError as error:
            log.error("could not release the idempotency key: %s", error)

    def _finish(self, outcome: str, status: int, **details) -> None:
        if self.finished:
            return
        self.finished = True
        duration_ms = int((time.monotonic() - self.started) * 1000)
        try:
            self.ledger.store.log.finish(
                self.log_id,
                outcome=outcome,
                http_status=status,
                attempts=self.attempts,
                duration_ms=duration_ms,
                **details,
            )
        except StoreError as error:
            log.error("could not finish the provisioning log entry: %s", error)
        log.info(
            "provisioning outcome",
            extra={
                "operation": self.operation,
                "outcome": outcome,
                "status": status,
                "attempts": self.attempts,
                "duration_ms": duration_ms,
                "code": details.get("error_code"),
                "stigg_error_code": details.get("stigg_error_code"),
                "stigg_customer_id": details.get("stigg_customer_id"),
            },
        )


class Ledger:
    def __init__(self, store: Store, *, ttl_s: float, lock_s: float):
        self.store = store
        self.ttl_s = ttl_s
        self.lock_s = lock_s
        self._last_purge = 0.0

    def open(
        self,
        *,
        operation: str,
        caller: CallerKey,
        idempotency_key: str | None,
        body: dict,
        replay_of: int | None = None,
    ) -> Entry:
        """Log the request and claim its key. Raises ActionError when it must not run."""
        self._purge_now_and_then()
        started = time.monotonic()
        request_id = current_request_id() or ""
        request_fields = {
            "operation": operation,
            "caller_key_id": caller.key_id,
            "idempotency_key": idempotency_key,
            "salesforce_account_id": _salesforce_id(body.get("salesforceAccountId")),
            "salesforce_opportunity_id": _salesforce_id(body.get("salesforceOpportunityId")),
        }
        bind_request_fields(**request_fields)
        try:
            log_id = self.store.log.start(
                request_id=request_id, payload=body, replay_of=replay_of, **request_fields
            )
        except StoreError as error:
            raise store_unavailable(error) from error
        entry = Entry(self, log_id, operation, started)
        if idempotency_key is None:
            return entry
        try:
            claim = self.store.idempotency.claim(
                caller_key_id=caller.key_id,
                operation=operation,
                key=idempotency_key,
                fingerprint=fingerprint(body),
                request_id=request_id,
                lock_s=self.lock_s,
                ttl_s=self.ttl_s,
            )
        except StoreError as error:
            failure = store_unavailable(error)
            entry.failed(failure)
            raise failure from error
        if isinstance(claim, Claimed):
            entry.record_id = claim.record_id
            entry.resumed = claim.resumed
            if claim.resumed:
                log.warning("resuming a request whose worker died", extra={"operation": operation})
        elif isinstance(claim, Replay):
            entry.replay = claim
            entry._finish("replayed", claim.status)
        else:
            refusal = _refusal(claim)
            entry.failed(refusal)
            raise refusal
        return entry

    def _purge_now_and_then(self) -> None:
        now = time.monotonic()
        if now - self._last_purge < PURGE_INTERVAL_S:
            return
        self._last_purge = now
        try:
            purged = self.store.idempotency.purge_expired()
        except StoreError as error:
            log.warning("could not purge expired idempotency keys: %s", error)
            return
        if purged:
            log.info("purged expired idempotency keys", extra={"count": purged})


def _refusal(claim) -> ActionError:
    if isinstance(claim, Mismatch):
        return ActionError(
            422,
            "IDEMPOTENCY_KEY_REUSED",
            "This Idempotency-Key was already used with a different body; use a new key "
            "for a different request.",
        )
    assert isinstance(claim, InProgress)
    wait_s = 1
    if claim.locked_until is not None:
        wait_s = max(1, round((claim.locked_until - datetime.now(UTC)).total_seconds()))
    return ActionError(
        409,
        "REQUEST_IN_PROGRESS",
        "A request with this Idempotency-Key is still running; retry shortly.",
        retryable=True,
        headers={"Retry-After": str(min(wait_s, 5))},
    )


def _salesforce_id(value) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return to_18(value.strip())
    except InvalidSalesforceId:
        return value.strip()[:64]
