"""Stigg's rate limits in the sandbox: per operation, per customer, a sliding window, 429.

The limiter's clock is replaced by a hand-moved one, so the sliding window is tested
without sleeping."""

from __future__ import annotations

import pytest

from sandbox import create_app
from sandbox.limits import LimitSettings, RateLimiter

RATE_LIMITED = {"error": "rate_limit_exceeded", "message": "Too many requests"}
ROOT_FIELDS = [
    "cancelSubscription",
    "createCreditGrant",
    "creditGrants",
    "customerSubscriptions",
    "getActiveSubscriptions",
    "getCustomerByRefId",
    "provisionCustomer",
    "provisionSubscriptionV2",
    "triggerWorkflow",
    "updateOneCustomer",
    "updateOneSubscription",
]


class Seconds:
    """A monotonic clock moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def seconds(sandbox) -> Seconds:
    clock = Seconds()
    sandbox.limiter.clock = clock
    return clock


def set_limits(admin, **settings):
    response = admin.post("/_admin/limits", json=settings)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def stats(admin):
    return admin.get("/_admin/stats").get_json()


def grant_input(customer_id="cust-1", **fields):
    return {
        "customerId": customer_id,
        "currencyId": "cred-type-ai-tokens",
        "displayName": "Grant",
        "amount": 1,
        "grantType": "PROMOTIONAL",
        **fields,
    }


def grant(stigg, customer_id="cust-1"):
    return stigg.document("GrantCredits", grant_input(customer_id))


def assert_rate_limited(response):
    assert response.status_code == 429
    assert response.content_type == "application/json"
    assert response.get_json() == RATE_LIMITED
    assert "Retry-After" not in response.headers


def test_stiggs_limits_are_on_by_default(admin):
    assert admin.get("/_admin/limits").get_json() == {
        "enabled": True,
        "windowSeconds": 60.0,
        "perOperation": {
            "cancelSubscription": 250,
            "createCreditGrant": 250,
            "creditGrants": 500,
            "customerSubscriptions": 3000,
            "getActiveSubscriptions": 3000,
            "getCustomerByRefId": 3000,
            "provisionCustomer": 250,
            "provisionSubscriptionV2": 250,
            "triggerWorkflow": 250,
            "updateOneCustomer": 250,
            "updateOneSubscription": 250,
        },
        "perEntity": 30,
    }


def test_environment_switches_them_off_and_shrinks_the_window(monkeypatch):
    monkeypatch.setenv("SANDBOX_RATE_LIMITS", "off")
    monkeypatch.setenv("SANDBOX_RATE_WINDOW_S", "0.5")
    limits = create_app(api_keys=["k"]).test_client().get("/_admin/limits").get_json()
    assert (limits["enabled"], limits["windowSeconds"], limits["perEntity"]) == (False, 0.5, 30)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SANDBOX_RATE_LIMITS", "maybe"),
        ("SANDBOX_RATE_WINDOW_S", "0"),
        ("SANDBOX_RATE_WINDOW_S", "x"),
    ],
)
def test_bad_limit_settings_in_the_environment_stop_start_up(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=name):
        create_app()


def test_per_operation_limit(stigg, admin, seconds):
    for customer_id in ("cust-1", "cust-2", "cust-3", "cust-4"):
        stigg.customer(customer_id)
    set_limits(admin, perOperation={"createCreditGrant": 3})

    for customer_id in ("cust-1", "cust-2", "cust-3"):
        assert grant(stigg, customer_id).status_code == 200
    refused = grant(stigg, "cust-4")

    assert_rate_limited(refused)
    assert len(admin.get("/_admin/state").get_json()["creditGrants"]) == 3
    counts = stats(admin)
    assert counts["received"]["createCreditGrant"] == 4
    assert counts["executed"]["createCreditGrant"] == 3
    assert counts["rateLimited"] == {"createCreditGrant": 1}
    # Other operations have their own budgets.
    assert stigg.document("GetCustomer", {"customerId": "cust-4"}).status_code == 200


def test_per_entity_limit_counts_every_kind_of_mutation_of_one_customer(stigg, admin, seconds):
    stigg.customer("cust-1")  # 1
    stigg.customer("cust-2")
    set_limits(admin, perEntity=4)
    assert (
        stigg.document("UpdateCustomer", {"customerId": "cust-1", "name": "A"}).status_code == 200
    )
    assert grant(stigg, "cust-1").status_code == 200  # 3
    provision = {"customerId": "cust-1", "planId": "plan-free"}
    assert stigg.document("ProvisionSubscription", provision).status_code == 200  # 4

    refused = stigg.document("UpdateCustomer", {"refId": "cust-1", "name": "B"})

    assert_rate_limited(refused)
    state = admin.get("/_admin/state").get_json()
    assert [c["name"] for c in state["customers"] if c["customerId"] == "cust-1"] == ["A"]
    assert stats(admin)["rateLimited"] == {"updateOneCustomer": 1}
    # Another customer, and reads of this one, are not held back.
    assert grant(stigg, "cust-2").status_code == 200
    assert stigg.document("GetCustomer", {"customerId": "cust-1"}).status_code == 200
    assert stigg.document("CreditGrants", {"customerId": "cust-1"}).status_code == 200


def test_mutations_of_one_subscription_count_against_that_subscription(stigg, admin, seconds):
    stigg.customer("cust-1")
    first = stigg.subscription(customerId="cust-1", planId="plan-free", resourceId="r-1")["id"]
    other = stigg.subscription(customerId="cust-1", planId="plan-free", resourceId="r-2")["id"]
    set_limits(admin, perEntity=2)
    update = {"subscriptionId": first, "salesforceId": "006x"}
    assert stigg.document("UpdateSubscription", update).status_code == 200
    assert stigg.document("CancelSubscription", {"subscriptionRefId": first}).status_code == 200

    refused = stigg.document("UpdateSubscription", update)

    assert_rate_limited(refused)
    assert stats(admin)["rateLimited"] == {"updateOneSubscription": 1}
    # Another subscription of the same customer, and a workflow (no entity), still run.
    assert stigg.document("CancelSubscription", {"subscriptionRefId": other}).status_code == 200
    workflow = {"triggerId": "wf-seat-change"}
    assert stigg.document("TriggerWorkflow", workflow).status_code == 200


def test_the_window_slides(stigg, admin, seconds):
    stigg.customer("cust-1")
    set_limits(admin, windowSeconds=10, perOperation={"getCustomerByRefId": 2})

    def look_up():
        return stigg.document("GetCustomer", {"customerId": "cust-1"}).status_code

    assert look_up() == 200  # t=0
    seconds.now += 6
    assert look_up() == 200  # t=6
    seconds.now += 3
    assert look_up() == 429  # t=9: two in the last 10 s
    seconds.now += 1.5
    assert look_up() == 200  # t=10.5: the one at t=0 has left the window
    seconds.now += 0.5
    assert look_up() == 429  # t=11: t=6 and t=10.5 are in it (a fixed minute would allow)
    seconds.now += 5.5
    assert look_up() == 200  # t=16.5: t=6 has left
    assert stats(admin)["rateLimited"] == {"getCustomerByRefId": 2}


def test_refused_requests_do_not_count(stigg, admin, seconds):
    stigg.customer("cust-1")
    set_limits(admin, windowSeconds=10, perOperation={"getCustomerByRefId": 1})
    assert stigg.document("GetCustomer", {"customerId": "cust-1"}).status_code == 200
    for _ in range(9):
        seconds.now += 1
        assert stigg.document("GetCustomer", {"customerId": "cust-1"}).status_code == 429
    seconds.now += 1.5  # 10.5 s after the only admitted one
    assert stigg.document("GetCustomer", {"customerId": "cust-1"}).status_code == 200


def test_every_root_field_of_a_request_counts_and_a_refusal_runs_none(stigg, admin, seconds):
    stigg.customer("cust-1")
    set_limits(admin, perOperation={"createCreditGrant": 3})
    two_grants = """
    mutation($a: CreditGrantInput!, $b: CreditGrantInput!) {
      a: createCreditGrant(input: $a) { grantId }
      b: createCreditGrant(input: $b) { grantId }
    }"""
    variables = {"a": grant_input(), "b": grant_input()}
    assert stigg.post(two_grants, variables).status_code == 200  # 2 of 3
    assert_rate_limited(stigg.post(two_grants, variables))  # 4 > 3: neither runs
    assert len(admin.get("/_admin/state").get_json()["creditGrants"]) == 2
    assert stats(admin)["rateLimited"] == {"createCreditGrant": 2}
    assert grant(stigg).status_code == 200  # the third still fits


def test_requests_apollo_refuses_do_not_count(stigg, admin, seconds):
    set_limits(admin, perOperation={"getCustomerByRefId": 1})
    bad = stigg.post(
        'query { getCustomerByRefId(input: {customerId: "a"}) { nope } }'
    )  # GRAPHQL_VALIDATION_FAILED
    assert bad.status_code == 400
    assert stigg.document("GetCustomer", {"customerId": "a"}).status_code == 200


def test_faults_are_decided_first(stigg, admin, seconds):
    stigg.customer("cust-1")
    set_limits(admin, perOperation={"createCreditGrant": 2})
    admin.post(
        "/_admin/faults",
        json=[
            {"kind": "status", "status": 503, "count": 1, "operations": ["createCreditGrant"]},
            {"kind": "delay_after", "ms": 1, "count": 1, "operations": ["createCreditGrant"]},
        ],
    )

    assert grant(stigg).status_code == 503  # the fault answered: never reached the limits
    assert grant(stigg).status_code == 200  # delay_after: executed, so it counts
    assert grant(stigg).status_code == 200
    assert_rate_limited(grant(stigg))
    assert stats(admin)["faults"] == {"status": 1, "delay_after": 1}


def test_switched_off_nothing_is_limited_nor_counted(stigg, admin, seconds):
    set_limits(admin, enabled=False, perEntity=2)
    stigg.customer("cust-1")
    for _ in range(5):
        assert grant(stigg).status_code == 200
    set_limits(admin, enabled=True)
    assert grant(stigg).status_code == 200
    assert grant(stigg).status_code == 200
    assert grant(stigg).status_code == 429


def test_reset_restores_the_start_up_limits_and_forgets_the_past(stigg, admin, seconds):
    stigg.customer("cust-1")
    set_limits(admin, windowSeconds=5, perEntity=1)
    assert grant(stigg).status_code == 429  # provisionCustomer used cust-1's one
    admin.post("/_admin/reset")
    assert admin.get("/_admin/limits").get_json()["perEntity"] == 30
    assert stats(admin)["rateLimited"] == {}
    stigg.customer("cust-1")
    assert grant(stigg).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"enabled": "yes"},
        {"windowSeconds": 0},
        {"windowSeconds": True},
        {"perEntity": -1},
        {"perEntity": 1.5},
        {"perOperation": {"provisionSubscription": 10}},  # an alias, not a root field
        {"perOperation": {"createCreditGrant": "10"}},
        {"perOperation": []},
        {"colour": "red"},
        ["enabled"],
    ],
)
def test_bad_limit_settings_are_400(admin, body):
    before = admin.get("/_admin/limits").get_json()
    response = admin.post("/_admin/limits", json=body)
    assert response.status_code == 400
    assert response.get_json()["error"]
    assert admin.get("/_admin/limits").get_json() == before


def test_partial_updates_keep_the_other_settings(admin):
    limits = set_limits(admin, windowSeconds=0.5, perOperation={"creditGrants": 7})
    assert limits["windowSeconds"] == 0.5
    assert limits["perOperation"]["creditGrants"] == 7
    assert limits["perOperation"]["provisionCustomer"] == 250
    assert limits["perEntity"] == 30
    assert limits["enabled"] is True


def test_the_limiter_on_its_own():
    clock = Seconds()
    limiter = RateLimiter(LimitSettings.defaults(ROOT_FIELDS), clock=clock)
    limiter.configure(
        LimitSettings.defaults(ROOT_FIELDS).updated({"windowSeconds": 1, "perEntity": 2})
    )
    assert limiter.admit(["createCreditGrant"], ["a"]) is None
    assert limiter.admit(["updateOneCustomer"], ["a"]) is None
    refusal = limiter.admit(["provisionCustomer"], ["a"])
    assert (refusal.kind, refusal.key, refusal.limit) == ("perEntity", "a", 2)
    assert limiter.admit(["provisionCustomer"], ["b"]) is None
    clock.now += 1
    assert limiter.admit(["provisionCustomer"], ["a"]) is None
