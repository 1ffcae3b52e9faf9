"""Metrics through real gunicorn: a scripted mix of traffic, then a scrape of METRICS_PORT,
parsed with prometheus-client's own parser, compared with what was sent.

A service of its own (counts start at zero): two workers with one thread and one
connection each, so that two slow requests sent together are served by both workers and
the scrape must add up the files of two processes.
"""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from app.stigg.client import MAX_ATTEMPTS
from tests.integration.conftest import CALLER_KEY, DEADLINE_S, TIMEOUT_S
from tests.integration.servers import REPO, STIGG_KEY, free_port, service_process

pytestmark = pytest.mark.integration

P = "stigg_flow_actions"


class Metered:
    def __init__(self, base_url: str, metrics_url: str, directory: str):
        self.base_url = base_url
        self.metrics_url = metrics_url
        self.directory = directory

    def post(self, path: str, body: dict, *, key: str | None = None) -> requests.Response:
        # A new connection each time (no keep-alive), so any worker may take it.
        headers = {"Authorization": f"Bearer {CALLER_KEY}", "Connection": "close"}
        if key:
            headers["Idempotency-Key"] = key
        return requests.post(
            f"{self.base_url}/v1/actions/{path}", json=body, headers=headers, timeout=30
        )

    def scrape(self) -> dict:
        """{(sample name, sorted labels): value} from GET /metrics on METRICS_PORT."""
        response = requests.get(self.metrics_url, timeout=10)
        assert response.status_code == 200
        samples = {}
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return samples


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def by_label(samples: dict, name: str, label: str) -> dict:
    """Values of `name` summed by one label."""
    totals: dict = {}
    for (sample, labels), amount in samples.items():
        if sample == name:
            key = dict(labels)[label]
            totals[key] = totals.get(key, 0.0) + amount
    return totals


def metered_environment(sandbox, folder, *, metrics_port: int) -> dict:
    directory = folder / "prometheus"
    directory.mkdir()
    return {
        "STIGG_API_URL": sandbox.graphql_url,
        "STIGG_API_KEY": STIGG_KEY,
        "ACTIONS_API_KEYS": CALLER_KEY,
        "STIGG_TIMEOUT_S": str(TIMEOUT_S),
        "STIGG_DEADLINE_S": str(DEADLINE_S),
        "DATABASE_URL": f"sqlite:///{folder / 'metered.db'}",
        "STIGG_RATE_LIMIT_PER_CUSTOMER": "100000",
        "STIGG_RATE_LIMIT_MUTATIONS": "100000",
        "METRICS_PORT": str(metrics_port),
        # The operator's own directory (else a private one): the test can look inside.
        "PROMETHEUS_MULTIPROC_DIR": str(directory),
    }


@pytest.fixture(scope="module")
def metered(sandbox, tmp_path_factory):
    folder = tmp_path_factory.mktemp("metered")
    metrics_port = free_port()
    env = metered_environment(sandbox, folder, metrics_port=metrics_port)
    # One connection per worker at a time: a busy worker leaves the next to the other.
    env["GUNICORN_CMD_ARGS"] = "--worker-connections 1"
    with service_process(env, workers=2, threads=1, log_path=folder / "service.log") as (
        base_url,
        _process,
    ):
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        yield Metered(base_url, metrics_url, env["PROMETHEUS_MULTIPROC_DIR"])


def customer(account_suffix: str) -> dict:
    return {"salesforceAccountId": f"001D000000Iq{account_suffix}", "customerName": "Acme"}


GRANT = {
    "stiggCustomerId": "001D000000IqhSLIAZ",
    "grantType": "PROMOTIONAL",
    "currencyId": "cred-type-ai-tokens",
    "displayName": "Welcome",
    "amount": 100,
}


