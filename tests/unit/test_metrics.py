"""What each kind of traffic adds to the metrics (app/metrics.py), in-process.

The metrics of a process are global to it, and these tests share one process: each test
takes a snapshot first and asserts the exact difference its traffic made. The same counts
through real gunicorn workers, scraped and parsed, are tests/integration/test_metrics.py.
"""

from __future__ import annotations

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from app import metrics
from app.cli import _worker_metrics
from app.config import ConfigError, RateLimitSettings
from app.stigg.client import MAX_ATTEMPTS
from app.stigg.rate_limit import MemoryWindowStore, RateLimiter
from app.store import StoreError
from tests.conftest import ACCOUNT_18, CALLER_KEY, PROMOTIONAL_GRANT
from tests.fakes import Reply, graphql_error, refused
from tests.integration.servers import free_port
from tests.rate_limit.conftest import FakeClock

P = metrics.PREFIX
CUSTOMER = {"salesforceAccountId": ACCOUNT_18, "customerName": "Acme"}


class Snapshot:
    """The process's metric values now; `delta(name, **labels)` is the change since."""

    def __init__(self):
        self.before = self._values()

    @staticmethod
    def _values() -> dict:
        found = {}
        for family in metrics.get().registry.collect():
            for sample in family.samples:
                found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return found

    def delta(self, name: str, **labels) -> float:
        key = (name, tuple(sorted(labels.items())))
        return self._values().get(key, 0.0) - self.before.get(key, 0.0)

    def changed(self, name: str) -> dict:
        """Every sample of `name` that moved: its labels (as `labels()` gives) -> change."""
        now = self._values()
        return {
            labels: value - self.before.get((sample, labels), 0.0)
            for (sample, labels), value in now.items()
            if sample == name and value != self.before.get((sample, labels), 0.0)
        }


def labels(**pairs) -> tuple:
    return tuple(sorted(pairs.items()))


def test_request_outcomes_are_counted_by_operation_outcome_and_status(caller, stigg, sleeps):
    snapshot = Snapshot()
    key = {"Idempotency-Key": "metrics-grant-1"}

    assert caller.post("create-customer-without-email", CUSTOMER).status_code == 200
    assert (
        caller.post("create-subscription", {"salesforceAccountId": ACCOUNT_18}).status_code == 400
    )
    assert caller.post("create-credit-grant", PROMOTIONAL_GRANT, headers=key).status_code == 200
    assert caller.post("create-credit-grant", PROMOTIONAL_GRANT, headers=key).status_code == 200
    other_body = {**PROMOTIONAL_GRANT, "amount": 5}
    assert caller.post("create-credit-grant", other_body, headers=key).status_code == 422

    assert snapshot.changed(f"{P}_requests_total") == {
        labels(operation="createCustomerWithoutEmail", outcome="succeeded", status="200"): 1,
        labels(operation="createSubscription", outcome="rejected", status="400"): 1,
        labels(operation="createCreditGrant", outcome="succeeded", status="200"): 1,
        labels(operation="createCreditGrant", outcome="replayed", status="200"): 1,
        labels(operation="createCreditGrant", outcome="rejected", status="422"): 1,
    }
    assert snapshot.delta(f"{P}_idempotent_replays_total", operation="createCreditGrant") == 1
    assert (
        snapshot.delta(
            f"{P}_idempotency_refusals_total",
            operation="createCreditGrant",
            code="IDEMPOTENCY_KEY_REUSED",
        )
        == 1
    )
    duration_count = f"{P}_request_duration_seconds_count"
    assert snapshot.delta(duration_count, operation="createCreditGrant") == 3
    assert snapshot.delta(duration_count, operation="createSubscription") == 1
    # The grant's look-up first (it has a key), then the grant: the replay called nothing.
    calls = f"{P}_stigg_calls_total"
    assert snapshot.delta(calls, stigg_operation="createCreditGrant", result="ok") == 1
    assert snapshot.delta(calls, stigg_operation="creditGrants", result="ok") == 1
    assert (
        snapshot.delta(
            f"{P}_stigg_call_duration_seconds_count", stigg_operation="createCreditGrant"
        )
        == 1
    )


