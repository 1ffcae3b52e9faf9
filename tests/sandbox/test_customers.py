"""provisionCustomer, updateOneCustomer and getCustomerByRefId behave like Stigg."""

from __future__ import annotations

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
    assert full_customer(stigg, "a") is None


def test_email_null_is_recorded_as_null(stigg):
    stigg.customer("cust-null", email=None)
    assert full_customer(stigg, "cust-null")["email"] is None
    stigg.ok("UpdateCustomer", {"customerId": "cust-null", "email": "x@y.test"})
    stigg.ok("UpdateCustomer", {"customerId": "cust-null", "email": None})
    assert full_customer(stigg, "cust-null")["email"] is None


def test_get_unknown_customer_is_null_without_error(stigg):
    assert stigg.ok("GetCustomer", {"customerId": "nobody"}) == {"getCustomerByRefId": None}


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
    assert full_customer(stigg, "cust-bad") is None
