"""provisionCustomer, updateOneCustomer and getCustomerByRefId behave like Stigg."""

from __future__ import annotations

import pytest

from sandbox import create_app

GET_FULL_CUSTOMER = """
query($input: GetCustomerByRefIdInput!) {
  getCustomerByRefId(input: $input) {
    id customerId refId name email salesforceId additionalMetaData hasPaymentMethod
    hasActiveSubscription environmentId createdAt updatedAt
  }
}
"""


def full_customer(stigg, customer_id):
    body = stigg.post(GET_FULL_CUSTOMER, {"input": {"customerId": customer_id}}).get_json()
    assert "errors" not in body, body
    return body["data"]["getCustomerByRefId"]


def assert_absent(stigg, customer_id):
    """getCustomerByRefId answers Stigg's CustomerNotFound (the sandbox's default shape)."""
    body = stigg.post(GET_FULL_CUSTOMER, {"input": {"customerId": customer_id}}).get_json()
    assert body["data"] == {"getCustomerByRefId": None}
    assert [e["extensions"]["code"] for e in body["errors"]] == ["CustomerNotFound"]


def test_provision_customer_stores_every_field(stigg):
    stigg.customer(
        "001ACCOUNT",
        name="Acme",
        email="ops@acme.test",
        salesforceId="001xx000003DGb2AAG",
        additionalMetaData={"source": "salesforce-flow"},
    )
    customer = full_customer(stigg, "001ACCOUNT")
    assert customer["customerId"] == customer["refId"] == "001ACCOUNT"
    assert customer["name"] == "Acme"
    assert customer["email"] == "ops@acme.test"
    assert customer["salesforceId"] == "001xx000003DGb2AAG"
    assert customer["additionalMetaData"] == {"source": "salesforce-flow"}
    assert customer["hasPaymentMethod"] is False
    assert customer["hasActiveSubscription"] is False
    assert customer["createdAt"].endswith("Z")


def test_provision_customer_generates_an_id_when_omitted(stigg):
    data = stigg.ok("ProvisionCustomer", {"name": "No id"})
    customer_id = data["provisionCustomer"]["customer"]["customerId"]
    assert customer_id.startswith("customer-")
    assert full_customer(stigg, customer_id)["name"] == "No id"


def test_provision_customer_twice_is_duplicated_entity(stigg):
    stigg.customer("cust-dup")
    error = stigg.error("ProvisionCustomer", {"customerId": "cust-dup", "name": "Again"})
    assert error["path"] == ["provisionCustomer"]
    assert error["locations"]
    assert error["extensions"] == {
        "code": "DuplicatedEntityNotAllowed",
        "isValidationError": True,
        "entityName": "Customer",
        "identifier": "cust-dup",
    }
    assert full_customer(stigg, "cust-dup")["name"] is None  # the first one is untouched


def test_provision_customer_with_customer_id_and_ref_id_is_rejected(stigg):
    different = stigg.error("ProvisionCustomer", {"customerId": "a", "refId": "b"})
    assert different["extensions"]["code"] == "EntityIdDifferentFromRefIdError"
    same = stigg.error("ProvisionCustomer", {"customerId": "a", "refId": "a"})
    assert same["extensions"]["code"] == "InvalidArgumentError"
    assert_absent(stigg, "a")


def test_email_null_is_recorded_as_null(stigg):
    stigg.customer("cust-null", email=None)
    assert full_customer(stigg, "cust-null")["email"] is None
    stigg.ok("UpdateCustomer", {"customerId": "cust-null", "email": "x@y.test"})
    stigg.ok("UpdateCustomer", {"customerId": "cust-null", "email": None})
    assert full_customer(stigg, "cust-null")["email"] is None


def test_get_unknown_customer_is_customer_not_found_by_default(stigg):
    response = stigg.document("GetCustomer", {"customerId": "nobody"})

    assert response.status_code == 200
    body = response.get_json()
    # The field is nullable, so the error nulls the field, not the whole of `data`.
    assert body["data"] == {"getCustomerByRefId": None}
    [error] = body["errors"]
    assert error["message"] == "Customer not found"
    assert error["path"] == ["getCustomerByRefId"]
    assert error["extensions"] == {
        "code": "CustomerNotFound",
        "isValidationError": True,
        "refId": "nobody",
    }


def test_get_unknown_customer_is_null_when_set_through_the_admin_api(stigg, admin):
    assert admin.get("/_admin/settings").get_json() == {"unknownCustomer": "error"}
    response = admin.post("/_admin/settings", json={"unknownCustomer": "null"})
    assert response.get_json() == {"unknownCustomer": "null"}

    assert stigg.ok("GetCustomer", {"customerId": "nobody"}) == {"getCustomerByRefId": None}
    # Only the look-up changes: a mutation on an unknown customer is still an error.
    assert stigg.error("UpdateCustomer", {"customerId": "nobody"})["extensions"]["code"] == (
        "CustomerNotFound"
    )

    admin.post("/_admin/reset")
    assert admin.get("/_admin/settings").get_json() == {"unknownCustomer": "error"}
    assert_absent(stigg, "nobody")


