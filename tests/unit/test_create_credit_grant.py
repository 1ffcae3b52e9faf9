"""Create Stigg Credit Grant: mapping, validation, and never granting twice."""

from datetime import UTC, datetime, timedelta

import pytest
import requests

from actions.create_credit_grant import LOOKUP_PAGE_SIZE, MAX_LOOKUP_PAGES
from actions.once import KEY_FIELD, TAG_FIELD
from tests.fakes import ANY_TAG, Lost, Reply, data, grant_from, graphql_error, page

PATH = "create-credit-grant"


def minimal(**extra) -> dict:
    return {
        "stiggCustomerId": "acme",
        "grantType": "PROMOTIONAL",
        "currencyId": "cred-type-ai-tokens",
        "displayName": "Welcome credits",
        "amount": 500,
        **extra,
    }


def test_every_parameter_maps_to_the_documented_stigg_input(caller, stigg):
    response = caller.post(
        PATH,
        {
            "stiggCustomerId": "acme",
            "grantType": "paid",
            "currencyId": "cred-type-ai-tokens",
            "displayName": "Top-up",
            "amount": 1500.5,
            "resourceId": "workspace-1",
            "comment": "Closed Won 006",
            "effectiveDate": "2026-12-01",
            "expirationDate": "2027-12-01T12:00:00+01:00",
            "priority": 10,
            "paymentCollectionMethod": "INVOICE",
            "costAmount": 150,
            "currency": "eur",
        },
        headers={"Idempotency-Key": "006D000000CkYtr-grant"},
    )

    assert response.status_code == 200, response.json
    grant_call = stigg.calls_to("GrantCredits")[0]
    assert grant_call.variables == {
        "input": {
            "customerId": "acme",
            "grantType": "PAID",
            "currencyId": "cred-type-ai-tokens",
            "displayName": "Top-up",
            "amount": 1500.5,
            "resourceId": "workspace-1",
            "comment": "Closed Won 006",
            "effectiveAt": "2026-12-01T00:00:00Z",
            "expireAt": "2027-12-01T11:00:00Z",
            "priority": 10,
            "paymentCollectionMethod": "INVOICE",
            "cost": {"amount": 150.0, "currency": "EUR"},
            "additionalMetaData": {KEY_FIELD: "006D000000CkYtr-grant", TAG_FIELD: ANY_TAG},
        }
    }
    assert response.json == {
        "creditGrantId": response.json["creditGrantId"],
        "stiggCustomerId": "acme",
        "status": "ACTIVE",
        "amount": 1500.5,
        "currencyId": "cred-type-ai-tokens",
        "effectiveDate": "2026-12-01T00:00:00Z",
        "expirationDate": "2027-12-01T11:00:00Z",
    }


def test_minimal_grant_is_tagged_with_the_request_id(caller, stigg):
    response = caller.post(PATH, minimal())

    assert response.status_code == 200
    assert stigg.operations == ["GrantCredits"]  # no look-up without an Idempotency-Key
    assert stigg.calls[0].input == {
        "customerId": "acme",
        "grantType": "PROMOTIONAL",
        "currencyId": "cred-type-ai-tokens",
        "displayName": "Welcome credits",
        "amount": 500.0,
        "additionalMetaData": {
            KEY_FIELD: "request:" + response.headers["X-Request-Id"],
            TAG_FIELD: ANY_TAG,
        },
    }


def test_cost_without_currency_leaves_the_currency_out(caller, stigg):
    caller.post(PATH, minimal(grantType="PAID", costAmount=20))

    assert stigg.calls_to("GrantCredits")[0].input["cost"] == {"amount": 20.0}


