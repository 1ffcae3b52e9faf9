"""Every accepted request is accounted for, and a repeated one is never executed twice.

For each request that passes authentication: a provisioning-log row is written before any
work (so a request that crashes mid-way stays visible as `in_progress` and can be
replayed) and finished with its outcome. With an `Idempotency-Key`, the key is claimed
once the body has been validated (the claim holds the loaded request's fingerprint, so
`"comment": null` and no comment are the same request): a repeat of a finished request
replays its answer, a repeat of a running one is told so, and the same key with another
body is refused.

Only final answers are stored under a key: a success, or a refusal that sending again
cannot change (a 4xx with `retryable: false`). Anything else releases the key, so a retry
executes again.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from app import metrics
from app.errors import ActionError
from app.request_context import bind_request_fields, current_request_id
from app.store import Claimed, InProgress, Mismatch, Replay, Store, StoreError
from schemas.salesforce_id import InvalidSalesforceId, to_18

log = logging.getLogger(__name__)

# How long a repeat waits for a claim still in progress to settle before it is told 409
# REQUEST_IN_PROGRESS: an answered request's outcome is committed within one delay
# (OUTCOME_WRITE_DELAY_MS) plus the commit itself; two, plus a margin, covers a busy one.
OUTCOME_SETTLE_DELAYS = 2
OUTCOME_SETTLE_MARGIN_S = 0.05
OUTCOME_SETTLE_POLL_S = 0.005

# An Opportunity ID mentioned in a free-text field ("Closed Won 006D000000CkYtr").
_OPPORTUNITY_ID_IN_TEXT = re.compile(r"\b006[A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?\b")


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
    attempts: int = 0
    finished: bool = field(default=False)

    def succeeded(self, body: dict, *, status: int = 200) -> None:
        self._finish("succeeded", status, _stigg_ids(body), keep=(status, body))

    def replayed(self, replay: Replay) -> None:
        self._finish("replayed", replay.status, _stigg_ids(replay.body))

    def failed(self, error: ActionError) -> None:
        self._finish(
            _failure_outcome(error),
            error.status,
            _error_details(error),
            keep=(error.status, error.body()) if error.final else None,
        )

    def crashed(self) -> None:
        self._finish("failed", 500, {"error_code": "INTERNAL_ERROR", "message": "unexpected error"})

    def _finish(
        self, outcome: str, status: int, details: dict, *, keep: tuple[int, dict] | None = None
    ) -> None:
        """The outcome in the log and, under a key, the answer kept for replays (`keep`, a
        final answer) or the key released for a retry: one transaction."""
        if self.finished:
            return
        self.finished = True
        duration_s = time.monotonic() - self.started
        ledger = self.ledger
        record_id = self.record_id
        answered_at = ledger.store.clock()
        log_finish = {
            "outcome": outcome,
            "http_status": status,
            "attempts": self.attempts,
            "duration_ms": int(duration_s * 1000),
            **details,
        }

        def write(connection) -> None:
            # Nothing reads what these statements return: on PostgreSQL they travel with
            # the next statement of the transaction that carries them.
            store = ledger.store
            if record_id is not None and keep is not None:
                store.idempotency.send_complete(
                    connection,
                    record_id,
                    status=keep[0],
                    body=keep[1],
                    ttl_s=ledger.ttl_s,
                    answered_at=answered_at,
                )
            elif record_id is not None and outcome != "replayed":
                store.idempotency.send_release(connection, record_id)
            store.log.send_finish(connection, self.log_id, finished_at=answered_at, **log_finish)

        try:
            # Committed after the answer when OUTCOME_WRITE_DELAY_MS > 0 (app/store/deferred.py).
            ledger.store.deferred.add(write)
        except StoreError as error:
            # The answer still goes out. The log row stays in_progress and a claimed key
            # stays claimed until its lock lapses; the retry after that resumes (creations
            # look first).
            log.error("could not record the outcome: %s", error)
        _report(self.operation, outcome, status, duration_s, self.attempts, details)


class Ledger:
    def __init__(self, store: Store, *, ttl_s: float, lock_s: float):
        self.store = store
        self.ttl_s = ttl_s
        self.lock_s = lock_s

    def open(
        self,
        *,
        operation: str,
        caller_key_id: str,
        payload: dict | None,
        idempotency_key: str | None = None,
        fingerprint: str | None = None,
        correlation_id: str | None = None,
        replay_of: int | None = None,
        batch_item_id: int | None = None,
    ) -> tuple[Entry, Replay | None]:
        """Log the request before any work and claim its key (one transaction when the key
        is new). The Replay to answer with, if the key's request already finished.

        Raises ActionError: 503 if the store is down; the idempotency refusals (the same
        key with another body, a key still running) after finishing the entry.
        """
        started = time.monotonic()
        row = self._row(
            operation=operation,
            caller_key_id=caller_key_id,
            idempotency_key=idempotency_key,
            payload=payload,
            correlation_id=correlation_id,
            replay_of=replay_of,
            batch_item_id=batch_item_id,
        )
        claim_args = None
        if idempotency_key is not None:
            claim_args = {
                "caller_key_id": caller_key_id,
                "operation": operation,
                "key": idempotency_key,
                "fingerprint": fingerprint,
                "request_id": current_request_id() or "",
                "lock_s": self.lock_s,
                "ttl_s": self.ttl_s,
            }

        def write_row(connection):
            # Read once committed: on PostgreSQL the whole transaction is then one message.
            log_id = self.store.log.queue_start(connection, **row)
            if claim_args is None:
                return lambda: (log_id(), None)
            claim = self.store.idempotency.queue_claim_if_new(connection, **claim_args)
            return lambda: (log_id(), claim())

        try:
            log_id, claim = self.store.group_commit.run(write_row)()
        except StoreError as error:
            raise store_unavailable(error) from error
        entry = Entry(self, log_id, operation, started)
        if claim_args is None:
            return entry, None
        if claim is None:
            # The key exists: replay, refuse, or take over a dead request's claim.
            try:
                claim = self._claim_existing(claim_args)
            except StoreError as error:
                failure = store_unavailable(error)
                entry.failed(failure)
                raise failure from error
        if isinstance(claim, Claimed):
            entry.record_id = claim.record_id
            entry.resumed = claim.resumed
            if claim.resumed:
                log.warning("resuming a request whose worker died", extra={"operation": operation})
            return entry, None
        if isinstance(claim, Replay):
            entry.replayed(claim)
            return entry, claim
        refusal = _refusal(claim)
        entry.failed(refusal)
        raise refusal

    def _claim_existing(self, claim_args: dict):
        """The existing key's claim. One still in progress is asked again for a moment:
        another process may have answered it already and not yet committed the answer
        (app/store/deferred.py), and a repeat of an answered request should replay it,
        not be told to wait."""
        claim = self.store.idempotency.claim(**claim_args)
        delay_s = self.store.deferred.delay_s
        if delay_s <= 0:
            return claim
        deadline = time.monotonic() + delay_s * OUTCOME_SETTLE_DELAYS + OUTCOME_SETTLE_MARGIN_S
        while isinstance(claim, InProgress) and time.monotonic() < deadline:
            time.sleep(OUTCOME_SETTLE_POLL_S)
            claim = self.store.idempotency.claim(**claim_args)
        return claim

    def refuse(
        self,
        *,
        operation: str,
        caller_key_id: str,
        payload: dict | None,
        error: ActionError,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
        replay_of: int | None = None,
        batch_item_id: int | None = None,
    ) -> None:
        """Log a request refused before any work (invalid, unreadable): one row, written
        finished. A log that is down does not change the refusal."""
        started = time.monotonic()
        row = self._row(
            operation=operation,
            caller_key_id=caller_key_id,
            idempotency_key=idempotency_key,
            payload=payload,
            correlation_id=correlation_id,
            replay_of=replay_of,
            batch_item_id=batch_item_id,
        )

        def write_refused_row(connection):
            log_id = self.store.log.start(connection=connection, **row)
            self.store.log.send_finish(
                connection,
                log_id,
                outcome=_failure_outcome(error),
                http_status=error.status,
                attempts=0,
                duration_ms=int((time.monotonic() - started) * 1000),
                **_error_details(error),
            )

        try:
            self.store.group_commit.run(write_refused_row)
        except StoreError as store_error:
            log.error("could not log a refused request: %s", store_error)
        _report(
            operation,
            _failure_outcome(error),
            error.status,
            time.monotonic() - started,
            0,
            _error_details(error),
        )

    @staticmethod
    def _row(
        *,
        operation: str,
        caller_key_id: str,
        idempotency_key: str | None,
        payload: dict | None,
        correlation_id: str | None,
        replay_of: int | None,
        batch_item_id: int | None,
    ) -> dict:
        """The log row's values; binds the request's fields for its log lines."""
        account_id, opportunity_id = salesforce_ids(payload)
        fields = {
            "operation": operation,
            "caller_key_id": caller_key_id,
            "idempotency_key": idempotency_key,
            "salesforce_account_id": account_id,
            "salesforce_opportunity_id": opportunity_id,
        }
        bind_request_fields(correlation_id=correlation_id, **fields)
        return {
            **fields,
            "replay_of": replay_of,
            "batch_item_id": batch_item_id,
            "payload": payload,
            "request_id": current_request_id() or "",
            "correlation_id": correlation_id,
        }


def _error_details(error: ActionError) -> dict:
    """What the log row keeps of a failure."""
    return {
        "error_code": error.code,
        "stigg_error_code": error.stigg_error_code,
        "message": error.message,
    }


def _report(
    operation: str, outcome: str, status: int, duration_s: float, attempts: int, details: dict
) -> None:
    """A finished request in the metrics and in its one "provisioning outcome" log line."""
    metrics.request_finished(
        operation=operation,
        outcome=outcome,
        status=status,
        duration_s=duration_s,
        error_code=details.get("error_code"),
    )
    log.info(
        "provisioning outcome",
        extra={
            "operation": operation,
            "outcome": outcome,
            "status": status,
            "attempts": attempts,
            "duration_ms": int(duration_s * 1000),
            "code": details.get("error_code"),
            "stigg_error_code": details.get("stigg_error_code"),
            "stigg_customer_id": details.get("stigg_customer_id"),
        },
    )


def _failure_outcome(error: ActionError) -> str:
    """`rejected`: a final no (a 4xx sending again cannot change); `failed` otherwise."""
    return "rejected" if 400 <= error.status < 500 and not error.retryable else "failed"


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


def _stigg_ids(body) -> dict:
    if not isinstance(body, dict):
        return {}
    return {
        "stigg_customer_id": body.get("stiggCustomerId"),
        "stigg_subscription_id": body.get("stiggSubscriptionId"),
        "stigg_credit_grant_id": body.get("creditGrantId"),
    }


def salesforce_ids(payload) -> tuple[str | None, str | None]:
    """The Account and Opportunity a request is about, for the log (best effort: the body
    is not validated yet). A credit grant names no Account, but its Stigg customer ID is
    the Account ID unless the admin chose another; its Opportunity may be a field or be
    quoted in the comment."""
    if not isinstance(payload, dict):
        return None, None
    account = _salesforce_id(payload.get("salesforceAccountId"), "001")
    if account is None:
        account = _salesforce_id(payload.get("stiggCustomerId"), "001", strict=True)
    opportunity = _salesforce_id(payload.get("salesforceOpportunityId"), "006")
    comment = payload.get("comment")
    if opportunity is None and isinstance(comment, str):
        for candidate in _OPPORTUNITY_ID_IN_TEXT.findall(comment):
            opportunity = _salesforce_id(candidate, "006", strict=True)
            if opportunity:
                break
    return account, opportunity


def _salesforce_id(value, prefix: str, *, strict: bool = False) -> str | None:
    """The 18-character form of a Salesforce ID; a malformed one is kept as sent (cut to
    64 characters) unless `strict`, so the log still shows what was asked."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        normalised = to_18(value.strip())
    except InvalidSalesforceId:
        return None if strict else value.strip()[:64]
    if strict and not normalised.startswith(prefix):
        return None
    return normalised
