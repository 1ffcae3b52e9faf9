"""The one exception type every failing step raises, and its rendering.

Flow reads failures through the `4XX`/`5XX` outputs of the External Service action, and
`$Flow.FaultMessage` is truncated, so the body is flat and `message` is short and
self-contained. No view builds an error response by hand: they raise `ActionError`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

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


# Werkzeug's own HTTP errors (unknown route, wrong method, body too large) get the same
# flat body as everything else.
_HTTP_ERROR_CODES = {
    404: ("NOT_FOUND", "No such endpoint; see GET /v1/openapi.json for the actions."),
    405: ("METHOD_NOT_ALLOWED", "This endpoint does not accept that HTTP method."),
    413: ("PAYLOAD_TOO_LARGE", "The request body is larger than this service accepts."),
    415: ("UNSUPPORTED_MEDIA_TYPE", "Send the body as application/json."),
}


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ActionError)
    def render_action_error(error: ActionError):
        log.info(
            "request failed",
            extra={
                "status": error.status,
                "code": error.code,
                "stigg_error_code": error.stigg_error_code,
            },
        )
        response = jsonify(error.body())
        response.status_code = error.status
        response.headers.update(error.headers)
        return response

    @app.errorhandler(HTTPException)
    def render_http_exception(exception: HTTPException):
        code, message = _HTTP_ERROR_CODES.get(
            exception.code or 500, ("HTTP_ERROR", exception.description or "HTTP error")
        )
        headers = {}
        valid_methods = getattr(exception, "valid_methods", None)
        if valid_methods:
            # RFC 9110: a 405 says what the resource does accept.
            headers["Allow"] = ", ".join(sorted(valid_methods))
        return render_action_error(
            ActionError(exception.code or 500, code, message, headers=headers)
        )

    @app.errorhandler(Exception)
    def render_unexpected(exception: Exception):
        # Details go to the log, never to the caller: they may hold data or secrets.
        log.exception("unexpected error")
        return render_action_error(
            ActionError(
                500,
                "INTERNAL_ERROR",
                "Unexpected error in the service; it has been logged under this requestId.",
                retryable=False,
            )
        )
