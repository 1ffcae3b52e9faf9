"""Fault and latency injection through the admin API (Werkzeug test client)."""

from __future__ import annotations

import json
import time

import pytest

from sandbox import ConnectionDropped, create_app

GRANT = {
    "customerId": "cust-1",
    "currencyId": "cred-type-ai-tokens",
    "displayName": "Grant",
    "amount": 1,
    "grantType": "PROMOTIONAL",
}


@pytest.fixture(autouse=True)
def customer(stigg):
    stigg.customer("cust-1")


def add_faults(admin, *rules):
    response = admin.post("/_admin/faults", json=list(rules))
    assert response.status_code == 200, response.get_json()
    return response.get_json()["faults"]


def stats(admin):
    return admin.get("/_admin/stats").get_json()


@pytest.mark.parametrize("status", [500, 502, 503])
def test_status_fault_fires_count_times_then_stops(stigg, admin, status):
    add_faults(admin, {"kind": "status", "status": status, "count": 2})
    assert stigg.document("GrantCredits", GRANT).status_code == status
    assert stigg.document("GrantCredits", GRANT).status_code == status
    assert stigg.document("GrantCredits", GRANT).status_code == 200
    assert stats(admin)["executed"]["createCreditGrant"] == 1
    assert stats(admin)["received"]["createCreditGrant"] == 3


def test_gateway_errors_are_html_and_500_is_json(stigg, admin):
    add_faults(
        admin,
        {"kind": "status", "status": 502, "count": 1},
        {"kind": "status", "status": 500, "count": 1},
    )
    gateway = stigg.document("GrantCredits", GRANT)
    assert gateway.content_type.startswith("text/html")
    assert b"502 Bad Gateway" in gateway.data
    internal = stigg.document("GrantCredits", GRANT)
    assert internal.get_json()["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"


def test_rate_limit_body_and_no_retry_after(stigg, admin):
    add_faults(admin, {"kind": "status", "status": 429, "count": 1})
    response = stigg.document("GrantCredits", GRANT)
    assert response.status_code == 429
    assert response.get_json() == {"error": "rate_limit_exceeded", "message": "Too many requests"}
    assert "Retry-After" not in response.headers


def test_retry_after_only_when_the_rule_says(stigg, admin):
    add_faults(admin, {"kind": "status", "status": 429, "count": 1, "retry_after": 3})
    assert stigg.document("GrantCredits", GRANT).headers["Retry-After"] == "3"


def test_operations_filter(stigg, admin):
    add_faults(admin, {"kind": "status", "status": 503, "operations": ["createCreditGrant"]})
    assert stigg.document("GetCustomer", {"customerId": "cust-1"}).status_code == 200
    assert stigg.document("GrantCredits", GRANT).status_code == 503


def test_operations_filter_rejects_aliases_and_typos(admin):
    response = admin.post(
        "/_admin/faults", json=[{"kind": "drop", "operations": ["provisionSubscription"]}]
    )
    assert response.status_code == 400
    assert "provisionSubscription" in response.get_json()["error"]


@pytest.mark.parametrize(
    "rule",
    [
        {"kind": "explode"},
        {"kind": "status"},
        {"kind": "status", "status": 200},
        {"kind": "delay"},
        {"kind": "delay", "ms": 5, "min_ms": 1, "max_ms": 2},
        {"kind": "drop", "count": -1},
        {"kind": "drop", "percent": 101},
        {"kind": "drop", "colour": "red"},
    ],
)
def test_bad_rules_are_400(admin, rule):
    assert admin.post("/_admin/faults", json=[rule]).status_code == 400


@pytest.mark.parametrize(
    "code",
    [
        pytest.param("CUSTOMER_NOT_FOUND", id="docs-screaming-case"),
        pytest.param("customerNotFound", id="wrong-case"),
        pytest.param("RateLimited", id="invented"),
        pytest.param("BAD_REQUEST", id="apollo-code-not-in-the-list"),
        pytest.param(429, id="not-a-string"),
    ],
)
def test_graphql_error_codes_stigg_never_sends_are_400(admin, code):
    response = admin.post("/_admin/faults", json=[{"kind": "graphql_error", "code": code}])
    assert response.status_code == 400
    assert "ErrorCode" in response.get_json()["error"]
    assert admin.get("/_admin/faults").get_json() == {"faults": []}


@pytest.mark.parametrize(
    "code",
    ["CustomerNotFound", "ObjectAlreadyBeingUsedByAnotherRequestError", "UNAUTHENTICATED"],
)
def test_graphql_error_codes_stigg_sends_are_accepted(stigg, admin, code):
    add_faults(admin, {"kind": "graphql_error", "code": code, "count": 1})
    error = stigg.document("GrantCredits", GRANT).get_json()["errors"][0]
    assert error["extensions"]["code"] == code


def test_percent_zero_never_fires_and_hundred_always_does(stigg, admin):
    add_faults(admin, {"kind": "status", "status": 503, "percent": 0})
    assert stigg.document("GrantCredits", GRANT).status_code == 200
    admin.delete("/_admin/faults")
    add_faults(admin, {"kind": "status", "status": 503, "percent": 100})
    assert stigg.document("GrantCredits", GRANT).status_code == 503


def test_delay_before_executing(stigg, admin):
    add_faults(admin, {"kind": "delay", "ms": 150, "count": 1})
    started = time.monotonic()
    assert stigg.document("GrantCredits", GRANT).status_code == 200
    assert time.monotonic() - started >= 0.15


def test_random_delay_range(stigg, admin):
    add_faults(admin, {"kind": "delay", "min_ms": 50, "max_ms": 80, "count": 1})
    started = time.monotonic()
    stigg.document("GetCustomer", {"customerId": "cust-1"})
    assert 0.05 <= time.monotonic() - started < 1


def test_delay_after_executes_first(stigg, admin):
    add_faults(admin, {"kind": "delay_after", "ms": 100, "count": 1})
    started = time.monotonic()
    assert stigg.document("GrantCredits", GRANT).status_code == 200
    assert time.monotonic() - started >= 0.1
    assert stats(admin)["executed"]["createCreditGrant"] == 1


def test_drop_does_not_execute(stigg, admin):
    add_faults(admin, {"kind": "drop", "count": 1})
    with pytest.raises(ConnectionDropped):
        stigg.document("GrantCredits", GRANT)
    assert "createCreditGrant" not in stats(admin)["executed"]
    assert admin.get("/_admin/state").get_json()["creditGrants"] == []


def test_drop_after_executes_then_drops(stigg, admin):
    add_faults(admin, {"kind": "drop_after", "count": 1, "operations": ["createCreditGrant"]})
    with pytest.raises(ConnectionDropped):
        stigg.document("GrantCredits", GRANT)
    assert stats(admin)["executed"]["createCreditGrant"] == 1
    assert len(admin.get("/_admin/state").get_json()["creditGrants"]) == 1


def test_non_json(stigg, admin):
    add_faults(admin, {"kind": "non_json", "count": 1})
    response = stigg.document("GrantCredits", GRANT)
    assert response.status_code == 200
    assert response.content_type.startswith("text/html")
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.data)
    assert "createCreditGrant" not in stats(admin)["executed"]


