"""`python -m sandbox` under real gunicorn: drops really close the socket, threads overlap."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests

from tests.sandbox.conftest import service_document

pytestmark = pytest.mark.integration

API_KEY = "serve-test-key"


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def base_url():
    port = free_loopback_port()
    env = {**os.environ, "SANDBOX_API_KEYS": API_KEY}
    for name in ("SANDBOX_FAULTS", "SANDBOX_RATE_LIMITS", "SANDBOX_RATE_WINDOW_S"):
        env.pop(name, None)  # the sandbox's defaults: Stigg's rate limits on
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                requests.get(f"{url}/healthz", timeout=1).raise_for_status()
                break
            except requests.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(process.stderr.read().decode()) from None
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        process.stderr.close()


@pytest.fixture
def sandbox_url(base_url):
    requests.post(f"{base_url}/_admin/reset", timeout=5).raise_for_status()
    call(base_url, "ProvisionCustomer", {"customerId": "cust-1"}).raise_for_status()
    return base_url


def call(url, document, input, timeout=5):
    return requests.post(
        f"{url}/graphql",
        json={"query": service_document(document), "variables": {"input": input}},
        headers={"X-API-KEY": API_KEY},
        timeout=timeout,
    )


GRANT = {
    "customerId": "cust-1",
    "currencyId": "cred-type-ai-tokens",
    "displayName": "Grant",
    "amount": 1,
    "grantType": "PROMOTIONAL",
}


def add_fault(url, rule):
    requests.post(f"{url}/_admin/faults", json=[rule], timeout=5).raise_for_status()


def executed(url):
    return requests.get(f"{url}/_admin/stats", timeout=5).json()["executed"]


def test_drop_closes_the_connection_without_executing(sandbox_url):
    add_fault(sandbox_url, {"kind": "drop", "count": 1, "operations": ["createCreditGrant"]})
    with pytest.raises(requests.ConnectionError):
        call(sandbox_url, "GrantCredits", GRANT)
    assert "createCreditGrant" not in executed(sandbox_url)
    assert call(sandbox_url, "GrantCredits", GRANT).status_code == 200  # server still fine


def test_drop_after_closes_the_connection_after_executing(sandbox_url):
    add_fault(sandbox_url, {"kind": "drop_after", "count": 1, "operations": ["createCreditGrant"]})
    with pytest.raises(requests.ConnectionError):
        call(sandbox_url, "GrantCredits", GRANT)
    assert executed(sandbox_url)["createCreditGrant"] == 1
    state = requests.get(f"{sandbox_url}/_admin/state", timeout=5).json()
    assert len(state["creditGrants"]) == 1


def test_a_slow_request_does_not_block_others(sandbox_url):
    add_fault(
        sandbox_url, {"kind": "delay", "ms": 1500, "count": 1, "operations": ["createCreditGrant"]}
    )
    slow = threading.Thread(target=call, args=(sandbox_url, "GrantCredits", GRANT))
    slow.start()
    time.sleep(0.1)
    started = time.monotonic()
    assert call(sandbox_url, "GetCustomer", {"customerId": "cust-1"}).status_code == 200
    assert time.monotonic() - started < 1.0
    slow.join()


def test_rate_limited_requests_are_429_over_real_http(sandbox_url):
    # sandbox_url's reset restores the start-up limits (on) before the next test.
    requests.post(
        f"{sandbox_url}/_admin/limits",
        json={"perOperation": {"createCreditGrant": 2}},
        timeout=5,
    ).raise_for_status()
    assert [call(sandbox_url, "GrantCredits", GRANT).status_code for _ in range(2)] == [200, 200]

    refused = call(sandbox_url, "GrantCredits", GRANT)

    assert refused.status_code == 429
    assert refused.headers["Content-Type"] == "application/json"
    assert "Retry-After" not in refused.headers
    assert refused.json() == {"error": "rate_limit_exceeded", "message": "Too many requests"}
    stats = requests.get(f"{sandbox_url}/_admin/stats", timeout=5).json()
    assert stats["rateLimited"] == {"createCreditGrant": 1}
    assert stats["executed"]["createCreditGrant"] == 2