def test_get_unknown_customer_is_null_when_set_in_the_environment(monkeypatch):
    monkeypatch.setenv("SANDBOX_UNKNOWN_CUSTOMER", "null")
    client = create_app(api_keys=["k"]).test_client()
    response = client.post(
        "/graphql",
        json={
            "query": "query($input: GetCustomerByRefIdInput!) "
            "{ getCustomerByRefId(input: $input) { customerId } }",
            "variables": {"input": {"customerId": "nobody"}},
        },
        headers={"X-API-KEY": "k"},
    )
    assert response.get_json() == {"data": {"getCustomerByRefId": None}}
    client.post("/_admin/settings", json={"unknownCustomer": "error"})
    client.post("/_admin/reset")  # back to what the environment said
    assert client.get("/_admin/settings").get_json() == {"unknownCustomer": "null"}


@pytest.mark.parametrize(
    "body",
    [{"unknownCustomer": "none"}, {"unknownCustomer": None}, {"colour": "red"}, ["error"]],
)
def test_bad_settings_are_400(admin, body):
    assert admin.post("/_admin/settings", json=body).status_code == 400
    assert admin.get("/_admin/settings").get_json() == {"unknownCustomer": "error"}


def test_bad_unknown_customer_setting_in_the_environment_stops_start_up(monkeypatch):
    monkeypatch.setenv("SANDBOX_UNKNOWN_CUSTOMER", "maybe")
    with pytest.raises(ValueError, match="SANDBOX_UNKNOWN_CUSTOMER"):
        create_app()


@pytest.mark.parametrize(
    "customer_id",
    [
        "001Dn00000ABCDEFGH",
        "a",
        "0",
        "acme_corp|eu.west@example-1",
        "c" * 255,
    ],
)
def test_customer_ids_stigg_accepts(stigg, customer_id):
    stigg.customer(customer_id)
    assert full_customer(stigg, customer_id)["customerId"] == customer_id


@pytest.mark.parametrize(
    "customer_id",
    [
        pytest.param("", id="empty"),
        pytest.param("-starts-with-dash", id="leading-dash"),
        pytest.param("_starts_with_underscore", id="leading-underscore"),
        pytest.param("has space", id="space"),
        pytest.param("slash/inside", id="slash"),
        pytest.param("acme#1", id="hash"),
        pytest.param("trailing-newline\n", id="newline"),
        pytest.param("é-accent", id="non-ascii"),
        pytest.param("c" * 256, id="256-characters"),
    ],
)
def test_customer_ids_stigg_refuses(stigg, admin, customer_id):
    for input in ({"customerId": customer_id}, {"refId": customer_id}):
        error = stigg.error("ProvisionCustomer", input)
        assert error["path"] == ["provisionCustomer"]
        assert error["extensions"] == {"code": "BadUserInput", "isValidationError": True}
        assert "customerId must start with a letter or digit" in error["message"]
    assert admin.get("/_admin/state").get_json()["customers"] == []


def test_generated_customer_ids_follow_the_rule(stigg):
    data = stigg.ok("ProvisionCustomer", {"name": "No id"})
    customer_id = data["provisionCustomer"]["customer"]["customerId"]
    stigg.customer(f"{customer_id}.copy")  # the rule accepts what Stigg generates, and more


def test_update_changes_only_the_fields_sent(stigg):
    stigg.customer("cust-up", name="Old", email="keep@acme.test", additionalMetaData={"a": 1})
    data = stigg.ok(
        "UpdateCustomer",
        {"customerId": "cust-up", "name": "New", "additionalMetaData": {"b": 2}},
    )
    assert data == {"updateCustomer": {"customerId": "cust-up"}}
    customer = full_customer(stigg, "cust-up")
    assert customer["name"] == "New"
    assert customer["email"] == "keep@acme.test"
    assert customer["additionalMetaData"] == {"b": 2}  # replaced, not merged


def test_update_unknown_customer_is_customer_not_found(stigg):
    error = stigg.error("UpdateCustomer", {"customerId": "ghost", "name": "x"})
    assert error["path"] == ["updateCustomer"]  # the alias the service uses
    assert error["message"] == "Customer not found"
    assert error["extensions"] == {
        "code": "CustomerNotFound",
        "isValidationError": True,
        "refId": "ghost",
    }


def test_update_without_an_id_is_missing_entity_id(stigg):
    error = stigg.error("UpdateCustomer", {"name": "x"})
    assert error["extensions"]["code"] == "MissingEntityIdError"


def test_payment_method_from_billing_information(stigg):
    stigg.customer("cust-card", billingInformation={"paymentMethodId": "pm_123"})
    assert full_customer(stigg, "cust-card")["hasPaymentMethod"] is True


def test_provision_customer_with_an_initial_subscription(stigg):
    query = """
    mutation($input: ProvisionCustomerInput!) {
      provisionCustomer(input: $input) {
        customer { customerId hasActiveSubscription }
        subscription { subscriptionId status plan { refId } }
        subscriptionDecisionStrategy
      }
    }"""
    body = stigg.post(
        query,
        {"input": {"customerId": "cust-sub", "subscriptionParams": {"planId": "plan-free"}}},
    ).get_json()
    result = body["data"]["provisionCustomer"]
    assert result["customer"] == {"customerId": "cust-sub", "hasActiveSubscription": True}
    assert result["subscription"]["status"] == "ACTIVE"
    assert result["subscription"]["plan"] == {"refId": "plan-free"}
    assert result["subscriptionDecisionStrategy"] == "REQUESTED_PLAN"


def test_rejected_initial_subscription_leaves_no_customer(stigg):
    error = stigg.error(
        "ProvisionCustomer", {"customerId": "cust-bad", "subscriptionParams": {"planId": "nope"}}
    )
    assert error["extensions"]["code"] == "PlanNotFound"
    assert_absent(stigg, "cust-bad")
