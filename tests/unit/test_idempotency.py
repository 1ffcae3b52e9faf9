"""Idempotency-Key and the provisioning log through the HTTP pipeline, on SQLite and PostgreSQL."""

import threading
from datetime import UTC, datetime, timedelta

import pytest

from app import create_app
from app.store import Store
from tests.conftest import ACCOUNT_18, BASE_CONFIG, PROMOTIONAL_GRANT, ROTATED_CALLER_KEY, Caller
from tests.fakes import Reply, graphql_error

GRANT_PATH = "create-credit-grant"
GRANT = PROMOTIONAL_GRANT
KEY = {"Idempotency-Key": "006D000000CkYtr-createCreditGrant"}


@pytest.fixture
def app(database_url):
    app = create_app({**BASE_CONFIG, "DATABASE_URL": database_url})
    app.testing = True
    yield app
    # Before the PostgreSQL schema is dropped: an outcome the background thread commits
    # during the DROP SCHEMA deadlocks with it.
    app.extensions["store"].close()


@pytest.fixture
def log(app):
    return app.extensions["store"].log


def test_the_same_key_and_body_replays_the_answer_without_calling_stigg(caller, stigg, log):
    first = caller.post(GRANT_PATH, GRANT, headers=KEY)
    calls_after_first = len(stigg.calls)
    second = caller.post(GRANT_PATH, {**GRANT, "amount": 100.0}, headers=KEY)

    assert first.status_code == second.status_code == 200
    assert second.json == first.json
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert len(stigg.calls) == calls_after_first
    assert len(stigg.calls_to("GrantCredits")) == 1
    outcomes = [entry["outcome"] for entry in log.list(operation="createCreditGrant")]
    assert outcomes == ["replayed", "succeeded"]