@pytest.mark.parametrize(
    ("answer", "result", "retries"),
    [
        (Reply(status=503, body={"message": "down"}), "http_503", MAX_ATTEMPTS - 1),
        (graphql_error("PlanNotFound", "no such plan"), "PlanNotFound", 0),
        (graphql_error("UnexpectedError", "oops", validation=False), "UnexpectedError", 3),
        (graphql_error(None, "no code at all", validation=False), "graphql_error", 0),
        (Reply(raw="<html>gateway</html>"), "bad_response", 0),
        (refused(), "connection_error", MAX_ATTEMPTS - 1),
        (requests.ReadTimeout("slow"), "timeout", MAX_ATTEMPTS - 1),
    ],
    ids=[
        "http",
        "graphql-code",
        "graphql-transient",
        "graphql-no-code",
        "non-json",
        "refused",
        "timeout",
    ],
)
def test_each_stigg_attempt_is_counted_with_how_it_ended(
    caller, stigg, sleeps, answer, result, retries
):
    stigg.script("GetCustomer", *[answer] * MAX_ATTEMPTS)
    snapshot = Snapshot()

    caller.post("create-customer-without-email", CUSTOMER)

    attempts = retries + 1
    assert snapshot.changed(f"{P}_stigg_calls_total") == {
        labels(stigg_operation="getCustomerByRefId", result=result): attempts
    }
    assert (
        snapshot.delta(
            f"{P}_stigg_call_duration_seconds_count", stigg_operation="getCustomerByRefId"
        )
        == attempts
    )
    retried = snapshot.changed(f"{P}_stigg_retries_total")
    assert sum(retried.values()) == retries


def test_stiggs_429s_are_counted_apart_and_retried(caller, stigg, sleeps):
    stigg.script("GrantCredits", Reply(status=429, body={"message": "slow down"}))
    snapshot = Snapshot()

    assert caller.post("create-credit-grant", PROMOTIONAL_GRANT).status_code == 200

    assert snapshot.delta(f"{P}_stigg_rate_limited_total", stigg_operation="createCreditGrant") == 1
    calls = f"{P}_stigg_calls_total"
    assert snapshot.delta(calls, stigg_operation="createCreditGrant", result="http_429") == 1
    assert snapshot.delta(calls, stigg_operation="createCreditGrant", result="ok") == 1
    assert (
        snapshot.delta(
            f"{P}_stigg_retries_total",
            stigg_operation="createCreditGrant",
            code="STIGG_RATE_LIMITED",
        )
        == 1
    )


def test_budget_waits_and_the_limiters_own_refusals_are_counted(app, caller, stigg, sleeps):
    clock = FakeClock()
    app.extensions["stigg"].rate_limiter = RateLimiter(
        MemoryWindowStore(window_s=60, in_flight_s=6),
        limits=RateLimitSettings(window_s=60, mutations=1),
        clock=clock,
        sleep=clock.sleep,
    )
    snapshot = Snapshot()

    assert caller.post("create-credit-grant", PROMOTIONAL_GRANT).status_code == 200
    # The one grant a window is spent for 60 s, beyond the 20 s deadline: refused at once.
    assert caller.post("create-credit-grant", PROMOTIONAL_GRANT).status_code == 429

    wait = f"{P}_rate_limit_wait_seconds"
    # A permit for each call that went (the second request's look-up too), all without waiting.
    assert snapshot.delta(f"{wait}_count", stigg_operation="createCreditGrant") == 1
    assert snapshot.delta(f"{wait}_bucket", stigg_operation="createCreditGrant", le="0.001") == 1
    assert snapshot.delta(f"{wait}_sum", stigg_operation="createCreditGrant") == 0
    assert (
        snapshot.delta(f"{P}_rate_limit_exhausted_total", stigg_operation="createCreditGrant") == 1
    )
    assert snapshot.delta(f"{P}_stigg_rate_limited_total", stigg_operation="createCreditGrant") == 0


