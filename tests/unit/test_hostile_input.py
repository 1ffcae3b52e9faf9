"""What a hostile or careless caller sends gets a clear JSON 4xx naming the problem, never
a 500, and every authenticated request still leaves a finished log row."""

import json

import pytest

from app import create_app
from tests.conftest import BASE_CONFIG, CALLER_KEY, PROMOTIONAL_GRANT, Caller
from tests.fakes import data

GRANT_PATH = "create-credit-grant"
SUBSCRIPTION = {"salesforceAccountId": "001D000000IqhSL", "planId": "plan-pro"}


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [40, 500, 1000, 20000])
def test_deep_nesting_is_a_400_and_is_logged(app, caller, stigg, depth):
    body = json.dumps(PROMOTIONAL_GRANT)[:-1] + f', "extra": {nested(depth)}}}'

    response = caller.post_raw(GRANT_PATH, body)

    assert response.status_code == 400
    assert response.json["code"] == "MALFORMED_JSON"
    assert "levels deep" in response.json["message"]
    entry = app.extensions["store"].log.get(response.headers["X-Request-Id"])
    assert (entry["outcome"], entry["http_status"]) == ("rejected", 400)
    assert stigg.calls == []


def test_nesting_within_the_limit_reaches_validation(caller, stigg):
    body = json.dumps({**PROMOTIONAL_GRANT, "extra": json.loads(nested(30))})

    response = caller.post_raw(GRANT_PATH, body)

    assert response.status_code == 400
    assert response.json["code"] == "VALIDATION_FAILED"
    assert response.json["fieldErrors"][0]["field"] == "extra"


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_json_number_literals_are_malformed_json(caller, stigg, literal):
    body = json.dumps(PROMOTIONAL_GRANT).replace('"amount": 100', f'"amount": {literal}')

    response = caller.post_raw(GRANT_PATH, body)

    assert response.status_code == 400
    assert response.json["code"] == "MALFORMED_JSON"


@pytest.mark.parametrize(
    "value",
    [
        "9999-12-31T23:59:59-23:59",
        "0001-01-01T00:00:00+23:59",
    ],
)
def test_date_times_that_overflow_in_utc_are_a_400_naming_the_field(caller, stigg, value):
    response = caller.post(GRANT_PATH, {**PROMOTIONAL_GRANT, "effectiveDate": value})

    assert response.status_code == 400
    assert response.json["fieldErrors"] == [
        {
            "field": "effectiveDate",
            "message": "Out of range: the date-time must fall between years 1 and 9999 in UTC.",
        }
    ]
    assert stigg.calls == []


@pytest.mark.parametrize(
    "value",
    [
        "20260101T100000Z",
        "2026-W01-1T10:00Z",
        "2026-01-01 10:00:00Z",
        "2026-01-01T10:00Z",
        "2026-001",
        "2026-01-01T10:00:00+0100",
        "2026-01-01T10:00:00",
    ],
)
def test_anything_but_rfc3339_or_a_plain_date_is_refused(caller, stigg, value):
    response = caller.post(GRANT_PATH, {**PROMOTIONAL_GRANT, "effectiveDate": value})

    assert response.status_code == 400
    assert response.json["fieldErrors"][0]["field"] == "effectiveDate"


@pytest.mark.parametrize(
    ("value", "sent"),
    [
        ("2026-12-01", "2026-12-01T00:00:00Z"),
        ("2026-12-01t09:00:00z", "2026-12-01T09:00:00Z"),
        ("2026-12-01T09:00:00.250+01:00", "2026-12-01T08:00:00.250Z"),
    ],
)
def test_rfc3339_and_plain_dates_are_accepted(caller, stigg, value, sent):
    response = caller.post(GRANT_PATH, {**PROMOTIONAL_GRANT, "effectiveDate": value})

    assert response.status_code == 200
    assert stigg.calls_to("GrantCredits")[0].input["effectiveAt"] == sent


def test_answered_date_times_always_have_whole_seconds(caller, stigg):
    stigg.script(
        "GrantCredits",
        data(
            {
                "grantId": "g-ms",
                "customerId": "acme",
                "status": "ACTIVE",
                "amount": 100,
                "currencyId": "cred-type-ai-tokens",
                "effectiveAt": "2026-12-01T08:00:00.250Z",
                "expireAt": "2027-12-01T00:00:00Z",
            }
        ),
    )

    response = caller.post(GRANT_PATH, PROMOTIONAL_GRANT)

    assert response.json["effectiveDate"] == "2026-12-01T08:00:00Z"
    assert response.json["expirationDate"] == "2027-12-01T00:00:00Z"


