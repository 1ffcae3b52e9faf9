"""createCreditGrant and creditGrants behave like Stigg."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

LIST_GRANTS = """
query($input: GetCreditGrantsInput!) {
  creditGrants(input: $input) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { cursor node { grantId displayName additionalMetaData resourceId } }
  }
}
"""


@pytest.fixture
def customer(stigg):
    return stigg.customer("cust-1")


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def list_grants(stigg, **input):
    body = stigg.post(LIST_GRANTS, {"input": {"customerId": "cust-1", **input}}).get_json()
    assert "errors" not in body, body
    return body["data"]["creditGrants"]


def test_grant_is_active_with_generated_id(stigg, customer):
    grant = stigg.grant(
        amount=250, effectiveAt="2024-01-01T00:00:00Z", expireAt="2099-01-01T00:00:00Z"
    )
    assert grant["grantId"].startswith("grant-")
    assert grant["status"] == "ACTIVE"
    assert grant["amount"] == 250
    assert grant["currencyId"] == "cred-type-ai-tokens"
    assert grant["customerId"] == "cust-1"
    assert grant["effectiveAt"] == "2024-01-01T00:00:00.000Z"
    assert grant["expireAt"] == "2099-01-01T00:00:00.000Z"


def test_future_grant_is_scheduled(stigg, customer):
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    assert stigg.grant(effectiveAt=iso(tomorrow))["status"] == "SCHEDULED"


def test_paid_grant_by_invoice_waits_for_payment(stigg, customer):
    grant = stigg.grant(
        grantType="PAID", paymentCollectionMethod="INVOICE", cost={"amount": 10, "currency": "USD"}
    )
    assert grant["status"] == "PAYMENT_PENDING"
    paid = stigg.grant(grantType="PAID", paymentCollectionMethod="CHARGE")
    assert paid["status"] == "ACTIVE"


def test_each_call_creates_a_new_grant(stigg, customer):
    # Stigg's createCreditGrant is not idempotent; the sandbox must not be either.
    first, second = stigg.grant(), stigg.grant()
    assert first["grantId"] != second["grantId"]
    assert list_grants(stigg)["totalCount"] == 2


@pytest.mark.parametrize(
    ("input", "expected"),
    [
        pytest.param(
            {"customerId": "ghost"},
            {"code": "CustomerNotFound", "refId": "ghost"},
            id="unknown-customer",
        ),
        pytest.param(
            {"currencyId": "cred-type-gold"},
            {"code": "CustomCurrencyNotFound", "refId": "cred-type-gold"},
            id="unknown-currency",
        ),
        pytest.param(
            {"effectiveAt": "2030-01-01T00:00:00Z", "expireAt": "2030-01-01T00:00:00Z"},
            {"code": "ExpireAtMustBeLaterThanEffectiveAtError"},
            id="expire-equals-effective",
        ),
        pytest.param(
            {"effectiveAt": "2030-01-02T00:00:00Z", "expireAt": "2030-01-01T00:00:00Z"},
            {"code": "ExpireAtMustBeLaterThanEffectiveAtError"},
            id="expire-before-effective",
        ),
    ],
)
def test_rejections(stigg, admin, customer, input, expected):
    base = {
        "customerId": "cust-1",
        "currencyId": "cred-type-ai-tokens",
        "displayName": "x",
        "amount": 1,
        "grantType": "PROMOTIONAL",
    }
    error = stigg.error("GrantCredits", {**base, **input})
    assert error["path"] == ["createCreditGrant"]
    assert error["extensions"] == {"isValidationError": True, **expected}
    assert admin.get("/_admin/state").get_json()["creditGrants"] == []


def test_listing_is_newest_first_with_metadata(stigg, customer):
    for n in range(3):
        stigg.grant(displayName=f"grant {n}", additionalMetaData={"idempotencyKey": f"key-{n}"})
    grants = list_grants(stigg)
    names = [edge["node"]["displayName"] for edge in grants["edges"]]
    assert names == ["grant 2", "grant 1", "grant 0"]
    assert grants["edges"][0]["node"]["additionalMetaData"] == {"idempotencyKey": "key-2"}
    assert grants["totalCount"] == 3


def test_listing_filters_by_currency_and_resource(stigg, customer):
    stigg.grant(resourceId="site-a")
    stigg.grant(resourceId="site-b")
    assert list_grants(stigg, resourceId="site-a")["totalCount"] == 1
    assert list_grants(stigg, currencyId="cred-type-ai-tokens")["totalCount"] == 2
    assert list_grants(stigg, currencyId="cred-type-other")["totalCount"] == 0


def test_listing_is_paged(stigg, customer):
    for n in range(12):
        stigg.grant(displayName=f"grant {n}")
    first_page = list_grants(stigg)
    assert len(first_page["edges"]) == 10  # Stigg's default page size (nestjs-query)
    assert first_page["pageInfo"]["hasNextPage"] is True
    rest = list_grants(stigg, paging={"first": 10, "after": first_page["pageInfo"]["endCursor"]})
    assert [e["node"]["displayName"] for e in rest["edges"]] == ["grant 1", "grant 0"]
    assert rest["pageInfo"]["hasNextPage"] is False


def test_listing_for_unknown_customer_is_customer_not_found(stigg):
    body = stigg.post(LIST_GRANTS, {"input": {"customerId": "ghost"}}).get_json()
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "CustomerNotFound"
    assert body["errors"][0]["path"] == ["creditGrants"]


def test_a_customer_with_150_grants_can_be_paged_with_cursors(stigg, admin, customer):
    # More mutations for one customer than Stigg's 30 a minute: switch the limits off.
    admin.post("/_admin/limits", json={"enabled": False})
    for n in range(150):
        stigg.grant(displayName=f"grant {n}", additionalMetaData={"key": f"key-{n}"})

    pages, seen, after = [], [], None
    while True:
        paging = {"first": 100} if after is None else {"first": 100, "after": after}
        result = list_grants(stigg, currencyId="cred-type-ai-tokens", paging=paging)
        assert result["totalCount"] == 150
        pages.append(len(result["edges"]))
        seen += [edge["node"]["additionalMetaData"]["key"] for edge in result["edges"]]
        if not result["pageInfo"]["hasNextPage"]:
            break
        after = result["pageInfo"]["endCursor"]
        assert after == result["edges"][-1]["cursor"]

    assert pages == [100, 50]
    assert seen == [f"key-{n}" for n in reversed(range(150))]  # newest first, none twice


def test_a_cursor_holds_its_place_when_grants_are_added(stigg, customer):
    for n in range(3):
        stigg.grant(displayName=f"grant {n}")
    first = list_grants(stigg, paging={"first": 2})
    stigg.grant(displayName="newest")
    rest = list_grants(stigg, paging={"first": 2, "after": first["pageInfo"]["endCursor"]})
    assert [e["node"]["displayName"] for e in rest["edges"]] == ["grant 0"]
    assert rest["pageInfo"]["hasNextPage"] is False
    assert rest["totalCount"] == 4


def test_an_invalid_cursor_is_bad_user_input(stigg, customer):
    body = stigg.post(
        LIST_GRANTS, {"input": {"customerId": "cust-1", "paging": {"after": "grant-123"}}}
    ).get_json()
    assert body["data"] is None
    assert body["errors"][0]["extensions"] == {"code": "BadUserInput", "isValidationError": True}


def test_paid_grant_charged_without_awaiting_confirmation_settles_by_the_next_request(
    stigg, admin, customer
):
    grant = stigg.grant(
        grantType="PAID",
        paymentCollectionMethod="CHARGE",
        cost={"amount": 10, "currency": "USD"},
        awaitPaymentConfirmation=False,
    )
    assert grant["status"] == "PAYMENT_PENDING"
    [listed] = admin.get("/_admin/state").get_json()["creditGrants"]
    assert (listed["status"], listed["paymentCollection"]) == ("ACTIVE", "NOT_REQUIRED")


def test_paid_grant_charged_awaiting_confirmation_by_default_is_active_at_once(stigg, customer):
    grant = stigg.grant(
        grantType="PAID", paymentCollectionMethod="CHARGE", cost={"amount": 10, "currency": "USD"}
    )
    assert grant["status"] == "ACTIVE"
