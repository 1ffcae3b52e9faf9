"""Batches over real HTTP, real gunicorn, real worker processes and the sandbox: 200 items in
one callout, one customer's items in order, workers SIGKILLed mid-batch, two instances and
two workers on PostgreSQL, and Stigg's rate limits, all with every mutation counted."""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest
import requests

from schemas.salesforce_id import to_18
from tests.integration.conftest import CALLER_KEY, DEADLINE_S, TIMEOUT_S
from tests.integration.servers import (
    STIGG_KEY,
    gunicorn_workers,
    service_process,
    worker_process,
)

pytestmark = pytest.mark.integration


def account(number: int, run: str) -> str:
    return to_18(f"001BT{run}{number:06d}")


def opportunity_items(count: int, run: str, *, grant: bool = False) -> list[dict]:
    """Per Opportunity: a subscription (which creates its customer), and a grant that needs
    the customer (so it fails if it ever runs before the subscription)."""
    items = []
    for number in range(count):
        account_id = account(number, run)
        items.append(
            {
                "operation": "createSubscription",
                "idempotencyKey": f"{run}-{number}-sub",
                "reference": account_id,
                "body": {
                    "salesforceAccountId": account_id,
                    "customerName": f"Customer {number}",
                    "planId": "plan-pro",
                    "billingPeriod": "monthly",
                    "paymentCollectionMethod": "INVOICE",
                },
            }
        )
        if grant:
            items.append(
                {
                    "operation": "createCreditGrant",
                    "idempotencyKey": f"{run}-{number}-grant",
                    "body": {
                        "stiggCustomerId": account_id,
                        "grantType": "PROMOTIONAL",
                        "currencyId": "cred-type-ai-tokens",
                        "displayName": "Welcome",
                        "amount": 100,
                    },
                }
            )
    return items


