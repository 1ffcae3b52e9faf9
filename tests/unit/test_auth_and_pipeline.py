"""Authentication and the request pipeline: every refusal is a flat JSON error body."""

import json

import pytest

from tests.conftest import ACCOUNT_18, CALLER_KEY, ROTATED_CALLER_KEY

PATH = "create-customer-without-email"
BODY = {"salesforceAccountId": ACCOUNT_18, "customerName": "Acme"}


def test_missing_key_is_401_with_a_bearer_challenge(caller, stigg):
    response = caller.post(PATH, BODY, key=None)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer realm=")
    assert response.json["code"] == "UNAUTHORIZED"
    assert response.json["retryable"] is False
    assert stigg.calls == []


@pytest.mark.parametrize(
    "header", ["Bearer wrong-key-0000000000000", "Basic Zm9vOmJhcg==", "Bearer ", CALLER_KEY]
)
def test_wrong_keys_and_schemes_are_401(app, stigg, header):
    response = app.test_client().post(
        f"/v1/actions/{PATH}", json=BODY, headers={"Authorization": header}
    )

    assert response.status_code == 401
    assert response.json["code"] == "UNAUTHORIZED"
    assert stigg.calls == []


@pytest.mark.parametrize("key", [CALLER_KEY, ROTATED_CALLER_KEY])
def test_both_keys_of_a_rotation_are_accepted(caller, stigg, key):
    assert caller.post(PATH, BODY, key=key).status_code == 200


def test_auth_is_checked_before_the_body(caller, stigg):
    response = caller.post_raw(PATH, "not json", content_type="text/plain", key=None)

    assert response.status_code == 401


def test_wrong_media_type_is_415(caller, stigg):
    response = caller.post_raw(PATH, '{"a": 1}', content_type="text/plain")

    assert response.status_code == 415
    assert response.json["code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert stigg.calls == []


def test_json_with_charset_is_accepted(caller, stigg):
    response = caller.post_raw(
        PATH,
        json.dumps({"salesforceAccountId": ACCOUNT_18, "customerName": "A"}),
        content_type="application/json; charset=utf-8",
    )

    assert response.status_code == 200


def test_too_large_body_is_413(config, stigg):
    from app import create_app

    config["MAX_BODY_BYTES"] = "1024"  # the smallest accepted
    client = create_app(config).test_client()

    response = client.post(
        f"/v1/actions/{PATH}",
        json={**BODY, "customerName": "x" * 2000},
        headers={"Authorization": f"Bearer {CALLER_KEY}"},
    )

    assert response.status_code == 413
    assert response.json["code"] == "PAYLOAD_TOO_LARGE"
    assert stigg.calls == []


@pytest.mark.parametrize("raw", ['{"salesforceAccountId": ', "", "nul"])
def test_malformed_json_is_400(caller, stigg, raw):
    response = caller.post_raw(PATH, raw)

    assert response.status_code == 400
    assert response.json["code"] == "MALFORMED_JSON"
    assert response.json["retryable"] is False


@pytest.mark.parametrize("raw", [json.dumps([BODY]), '"text"', "42", "null"])
def test_a_body_that_is_not_an_object_is_400(caller, stigg, raw):
    response = caller.post_raw(PATH, raw)

    assert response.status_code == 400
    assert response.json["code"] == "VALIDATION_FAILED"
    assert response.json["fieldErrors"] == [
        {"field": "body", "message": "The body must be a JSON object."}
    ]


def test_unknown_route_and_method_are_json(app):
    client = app.test_client()

    not_found = client.post("/v1/actions/create-invoice", json={})
    wrong_method = client.get(f"/v1/actions/{PATH}")

    assert not_found.status_code == 404
    assert not_found.json["code"] == "NOT_FOUND"
    assert wrong_method.status_code == 405
    assert wrong_method.json["code"] == "METHOD_NOT_ALLOWED"


def test_an_unexpected_exception_is_a_generic_500_with_details_only_in_the_log(
    app, caller, stigg, monkeypatch, caplog
):
    import actions.create_customer

    def explode(**kwargs):
        raise RuntimeError("internal detail with customer data")

    monkeypatch.setattr(actions.customers, "upsert", explode)

    response = caller.post(PATH, BODY)

    assert response.status_code == 500
    assert response.json["code"] == "INTERNAL_ERROR"
    assert "internal detail" not in response.get_data(as_text=True)
    assert "internal detail" in caplog.text
    assert actions.create_customer  # imported for the patch target's module


def test_request_ids_are_ours_and_the_callers_is_a_correlation_id(app, caller, stigg):
    response = caller.post(PATH, {}, headers={"X-Request-Id": "sf-interview-42"})

    request_id = response.headers["X-Request-Id"]
    assert len(request_id) == 32 and request_id != "sf-interview-42"
    assert response.json["requestId"] == request_id
    assert response.headers["X-Correlation-Id"] == "sf-interview-42"
    entry = app.extensions["store"].log.get(request_id)
    assert entry["correlation_id"] == "sf-interview-42"


def test_a_reused_caller_request_id_never_breaks_the_service(app, caller, stigg):
    # A caller that sends the same X-Request-Id every time (a Flow constant, say).
    statuses = [
        caller.post(PATH, BODY, headers={"X-Request-Id": "my-req-1"}).status_code for _ in range(3)
    ]

    assert statuses == [200, 200, 200]
    entries = [e for e in app.extensions["store"].log.list() if e["correlation_id"] == "my-req-1"]
    assert len(entries) == 3
    assert len({e["request_id"] for e in entries}) == 3


def test_an_unsafe_correlation_id_is_dropped(caller, stigg):
    response = caller.post(PATH, BODY, headers={"X-Request-Id": "bad id; with spaces"})

    assert len(response.headers["X-Request-Id"]) == 32
    assert "X-Correlation-Id" not in response.headers


@pytest.mark.parametrize("key", ["has space", "x" * 256, ""])
def test_a_malformed_idempotency_key_is_400(caller, stigg, key):
    response = caller.post(PATH, BODY, headers={"Idempotency-Key": key})

    assert response.status_code == 400
    assert response.json["fieldErrors"][0]["field"] == "Idempotency-Key"


def test_error_messages_fit_flows_fault_message(caller, stigg):
    response = caller.post(
        PATH, {"salesforceAccountId": ACCOUNT_18, "customerName": "A" * 300, "x" * 300: 1}
    )

    assert len(response.json["message"]) <= 255


def test_health_endpoints_need_no_auth(app):
    client = app.test_client()

    assert client.get("/healthz").json == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
