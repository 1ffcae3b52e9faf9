"""POST /v1/batches and GET /v1/batches/{id}: an item is exactly its single action sent with
the same Idempotency-Key (validation, errors, idempotency, log rows), and problems with the
batch as a whole are one 4xx, as for a single call."""

from __future__ import annotations

import json
import uuid

import pytest

from app import create_app
from app.batch.worker import BatchWorker
from tests.conftest import (
    ACCOUNT_15,
    ACCOUNT_18,
    BASE_CONFIG,
    CALLER_KEY,
    PROMOTIONAL_GRANT,
    ROTATED_CALLER_KEY,
    Caller,
)
from tests.fakes import Reply

SUBSCRIPTION = {"salesforceAccountId": ACCOUNT_15, "planId": "plan-pro"}


@pytest.fixture
def app(database_url):
    app = create_app({**BASE_CONFIG, "DATABASE_URL": database_url, "BATCH_MAX_ITEMS": "5"})
    app.testing = True
    yield app
    app.extensions["store"].close()  # before the PostgreSQL schema is dropped


@pytest.fixture
def http(app):
    return app.test_client()


@pytest.fixture
def worker(app) -> BatchWorker:
    return app.extensions["batch_worker"]


def keyed() -> str:
    return f"k-{uuid.uuid4().hex[:10]}"


def item(operation: str, body: dict, key: str | None = None, **extra) -> dict:
    return {"operation": operation, "idempotencyKey": key or keyed(), "body": body, **extra}