def test_batch_items_are_counted_when_they_finish_or_go_back_to_the_queue(
    app, caller, stigg, sleeps
):
    worker = app.extensions["batch_worker"]
    worker.drain()  # whatever earlier tests left in the shared database
    items = [
        {"operation": "createCreditGrant", "idempotencyKey": f"metrics-batch-{n}", "body": body}
        for n, body in enumerate([PROMOTIONAL_GRANT, {**PROMOTIONAL_GRANT, "stiggCustomerId": "b"}])
    ]
    stigg.script("CreditGrants", Reply(status=503, body={}), *[Reply(status=503, body={})] * 3)
    snapshot = Snapshot()

    response = app.test_client().post(
        "/v1/batches", json={"items": items}, headers={"Authorization": f"Bearer {CALLER_KEY}"}
    )
    assert response.status_code == 202
    worker.drain()

    # The first item's look-up failed 4 times (a retryable 503): back to the queue, not run
    # again yet (its retry is delayed). The second succeeded.
    assert snapshot.delta(f"{P}_batch_item_retries_total") == 1
    assert snapshot.delta(f"{P}_batch_items_finished_total", status="succeeded") == 1
    assert snapshot.delta(f"{P}_batch_items_finished_total", status="failed") == 0


def test_readyz_reports_the_last_stigg_call_without_depending_on_it(app, caller, stigg, sleeps):
    client = app.test_client()
    assert client.get("/readyz").json["stiggLastCall"] is None
    stigg.script("GetCustomer", *[Reply(status=503, body={})] * MAX_ATTEMPTS)

    assert caller.post("create-customer-without-email", CUSTOMER).status_code == 503
    ready = client.get("/readyz")

    # Stigg is down, and this instance is still ready: it can answer (retryable 503s).
    assert ready.status_code == 200
    body = ready.json
    assert (body["status"], body["database"]) == ("ready", "ok")
    last = body["stiggLastCall"]
    assert (last["operation"], last["result"]) == ("getCustomerByRefId", "http_503")
    assert 0 <= last["ageSeconds"] < 60
    assert last["at"].endswith("Z")

    stigg.script("GetCustomer", Reply(status=200, body={"data": {"getCustomerByRefId": None}}))
    assert caller.post("create-customer-without-email", CUSTOMER).status_code == 200
    assert client.get("/readyz").json["stiggLastCall"]["result"] == "ok"


def test_readyz_fails_only_for_the_database(app, monkeypatch):
    def unreachable():
        raise StoreError("database at sqlite:///x: unreachable: disk I/O error")

    monkeypatch.setattr(app.extensions["store"], "check", unreachable)

    ready = app.test_client().get("/readyz")

    assert ready.status_code == 503
    assert (ready.json["status"], ready.json["database"]) == ("not ready", "unavailable")
    assert "stiggLastCall" in ready.json


def test_a_worker_process_without_the_services_directory_serves_its_own(app, monkeypatch):
    monkeypatch.delenv(metrics.MULTIPROC_ENV, raising=False)
    port = free_port()
    metrics.get().batch_item_retries.inc()

    endpoint = _worker_metrics(app.extensions["runtime"], port=port)
    try:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        endpoint.stop()

    names = {family.name for family in text_string_to_metric_families(text)}
    # This process's own counters, and the queue read from the database.
    assert {f"{P}_batch_item_retries", f"{P}_requests", f"{P}_batch_items"} <= names
    assert f"{P}_batch_oldest_queued_item_age_seconds" in names


def test_a_worker_process_writing_into_a_directory_serves_nothing(app, tmp_path, monkeypatch):
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(tmp_path))
    monkeypatch.setenv("METRICS_PORT", "9")  # would fail to bind, were it used
    assert _worker_metrics(app.extensions["runtime"], port=None) is None

    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match=r"^PROMETHEUS_MULTIPROC_DIR .* is not a directory$"):
        _worker_metrics(app.extensions["runtime"], port=None)
