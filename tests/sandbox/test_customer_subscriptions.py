"""customerSubscriptions and Customer.subscriptions: Stigg's filters, sorting and paging."""

from __future__ import annotations

import pytest

# The subscription look-up the service sends (issue 12, the lead's CustomerSubscriptions
# document), selected the same way.
LOOKUP = """
query CustomerSubscriptions($filter: CustomerSubscriptionFilter!, $paging: CursorPaging!) {
  customerSubscriptions(filter: $filter, paging: $paging) {
    edges { node { subscriptionId status startDate additionalMetaData
                   resource { resourceId } } }
    pageInfo { hasNextPage endCursor }
  }
}
"""

CONNECTION = """
query($filter: CustomerSubscriptionFilter, $paging: CursorPaging,
      $sorting: [CustomerSubscriptionSort!]) {
  customerSubscriptions(filter: $filter, paging: $paging, sorting: $sorting) {
    totalCount
    edges { cursor node { subscriptionId status } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}
"""

WITH_DEFAULTS = """
{ customerSubscriptions { totalCount edges { node { subscriptionId } } pageInfo { hasNextPage } } }
"""

SERVICE_STATUSES = ["ACTIVE", "IN_TRIAL", "NOT_STARTED", "PAYMENT_PENDING"]


@pytest.fixture(autouse=True)
def no_rate_limits(admin):
    # These tests provision more than Stigg's 30 mutations a minute for one customer.
    admin.post("/_admin/limits", json={"enabled": False})


def provision(stigg, **input):
    body = {"customerId": "cust-1", "planId": "plan-free", **input}
    return stigg.ok("ProvisionSubscription", body)["provisionSubscription"]


def connection(stigg, *, filter=None, paging=None, sorting=None):
    variables = {"filter": filter, "paging": paging, "sorting": sorting}
    variables = {key: value for key, value in variables.items() if value is not None}
    body = stigg.post(CONNECTION, variables).get_json()
    assert "errors" not in body, body
    return body["data"]["customerSubscriptions"]


def ids(result):
    return [edge["node"]["subscriptionId"] for edge in result["edges"]]


def refused(stigg, query, variables):
    body = stigg.post(query, variables).get_json()
    assert body["data"] is None, body
    [error] = body["errors"]
    return error


@pytest.fixture
def scene(stigg):
    """cust-1 with one subscription in each status the look-up cares about, and cust-2."""
    stigg.customer("cust-1")
    stigg.customer("cust-2")
    canceled = provision(stigg, subscriptionId="s-canceled")
    active = provision(stigg, subscriptionId="s-active", additionalMetaData={"k": "v"})
    scheduled = provision(
        stigg,
        subscriptionId="s-scheduled",
        planId="plan-pro",
        billingPeriod="MONTHLY",
        paymentCollectionMethod="INVOICE",
        startDate="2099-01-01T00:00:00Z",
    )
    pending = provision(
        stigg, subscriptionId="s-pending", planId="plan-pro", billingPeriod="MONTHLY"
    )
    trial = provision(
        stigg,
        subscriptionId="s-trial",
        resourceId="ws-1",
        trialOverrideConfiguration={"isTrial": True},
    )
    other = provision(stigg, customerId="cust-2", subscriptionId="s-other")
    assert pending["status"] == "PAYMENT_REQUIRED"
    assert scheduled["isScheduled"] is True
    return [canceled, active, scheduled, pending, trial, other]


