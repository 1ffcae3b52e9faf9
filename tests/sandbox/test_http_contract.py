"""Transport-level behaviour: auth, Apollo's 400s, and the JSON error shape."""

from __future__ import annotations

import pytest

from sandbox import create_app
from tests.sandbox.conftest import service_document

PROVISION = service_document("ProvisionSubscription")


def test_missing_api_key_is_401(client):
    response = client.post("/graphql", json={"query": service_document("GetCustomer")})
    assert response.status_code == 401
    assert response.get_json() == {
        "errors": [{"message": "Unauthenticated", "extensions": {"code": "Unauthenticated"}}]
    }


def test_wrong_api_key_is_401(stigg):
    response = stigg.post("{ __typename }", **{"X-API-KEY": "server-wrong"})
    assert response.status_code == 401
    assert response.get_json()["errors"][0]["extensions"]["code"] == "Unauthenticated"


def test_api_keys_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("SANDBOX_API_KEYS", "k1, k2")
    client = create_app().test_client()
    for key, status in [("k1", 200), ("k2", 200), ("sandbox", 401)]:
        response = client.post(
            "/graphql", json={"query": "{ __typename }"}, headers={"X-API-KEY": key}
        )
        assert response.status_code == status, key


def test_default_api_key_is_sandbox(monkeypatch):
    monkeypatch.delenv("SANDBOX_API_KEYS", raising=False)
    client = create_app().test_client()
    response = client.post(
        "/graphql", json={"query": "{ __typename }"}, headers={"X-API-KEY": "sandbox"}
    )
    assert response.status_code == 200


def test_non_json_body_is_400(client):
    response = client.post("/graphql", data="query=hello", headers={"X-API-KEY": "test-key"})
    assert response.status_code == 400
    assert response.get_json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


def test_body_without_query_is_400(client):
    response = client.post("/graphql", json={"variables": {}}, headers={"X-API-KEY": "test-key"})
    assert response.status_code == 400
    assert response.get_json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


def test_unparseable_document_is_400(stigg):
    response = stigg.post("mutation { provisionCustomer(")
    assert response.status_code == 400
    assert response.get_json()["errors"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"


@pytest.mark.parametrize(
    "query",
    [
        pytest.param(
            'query { getCustomerByRefId(input: {customerId: "a"}) { nope } }',
            id="unknown-output-field",
        ),
        pytest.param(
            "mutation { provisionSubscriptionV2("
            'input: {customerId: "a", planId: "p", billingPeriod: monthly}) { id } }',
            id="wrong-enum-literal",
        ),
        pytest.param(
            "mutation { provisionSubscriptionV2("
            'input: {customerId: "a", planId: "p", plan: "x"}) { id } }',
            id="unknown-input-field-literal",
        ),
        pytest.param(
            'mutation { provisionSubscriptionV2(input: {customerId: "a"}) { id } }',
            id="missing-required-literal",
        ),
        pytest.param(
            "mutation { provisionSubscription(input: {}) { id } }",
            id="legacy-root-field-not-modelled",
        ),
    ],
)
def test_document_validation_errors_are_400_graphql_validation_failed(stigg, query):
    response = stigg.post(query)
    assert response.status_code == 400
    body = response.get_json()
    assert "data" not in body
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert body["errors"][0]["locations"]


@pytest.mark.parametrize(
    "input",
    [
        pytest.param(
            {"customerId": "c", "planId": "plan-pro", "billingPeriod": "monthly"},
            id="wrong-enum-value",
        ),
        pytest.param(
            {
                "customerId": "c",
                "planId": "plan-pro",
                "paymentCollectionMethod": "PAYMENT_METHOD_ON_FILE",
            },
            id="salesforce-enum-leaked",
        ),
        pytest.param(
            {"customerId": "c", "planId": "plan-pro", "plan": "plan-pro"}, id="unknown-input-field"
        ),
        pytest.param({"customerId": "c"}, id="missing-required-field"),
        pytest.param(
            {"customerId": "c", "planId": "plan-pro", "addons": [{"quantity": 1}]},
            id="missing-nested-required",
        ),
        pytest.param(
            {
                "customerId": "c",
                "planId": "plan-pro",
                "addons": [{"addonId": "a", "quantity": 1.5}],
            },
            id="float-for-int",
        ),
        pytest.param(
            {
                "customerId": "c",
                "planId": "plan-pro",
                "priceOverrides": [{"baseCharge": True, "price": {"amount": 1, "currency": "usd"}}],
            },
            id="lower-case-currency",
        ),
        pytest.param(
            {"customerId": "c", "planId": "plan-pro", "startDate": "2025-01-01"},
            id="date-without-time",
        ),
        pytest.param(
            {
                "customerId": "c",
                "planId": "plan-pro",
                "entitlements": [
                    {"credit": {"customCurrencyId": "x", "amount": 1, "cadence": "MONTHLY"}}
                ],
            },
            id="billing-period-as-credit-cadence",
        ),
    ],
)
def test_variable_coercion_errors_are_400_bad_user_input(stigg, admin, input):
    response = stigg.post(PROVISION, {"input": input})
    assert response.status_code == 400
    body = response.get_json()
    assert "data" not in body
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert admin.get("/_admin/stats").get_json()["executed"] == {}


def test_grant_type_output_only_value_is_rejected(stigg):
    input = {
        "customerId": "c",
        "currencyId": "x",
        "displayName": "d",
        "amount": 1,
        "grantType": "RECURRING",
    }
    response = stigg.document("GrantCredits", input)
    assert response.status_code == 400
    assert response.get_json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


def test_unknown_operation_name_is_400(client):
    response = client.post(
        "/graphql",
        json={"query": "query A { __typename }", "operationName": "B"},
        headers={"X-API-KEY": "test-key"},
    )
    assert response.status_code == 400
    assert response.get_json()["errors"][0]["extensions"]["code"] == "OPERATION_RESOLUTION_FAILURE"


def test_business_error_shape(stigg):
    response = stigg.document(
        "GrantCredits",
        {
            "customerId": "ghost",
            "currencyId": "cred-type-ai-tokens",
            "displayName": "d",
            "amount": 1,
            "grantType": "PAID",
        },
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    body = response.get_json()
    assert list(body) == ["data", "errors"]
    assert body["data"] is None
    [error] = body["errors"]
    assert set(error) == {"message", "locations", "path", "extensions"}
    assert error["extensions"]["code"] == "CustomerNotFound"


def test_admin_api_is_loopback_only(client):
    response = client.get("/_admin/stats", environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert response.status_code == 403
    assert client.get("/_admin/stats", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200
