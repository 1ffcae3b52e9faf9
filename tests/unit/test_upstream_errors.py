"""Everything Stigg can answer or fail to answer, as the error body Flow receives."""

import logging

import pytest
import requests

from app.stigg.client import MAX_ATTEMPTS
from tests.conftest import ACCOUNT_18, STIGG_KEY
from tests.fakes import Reply, graphql_error, refused

PATH = "create-customer-without-email"
BODY = {"salesforceAccountId": ACCOUNT_18, "customerName": "Acme"}


@pytest.mark.parametrize(
    ("code", "status", "error_code", "retryable"),
    [
        ("PlanNotFound", 422, "STIGG_REJECTED", False),
        ("CUSTOMER_NOT_FOUND_IN_ENV", 422, "STIGG_REJECTED", False),
        ("BAD_USER_INPUT", 422, "STIGG_REJECTED", False),
        ("Unauthenticated", 502, "STIGG_AUTH_FAILED", False),
        ("API_KEY_EXPIRED", 502, "STIGG_AUTH_FAILED", False),
        ("apikeynotfound", 502, "STIGG_AUTH_FAILED", False),
        ("GRAPHQL_VALIDATION_FAILED", 502, "STIGG_BAD_RESPONSE", False),
        ("DuplicatedEntityNotAllowed", 409, "STIGG_CONFLICT", False),
    ],
)
def test_graphql_error_codes_that_are_not_retried(
    caller, stigg, code, status, error_code, retryable
):
    stigg.script("GetCustomer", graphql_error(code, "Stigg says no"))

    response = caller.post(PATH, BODY)

    assert response.status_code == status
    assert response.json["code"] == error_code
    assert response.json["retryable"] is retryable
    assert len(stigg.calls) == 1
    if error_code != "STIGG_AUTH_FAILED":
        assert response.json["stiggErrorCode"] == code


@pytest.mark.parametrize(
    ("code", "status", "error_code"),
    [
        ("RateLimitExceeded", 429, "STIGG_RATE_LIMITED"),
        ("RATE_LIMIT_EXCEEDED", 429, "STIGG_RATE_LIMITED"),
        ("OperationTimeout", 504, "STIGG_TIMEOUT"),
        ("ObjectAlreadyBeingUsedByAnotherRequestError", 409, "STIGG_CONFLICT"),
        ("UnexpectedError", 503, "STIGG_UNAVAILABLE"),
    ],
)
def test_transient_graphql_errors_are_retried_then_reported_retryable(
    caller, stigg, sleeps, code, status, error_code
):
    stigg.script(
        "GetCustomer", *[graphql_error(code, "try later", validation=False)] * MAX_ATTEMPTS
    )

    response = caller.post(PATH, BODY)

    assert response.status_code == status
    assert response.json["code"] == error_code
    assert response.json["retryable"] is True
    assert len(stigg.calls) == MAX_ATTEMPTS
    assert len(sleeps) == MAX_ATTEMPTS - 1
    assert sleeps == sorted(sleeps) or max(sleeps) <= 5.3  # exponential, capped, jittered


def test_a_transient_error_then_success_succeeds(caller, stigg, sleeps):
    stigg.script("GetCustomer", graphql_error("OperationTimeout", validation=False))

    response = caller.post(PATH, BODY)

    assert response.status_code == 200
    assert stigg.operations == ["GetCustomer", "GetCustomer", "ProvisionCustomer"]


@pytest.mark.parametrize("http_status", [401, 403])
def test_stigg_refusing_our_key_is_an_operator_problem_not_retried(caller, stigg, http_status):
    stigg.script("GetCustomer", Reply(status=http_status, body={"message": "Unauthorized"}))

    response = caller.post(PATH, BODY)

    assert response.status_code == 502
    assert response.json["code"] == "STIGG_AUTH_FAILED"
    assert response.json["retryable"] is False
    assert "STIGG_API_KEY" in response.json["message"]
    assert STIGG_KEY not in response.get_data(as_text=True)
    assert len(stigg.calls) == 1