def test_stigg_dates_are_answered_as_rfc3339_utc(caller, stigg):
    stigg.script(
        "GrantCredits",
        data(
            {
                "grantId": "g-1",
                "customerId": "acme",
                "status": "SCHEDULED",
                "amount": 500,
                "currencyId": "cred-type-ai-tokens",
                "effectiveAt": "2026-12-01T00:00:00.000Z",
                "expireAt": None,
            }
        ),
    )

    response = caller.post(PATH, minimal(effectiveDate="2026-12-01"))

    assert response.json == {
        "creditGrantId": "g-1",
        "stiggCustomerId": "acme",
        "status": "SCHEDULED",
        "amount": 500.0,
        "currencyId": "cred-type-ai-tokens",
        "effectiveDate": "2026-12-01T00:00:00Z",
    }


@pytest.mark.parametrize(
    ("extra", "field", "message_part"),
    [
        ({"currency": "USD"}, "currency", "costAmount is missing"),
        ({"costAmount": 10}, "costAmount", "Only for PAID"),
        ({"paymentCollectionMethod": "INVOICE"}, "paymentCollectionMethod", "Only for PAID"),
        ({"grantType": "FREE"}, "grantType", "PROMOTIONAL, PAID"),
        ({"amount": 0}, "amount", "greater than 0"),
        ({"amount": -5}, "amount", "greater than 0"),
        ({"amount": True}, "amount", "number"),
        ({"priority": 101}, "priority", "between 0 and 100"),
        ({"priority": -1}, "priority", "between 0 and 100"),
        (
            {"effectiveDate": "2027-01-02", "expirationDate": "2027-01-01"},
            "expirationDate",
            "after effectiveDate",
        ),
        (
            {"effectiveDate": "2027-01-01", "expirationDate": "2027-01-01"},
            "expirationDate",
            "after effectiveDate",
        ),
        ({"expirationDate": "2020-01-01"}, "expirationDate", "in the past"),
        ({"effectiveDate": "2027-02-30"}, "effectiveDate", "YYYY-MM-DD"),
        ({"comment": "x" * 201}, "comment", "at most 200"),
        ({"displayName": ""}, "displayName", "blank"),
        ({"stiggCustomerId": None}, "stiggCustomerId", "Missing data"),
    ],
)
def test_invalid_input_is_a_400_naming_the_field(caller, stigg, extra, field, message_part):
    body = {key: value for key, value in minimal(**extra).items() if value is not None}

    response = caller.post(PATH, body)

    assert response.status_code == 400
    assert response.json["code"] == "VALIDATION_FAILED"
    assert response.json["fieldErrors"][0]["field"] == field
    assert message_part in response.json["fieldErrors"][0]["message"]
    assert stigg.calls == []


def test_expiration_in_the_future_without_effective_date_is_fine(caller, stigg):
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()

    assert caller.post(PATH, minimal(expirationDate=tomorrow)).status_code == 200


def test_a_timed_out_grant_that_stigg_created_is_found_not_resent(caller, stigg):
    # Someone else's grant for the same customer and currency is already there.
    stigg.grants.append(
        grant_from(
            {
                "customerId": "acme",
                "amount": 500,
                "currencyId": "cred-type-ai-tokens",
                "additionalMetaData": {KEY_FIELD: "opp-1-grant", TAG_FIELD: "0" * 40},
            },
            grant_id="other-grant",
        )
    )
    # Stigg grants, but the answer is lost; and the grant is not listed yet right after.
    stigg.script("GrantCredits", Lost(requests.ReadTimeout("read timed out")))
    stigg.script("CreditGrants", data(page([], {})), data(page([], {})))

    response = caller.post(PATH, minimal(), headers={"Idempotency-Key": "opp-1-grant"})

    assert response.status_code == 504
    assert response.json["code"] == "STIGG_TIMEOUT"
    assert response.json["retryable"] is True
    assert len(stigg.calls_to("GrantCredits")) == 1

    # The caller retries with the same key: the look-up finds the grant, nothing is re-sent.
    retry = caller.post(PATH, minimal(), headers={"Idempotency-Key": "opp-1-grant"})

    assert retry.status_code == 200
    assert retry.json["creditGrantId"] == stigg.grants[0]["grantId"] != "other-grant"
    assert len(stigg.calls_to("GrantCredits")) == 1
    lookup = stigg.calls_to("CreditGrants")[-1].variables
    assert lookup == {
        "input": {
            "customerId": "acme",
            "currencyId": "cred-type-ai-tokens",
            "paging": {"first": 100},
        }
    }