def test_the_service_look_up_finds_every_status_it_names(stigg, scene):
    body = stigg.post(
        LOOKUP,
        {
            "filter": {
                "customer": {"customerId": {"eq": "cust-1"}},
                "status": {"in": SERVICE_STATUSES},
            },
            "paging": {"first": 50},
        },
    ).get_json()

    assert "errors" not in body, body
    result = body["data"]["customerSubscriptions"]
    nodes = [edge["node"] for edge in result["edges"]]
    # Newest first; the replaced (CANCELED) one and cust-2's are left out.
    assert [(n["subscriptionId"], n["status"]) for n in nodes] == [
        ("s-trial", "IN_TRIAL"),
        ("s-pending", "PAYMENT_PENDING"),
        ("s-scheduled", "NOT_STARTED"),
        ("s-active", "ACTIVE"),
    ]
    assert nodes[0]["resource"] == {"resourceId": "ws-1"}
    assert nodes[2]["startDate"] == "2099-01-01T00:00:00.000Z"
    assert nodes[3]["additionalMetaData"] == {"k": "v"}
    assert nodes[3]["resource"] is None
    assert result["pageInfo"] == {
        "hasNextPage": False,
        "endCursor": result["pageInfo"]["endCursor"],
    }


@pytest.mark.parametrize(
    ("filter", "expected"),
    [
        pytest.param(
            {},
            ["s-other", "s-trial", "s-pending", "s-scheduled", "s-active", "s-canceled"],
            id="all",
        ),
        pytest.param({"subscriptionId": {"eq": "s-active"}}, ["s-active"], id="eq"),
        pytest.param(
            {"customer": {"customerId": {"eq": "cust-1"}}, "status": {"neq": "ACTIVE"}},
            ["s-trial", "s-pending", "s-scheduled", "s-canceled"],
            id="neq",
        ),
        pytest.param(
            {"subscriptionId": {"in": ["s-active", "s-other", "s-nope"]}},
            ["s-other", "s-active"],
            id="in",
        ),
        pytest.param(
            {"status": {"notIn": ["ACTIVE", "CANCELED"]}},
            ["s-trial", "s-pending", "s-scheduled"],
            id="notIn",
        ),
        pytest.param({"status": {"in": []}}, [], id="in-nothing"),
        pytest.param({"resource": {"resourceId": {"eq": "ws-1"}}}, ["s-trial"], id="resource-eq"),
        pytest.param(
            {
                "customer": {"customerId": {"eq": "cust-1"}},
                "resource": {"resourceId": {"is": None}},
            },
            ["s-pending", "s-scheduled", "s-active", "s-canceled"],
            id="resource-is-null",
        ),
        pytest.param(
            {"resource": {"resourceId": {"isNot": None}}}, ["s-trial"], id="resource-is-not-null"
        ),
        # SQL: a subscription without a resource has a NULL resourceId, and NULL <> 'ws-1'
        # is not true; only `is: null` matches it.
        pytest.param({"resource": {"resourceId": {"neq": "ws-1"}}}, [], id="resource-neq-null"),
        pytest.param(
            {"or": [{"subscriptionId": {"eq": "s-active"}}, {"status": {"eq": "IN_TRIAL"}}]},
            ["s-trial", "s-active"],
            id="or",
        ),
        pytest.param(
            {
                "and": [
                    {"customer": {"customerId": {"eq": "cust-1"}}},
                    {"status": {"in": ["ACTIVE", "CANCELED"]}},
                ],
                "subscriptionId": {"neq": "s-canceled"},
            },
            ["s-active"],
            id="and-with-fields",
        ),
        # nestjs-query ORs the operators of one field comparison.
        pytest.param(
            {"status": {"eq": "ACTIVE", "in": ["IN_TRIAL"]}},
            ["s-other", "s-trial", "s-active"],
            id="operators-of-one-field-are-alternatives",
        ),
        pytest.param(
            {"subscriptionId": {"like": "s-%e%"}},
            ["s-other", "s-pending", "s-scheduled", "s-active", "s-canceled"],
            id="like",
        ),
        pytest.param({"subscriptionId": {"iLike": "S-TRI_L"}}, ["s-trial"], id="iLike"),
        pytest.param(
            {"customer": {"customerId": {"notLike": "cust-1"}}}, ["s-other"], id="notLike"
        ),
        pytest.param({"startDate": {"gt": "2098-01-01T00:00:00Z"}}, ["s-scheduled"], id="date-gt"),
        pytest.param(
            {
                "startDate": {
                    "between": {
                        "lower": "2098-12-31T00:00:00Z",
                        "upper": "2099-01-01T00:00:00Z",
                    }
                }
            },
            ["s-scheduled"],
            id="date-between-inclusive",
        ),
        pytest.param(
            {"plan": {"refId": {"eq": "plan-pro"}}}, ["s-pending", "s-scheduled"], id="plan"
        ),
    ],
)
def test_filter_semantics(stigg, scene, filter, expected):
    assert ids(connection(stigg, filter=filter, paging={"first": 50})) == expected