def test_a_scripted_mix_of_traffic_is_counted_exactly_across_workers(metered, sandbox):
    assert metered.post("create-customer-without-email", customer("hSL")).status_code == 200

    # Two slow requests at once: each worker takes one.
    sandbox.inject({"kind": "delay", "ms": 800, "count": 2, "operations": ["getCustomerByRefId"]})
    with ThreadPoolExecutor(2) as pool:
        slow = list(
            pool.map(
                lambda suffix: metered.post("create-customer-without-email", customer(suffix)),
                ["aaa", "aab"],
            )
        )
    assert [response.status_code for response in slow] == [200, 200]
    # Successes: 2 more customers (one already exists: a look-up and no change).
    for suffix in ("aac", "hSL"):
        assert metered.post("create-customer-without-email", customer(suffix)).status_code == 200
    # Validation errors: 2.
    for _ in range(2):
        response = metered.post("create-subscription", {"salesforceAccountId": "001D000000IqhSL"})
        assert response.status_code == 400
    # A grant with a key, replayed twice, then the key reused with another body.
    key = f"opp-1-grant-{uuid.uuid4()}"
    assert metered.post("create-credit-grant", GRANT, key=key).status_code == 200
    for _ in range(2):
        replay = metered.post("create-credit-grant", GRANT, key=key)
        assert (replay.status_code, replay.headers.get("Idempotent-Replayed")) == (200, "true")
    reused = metered.post("create-credit-grant", {**GRANT, "amount": 5}, key=key)
    assert reused.json()["code"] == "IDEMPOTENCY_KEY_REUSED"
    # Stigg down for one request's every attempt: a retryable 503.
    sandbox.inject(
        {
            "kind": "status",
            "status": 503,
            "count": MAX_ATTEMPTS,
            "operations": ["getCustomerByRefId"],
        }
    )
    assert metered.post("create-customer-without-email", customer("aad")).status_code == 503
    # Stigg says no: an unknown plan.
    refused = metered.post(
        "create-subscription", {"salesforceAccountId": "001D000000IqhSL", "planId": "plan-nope"}
    )
    assert (refused.status_code, refused.json()["stiggErrorCode"]) == (422, "PlanNotFound")
    # Stigg answers 429 once: backed off, retried, granted.
    sandbox.inject(
        {"kind": "status", "status": 429, "count": 1, "operations": ["createCreditGrant"]}
    )
    assert metered.post("create-credit-grant", GRANT).status_code == 200

    samples = metered.scrape()

    requests_total = f"{P}_requests_total"
    assert {
        (dict(labels)["operation"], dict(labels)["outcome"], dict(labels)["status"]): amount
        for (name, labels), amount in samples.items()
        if name == requests_total
    } == {
        ("createCustomerWithoutEmail", "succeeded", "200"): 5,
        ("createCustomerWithoutEmail", "failed", "503"): 1,
        ("createSubscription", "rejected", "400"): 2,
        ("createSubscription", "rejected", "422"): 1,
        ("createCreditGrant", "succeeded", "200"): 2,
        ("createCreditGrant", "replayed", "200"): 2,
        ("createCreditGrant", "rejected", "422"): 1,
    }
    duration = f"{P}_request_duration_seconds_count"
    assert by_label(samples, duration, "operation") == {
        "createCustomerWithoutEmail": 6,
        "createSubscription": 3,
        "createCreditGrant": 5,
    }
    assert value(samples, f"{P}_idempotent_replays_total", operation="createCreditGrant") == 2
    assert (
        value(
            samples,
            f"{P}_idempotency_refusals_total",
            operation="createCreditGrant",
            code="IDEMPOTENCY_KEY_REUSED",
        )
        == 1
    )

    # Every attempt the sandbox received, and only those, by root field.
    calls = f"{P}_stigg_calls_total"
    received = sandbox.stats()["received"]
    assert by_label(samples, calls, "stigg_operation") == {
        operation: float(count) for operation, count in received.items() if count
    }
    assert value(samples, calls, stigg_operation="getCustomerByRefId", result="http_503") == 4
    assert (
        value(samples, calls, stigg_operation="provisionSubscriptionV2", result="PlanNotFound") == 1
    )
    assert value(samples, calls, stigg_operation="createCreditGrant", result="http_429") == 1
    assert value(samples, calls, stigg_operation="createCreditGrant", result="ok") == 2
    assert by_label(samples, f"{P}_stigg_call_duration_seconds_count", "stigg_operation") == (
        by_label(samples, calls, "stigg_operation")
    )
    retries = f"{P}_stigg_retries_total"
    assert (
        value(samples, retries, stigg_operation="getCustomerByRefId", code="STIGG_UNAVAILABLE") == 3
    )
    assert (
        value(samples, retries, stigg_operation="createCreditGrant", code="STIGG_RATE_LIMITED") == 1
    )
    assert sum(amount for (name, _), amount in samples.items() if name == retries) == 4
    assert value(samples, f"{P}_stigg_rate_limited_total", stigg_operation="createCreditGrant") == 1
    # The limiter gave every attempt a permit, none of which had to wait a window.
    assert by_label(samples, f"{P}_rate_limit_wait_seconds_count", "stigg_operation") == (
        by_label(samples, calls, "stigg_operation")
    )
    # The batch queue, read from the database: empty.
    assert value(samples, f"{P}_batch_items", status="queued") == 0
    assert value(samples, f"{P}_batch_oldest_queued_item_age_seconds") == 0

    # Both workers counted (each writes files of its own), and the scrape added them up.
    pids = {
        os.path.basename(path).rsplit("_", 1)[1][: -len(".db")]
        for path in glob.glob(os.path.join(metered.directory, "counter_*.db"))
    }
    assert len(pids) == 2