def submit(base_url: str, items: list[dict], *, wait_s: int | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {CALLER_KEY}"}
    if wait_s is not None:
        headers["Prefer"] = f"wait={wait_s}"
    return requests.post(
        f"{base_url}/v1/batches", json={"items": items}, headers=headers, timeout=130
    )


def wait_for(base_url: str, batch_id: str, timeout_s: float = 90) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        document = requests.get(
            f"{base_url}/v1/batches/{batch_id}",
            headers={"Authorization": f"Bearer {CALLER_KEY}"},
            timeout=10,
        ).json()
        if document["status"] == "COMPLETED" or time.monotonic() > deadline:
            return document
        time.sleep(0.2)


def run_tag() -> str:
    return uuid.uuid4().hex[:4].upper()


def service_env(sandbox, database_url: str, **extra: str) -> dict:
    return {
        "STIGG_API_URL": sandbox.graphql_url,
        "STIGG_API_KEY": STIGG_KEY,
        "ACTIONS_API_KEYS": CALLER_KEY,
        "STIGG_TIMEOUT_S": str(TIMEOUT_S),
        "STIGG_DEADLINE_S": str(DEADLINE_S),
        "DATABASE_URL": database_url,
        "LOG_LEVEL": "WARNING",
        **extra,
    }


def test_a_200_item_batch_runs_every_item_once_in_one_callout(service_url, sandbox):
    items = opportunity_items(100, run_tag(), grant=True)

    answer = submit(service_url, items, wait_s=60)

    assert answer.status_code == 200, answer.text
    document = answer.json()
    assert document["status"] == "COMPLETED"
    assert document["counts"] == {
        "total": 200,
        "queued": 0,
        "running": 0,
        "succeeded": 200,
        "failed": 0,
    }
    executed = sandbox.stats()["executed"]
    assert executed["provisionSubscriptionV2"] == 100
    assert executed["createCreditGrant"] == 100
    assert executed["provisionCustomer"] == 100
    results = {
        item["reference"]: item["result"] for item in document["items"] if "reference" in item
    }
    assert len(results) == 100
    assert all(result["stiggCustomerId"] == account_id for account_id, result in results.items())


def test_one_customers_items_run_in_submission_order(service_url, sandbox, service_log):
    # A slow subscription: a grant run out of order would find no customer (422).
    sandbox.inject({"kind": "delay", "ms": 150, "operations": ["provisionSubscriptionV2"]})
    items = opportunity_items(12, run_tag(), grant=True)

    document = wait_for(service_url, submit(service_url, items).json()["batchId"])

    assert document["counts"]["succeeded"] == 24, [
        item.get("error") for item in document["items"] if item["status"] != "SUCCEEDED"
    ]
    rows = {row["idempotency_key"]: row for row in service_log.list(limit=1000)}
    for number in range(0, len(items), 2):
        subscription = rows[items[number]["idempotencyKey"]]
        grant = rows[items[number + 1]["idempotencyKey"]]
        assert subscription["finished_at"] <= grant["created_at"]


def test_prefer_wait_answers_200_small_and_202_large(service_url, sandbox):
    small = submit(service_url, opportunity_items(2, run_tag()), wait_s=30)
    sandbox.inject({"kind": "delay", "ms": 200, "operations": ["provisionSubscriptionV2"]})
    large = submit(service_url, opportunity_items(60, run_tag()), wait_s=1)

    assert (small.status_code, small.json()["status"]) == (200, "COMPLETED")
    assert large.status_code == 202
    assert large.json()["status"] in ("QUEUED", "RUNNING")
    assert large.json()["retryAfterSeconds"] >= 1
    assert large.headers["Location"] == f"/v1/batches/{large.json()['batchId']}"
    assert wait_for(service_url, large.json()["batchId"])["counts"]["succeeded"] == 60


def test_a_sigkilled_web_worker_mid_batch_loses_and_doubles_nothing(sandbox, tmp_path):
    env = service_env(
        sandbox,
        f"sqlite:///{tmp_path / 'killed.db'}",
        BATCH_LEASE_S="2",
        IDEMPOTENCY_LOCK_S=str(DEADLINE_S + 1),
        BATCH_WORKER_THREADS="4",
    )
    sandbox.inject({"kind": "delay_after", "ms": 400, "operations": ["provisionSubscriptionV2"]})
    items = opportunity_items(16, run_tag())
    with service_process(env, workers=1, threads=4) as (base_url, master):
        batch_id = submit(base_url, items).json()["batchId"]
        _wait_until(lambda: sandbox.stats()["executed"].get("provisionSubscriptionV2", 0) >= 3)
        for pid in gunicorn_workers(master.pid):
            os.kill(pid, signal.SIGKILL)  # gunicorn starts a new worker, with a new batch worker

        document = wait_for(base_url, batch_id)

    assert document["counts"]["succeeded"] == 16, document["counts"]
    assert sandbox.stats()["executed"]["provisionSubscriptionV2"] == 16
    assert len(sandbox.state()["subscriptions"]) == 16


@pytest.mark.postgres
def test_two_instances_and_two_workers_on_postgresql_one_killed(sandbox, postgres_url, tmp_path):
    env = service_env(
        sandbox,
        postgres_url,
        BATCH_LEASE_S="2",
        IDEMPOTENCY_LOCK_S=str(DEADLINE_S + 1),
        BATCH_WORKER_THREADS="4",
    )
    sandbox.inject({"kind": "delay_after", "ms": 200, "operations": ["provisionSubscriptionV2"]})
    run = run_tag()
    first_half, second_half = opportunity_items(40, run)[:20], opportunity_items(40, run)[20:]
    with (
        service_process(env, workers=1, threads=4) as (first_url, _),
        service_process(env, workers=1, threads=4) as (second_url, _),
        worker_process(env) as doomed,
        worker_process(env),
    ):
        batches = [
            (first_url, submit(first_url, first_half).json()["batchId"]),
            (second_url, submit(second_url, second_half).json()["batchId"]),
        ]
        _wait_until(lambda: sandbox.stats()["executed"].get("provisionSubscriptionV2", 0) >= 4)
        os.killpg(doomed.pid, signal.SIGKILL)

        # Each instance answers for every batch: the state is in the shared database.
        documents = [wait_for(second_url, batch_id) for _, batch_id in batches]

    assert [document["counts"]["succeeded"] for document in documents] == [20, 20]
    assert sandbox.stats()["executed"]["provisionSubscriptionV2"] == 40
    assert len(sandbox.state()["subscriptions"]) == 40


LIMITED = {"provisionCustomer": 8, "provisionSubscriptionV2": 8, "updateOneCustomer": 8}


def test_at_stiggs_limits_nothing_fails_and_stigg_refuses_nothing(sandbox, tmp_path):
    sandbox.set_limits(enabled=True, windowSeconds=2, perOperation=LIMITED, perEntity=30)
    env = service_env(
        sandbox,
        f"sqlite:///{tmp_path / 'limits.db'}",
        STIGG_RATE_LIMIT_WINDOW_S="2",
        STIGG_RATE_LIMIT_MUTATIONS="8",
        STIGG_RATE_LIMIT_PER_CUSTOMER="30",
    )
    items = opportunity_items(24, run_tag())
    with service_process(env, workers=2, threads=4) as (base_url, _):
        document = wait_for(base_url, submit(base_url, items).json()["batchId"])

    assert document["counts"]["succeeded"] == 24
    stats = sandbox.stats()
    assert stats.get("rateLimited", {}) == {}
    # 24 of each mutation at 8 per 2 s: without the limiter's waits Stigg would refuse most.
    assert stats["executed"]["provisionSubscriptionV2"] == 24


def test_above_stiggs_limits_its_429s_are_absorbed_and_nothing_doubles(sandbox, tmp_path):
    sandbox.set_limits(enabled=True, windowSeconds=2, perOperation=LIMITED, perEntity=30)
    env = service_env(
        sandbox,
        f"sqlite:///{tmp_path / 'over.db'}",
        STIGG_RATE_LIMIT_WINDOW_S="2",
        STIGG_RATE_LIMIT_MUTATIONS="40",  # more than the sandbox allows
        STIGG_RATE_LIMIT_PER_CUSTOMER="30",
    )
    items = opportunity_items(24, run_tag())
    with service_process(env, workers=2, threads=4) as (base_url, _):
        document = wait_for(base_url, submit(base_url, items).json()["batchId"], timeout_s=120)

    assert document["counts"]["succeeded"] == 24, [
        item.get("error") for item in document["items"] if item["status"] != "SUCCEEDED"
    ]
    stats = sandbox.stats()
    assert sum(stats["rateLimited"].values()) > 0
    assert stats["executed"]["provisionSubscriptionV2"] == 24
    assert stats["executed"]["provisionCustomer"] == 24


def _wait_until(condition, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)