def test_after_an_unknown_outcome_the_same_request_looks_for_its_grant(caller, stigg):
    stigg.script(
        "GrantCredits", Lost(requests.ConnectionError("Connection aborted: RemoteDisconnected"))
    )

    response = caller.post(PATH, minimal(resourceId="ws-1"), headers={"Idempotency-Key": "k-1"})

    assert response.status_code == 200
    assert response.json["creditGrantId"] == stigg.grants[0]["grantId"]
    assert stigg.operations == ["CreditGrants", "GrantCredits", "CreditGrants"]
    assert stigg.calls[-1].input["resourceId"] == "ws-1"
    assert len(stigg.grants) == 1


def test_the_look_up_pages_through_more_than_a_page_of_grants(app, caller, stigg):
    # The caller's own grant was made first; 150 newer grants bury it past the first page.
    first = caller.post(PATH, minimal(), headers={"Idempotency-Key": "opp-150"})
    ours = first.json["creditGrantId"]
    for index in range(150):
        stigg.grants.insert(
            0,
            grant_from(
                {**stigg.calls_to("GrantCredits")[0].input, "additionalMetaData": None},
                grant_id=f"older-{index}",
            ),
        )
    app.extensions["store"].idempotency.purge_expired(
        datetime.now(UTC) + timedelta(days=2)
    )  # the stored answer expired: only the look-up can tell

    retry = caller.post(PATH, minimal(), headers={"Idempotency-Key": "opp-150"})

    assert retry.status_code == 200
    assert retry.json["creditGrantId"] == ours
    assert len(stigg.calls_to("GrantCredits")) == 1
    pages = [call.input["paging"] for call in stigg.calls_to("CreditGrants")[1:]]
    assert pages == [{"first": 100}, {"first": 100, "after": "99"}]


def test_the_look_up_stops_at_its_page_limit(caller, stigg, caplog):
    stigg.grants.extend(
        grant_from(
            {"customerId": "acme", "amount": 1, "currencyId": "cred-type-ai-tokens"},
            grant_id=f"g-{index}",
        )
        for index in range(MAX_LOOKUP_PAGES * LOOKUP_PAGE_SIZE + 1)
    )

    response = caller.post(PATH, minimal(), headers={"Idempotency-Key": "opp-many"})

    assert response.status_code == 200
    assert len(stigg.calls_to("CreditGrants")) == MAX_LOOKUP_PAGES
    assert "page" in caplog.text and "stopped" in caplog.text


@pytest.mark.parametrize(
    "failure",
    [
        Reply(status=500, body={"message": "oops"}),
        requests.ReadTimeout("slow"),
        graphql_error("UnexpectedError", "boom", validation=False),
    ],
)
def test_a_grant_that_may_have_executed_is_sent_once(caller, stigg, failure):
    stigg.script("GrantCredits", failure)

    response = caller.post(PATH, minimal())

    assert response.status_code in (503, 504)
    assert response.json["retryable"] is True
    assert len(stigg.calls_to("GrantCredits")) == 1


def test_a_rate_limited_grant_is_resent_since_stigg_did_not_execute_it(caller, stigg, sleeps):
    stigg.script("GrantCredits", Reply(status=429, body={"error": "rate_limit_exceeded"}))

    response = caller.post(PATH, minimal())

    assert response.status_code == 200
    assert len(stigg.calls_to("GrantCredits")) == 2
    assert len(sleeps) == 1


def test_unknown_currency_is_a_422(caller, stigg):
    stigg.script(
        "GrantCredits", graphql_error("CustomCurrencyNotFound", "Custom currency not found")
    )

    response = caller.post(PATH, minimal())

    assert response.status_code == 422
    assert response.json["stiggErrorCode"] == "CustomCurrencyNotFound"
    assert response.json["retryable"] is False
