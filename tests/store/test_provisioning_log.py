"""The provisioning log (app/store/provisioning_log.py)."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError

from app.store import redact
from app.store.provisioning_log import REDACTED

ACCOUNT = "001000000000001AAA"
OTHER_ACCOUNT = "001000000000002AAA"
OPPORTUNITY = "006000000000001AAA"


def start(store, request_id, **overrides):
    arguments = {
        "request_id": request_id,
        "operation": "createSubscription",
        "caller_key_id": "caller-a",
        "idempotency_key": f"key-{request_id}",
        "salesforce_account_id": ACCOUNT,
        "salesforce_opportunity_id": None,
        "payload": {"salesforceAccountId": ACCOUNT, "planId": "plan-pro"},
    }
    return store.log.start(**(arguments | overrides))


# redact


def test_redact_masks_secret_looking_keys_at_any_depth_and_any_case():
    payload = {
        "apiKey": "sk-1",
        "API_KEY": "sk-2",
        "Authorization": "Bearer abc",
        "nested": {"accessToken": "t", "clientSecret": "s", "list": [{"password": "p"}]},
        "customerEmail": "ada@example.com",
        "customerName": "Ada",
        "amount": 10,
    }

    assert redact(payload) == {
        "apiKey": REDACTED,
        "API_KEY": REDACTED,
        "Authorization": REDACTED,
        "nested": {
            "accessToken": REDACTED,
            "clientSecret": REDACTED,
            "list": [{"password": REDACTED}],
        },
        "customerEmail": "ada@example.com",
        "customerName": "Ada",
        "amount": 10,
    }


def test_redact_leaves_its_argument_alone():
    payload = {"token": "t", "inner": {"secret": "s"}}
    redact(payload)
    assert payload == {"token": "t", "inner": {"secret": "s"}}


def test_redact_passes_non_containers_through():
    assert redact("text") == "text"
    assert redact(None) is None
    assert redact([1, {"token": 2}]) == [1, {"token": REDACTED}]


# start, finish, get


def test_start_records_an_in_progress_entry(store, clock):
    entry_id = start(store, "r-1", salesforce_opportunity_id=OPPORTUNITY)

    entry = store.log.get(entry_id)

    assert entry["id"] == entry_id
    assert entry["outcome"] == "in_progress"
    assert entry["request_id"] == "r-1"
    assert entry["operation"] == "createSubscription"
    assert entry["caller_key_id"] == "caller-a"
    assert entry["idempotency_key"] == "key-r-1"
    assert entry["salesforce_account_id"] == ACCOUNT
    assert entry["salesforce_opportunity_id"] == OPPORTUNITY
    assert entry["attempts"] == 0
    assert entry["created_at"] == clock.now
    assert entry["created_at"].utcoffset().total_seconds() == 0
    assert entry["finished_at"] is None


def test_start_stores_the_payload_redacted(store):
    payload = {"customerEmail": "ada@example.com", "auth": {"apiKey": "sk-live-1"}}

    entry_id = start(store, "r-1", payload=payload)

    assert store.log.get(entry_id)["payload"] == {
        "customerEmail": "ada@example.com",
        "auth": {"apiKey": REDACTED},
    }


def test_finish_records_the_outcome(store, clock):
    entry_id = start(store, "r-1")
    clock.advance(2)

    assert store.log.finish(
        entry_id,
        outcome="succeeded",
        http_status=200,
        attempts=2,
        duration_ms=1834,
        stigg_customer_id=ACCOUNT,
        stigg_subscription_id="subscription-1",
    )

    entry = store.log.get(entry_id)
    assert entry["outcome"] == "succeeded"
    assert entry["http_status"] == 200
    assert entry["attempts"] == 2
    assert entry["duration_ms"] == 1834
    assert entry["stigg_customer_id"] == ACCOUNT
    assert entry["stigg_subscription_id"] == "subscription-1"
    assert entry["stigg_credit_grant_id"] is None
    assert entry["finished_at"] == clock.now


def test_finish_records_a_failure_with_its_codes(store):
    entry_id = start(store, "r-1")

    store.log.finish(
        entry_id,
        outcome="rejected",
        http_status=422,
        attempts=1,
        duration_ms=120,
        error_code="STIGG_REJECTED",
        stigg_error_code="PlanNotFound",
        message="Plan plan-pro was not found.",
    )

    entry = store.log.get(entry_id)
    assert (entry["error_code"], entry["stigg_error_code"]) == ("STIGG_REJECTED", "PlanNotFound")
    assert entry["message"] == "Plan plan-pro was not found."


def test_finish_refuses_an_unknown_outcome(store):
    entry_id = start(store, "r-1")
    with pytest.raises(ValueError, match="outcome must be one of"):
        store.log.finish(
            entry_id, outcome="in_progress", http_status=200, attempts=1, duration_ms=1
        )


def test_finish_of_an_unknown_entry_says_so(store):
    assert (
        store.log.finish(999, outcome="failed", http_status=503, attempts=1, duration_ms=1) is False
    )


def test_get_finds_an_entry_by_id_request_id_or_id_typed_as_text(store):
    entry_id = start(store, "req-abc")

    assert store.log.get(entry_id)["request_id"] == "req-abc"
    assert store.log.get("req-abc")["id"] == entry_id
    assert store.log.get(str(entry_id))["id"] == entry_id
    assert store.log.get("req-missing") is None
    assert store.log.get(entry_id + 100) is None


def test_a_replay_points_at_its_original(store):
    original = start(store, "r-1")
    store.log.finish(original, outcome="failed", http_status=503, attempts=3, duration_ms=25000)

    replay = start(store, "r-2", replay_of=original)

    assert store.log.get(replay)["replay_of"] == original


def test_a_replay_of_a_missing_entry_is_a_bug_not_an_outage(store):
    # Constraint violations propagate as they are: they must never be answered as a
    # retryable STORE_UNAVAILABLE, which would never heal.
    with pytest.raises(IntegrityError):
        start(store, "r-2", replay_of=12345)


def test_a_request_id_is_logged_once(store):
    start(store, "r-1")
    with pytest.raises(IntegrityError):
        start(store, "r-1")


def test_a_replay_marks_its_original(store):
    original = start(store, "r-1")
    replay = start(store, "r-2", replay_of=original)

    assert store.log.get(original)["replayed_by"] == replay
    assert store.log.get(replay)["replay_of"] == original


def test_correlation_ids_repeat_freely_and_find_the_newest(store):
    first = store.log.start(
        request_id="r-1", operation="createCreditGrant", caller_key_id="k", correlation_id="c"
    )
    second = store.log.start(
        request_id="r-2", operation="createCreditGrant", caller_key_id="k", correlation_id="c"
    )

    assert first != second
    assert store.log.get("c")["id"] == second


# list


@pytest.fixture
def history(store, clock):
    """Four requests, one second apart, oldest first."""
    succeeded = start(store, "r-1")
    store.log.finish(succeeded, outcome="succeeded", http_status=200, attempts=1, duration_ms=5)
    clock.advance(1)
    failed = start(store, "r-2", operation="createCreditGrant", salesforce_account_id=OTHER_ACCOUNT)
    store.log.finish(failed, outcome="failed", http_status=504, attempts=3, duration_ms=25000)
    clock.advance(1)
    crashed = start(store, "r-3", salesforce_account_id=None, salesforce_opportunity_id=OPPORTUNITY)
    clock.advance(1)
    rejected = start(store, "r-4")
    store.log.finish(rejected, outcome="rejected", http_status=422, attempts=1, duration_ms=9)
    return {"succeeded": succeeded, "failed": failed, "crashed": crashed, "rejected": rejected}


def ids(entries):
    return [entry["id"] for entry in entries]


def test_list_is_newest_first(store, history):
    assert ids(store.log.list()) == [
        history["rejected"],
        history["crashed"],
        history["failed"],
        history["succeeded"],
    ]


def test_list_filters_by_outcome(store, history):
    assert ids(store.log.list(outcome="failed")) == [history["failed"]]
    # A request that crashed mid-way stays visible as in progress.
    assert ids(store.log.list(outcome="in_progress")) == [history["crashed"]]


def test_list_filters_by_operation(store, history):
    assert ids(store.log.list(operation="createCreditGrant")) == [history["failed"]]


def test_list_filters_by_account_or_opportunity(store, history):
    assert ids(store.log.list(salesforce_id=ACCOUNT)) == [history["rejected"], history["succeeded"]]
    assert ids(store.log.list(salesforce_id=OPPORTUNITY)) == [history["crashed"]]


def test_list_combines_filters_and_limits(store, history):
    assert ids(store.log.list(outcome="rejected", salesforce_id=ACCOUNT)) == [history["rejected"]]
    assert ids(store.log.list(limit=2)) == [history["rejected"], history["crashed"]]
    assert store.log.list(operation="createCustomerWithEmail") == []