@pytest.mark.parametrize(
    ("path", "body", "field", "message"),
    [
        ("create-subscription", {**SUBSCRIPTION, "trial": 1}, "trial", "true or false"),
        ("create-subscription", {**SUBSCRIPTION, "trial": "true"}, "trial", "true or false"),
        (GRANT_PATH, {**PROMOTIONAL_GRANT, "amount": "100"}, "amount", "Not a valid number"),
        (
            "create-subscription",
            {**SUBSCRIPTION, "addons": [{"addonId": "addon-seats", "quantity": 2**31}]},
            "addons[0].quantity",
            "at most 2147483647",
        ),
        (
            "create-customer-without-email",
            {"salesforceAccountId": "001D000000IqhSL", "customerName": "Acme\x00Corp"},
            "customerName",
            "U+0000",
        ),
        (
            "create-customer-without-email",
            {"salesforceAccountId": "001D000000IqhSL", "customerName": "Acme\x1b[31m"},
            "customerName",
            "U+001B",
        ),
        (GRANT_PATH, {**PROMOTIONAL_GRANT, "displayName": "Line\nbreak"}, "displayName", "U+000A"),
    ],
)
def test_values_of_the_wrong_kind_are_refused_before_any_stigg_call(
    caller, stigg, path, body, field, message
):
    response = caller.post(path, body)

    assert response.status_code == 400
    assert response.json["fieldErrors"][0]["field"] == field
    assert message in response.json["fieldErrors"][0]["message"]
    assert stigg.calls == []


def test_a_comment_may_span_lines(caller, stigg):
    response = caller.post(GRANT_PATH, {**PROMOTIONAL_GRANT, "comment": "Closed Won\nQ4 deal"})

    assert response.status_code == 200
    assert stigg.calls_to("GrantCredits")[0].input["comment"] == "Closed Won\nQ4 deal"


@pytest.fixture
def app_on(database_url):
    app = create_app({**BASE_CONFIG, "DATABASE_URL": database_url})
    app.testing = True
    yield app
    app.extensions["store"].close()  # before the PostgreSQL schema is dropped


def test_a_nul_anywhere_leaves_a_finished_log_row_on_both_databases(app_on, stigg):
    caller = Caller(app_on.test_client())

    response = caller.post(
        "create-customer-without-email",
        {
            "salesforceAccountId": "001D000000IqhSL",
            "customerName": "Acme\x00",
            "unknown\x00field": "x\x00y",
        },
    )

    assert response.status_code == 400
    entry = app_on.extensions["store"].log.get(response.headers["X-Request-Id"])
    assert entry["outcome"] == "rejected"
    assert entry["payload"]["customerName"] == "Acme\ufffd"
    assert entry["payload"]["unknown\ufffdfield"] == "x\ufffdy"


def test_a_log_write_that_violates_a_constraint_is_a_bug_not_an_outage(app, caller, stigg):
    from sqlalchemy.exc import IntegrityError

    def violates(*args, **kwargs):
        raise IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed"))

    app.extensions["store"].log.queue_start = violates

    response = caller.post(GRANT_PATH, PROMOTIONAL_GRANT)

    assert response.status_code == 500
    assert response.json["code"] == "INTERNAL_ERROR"
    assert stigg.calls == []


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_on_an_action_are_a_json_405_with_allow(app, method):
    response = app.test_client().open(
        "/v1/actions/create-credit-grant",
        method=method,
        headers={"Authorization": f"Bearer {CALLER_KEY}"},
    )

    assert response.status_code == 405
    assert response.mimetype == "application/json"
    assert response.json["code"] == "METHOD_NOT_ALLOWED"
    assert response.headers["Allow"] == "POST"


@pytest.mark.parametrize(
    "path",
    ["//v1//actions/create-credit-grant", "/v1/actions/create-credit-grant/", "/v1/actions/"],
)
def test_odd_paths_are_a_json_404_not_a_redirect(app, path):
    response = app.test_client().post(
        path, json=PROMOTIONAL_GRANT, headers={"Authorization": f"Bearer {CALLER_KEY}"}
    )

    assert response.status_code == 404
    assert response.mimetype == "application/json"
    assert response.json["code"] == "NOT_FOUND"


def test_an_x_replay_of_header_from_a_caller_is_ignored(app, caller, stigg):
    response = caller.post(GRANT_PATH, PROMOTIONAL_GRANT, headers={"X-Replay-Of": "999999"})

    assert response.status_code == 200
    assert app.extensions["store"].log.get(response.headers["X-Request-Id"])["replay_of"] is None