def test_the_metrics_are_not_on_the_public_port(metered):
    public = requests.get(f"{metered.base_url}/metrics", timeout=5)

    assert public.status_code == 404
    assert public.json()["code"] == "NOT_FOUND"


@pytest.fixture
def service_and_worker(sandbox, tmp_path):
    """A service whose batch items only `worker` processes run, and one such process on
    the same machine, writing into the service's metrics directory."""
    metrics_port = free_port()
    env = metered_environment(sandbox, tmp_path, metrics_port=metrics_port)
    env["BATCH_WORKER"] = "external"
    with service_process(env, workers=1, threads=4, log_path=tmp_path / "service.log") as (
        base_url,
        _process,
    ):
        worker_env = {**os.environ, **env}
        worker_env.pop("METRICS_PORT")  # as on the same machine: the service serves them
        with open(tmp_path / "worker.log", "ab") as log_file:
            worker = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "worker", "--threads", "2"],
                cwd=REPO,
                env=worker_env,
                stderr=log_file,
                start_new_session=True,
            )
            try:
                metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
                yield Metered(base_url, metrics_url, env["PROMETHEUS_MULTIPROC_DIR"]), worker
            finally:
                worker.send_signal(signal.SIGTERM)
                try:
                    worker.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    worker.kill()
                    worker.wait()


def test_a_worker_process_on_the_same_machine_is_counted_by_the_services_endpoint(
    service_and_worker,
):
    service, worker = service_and_worker
    items = [
        {
            "operation": "createCustomerWithoutEmail",
            "idempotencyKey": f"batch-customer-{suffix}-{uuid.uuid4()}",
            "body": customer(suffix),
        }
        for suffix in ("baa", "bab", "bac")
    ]

    response = requests.post(
        f"{service.base_url}/v1/batches",
        json={"items": items},
        headers={"Authorization": f"Bearer {CALLER_KEY}", "Prefer": "wait=20"},
        timeout=30,
    )

    assert response.status_code == 200, response.text
    assert response.json()["counts"]["succeeded"] == 3
    samples = service.scrape()
    # The batch request was the web worker's; its items were the worker process's.
    assert (
        value(
            samples,
            f"{P}_requests_total",
            operation="createBatch",
            outcome="succeeded",
            status="202",
        )
        == 1
    )
    assert (
        value(
            samples,
            f"{P}_requests_total",
            operation="createCustomerWithoutEmail",
            outcome="succeeded",
            status="200",
        )
        == 3
    )
    assert value(samples, f"{P}_batch_items_finished_total", status="succeeded") == 3
    assert value(samples, f"{P}_batch_items", status="queued") == 0
    assert os.path.exists(os.path.join(service.directory, f"counter_{worker.pid}.db"))
