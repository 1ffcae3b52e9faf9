"""Create Stigg Customer with / without email: the upsert and exactly what Stigg receives."""

import pytest

from tests.conftest import ACCOUNT_15, ACCOUNT_18, STIGG_KEY
from tests.fakes import data, graphql_error

WITH_EMAIL = "create-customer-with-email"
WITHOUT_EMAIL = "create-customer-without-email"


def test_new_customer_is_provisioned_with_the_18_character_account_id(caller, stigg):
    response = caller.post(
        WITH_EMAIL,
        {"salesforceAccountId": ACCOUNT_15, "customerName": "Acme", "customerEmail": "a@acme.io"},
    )

    assert response.status_code == 200
    assert response.json == {
        "stiggCustomerId": ACCOUNT_18,
        "stiggCustomerUrl": f"https://app.stigg.test/env-1/customers/{ACCOUNT_18}",
        "created": True,
    }
    assert stigg.operations == ["GetCustomer", "ProvisionCustomer"]
    assert stigg.calls[0].variables == {"input": {"customerId": ACCOUNT_18}}
    assert stigg.calls[1].variables == {
        "input": {
            "customerId": ACCOUNT_18,
            "name": "Acme",
            "email": "a@acme.io",
            "salesforceId": ACCOUNT_18,
        }
    }


def test_every_call_carries_the_stigg_key_and_api_version(caller, stigg):
    caller.post(
        WITH_EMAIL,
        {"salesforceAccountId": ACCOUNT_15, "customerName": "A", "customerEmail": "a@b.io"},
    )

    for call in stigg.calls:
        assert call.headers["X-API-KEY"] == STIGG_KEY
        assert call.headers["X-API-VERSION"] == "1"
        assert call.headers["Content-Type"] == "application/json"
    assert "provisionCustomer(input: $input)" in stigg.calls[1].query


def test_explicit_stigg_customer_id_is_used_and_url_encoded(caller, stigg):
    response = caller.post(
        WITHOUT_EMAIL,
        {"salesforceAccountId": ACCOUNT_18, "customerName": "Acme", "stiggCustomerId": "acme|eu@1"},
    )

    assert response.status_code == 200
    assert response.json["stiggCustomerId"] == "acme|eu@1"
    assert (
        response.json["stiggCustomerUrl"] == "https://app.stigg.test/env-1/customers/acme%7Ceu%401"
    )
    assert stigg.calls_to("ProvisionCustomer")[0].input["customerId"] == "acme|eu@1"
    assert stigg.calls_to("ProvisionCustomer")[0].input["salesforceId"] == ACCOUNT_18


def test_without_email_never_sends_an_email_key(caller, stigg):
    stigg.script(
        "GetCustomer",
        data(
            {"customerId": ACCOUNT_18, "name": "Old", "email": "kept@acme.io", "salesforceId": None}
        ),
    )

    response = caller.post(
        WITHOUT_EMAIL, {"salesforceAccountId": ACCOUNT_18, "customerName": "Acme"}
    )

    assert response.status_code == 200
    assert response.json["created"] is False
    update = stigg.calls_to("UpdateCustomer")[0].input
    assert update == {"customerId": ACCOUNT_18, "name": "Acme", "salesforceId": ACCOUNT_18}
    assert all("email" not in call.input for call in stigg.calls)


def test_new_customer_without_email_has_no_email_key(caller, stigg):
    caller.post(WITHOUT_EMAIL, {"salesforceAccountId": ACCOUNT_18, "customerName": "Acme"})

    assert stigg.calls_to("ProvisionCustomer")[0].input == {
        "customerId": ACCOUNT_18,
        "name": "Acme",
        "salesforceId": ACCOUNT_18,
    }


def test_without_email_refuses_an_email_and_says_which_action_to_use(caller, stigg):
    response = caller.post(
        WITHOUT_EMAIL,
        {"salesforceAccountId": ACCOUNT_18, "customerName": "Acme", "customerEmail": "a@b.io"},
    )

    assert response.status_code == 400
    assert response.json["fieldErrors"] == [
        {
            "field": "customerEmail",
            "message": "This action does not take an email; use createCustomerWithEmail.",
        }
    ]
    assert stigg.calls == []


def test_existing_customer_with_same_attributes_is_left_alone(caller, stigg):
    stigg.script(
        "GetCustomer",
        data(
            {
                "customerId": ACCOUNT_18,
                "name": "Acme",
                "email": "a@acme.io",
                "salesforceId": ACCOUNT_18,
            }
        ),
    )

    response = caller.post(
        WITH_EMAIL,
        {"salesforceAccountId": ACCOUNT_18, "customerName": "Acme", "customerEmail": "a@acme.io"},
    )

    assert response.status_code == 200
    assert response.json["created"] is False
    assert stigg.operations == ["GetCustomer"]


def test_existing_customer_gets_only_the_changed_fields(caller, stigg):
    stigg.script(
        "GetCustomer",
        data(
            {
                "customerId": ACCOUNT_18,
                "name": "Acme",
                "email": "old@acme.io",
                "salesforceId": ACCOUNT_18,
            }
        ),
    )

    caller.post(
        WITH_EMAIL,
        {"salesforceAccountId": ACCOUNT_18, "customerName": "Acme", "customerEmail": "new@acme.io"},
    )

    assert stigg.operations == ["GetCustomer", "UpdateCustomer"]
    assert stigg.calls[1].variables == {"input": {"customerId": ACCOUNT_18, "email": "new@acme.io"}}


