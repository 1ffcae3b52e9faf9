"""Translation of everything Stigg can answer (or fail to answer) into ActionError.

GraphQL error codes are matched case- and underscore-insensitively: Stigg's schema uses
PascalCase (`CustomerNotFound`) while its docs also show SCREAMING_CASE
(`CUSTOMER_NOT_FOUND`).
"""

from __future__ import annotations

from dataclasses import dataclass

from app.errors import ActionError


def normalise_code(code: str | None) -> str:
    return (code or "").replace("_", "").replace("-", "").lower()


def is_code(error: ActionError, code: str) -> bool:
    return normalise_code(error.stigg_error_code) == normalise_code(code)


@dataclass
class StiggFailure(ActionError):
    """An ActionError from Stigg, plus what the retry policy needs to know."""

    # False: Stigg certainly did not execute the operation, so resending cannot double it.
    may_have_executed: bool = True
    retry_after_s: float | None = None
    # How the attempt ended, for the metrics: Stigg's GraphQL error code, http_<status>,
    # timeout, connection_error or bad_response (set by the client that made the attempt).
    attempt_result: str | None = None


_AUTH_CODES = {
    normalise_code(code)
    for code in (
        "Unauthenticated",
        "ApiKeyExpired",
        "ApiKeyNotFound",
        "IdentityForbidden",
        "AccessDeniedError",
        "Forbidden",
    )
}
# Codes that say the document itself is wrong: a defect here, not the caller's input.
_INTEGRATION_CODES = {
    normalise_code(code)
    for code in (
        "GRAPHQL_VALIDATION_FAILED",
        "GRAPHQL_PARSE_FAILED",
        "GraphQLAliasesLimitExceeded",
        "GraphQLBatchedOperationsLimitExceeded",
        "UnsupportedParameter",
        "EnvironmentMissing",
    )
}


def auth_failed(detail: str) -> StiggFailure:
    return StiggFailure(
        502,
        "STIGG_AUTH_FAILED",
        f"Stigg refused this service's API key ({detail}); an operator must fix STIGG_API_KEY.",
        stigg_error_code=None,
        may_have_executed=False,
    )


def rate_limited(retry_after_s: float | None, stigg_code: str | None = None) -> StiggFailure:
    return StiggFailure(
        429,
        "STIGG_RATE_LIMITED",
        "Stigg's rate limit was reached, even after backing off; try again in a minute.",
        retryable=True,
        stigg_error_code=stigg_code,
        may_have_executed=False,
        retry_after_s=retry_after_s,
        headers={"Retry-After": str(max(1, round(retry_after_s or 30)))},
    )


def unavailable(detail: str, *, may_have_executed: bool) -> StiggFailure:
    return StiggFailure(
        503,
        "STIGG_UNAVAILABLE",
        f"Stigg is unavailable ({detail}); try again later.",
        retryable=True,
        may_have_executed=may_have_executed,
    )


def timed_out(detail: str) -> StiggFailure:
    return StiggFailure(
        504,
        "STIGG_TIMEOUT",
        f"Stigg did not answer in time ({detail}); try again later.",
        retryable=True,
        may_have_executed=True,
    )


def bad_response(detail: str, stigg_code: str | None = None) -> StiggFailure:
    return StiggFailure(
        502,
        "STIGG_BAD_RESPONSE",
        f"Stigg gave an answer this service cannot use ({detail}).",
        stigg_error_code=stigg_code,
        may_have_executed=True,
    )


def from_http_status(status: int, body: object, retry_after_s: float | None) -> StiggFailure:
    """An HTTP error status from Stigg. A GraphQL error list in the body wins when present."""
    errors = body.get("errors") if isinstance(body, dict) else None
    if status in (401, 403):
        return auth_failed(f"HTTP {status}")
    if status == 429:
        return rate_limited(retry_after_s)
    if isinstance(errors, list) and errors:
        failure = from_graphql_errors(errors)
        if status < 500:
            # A 4xx with GraphQL errors is a request Stigg refused before executing it.
            failure.may_have_executed = False
        return failure
    if status >= 500:
        # A gateway error may come after Stigg executed the operation: only reads retry.
        return unavailable(f"HTTP {status}", may_have_executed=True)
    return bad_response(f"HTTP {status}")


def from_graphql_errors(errors: list) -> StiggFailure:
    first = errors[0] if isinstance(errors[0], dict) else {"message": str(errors[0])}
    extensions = first.get("extensions") or {}
    code = extensions.get("code")
    message = str(first.get("message") or "no message")
    key = normalise_code(code)

    if key in _AUTH_CODES:
        return auth_failed(code)
    if key == "ratelimitexceeded":
        return rate_limited(None, code)
    if key == "operationtimeout":
        failure = timed_out(f"{code}: {message}")
        failure.stigg_error_code = code
        return failure
    if key == "objectalreadybeingusedbyanotherrequesterror":
        return StiggFailure(
            409,
            "STIGG_CONFLICT",
            "Stigg is busy with another change to the same record; try again shortly.",
            retryable=True,
            stigg_error_code=code,
            may_have_executed=False,
        )
    if key == "duplicatedentitynotallowed":
        return StiggFailure(
            409,
            "STIGG_CONFLICT",
            f"Stigg already has this record: {message}",
            stigg_error_code=code,
        )
    if key in ("unexpectederror", "internalservererror"):
        failure = unavailable(f"{code}: {message}", may_have_executed=True)
        failure.stigg_error_code = code
        return failure
    if key in _INTEGRATION_CODES or (not code and not extensions.get("isValidationError")):
        return bad_response(
            f"{code or 'no error code'}: {message}; please report this with the requestId",
            code,
        )
    return StiggFailure(
        422,
        "STIGG_REJECTED",
        f"Stigg rejected the request ({code}): {message}",
        stigg_error_code=code,
        may_have_executed=False,
    )
