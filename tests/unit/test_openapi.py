"""The generated OpenAPI document obeys what Salesforce External Services accepts."""

import re

import pytest
from openapi_spec_validator import validate

from actions import ACTIONS
from app.openapi import build_spec

DATE_FIELDS = {"trialEndDate", "startDate", "effectiveDate", "expirationDate"}


@pytest.fixture(scope="module")
def spec():
    """The document registered as the External Service: its rules apply here."""
    return build_spec(ACTIONS, batches=False)


def test_the_served_document_adds_the_batch_endpoints_and_stays_valid():
    served = build_spec(ACTIONS)
    validate(served)

    assert set(served["paths"]) - set(build_spec(ACTIONS, batches=False)["paths"]) == {
        "/v1/batches",
        "/v1/batches/{batchId}",
    }
    post = served["paths"]["/v1/batches"]["post"]
    assert post["operationId"] == "createBatch"
    assert {p["name"] for p in post["parameters"]} == {"Idempotency-Key", "Prefer"}
    assert set(post["responses"]) == {"200", "202", "4XX", "5XX"}
    item = served["components"]["schemas"]["BatchItemRequest"]
    assert set(item["required"]) == {"operation", "idempotencyKey", "body"}


def walk(node, path="#"):
    """Every (path, dict) in the document."""
    if isinstance(node, dict):
        yield path, node
        for key, child in node.items():
            yield from walk(child, f"{path}/{key}")
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from walk(child, f"{path}/{index}")


def operations(spec):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def test_is_a_valid_openapi_3_0_3_document(spec):
    assert spec["openapi"] == "3.0.3"
    validate(spec)


def test_the_served_document_is_the_generated_one(app):
    response = app.test_client().get("/v1/openapi.json")

    assert response.status_code == 200
    assert response.json == build_spec(ACTIONS)


def test_operations_are_exactly_the_actions_list(spec):
    found = {(path, operation["operationId"]) for path, _, operation in operations(spec)}

    assert found == {(action.path, action.operation_id) for action in ACTIONS}
    assert found == {
        ("/v1/actions/create-customer-with-email", "createCustomerWithEmail"),
        ("/v1/actions/create-customer-without-email", "createCustomerWithoutEmail"),
        ("/v1/actions/create-subscription", "createSubscription"),
        ("/v1/actions/create-credit-grant", "createCreditGrant"),
        ("/v1/actions/update-subscription", "updateSubscription"),
        ("/v1/actions/cancel-subscription", "cancelSubscription"),
        ("/v1/actions/trigger-stigg-workflow", "triggerStiggWorkflow"),
    }
    assert {method for _, method, _ in operations(spec)} == {"post"}


def test_operation_ids_are_lower_camel_case_without_separators(spec):
    for _, _, operation in operations(spec):
        assert re.fullmatch(r"[a-z][a-zA-Z0-9]*", operation["operationId"])


def test_every_operation_has_a_short_summary_and_a_description(spec):
    for _, _, operation in operations(spec):
        assert 0 < len(operation["summary"]) <= 80
        assert 0 < len(operation["description"]) <= 1333


def test_bodies_and_responses_use_named_component_schemas(spec):
    components = spec["components"]["schemas"]
    for _, _, operation in operations(spec):
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        assert body["$ref"].startswith("#/components/schemas/")
        assert body["$ref"].rsplit("/", 1)[1] in components
        responses = operation["responses"]
        assert set(responses) == {"200", "4XX", "5XX"}
        assert (
            responses["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
            in components
        )
        for failure in ("4XX", "5XX"):
            assert responses[failure]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/Error"
            }


def test_idempotency_key_is_an_optional_header_on_every_operation(spec):
    for _, _, operation in operations(spec):
        headers = [p for p in operation["parameters"] if p["in"] == "header"]
        assert [(p["name"], p["required"], p["schema"]["type"]) for p in headers] == [
            ("Idempotency-Key", False, "string")
        ]


def test_no_servers_entry(spec):
    assert "servers" not in spec


def test_no_keyword_external_services_rejects(spec):
    for path, node in walk(spec):
        for keyword in ("nullable", "not", "additionalProperties", "oneOf", "anyOf"):
            assert keyword not in node, f"{keyword} at {path}"


def test_every_property_is_typed_and_no_array_holds_arrays(spec):
    for name, schema in spec["components"]["schemas"].items():
        assert schema["type"] == "object", name
        for prop_name, prop in schema["properties"].items():
            assert "type" in prop or "$ref" in prop, f"{name}.{prop_name}"
            if prop.get("type") == "array":
                items = prop["items"]
                assert "$ref" in items or items.get("type") not in (None, "array"), (
                    f"{name}.{prop_name}"
                )


def test_dates_declare_their_format(spec):
    schemas = spec["components"]["schemas"]
    for name, schema in schemas.items():
        for prop_name, prop in schema["properties"].items():
            if prop_name in DATE_FIELDS:
                expected = "date-time" if name.endswith("Result") else "date"
                assert prop == {**prop, "type": "string", "format": expected}, f"{name}.{prop_name}"


def test_error_schema_is_the_design_contract(spec):
    error = spec["components"]["schemas"]["Error"]

    assert set(error["properties"]) == {
        "code",
        "message",
        "retryable",
        "requestId",
        "fieldErrors",
        "stiggErrorCode",
    }
    assert set(error["required"]) == {"code", "message", "retryable"}
    assert error["properties"]["fieldErrors"]["items"] == {
        "$ref": "#/components/schemas/FieldError"
    }


def test_request_schemas_mirror_the_parameter_tables(spec):
    schemas = spec["components"]["schemas"]

    assert set(schemas["CreateSubscriptionRequest"]["properties"]) == {
        "salesforceAccountId",
        "stiggCustomerId",
        "customerName",
        "customerEmail",
        "planId",
        "planBaseChargeOverride",
        "currency",
        "addons",
        "billingPeriod",
        "paymentCollectionMethod",
        "trial",
        "trialEndDate",
        "subscriptionCreditEntitlements",
        "startDate",
        "resourceId",
        "salesforceOpportunityId",
    }
    assert set(schemas["CreateCreditGrantRequest"]["properties"]) == {
        "stiggCustomerId",
        "grantType",
        "currencyId",
        "displayName",
        "amount",
        "resourceId",
        "comment",
        "effectiveDate",
        "expirationDate",
        "priority",
        "paymentCollectionMethod",
        "currency",
        "costAmount",
        "salesforceOpportunityId",
    }
    assert "customerEmail" not in schemas["CreateCustomerWithoutEmailRequest"]["properties"]
    assert "customerEmail" in schemas["CreateCustomerWithEmailRequest"]["required"]


@pytest.mark.parametrize("action", ACTIONS, ids=lambda action: action.operation_id)
def test_each_documented_example_is_a_valid_request(action):
    assert action.request_schema().validate(action.example) == {}
