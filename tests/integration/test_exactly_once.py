"""Exactly one Stigg mutation per Idempotency-Key: across threads, gunicorn workers, two
service instances sharing PostgreSQL, and a worker killed in the middle of a request."""

import contextlib
import os
import signal
import subprocess
import threading
import time
import uuid

import pytest
import requests

from app.store import Store
from tests.integration.conftest import CALLER_KEY
from tests.integration.servers import gunicorn_workers, service_process
from tests.integration.settled import SettledLog

pytestmark = pytest.mark.integration

ACCOUNT = "001D000000IqhSLIAZ"
GRANT = {
    "stiggCustomerId": ACCOUNT,
    "grantType": "PAID",
    "currencyId": "cred-type-ai-tokens",
    "displayName": "Top-up",
    "amount": 1000,
    "costAmount": 10,
    "currency": "USD",
}


def post_grant(base_url: str, key: str) -> requests.Response:
    return requests.post(
        f"{base_url}/v1/actions/create-credit-grant",
        json=GRANT,
        headers={"Authorization": f"Bearer {CALLER_KEY}", "Idempotency-Key": key},
        timeout=30,
    )


def fire_at_once(base_urls: list[str], key: str, count: int) -> list[int]:
    barrier = threading.Barrier(count)
    statuses: list[int] = []

    def send(index: int) -> None:
        barrier.wait()
        statuses.append(post_grant(base_urls[index % len(base_urls)], key).status_code)

    threads = [threading.Thread(target=send, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return statuses


def create_customer(base_url: str) -> None:
    response = requests.post(
        f"{base_url}/v1/actions/create-customer-without-email",
        json={"salesforceAccountId": ACCOUNT, "customerName": "Acme"},
        headers={"Authorization": f"Bearer {CALLER_KEY}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text


def test_simultaneous_requests_across_workers_make_one_mutation(service_url, sandbox):
    create_customer(service_url)
    # The first grant takes a while, so the others arrive while it is in flight.
    sandbox.inject({"kind": "delay", "ms": 500, "count": 1, "operations": ["createCreditGrant"]})
    key = f"opp-{uuid.uuid4()}"

    statuses = fire_at_once([service_url], key, 16)

    assert sandbox.stats()["executed"]["createCreditGrant"] == 1
    assert set(statuses) <= {200, 409}
    assert 200 in statuses
    later = post_grant(service_url, key)
    assert later.status_code == 200
    assert later.headers["Idempotent-Replayed"] == "true"
    assert sandbox.stats()["executed"]["createCreditGrant"] == 1


@pytest.mark.postgres
def test_two_instances_sharing_postgresql_make_one_mutation(sandbox, postgres_url):
    env = {
        "STIGG_API_URL": sandbox.graphql_url,
        "STIGG_API_KEY": "sandbox",
        "ACTIONS_API_KEYS": CALLER_KEY,
        "DATABASE_URL": postgres_url,
        "LOG_LEVEL": "WARNING",
    }
    with (
        service_process(env, workers=2, threads=8) as (first, _),
        service_process(env, workers=2, threads=8) as (second, _),
    ):
        create_customer(first)
        sandbox.inject(
            {"kind": "delay", "ms": 500, "count": 1, "operations": ["createCreditGrant"]}
        )

        statuses = fire_at_once([first, second], f"opp-{uuid.uuid4()}", 16)

    assert sandbox.stats()["executed"]["createCreditGrant"] == 1
    assert set(statuses) <= {200, 409}
    assert 200 in statuses


def killable_service_env(sandbox, database_url: str, **settings: str) -> dict:
    """A service whose killed requests are taken over quickly: a short deadline, and a
    short lock so the tests do not wait the production default."""
    return {
        "STIGG_API_URL": sandbox.graphql_url,
        "STIGG_API_KEY": "sandbox",
        "ACTIONS_API_KEYS": CALLER_KEY,
        "DATABASE_URL": database_url,
        "STIGG_TIMEOUT_S": "5",
        "STIGG_DEADLINE_S": "5",
        "IDEMPOTENCY_LOCK_S": "6",
        "LOG_LEVEL": "WARNING",
        **settings,
    }


def test_a_worker_killed_mid_request_is_resumed_without_a_second_grant(sandbox, tmp_path):
    database_url = f"sqlite:///{tmp_path / 'killed.db'}"
    env = killable_service_env(sandbox, database_url)
    key = f"opp-{uuid.uuid4()}"
    with service_process(env, workers=1, threads=4) as (base_url, master):
        create_customer(base_url)
        # Stigg executes the grant, then the answer hangs: the worker is killed meanwhile.
        sandbox.inject(
            {"kind": "delay_after", "ms": 30_000, "count": 1, "operations": ["createCreditGrant"]}
        )
        first = threading.Thread(target=lambda: _ignore_errors(post_grant, base_url, key))
        first.start()
        _wait_for(lambda: sandbox.stats()["executed"].get("createCreditGrant") == 1)

        workers = subprocess.run(
            ["pgrep", "-P", str(master.pid)], capture_output=True, text=True, check=True
        ).stdout.split()
        for pid in workers:
            os.kill(int(pid), signal.SIGKILL)
        first.join(30)

        # Until the dead request's lock lapses, a retry is told it is still running.
        retry = post_grant(base_url, key)
        assert retry.status_code == 409
        assert retry.json()["code"] == "REQUEST_IN_PROGRESS"

        started = time.monotonic()
        while retry.status_code == 409 and time.monotonic() - started < 40:
            time.sleep(0.5)
            retry = post_grant(base_url, key)

    assert retry.status_code == 200, retry.text
    [grant] = sandbox.state()["creditGrants"]
    assert retry.json()["creditGrantId"] == grant["grantId"]
    assert sandbox.stats()["executed"]["createCreditGrant"] == 1

    store = Store.from_url(database_url, run_migrations=False)
    entries = SettledLog(store.log).list(
        operation="createCreditGrant", until=lambda rows: rows[0]["outcome"] != "in_progress"
    )
    outcomes = [entry["outcome"] for entry in entries]
    store.close()
    assert outcomes[-1] == "in_progress"  # the killed request, visible as such
    assert outcomes[0] == "succeeded"


def test_a_worker_killed_after_answering_before_its_outcome_commits_never_grants_twice(
    sandbox, tmp_path
):
    # The outcome follows the answer by up to OUTCOME_WRITE_DELAY_MS (here the longest, 1 s):
    # a worker killed in between leaves what a crash mid-request leaves, handled the same way.
    database_url = f"sqlite:///{tmp_path / 'answered.db'}"
    env = killable_service_env(sandbox, database_url, OUTCOME_WRITE_DELAY_MS="1000")
    key = f"opp-{uuid.uuid4()}"
    with service_process(env, workers=1, threads=4) as (base_url, master):
        create_customer(base_url)
        answered = post_grant(base_url, key)
        assert answered.status_code == 200
        for pid in gunicorn_workers(master.pid):
            os.kill(pid, signal.SIGKILL)  # before the background commit (1 s)

        store = Store.from_url(database_url, run_migrations=False)
        entry = store.log.get(answered.headers["X-Request-Id"])
        store.close()
        assert entry["outcome"] == "in_progress"  # answered, outcome lost with the process

        # gunicorn starts a new worker; until the claim lapses a repeat is told to wait,
        # then it resumes, finds the grant by its tag and answers it.
        retry = post_grant(base_url, key)
        started = time.monotonic()
        while retry.status_code == 409 and time.monotonic() - started < 40:
            time.sleep(0.5)
            retry = post_grant(base_url, key)

    assert retry.status_code == 200, retry.text
    assert retry.json()["creditGrantId"] == answered.json()["creditGrantId"]
    assert sandbox.stats()["executed"]["createCreditGrant"] == 1


def _wait_for(condition, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def _ignore_errors(function, *args):
    with contextlib.suppress(requests.RequestException):
        function(*args)