def test_lookup_answering_customer_not_found_means_absent(caller, stigg):
    stigg.script("GetCustomer", graphql_error("CustomerNotFound", "Customer not found"))

    response = caller.post(WITHOUT_EMAIL, {"salesforceAccountId": ACCOUNT_18, "customerName": "A"})

    assert response.status_code == 200
    assert response.json["created"] is True
    assert stigg.operations == ["GetCustomer", "ProvisionCustomer"]


@pytest.mark.parametrize("code", ["DuplicatedEntityNotAllowed", "DUPLICATED_ENTITY_NOT_ALLOWED"])
def test_create_race_falls_back_to_update(caller, stigg, code):
    stigg.script("ProvisionCustomer", graphql_error(code, "Duplicated entity not allowed"))

    response = caller.post(
        WITH_EMAIL,
        {"salesforceAccountId": ACCOUNT_18, "customerName": "Acme", "customerEmail": "a@acme.io"},
    )

    assert response.status_code == 200
    assert response.json["created"] is False
    assert stigg.operations == ["GetCustomer", "ProvisionCustomer", "UpdateCustomer"]
    assert stigg.calls[2].input == {
        "customerId": ACCOUNT_18,
        "name": "Acme",
        "email": "a@acme.io",
        "salesforceId": ACCOUNT_18,
    }


@pytest.mark.parametrize(
    ("body", "field", "message_part"),
    [
        ({"customerName": "A", "customerEmail": "a@b.io"}, "salesforceAccountId", "Missing data"),
        (
            {
                "salesforceAccountId": "001D000000IqhS",
                "customerName": "A",
                "customerEmail": "a@b.io",
            },
            "salesforceAccountId",
            "15 or 18",
        ),
        (
            {
                "salesforceAccountId": "001D000000IqhSLIAA",
                "customerName": "A",
                "customerEmail": "a@b.io",
            },
            "salesforceAccountId",
            "do not match",
        ),
        (
            {
                "salesforceAccountId": "006D000000CkYtr",
                "customerName": "A",
                "customerEmail": "a@b.io",
            },
            "salesforceAccountId",
            "start with '001'",
        ),
        (
            {
                "salesforceAccountId": "001D000000IqhS!",
                "customerName": "A",
                "customerEmail": "a@b.io",
            },
            "salesforceAccountId",
            "letters and digits",
        ),
        (
            {"salesforceAccountId": ACCOUNT_18, "customerName": "  ", "customerEmail": "a@b.io"},
            "customerName",
            "blank",
        ),
        (
            {
                "salesforceAccountId": ACCOUNT_18,
                "customerName": "A",
                "customerEmail": "not-an-email",
            },
            "customerEmail",
            "email",
        ),
        ({"salesforceAccountId": ACCOUNT_18, "customerName": "A"}, "customerEmail", "Missing data"),
        (
            {
                "salesforceAccountId": ACCOUNT_18,
                "customerName": "A" * 256,
                "customerEmail": "a@b.io",
            },
            "customerName",
            "at most 255",
        ),
        (
            {
                "salesforceAccountId": ACCOUNT_18,
                "customerName": "A",
                "customerEmail": "a@b.io",
                "crmId": "x",
            },
            "crmId",
            "Unknown field",
        ),
    ],
)
def test_invalid_input_is_a_400_naming_the_field_and_nothing_reaches_stigg(
    caller, stigg, body, field, message_part
):
    response = caller.post(WITH_EMAIL, body)

    assert response.status_code == 400
    assert response.json["code"] == "VALIDATION_FAILED"
    assert response.json["retryable"] is False
    assert response.json["message"].startswith(f"{field}: ")
    assert [error["field"] for error in response.json["fieldErrors"]] == [field]
    assert message_part in response.json["fieldErrors"][0]["message"]
    assert stigg.calls == []


@pytest.mark.parametrize(
    ("path", "field", "value"),
    [
        (WITHOUT_EMAIL, "stiggCustomerId", "acme/eu 1"),
        (WITHOUT_EMAIL, "stiggCustomerId", "-acme"),
        (WITHOUT_EMAIL, "stiggCustomerId", "a" * 256),
        ("create-subscription", "stiggCustomerId", "acme#1"),
        ("create-subscription", "resourceId", "workspace 1"),
        ("create-credit-grant", "stiggCustomerId", "ac me"),
        ("create-credit-grant", "resourceId", "ws/1"),
    ],
)
def test_stigg_ids_outside_stiggs_rule_are_a_400_before_any_call(caller, stigg, path, field, value):
    bodies = {
        WITHOUT_EMAIL: {"salesforceAccountId": ACCOUNT_18, "customerName": "Acme"},
        "create-subscription": {"salesforceAccountId": ACCOUNT_18, "planId": "plan-pro"},
        "create-credit-grant": {
            "stiggCustomerId": "acme",
            "grantType": "PROMOTIONAL",
            "currencyId": "cred-type-ai-tokens",
            "displayName": "Welcome",
            "amount": 1,
        },
    }

    response = caller.post(path, {**bodies[path], field: value})

    assert response.status_code == 400
    assert response.json["fieldErrors"][0]["field"] == field
    assert stigg.calls == []


def test_null_optional_fields_count_as_not_sent(caller, stigg):
    response = caller.post(
        WITHOUT_EMAIL,
        {"salesforceAccountId": ACCOUNT_18, "customerName": "Acme", "stiggCustomerId": None},
    )

    assert response.status_code == 200
    assert response.json["stiggCustomerId"] == ACCOUNT_18