@pytest.mark.parametrize(
    ("filter", "what"),
    [
        pytest.param(
            {"addons": {"quantity": {"gt": 1}}}, "CustomerSubscriptionFilter.addons", id="addons"
        ),
        pytest.param(
            {"customer": {"searchQuery": {"iLike": "acme"}}},
            "CustomerSubscriptionFilterCustomerFilter.searchQuery",
            id="search-query",
        ),
        pytest.param(
            {"resourceId": {"eq": "00000000-0000-4000-8000-000000000000"}},
            "CustomerSubscriptionFilter.resourceId",
            id="resource-uuid",
        ),
        pytest.param(
            {"subscriptionId": {"gt": "s"}},
            "`gt` comparison on CustomerSubscriptionFilter.subscriptionId",
            id="string-order",
        ),
        pytest.param(
            {"status": {"like": "ACTIVE"}},
            "`like` comparison on CustomerSubscriptionFilter.status",
            id="enum-like",
        ),
        pytest.param(
            {"salesforceId": {"is": True}},
            "`is: true` on CustomerSubscriptionFilter.salesforceId",
            id="is-true-on-string",
        ),
        pytest.param(
            {"status": None},
            "a null value for CustomerSubscriptionFilter.status",
            id="null-comparison",
        ),
    ],
)
def test_what_the_sandbox_does_not_model_is_refused_loudly(stigg, scene, filter, what):
    error = refused(stigg, CONNECTION, {"filter": filter})
    assert error["path"] == ["customerSubscriptions"]
    assert error["extensions"] == {"code": "UnsupportedParameter", "isValidationError": True}
    assert error["message"].startswith("The Stigg sandbox does not model ")
    assert what in error["message"]


def test_defaults_are_stiggs_first_ten_newest_first(stigg):
    stigg.customer("cust-1")
    made = [provision(stigg, subscriptionId=f"s-{n:02}")["id"] for n in range(12)]
    body = stigg.post(WITH_DEFAULTS).get_json()
    result = body["data"]["customerSubscriptions"]
    assert result["totalCount"] == 12
    assert ids(result) == list(reversed(made))[:10]
    assert result["pageInfo"] == {"hasNextPage": True}


def test_explicit_nulls_mean_no_filter_no_limit_and_creation_order(stigg):
    stigg.customer("cust-1")
    made = [provision(stigg, subscriptionId=f"s-{n:02}")["id"] for n in range(12)]
    body = stigg.post(CONNECTION, {"filter": None, "paging": None, "sorting": None}).get_json()
    result = body["data"]["customerSubscriptions"]
    assert ids(result) == made
    assert result["pageInfo"]["hasNextPage"] is False


def test_paging_follows_cursors_to_the_end(stigg):
    stigg.customer("cust-1")
    made = [provision(stigg, subscriptionId=f"s-{n:02}")["id"] for n in range(25)]
    seen, after, pages = [], None, 0
    while True:
        paging = {"first": 10} if after is None else {"first": 10, "after": after}
        result = connection(stigg, paging=paging)
        assert result["totalCount"] == 25
        assert result["pageInfo"]["hasPreviousPage"] is (after is not None)
        seen += ids(result)
        pages += 1
        if not result["pageInfo"]["hasNextPage"]:
            break
        after = result["pageInfo"]["endCursor"]
        assert after == result["edges"][-1]["cursor"]
    assert pages == 3
    assert seen == list(reversed(made))