def test_the_same_key_with_another_body_is_422(caller, stigg):
    caller.post(GRANT_PATH, GRANT, headers=KEY)

    response = caller.post(GRANT_PATH, {**GRANT, "amount": 200}, headers=KEY)

    assert response.status_code == 422
    assert response.json["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert response.json["retryable"] is False
    assert len(stigg.calls_to("GrantCredits")) == 1


def test_keys_are_scoped_to_the_caller_and_the_action(caller, stigg):
    caller.post(GRANT_PATH, GRANT, headers=KEY)

    other_caller = caller.post(GRANT_PATH, GRANT, key=ROTATED_CALLER_KEY, headers=KEY)
    other_action = caller.post(
        "create-customer-without-email",
        {"salesforceAccountId": ACCOUNT_18, "customerName": "A"},
        headers=KEY,
    )

    assert other_caller.status_code == 200
    assert "Idempotent-Replayed" not in other_caller.headers
    assert other_action.status_code == 200
    assert len(stigg.calls_to("GrantCredits")) == 2


def test_a_final_rejection_is_replayed(caller, stigg):
    stigg.script("CreditGrants", graphql_error("CustomerNotFound", "Customer not found"))

    first = caller.post(GRANT_PATH, GRANT, headers=KEY)
    second = caller.post(GRANT_PATH, GRANT, headers=KEY)

    assert first.status_code == second.status_code == 422
    assert second.json == first.json
    assert second.headers["Idempotent-Replayed"] == "true"
    assert len(stigg.calls) == 1


def test_a_retryable_failure_is_not_stored_so_a_retry_executes(caller, stigg, log):
    stigg.script("GrantCredits", Reply(status=503, raw="Service Unavailable"))

    first = caller.post(GRANT_PATH, GRANT, headers=KEY)
    second = caller.post(GRANT_PATH, GRANT, headers=KEY)

    assert first.status_code == 503
    assert second.status_code == 200
    assert "Idempotent-Replayed" not in second.headers
    assert [e["outcome"] for e in log.list(operation="createCreditGrant")] == [
        "succeeded",
        "failed",
    ]


def test_a_key_still_in_flight_is_409_retryable(app, caller, stigg):
    entered, release = threading.Event(), threading.Event()
    original = app.extensions["stigg"].attempt

    def slow_attempt(operation, variables, timeout_s):
        if operation.name == "GrantCredits":
            entered.set()
            release.wait(10)
        return original(operation, variables, timeout_s)

    app.extensions["stigg"].attempt = slow_attempt
    results = {}
    first = threading.Thread(
        target=lambda: results.setdefault(
            "first", Caller(app.test_client()).post(GRANT_PATH, GRANT, headers=KEY)
        )
    )
    first.start()
    assert entered.wait(10)

    concurrent = caller.post(GRANT_PATH, GRANT, headers=KEY)
    release.set()
    first.join(10)

    assert concurrent.status_code == 409
    assert concurrent.json["code"] == "REQUEST_IN_PROGRESS"
    assert concurrent.json["retryable"] is True
    assert int(concurrent.headers["Retry-After"]) >= 1
    assert results["first"].status_code == 200
    assert len(stigg.calls_to("GrantCredits")) == 1


def test_many_simultaneous_requests_with_one_key_make_one_mutation(app, stigg):
    barrier = threading.Barrier(12)
    statuses = []

    def send():
        client = Caller(app.test_client())
        barrier.wait()
        statuses.append(client.post(GRANT_PATH, GRANT, headers=KEY).status_code)

    threads = [threading.Thread(target=send) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert len(stigg.calls_to("GrantCredits")) == 1
    assert sorted(set(statuses)) <= [200, 409]
    assert statuses.count(200) >= 1


def test_an_expired_key_executes_again(app, caller, stigg):
    caller.post(GRANT_PATH, GRANT, headers=KEY)
    # Expire the stored answer by moving the store's clock past the TTL.
    later = datetime.now(UTC) + timedelta(seconds=app.extensions["settings"].idempotency_ttl_s + 1)
    app.extensions["store"].idempotency._clock = lambda: later

    response = caller.post(GRANT_PATH, {**GRANT, "amount": 300}, headers=KEY)

    assert response.status_code == 200
    assert "Idempotent-Replayed" not in response.headers
    assert len(stigg.calls_to("GrantCredits")) == 2
    assert app.extensions["store"].idempotency.purge_expired(now=later + timedelta(days=2)) >= 1


def test_every_accepted_request_is_logged_with_its_outcome(caller, stigg, log):
    caller.post(GRANT_PATH, {**GRANT, "amount": -1})
    caller.post(
        "create-subscription",
        {
            "salesforceAccountId": "001D000000IqhSL",
            "salesforceOpportunityId": "006D000000CkYtr",
            "planId": "plan-pro",
        },
        headers={"X-Request-Id": "req-sub-1"},
    )

    rejected = log.list(outcome="rejected")[0]
    assert (rejected["operation"], rejected["http_status"], rejected["error_code"]) == (
        "createCreditGrant",
        400,
        "VALIDATION_FAILED",
    )
    entry = log.get("req-sub-1")
    assert entry["outcome"] == "succeeded"
    assert entry["salesforce_account_id"] == ACCOUNT_18
    assert entry["salesforce_opportunity_id"] == "006D000000CkYtrIAF"
    assert entry["stigg_customer_id"] == ACCOUNT_18
    assert entry["stigg_subscription_id"].startswith("subscription-plan-pro-")
    assert entry["attempts"] == 3
    assert entry["payload"]["planId"] == "plan-pro"
    assert log.list(salesforce_id="006D000000CkYtrIAF")[0]["correlation_id"] == "req-sub-1"


def test_requests_refused_before_their_body_is_read_are_logged_too(caller, stigg, log):
    caller.post_raw(GRANT_PATH, '{"amount": ', content_type="application/json")
    caller.post_raw(GRANT_PATH, "amount=1", content_type="application/x-www-form-urlencoded")

    refused = log.list(outcome="rejected")[:2]
    assert [(e["http_status"], e["error_code"], e["payload"]) for e in refused] == [
        (415, "UNSUPPORTED_MEDIA_TYPE", None),
        (400, "MALFORMED_JSON", None),
    ]


def test_credit_grant_rows_carry_the_salesforce_ids_they_name(caller, stigg, log):
    caller.post(
        GRANT_PATH,
        {**GRANT, "stiggCustomerId": "001D000000IqhSL", "comment": "Closed Won 006D000000CkYtr"},
        headers={"X-Request-Id": "grant-ids-1"},
    )
    caller.post(
        GRANT_PATH,
        {**GRANT, "salesforceOpportunityId": "006D000000CkYtr"},
        headers={"X-Request-Id": "grant-ids-2"},
    )

    first, second = log.get("grant-ids-1"), log.get("grant-ids-2")
    assert (first["salesforce_account_id"], first["salesforce_opportunity_id"]) == (
        ACCOUNT_18,
        "006D000000CkYtrIAF",
    )
    # "acme" is not an Account ID: only the Opportunity is known.
    assert (second["salesforce_account_id"], second["salesforce_opportunity_id"]) == (
        None,
        "006D000000CkYtrIAF",
    )
    assert (
        stigg.calls_to("GrantCredits")[-1].input["additionalMetaData"]["salesforceOpportunityId"]
        == "006D000000CkYtrIAF"
    )


def test_unauthenticated_requests_are_not_logged(caller, stigg, log):
    caller.post(GRANT_PATH, GRANT, key="not-a-valid-caller-key-000")

    assert log.list() == []


def test_a_database_outage_refuses_before_anything_reaches_stigg(app, caller, stigg):
    from app.store import StoreError

    def unavailable(*args, **kwargs):
        raise StoreError("database at sqlite:///x: unreachable")

    app.extensions["store"].log.queue_start = unavailable

    response = caller.post(GRANT_PATH, GRANT, headers=KEY)

    assert response.status_code == 503
    assert response.json["code"] == "STORE_UNAVAILABLE"
    assert response.json["retryable"] is True
    assert stigg.calls == []


def test_readyz_reports_the_database(app):
    assert app.test_client().get("/readyz").json["database"] == "ok"


def test_an_unreachable_database_stops_start_up_with_one_line():
    from app.config import ConfigError

    with pytest.raises(ConfigError, match=r"^DATABASE_URL: database at"):
        create_app({**BASE_CONFIG, "DATABASE_URL": "sqlite:////nonexistent-dir/x/y.db"})


@pytest.mark.parametrize(
    ("delay_ms", "seen_at_once"), [("0", "succeeded"), ("1000", "in_progress")]
)
def test_the_outcome_follows_the_answer_by_at_most_outcome_write_delay_ms(
    database_url, stigg, delay_ms, seen_at_once
):
    app = create_app(
        {**BASE_CONFIG, "DATABASE_URL": database_url, "OUTCOME_WRITE_DELAY_MS": delay_ms}
    )
    store = app.extensions["store"]
    other = Store.from_url(database_url)  # another worker process, or the `log` command
    try:
        answer = Caller(app.test_client()).post(GRANT_PATH, GRANT, headers=KEY)
        assert answer.status_code == 200
        request_id = answer.json.get("requestId") or answer.headers["X-Request-Id"]

        assert other.log.get(request_id)["outcome"] == seen_at_once
        store.deferred.close()  # what a stopping worker does
        assert other.log.get(request_id)["outcome"] == "succeeded"
    finally:
        store.close()
        other.close()