def post_batch(http, items, *, key=CALLER_KEY, headers=None, raw=None):
    return http.post(
        "/v1/batches",
        data=raw if raw is not None else json.dumps({"items": items}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {key}", **(headers or {})},
    )


def get_batch(http, batch_id, *, key=CALLER_KEY):
    return http.get(f"/v1/batches/{batch_id}", headers={"Authorization": f"Bearer {key}"})


def test_a_batch_is_accepted_queued_and_run_like_single_calls(app, http, worker, stigg):
    items = [
        item("createSubscription", SUBSCRIPTION, reference="006D000000CkYtr"),
        item("createCreditGrant", PROMOTIONAL_GRANT),
    ]

    accepted = post_batch(http, items)

    assert accepted.status_code == 202
    batch_id = accepted.json["batchId"]
    assert accepted.headers["Location"] == f"/v1/batches/{batch_id}"
    assert int(accepted.headers["Retry-After"]) >= 1
    assert accepted.json["status"] == "QUEUED"
    assert accepted.json["counts"] == {
        "total": 2,
        "queued": 2,
        "running": 0,
        "succeeded": 0,
        "failed": 0,
    }
    assert accepted.json["retryAfterSeconds"] >= 1
    assert [i["status"] for i in accepted.json["items"]] == ["QUEUED", "QUEUED"]
    assert accepted.json["items"][0]["reference"] == "006D000000CkYtr"
    assert stigg.calls == []  # nothing runs in the web request

    assert worker.drain() == 2

    done = get_batch(http, batch_id)
    assert done.status_code == 200
    assert done.json["status"] == "COMPLETED"
    assert "retryAfterSeconds" not in done.json and "Retry-After" not in done.headers
    subscription, grant = done.json["items"]
    assert subscription["status"] == "SUCCEEDED" and subscription["httpStatus"] == 200
    assert subscription["result"]["stiggCustomerId"] == ACCOUNT_18
    assert subscription["result"]["stiggSubscriptionId"] == stigg.subscriptions[0]["subscriptionId"]
    assert grant["result"]["creditGrantId"] == stigg.grants[0]["grantId"]
    # Each item went through the single path: its key looked first, then created.
    assert stigg.operations == [
        "GetCustomer",
        "ProvisionCustomer",
        "CustomerSubscriptions",
        "ProvisionSubscription",
        "CreditGrants",
        "GrantCredits",
    ]
    log = app.extensions["store"].log
    rows = [e for e in log.list() if e["batch_item_id"] is not None]
    assert sorted((e["operation"], e["outcome"], e["idempotency_key"]) for e in rows) == sorted(
        [
            ("createSubscription", "succeeded", items[0]["idempotencyKey"]),
            ("createCreditGrant", "succeeded", items[1]["idempotencyKey"]),
        ]
    )


def test_updates_cancellations_and_workflows_run_in_batches_in_customer_order(
    app, http, worker, stigg
):
    account = {"salesforceAccountId": ACCOUNT_15}
    items = [
        item("createSubscription", {**SUBSCRIPTION, "addons": [{"addonId": "addon-seats"}]}),
        item(
            "updateSubscription",
            {**account, "addons": [{"addonId": "addon-seats", "quantity": 9}]},
        ),
        item("cancelSubscription", {**account, "cancellationTime": "IMMEDIATE"}),
        item("triggerStiggWorkflow", {"triggerId": "wf-1", "payloadJson": '{"seats": 9}'}),
        item("cancelSubscription", {"stiggSubscriptionId": "sub-unknown"}),
    ]

    accepted = post_batch(http, items)

    assert accepted.status_code == 202, accepted.json
    assert [i["status"] for i in accepted.json["items"]] == ["QUEUED"] * 5
    assert worker.drain() == 5
    done = get_batch(http, accepted.json["batchId"]).json
    created, updated, cancelled, workflow, unknown = done["items"]
    subscription_id = created["result"]["stiggSubscriptionId"]
    # The customer's items ran in submission order: the update and the cancellation found
    # the subscription the first item created.
    assert updated["status"] == "SUCCEEDED", updated
    assert updated["result"]["stiggSubscriptionId"] == subscription_id
    assert cancelled["result"] == {
        **updated["result"],
        "subscriptionStatus": "CANCELED",
        "endDate": "2026-11-27T10:00:00Z",
        "alreadyCancelled": False,
    }
    assert workflow["result"] == {"success": True, "responseJson": '{"runId": "run-2"}'}
    assert stigg.workflow_runs == [{"triggerId": "wf-1", "payload": {"seats": 9}}]
    assert (unknown["status"], unknown["httpStatus"]) == ("FAILED", 422)
    assert unknown["error"]["code"] == "SUBSCRIPTION_NOT_FOUND"
    assert [c.input["addons"] for c in stigg.calls_to("UpdateSubscription")] == [
        [{"addonId": "addon-seats", "quantity": 9}]
    ]
    log = app.extensions["store"].log
    operations = [e["operation"] for e in log.list() if e["batch_item_id"] is not None]
    assert sorted(operations) == sorted(i["operation"] for i in items)


def test_an_invalid_item_gets_the_error_a_single_call_gets_and_the_others_run(
    app, http, worker, stigg
):
    bad_body = {**SUBSCRIPTION, "billingPeriod": "weekly"}
    single = Caller(http).post("create-subscription", bad_body)
    items = [
        item("createSubscription", bad_body),
        item("createFoo", {}),
        item("createCreditGrant", PROMOTIONAL_GRANT),
        {"operation": "createCreditGrant", "body": PROMOTIONAL_GRANT},
    ]

    accepted = post_batch(http, items)

    assert accepted.status_code == 202
    statuses = [(i["status"], i.get("httpStatus")) for i in accepted.json["items"]]
    assert statuses == [("FAILED", 400), ("FAILED", 400), ("QUEUED", None), ("FAILED", 400)]
    invalid = accepted.json["items"][0]["error"]
    assert {k: v for k, v in invalid.items() if k != "requestId"} == {
        k: v for k, v in single.json.items() if k != "requestId"
    }
    # ... and, like the single call, it has its own request ID and a log row.
    entry = app.extensions["store"].log.get(invalid["requestId"])
    assert (entry["outcome"], entry["idempotency_key"]) == (
        "rejected",
        items[0]["idempotencyKey"],
    )
    assert accepted.json["items"][1]["error"]["fieldErrors"][0]["field"] == "operation"
    assert accepted.json["items"][3]["error"]["fieldErrors"] == [
        {"field": "idempotencyKey", "message": "Missing data for required field."}
    ]
    assert accepted.json["counts"]["failed"] == 3
    assert worker.drain() == 1
    assert get_batch(http, accepted.json["batchId"]).json["status"] == "COMPLETED"


@pytest.mark.parametrize(
    ("raw", "status", "code", "field"),
    [
        ("{}", 400, "VALIDATION_FAILED", "items"),
        ('{"items": []}', 400, "VALIDATION_FAILED", "items"),
        ('{"items": {}}', 400, "VALIDATION_FAILED", "items"),
        ('{"items": [], "extra": 1}', 400, "VALIDATION_FAILED", "extra"),
        ('{"items": [', 400, "MALFORMED_JSON", None),
        ("[]", 400, "VALIDATION_FAILED", "body"),
    ],
)
def test_problems_with_the_batch_as_a_whole_are_one_4xx(http, stigg, raw, status, code, field):
    response = post_batch(http, None, raw=raw)

    assert response.status_code == status
    assert response.json["code"] == code
    if field:
        assert response.json["fieldErrors"][0]["field"] == field


def test_too_many_items_or_a_key_used_twice_refuse_the_batch(http, stigg):
    too_many = post_batch(http, [item("createCreditGrant", PROMOTIONAL_GRANT)] * 6)
    twice = post_batch(
        http,
        [
            item("createCreditGrant", PROMOTIONAL_GRANT, "same"),
            item("createSubscription", SUBSCRIPTION, "same"),
        ],
    )

    assert too_many.status_code == 400
    assert "At most 5 items" in too_many.json["message"]
    assert twice.status_code == 400
    assert twice.json["fieldErrors"] == [
        {
            "field": "items[1].idempotencyKey",
            "message": "Already used by items[0]: each item needs its own key.",
        }
    ]


def test_batch_requests_need_a_key_json_and_a_bounded_body(app, http, stigg):
    unauthenticated = http.post("/v1/batches", json={"items": []})
    form = http.post(
        "/v1/batches",
        data="items=1",
        content_type="application/x-www-form-urlencoded",
        headers={"Authorization": f"Bearer {CALLER_KEY}"},
    )
    limit = app.extensions["settings"].batch.max_body_bytes
    huge = post_batch(http, None, raw='{"items": [' + " " * limit + "]}")

    assert unauthenticated.status_code == 401
    assert form.status_code == 415
    assert huge.status_code == 413 and huge.json["code"] == "PAYLOAD_TOO_LARGE"


def test_another_caller_cannot_see_a_batch(http, stigg):
    batch_id = post_batch(http, [item("createCreditGrant", PROMOTIONAL_GRANT)]).json["batchId"]

    theirs = get_batch(http, batch_id, key=ROTATED_CALLER_KEY)
    unknown = get_batch(http, "bat_" + "0" * 32)

    assert theirs.status_code == 404 and theirs.json["code"] == "NOT_FOUND"
    assert unknown.status_code == 404


def test_a_batch_resubmitted_with_its_key_is_the_same_batch(http, worker, stigg):
    items = [item("createCreditGrant", PROMOTIONAL_GRANT)]
    key = {"Idempotency-Key": keyed()}

    first = post_batch(http, items, headers=key)
    worker.drain()
    again = post_batch(http, items, headers=key)
    other = post_batch(http, [item("createCreditGrant", PROMOTIONAL_GRANT)], headers=key)

    assert again.json["batchId"] == first.json["batchId"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.status_code == 200 and again.json["status"] == "COMPLETED"
    assert other.status_code == 422 and other.json["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert len(stigg.calls_to("GrantCredits")) == 1


def test_a_key_replays_across_single_calls_and_batch_items(http, worker, stigg):
    key = keyed()
    single = Caller(http).post(
        "create-credit-grant", PROMOTIONAL_GRANT, headers={"Idempotency-Key": key}
    )
    batch_id = post_batch(http, [item("createCreditGrant", PROMOTIONAL_GRANT, key)]).json["batchId"]
    worker.drain()
    replayed = get_batch(http, batch_id).json["items"][0]

    other_key = keyed()
    batch_id = post_batch(http, [item("createCreditGrant", PROMOTIONAL_GRANT, other_key)]).json[
        "batchId"
    ]
    worker.drain()
    later_single = Caller(http).post(
        "create-credit-grant", PROMOTIONAL_GRANT, headers={"Idempotency-Key": other_key}
    )

    assert replayed["result"] == single.json
    assert later_single.headers["Idempotent-Replayed"] == "true"
    assert later_single.json == get_batch(http, batch_id).json["items"][0]["result"]
    assert len(stigg.calls_to("GrantCredits")) == 2


def test_a_retryable_failure_goes_back_to_the_queue_then_succeeds(app, http, worker, stigg):
    stigg.script("GrantCredits", Reply(status=503, raw="down"))
    batch_id = post_batch(http, [item("createCreditGrant", PROMOTIONAL_GRANT)]).json["batchId"]

    worker.drain()  # the 503: requeued for later, not failed
    waiting = get_batch(http, batch_id).json
    assert waiting["items"][0]["status"] == "QUEUED"
    assert waiting["status"] == "RUNNING"

    store = app.extensions["store"]
    with store.engine.begin() as connection:
        from sqlalchemy import update

        from app.store.batches import items

        connection.execute(update(items).values(not_before=None))
    worker.drain()

    done = get_batch(http, batch_id).json
    assert done["items"][0]["status"] == "SUCCEEDED"
    assert len(stigg.grants) == 1


def test_a_final_failure_is_recorded_with_the_single_error(http, worker, stigg):
    from tests.fakes import graphql_error

    stigg.script("GrantCredits", graphql_error("CustomerNotFound", "Customer not found"))
    batch_id = post_batch(http, [item("createCreditGrant", PROMOTIONAL_GRANT)]).json["batchId"]

    worker.drain()

    failed = get_batch(http, batch_id).json["items"][0]
    assert failed["status"] == "FAILED" and failed["httpStatus"] == 422
    assert failed["error"]["code"] == "STIGG_REJECTED"
    assert failed["error"]["stiggErrorCode"] == "CustomerNotFound"


def test_prefer_wait_answers_200_once_everything_finished(http, worker, stigg):
    worker.start()
    try:
        done = post_batch(
            http,
            [item("createCreditGrant", PROMOTIONAL_GRANT)],
            headers={"Prefer": "respond-async, wait=20"},
        )
    finally:
        worker.stop()
        worker.join(10)

    assert done.status_code == 200
    assert done.json["status"] == "COMPLETED"
    assert done.headers["Preference-Applied"] == "wait=20"


def test_prefer_wait_gives_up_with_a_202_when_items_are_still_queued(http, stigg):
    response = post_batch(
        http, [item("createCreditGrant", PROMOTIONAL_GRANT)], headers={"Prefer": "wait=1"}
    )

    assert response.status_code == 202
    assert response.json["status"] == "QUEUED"


@pytest.mark.postgres
def test_on_postgresql_an_idle_worker_is_woken_by_notify(postgres_url, stigg):
    import time

    app = create_app({**BASE_CONFIG, "DATABASE_URL": postgres_url, "BATCH_WORKER": "external"})
    worker = app.extensions["batch_worker"]
    worker.start()
    try:
        time.sleep(1.5)  # the worker is idle, LISTENing (its next poll is 30 s away)
        batch_id = post_batch(
            app.test_client(), [item("createCreditGrant", PROMOTIONAL_GRANT)]
        ).json["batchId"]
        deadline = time.monotonic() + 20
        while get_batch(app.test_client(), batch_id).json["status"] != "COMPLETED":
            assert time.monotonic() < deadline, "the worker was not woken"
            time.sleep(0.1)
    finally:
        worker.stop()
        worker.join(10)

    assert worker.notifications >= 1