def test_a_cursor_holds_its_place_when_subscriptions_are_added(stigg):
    stigg.customer("cust-1")
    made = [provision(stigg, subscriptionId=f"s-{n}")["id"] for n in range(4)]
    first = connection(stigg, paging={"first": 2})
    provision(stigg, subscriptionId="s-new")  # newest: sorts before the first page
    rest = connection(stigg, paging={"first": 10, "after": first["pageInfo"]["endCursor"]})
    assert ids(first) == ["s-3", "s-2"]
    assert ids(rest) == ["s-1", "s-0"] == made[1::-1]
    assert rest["totalCount"] == 5


def test_paging_backwards(stigg):
    stigg.customer("cust-1")
    for n in range(5):
        provision(stigg, subscriptionId=f"s-{n}")
    everything = connection(stigg, paging={"first": 5})
    before = everything["edges"][3]["cursor"]
    result = connection(stigg, paging={"last": 2, "before": before})
    assert ids(result) == ["s-3", "s-2"]
    assert result["pageInfo"]["hasPreviousPage"] is True
    assert result["pageInfo"]["hasNextPage"] is True
    assert ids(connection(stigg, paging={"last": 2})) == ["s-1", "s-0"]


@pytest.mark.parametrize(
    "paging",
    [
        {"first": 2, "after": "not-a-cursor"},
        {"first": 2, "after": "WzEsMiwzXQ=="},  # valid base64 of a key of the wrong length
        {"first": -1},
        {"first": 1, "last": 1},
    ],
)
def test_bad_paging_is_bad_user_input(stigg, scene, paging):
    error = refused(stigg, CONNECTION, {"paging": paging})
    assert error["extensions"] == {"code": "BadUserInput", "isValidationError": True}


def test_sorting(stigg, scene):
    oldest_first = connection(
        stigg,
        filter={"customer": {"customerId": {"eq": "cust-1"}}},
        sorting=[{"field": "createdAt", "direction": "ASC"}],
    )
    assert ids(oldest_first) == ["s-canceled", "s-active", "s-scheduled", "s-pending", "s-trial"]
    by_end = connection(
        stigg,
        filter={"customer": {"customerId": {"eq": "cust-1"}}},
        sorting=[{"field": "endDate", "direction": "ASC", "nulls": "NULLS_FIRST"}],
    )
    # s-canceled ended when s-active replaced it; s-active ends when s-scheduled starts
    # (2099). NULLS_FIRST puts the others first, in creation order (the tie-break follows
    # the first key's direction).
    assert ids(by_end) == ["s-scheduled", "s-pending", "s-trial", "s-canceled", "s-active"]


def test_sorting_by_what_the_sandbox_does_not_order_is_refused(stigg, scene):
    error = refused(stigg, CONNECTION, {"sorting": [{"field": "status", "direction": "ASC"}]})
    assert error["extensions"]["code"] == "UnsupportedParameter"
    assert "sorting CustomerSubscription by status" in error["message"]


CUSTOMER_SUBSCRIPTIONS = """
query($input: GetCustomerByRefIdInput!, $filter: CustomerSubscriptionFilter) {
  getCustomerByRefId(input: $input) {
    hasActiveSubscription
    totalActiveSubscription
    hasActiveResource
    active: subscriptions { subscriptionId }
    filtered: subscriptions(filter: $filter) { subscriptionId }
  }
}
"""


def test_customer_subscriptions_default_to_active_and_in_trial_newest_first(stigg, scene):
    body = stigg.post(
        CUSTOMER_SUBSCRIPTIONS,
        {"input": {"customerId": "cust-1"}, "filter": {"status": {"eq": "NOT_STARTED"}}},
    ).get_json()
    customer = body["data"]["getCustomerByRefId"]
    assert customer == {
        "hasActiveSubscription": True,
        "totalActiveSubscription": 2.0,
        "hasActiveResource": True,
        "active": [{"subscriptionId": "s-trial"}, {"subscriptionId": "s-active"}],
        "filtered": [{"subscriptionId": "s-scheduled"}],
    }