def test_graphql_error(stigg, admin):
    add_faults(admin, {"kind": "graphql_error", "code": "RateLimitExceeded", "count": 1})
    add_faults(
        admin,
        {
            "kind": "graphql_error",
            "code": "PlanNotFound",
            "isValidationError": True,
            "message": "nope",
            "count": 1,
        },
    )
    first = stigg.document("ProvisionSubscription", {"customerId": "cust-1", "planId": "plan-free"})
    assert first.status_code == 200
    body = first.get_json()
    assert body["data"] is None
    assert body["errors"][0]["path"] == ["provisionSubscription"]
    assert body["errors"][0]["extensions"] == {
        "code": "RateLimitExceeded",
        "isValidationError": False,
    }
    second = stigg.document(
        "ProvisionSubscription", {"customerId": "cust-1", "planId": "plan-free"}
    )
    error = second.get_json()["errors"][0]
    assert error["message"] == "nope"
    assert error["extensions"] == {"code": "PlanNotFound", "isValidationError": True}
    assert "provisionSubscriptionV2" not in stats(admin)["executed"]


def test_faults_listing_shows_remaining_budget(stigg, admin):
    add_faults(admin, {"kind": "status", "status": 503, "count": 2})
    stigg.document("GrantCredits", GRANT)
    [rule] = admin.get("/_admin/faults").get_json()["faults"]
    assert rule["count"] == 1 and rule["fired"] == 1
    assert stats(admin)["faults"] == {"status": 1}


def test_delete_clears_faults(stigg, admin):
    add_faults(admin, {"kind": "status", "status": 503})
    assert admin.delete("/_admin/faults").get_json() == {"faults": []}
    assert stigg.document("GrantCredits", GRANT).status_code == 200


def test_reset_clears_state_counters_and_faults(stigg, admin):
    stigg.grant()
    add_faults(admin, {"kind": "status", "status": 503})
    assert admin.post("/_admin/reset").status_code == 200
    assert admin.get("/_admin/faults").get_json() == {"faults": []}
    assert stats(admin) == {
        "requests": 0,
        "received": {},
        "executed": {},
        "rejected": {},
        "faults": {},
        "rateLimited": {},
    }
    assert admin.get("/_admin/state").get_json() == {
        "customers": [],
        "subscriptions": [],
        "creditGrants": [],
    }


def test_stats_count_rejections(stigg, admin):
    stigg.error("UpdateCustomer", {"customerId": "ghost"})
    assert stats(admin)["rejected"] == {"updateOneCustomer": 1}
    assert "updateOneCustomer" not in stats(admin)["executed"]


def test_faults_from_environment(monkeypatch):
    monkeypatch.setenv(
        "SANDBOX_FAULTS", json.dumps([{"kind": "status", "status": 503, "count": 1}])
    )
    client = create_app(api_keys=["k"]).test_client()
    response = client.post("/graphql", json={"query": "{ __typename }"}, headers={"X-API-KEY": "k"})
    assert response.status_code == 503


def test_bad_faults_in_environment_stop_start_up(monkeypatch):
    monkeypatch.setenv("SANDBOX_FAULTS", "[{")
    with pytest.raises(ValueError, match="SANDBOX_FAULTS"):
        create_app()
