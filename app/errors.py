"""The one exception type every failing step raises, and its rendering.

Flow reads failures through the `4XX`/`5XX` outputs of the External Service action, and
`$Flow.FaultMessage` is truncated, so the body is flat and `message` is short and
self-contained. No view builds an error response by hand: they raise `ActionError`, and
app/http_errors.py renders it (this module has no Flask in it: the worker uses it too).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from app.request_context import current_request_id

log = logging.getLogger(__name__)

# Flow shows the first ~255 characters of a fault; keep every message inside that.
MAX_MESSAGE_LENGTH = 255


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str


@dataclass
class ActionError(Exception):
    status: int
    code: str
    message: str
    retryable: bool = False
    field_errors: list[FieldError] = field(default_factory=list)
    stigg_error_code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # Kept under the Idempotency-Key as this request's final answer, whatever the status
    # (by default only a 4xx that is not retryable is): for an outcome that resending the
    # same request must not change by running it again.
    keep_under_key: bool = False

    @property
    def final(self) -> bool:
        return self.keep_under_key or (400 <= self.status < 500 and not self.retryable)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def body(self) -> dict:
        body = {
            "code": self.code,
            "message": shorten(self.message),
            "retryable": self.retryable,
            "requestId": current_request_id(),
        }
        if self.field_errors:
            body["fieldErrors"] = [
                {"field": error.field, "message": error.message} for error in self.field_errors
            ]
        if self.stigg_error_code:
            body["stiggErrorCode"] = self.stigg_error_code
        return body


def shorten(message: str, limit: int = MAX_MESSAGE_LENGTH) -> str:
    message = " ".join(message.split())
    return message if len(message) <= limit else message[: limit - 1] + "…"


def validation_failed(field_errors: list[FieldError]) -> ActionError:
    first = field_errors[0]
    message = f"{first.field}: {first.message}"
    if len(field_errors) > 1:
        message += f" (and {len(field_errors) - 1} more problem(s), see fieldErrors)"
    return ActionError(400, "VALIDATION_FAILED", message, field_errors=field_errors)


# --- finding the subscription an update or a cancellation acts on -------------------------


def subscription_not_found(message: str) -> ActionError:
    return ActionError(422, "SUBSCRIPTION_NOT_FOUND", message)


def subscription_ambiguous(message: str) -> ActionError:
    return ActionError(422, "SUBSCRIPTION_AMBIGUOUS", message)


def workflow_interrupted() -> ActionError:
    """An earlier attempt under this Idempotency-Key died (its claim lapsed) before it
    recorded an outcome: it may have triggered the workflow. Same answer as a lost one."""
    return ActionError(
        503,
        "WORKFLOW_OUTCOME_UNKNOWN",
        "An earlier attempt with this Idempotency-Key stopped before recording its outcome, "
        "so Stigg may have run the workflow; check the workflow's runs in Stigg before "
        "triggering it again.",
        keep_under_key=True,
    )


def workflow_outcome_unknown(cause: ActionError) -> ActionError:
    """triggerWorkflow may have run: Stigg got the call, its answer did not come back.

    Not retryable: Stigg runs the workflow again on every call and has no way to look a
    run up, so only someone who checked the workflow's runs in Stigg should send it again.
    Kept under the Idempotency-Key as the final answer: an automatic retry of the same
    request (a Flow fault path, a batch, a re-run interview) gets this answer again instead
    of running the workflow a second time; whoever decides to trigger it again sends a new
    key.
    """
    return ActionError(
        cause.status,
        "WORKFLOW_OUTCOME_UNKNOWN",
        "Stigg may have run the workflow but its answer was lost "
        f"({cause.code}); check the workflow's runs in Stigg before triggering it again.",
        stigg_error_code=cause.stigg_error_code,
        keep_under_key=True,
    )