def test_http_429_is_retried_and_honours_retry_after(caller, stigg, sleeps):
    stigg.script(
        "GetCustomer",
        Reply(status=429, body={"error": "rate_limit_exceeded"}, headers={"Retry-After": "3"}),
    )

    response = caller.post(PATH, BODY)

    assert response.status_code == 200
    assert sleeps[0] >= 3


def test_http_429_until_the_deadline_answers_429_with_retry_after(caller, stigg, sleeps):
    stigg.script(
        "GetCustomer",
        *[Reply(status=429, body={"error": "rate_limit_exceeded", "message": "Too many requests"})]
        * 10,
    )

    response = caller.post(PATH, BODY)

    assert response.status_code == 429
    assert response.json["code"] == "STIGG_RATE_LIMITED"
    assert response.json["retryable"] is True
    assert int(response.headers["Retry-After"]) >= 1
    assert len(stigg.calls) == MAX_ATTEMPTS


def test_a_retry_after_beyond_the_deadline_is_not_waited_for(caller, stigg, sleeps):
    stigg.script("GetCustomer", Reply(status=429, body={}, headers={"Retry-After": "600"}))

    response = caller.post(PATH, BODY)

    assert response.status_code == 429
    assert sleeps == []
    assert len(stigg.calls) == 1


@pytest.mark.parametrize(
    ("failure", "status", "error_code"),
    [
        (Reply(status=500, body={"message": "Internal"}), 503, "STIGG_UNAVAILABLE"),
        (Reply(status=503, raw="Service Unavailable"), 503, "STIGG_UNAVAILABLE"),
        (requests.ReadTimeout("read timed out"), 504, "STIGG_TIMEOUT"),
        (refused(), 503, "STIGG_UNAVAILABLE"),
        (requests.ConnectionError("Connection aborted."), 503, "STIGG_UNAVAILABLE"),
    ],
)
def test_transport_failures_of_a_safe_read_are_retried(
    caller, stigg, sleeps, failure, status, error_code
):
    stigg.script("GetCustomer", *[failure] * MAX_ATTEMPTS)

    response = caller.post(PATH, BODY)

    assert response.status_code == status
    assert response.json["code"] == error_code
    assert response.json["retryable"] is True
    assert len(stigg.calls) == MAX_ATTEMPTS


@pytest.mark.parametrize(
    "answer",
    [
        Reply(status=200, raw="<html>maintenance</html>"),
        Reply(status=200, body={"unexpected": True}),
        Reply(status=404, raw="Not Found"),
    ],
)
def test_an_unusable_answer_is_a_502_bad_response(caller, stigg, answer):
    stigg.script("GetCustomer", answer)

    response = caller.post(PATH, BODY)

    assert response.status_code == 502
    assert response.json["code"] == "STIGG_BAD_RESPONSE"
    assert response.json["retryable"] is False


def test_the_deadline_bounds_all_attempts(config, stigg):
    from app import create_app

    config.update({"STIGG_TIMEOUT_S": "0.2", "STIGG_DEADLINE_S": "0.2"})
    app = create_app(config)
    slept = []
    # A real clock: each "sleep" advances time, so the deadline is reached.
    import time

    app.extensions["stigg"]._sleep = lambda seconds: (slept.append(seconds), time.sleep(seconds))
    stigg.script("GetCustomer", *[graphql_error("OperationTimeout", validation=False)] * 10)

    response = app.test_client().post(
        f"/v1/actions/{PATH}",
        json=BODY,
        headers={"Authorization": "Bearer caller-key-0123456789abcdef"},
    )

    assert response.status_code == 504
    assert len(stigg.calls) < MAX_ATTEMPTS
    assert sum(slept) < 0.2


def test_no_secret_reaches_the_logs_or_the_body(caller, stigg, caplog):
    caplog.set_level(logging.DEBUG)
    stigg.script("GetCustomer", Reply(status=401, body={}))

    response = caller.post(PATH, BODY)

    everything = caplog.text + response.get_data(as_text=True)
    assert STIGG_KEY not in everything
    assert "caller-key-0123456789abcdef" not in everything
