"""Rendering every error as the one flat JSON body (the HTTP side of app/errors.py)."""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from app.errors import ActionError

log = logging.getLogger(__name__)

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
