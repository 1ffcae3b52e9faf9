"""A worker with every thread busy leaves new connections to a worker with a thread free.

gthread on its own accepts connections while it holds fewer than `worker_connections`
(1,000), however many wait for a thread: a connection could wait behind a busy worker's
threads while another worker idled (`ReadDeadlineWorker.worker_connections`). Here two
workers of two threads each, three of the four threads held by clients that send half a
request and stop, and then new connections, one at a time: each must be answered at once,
by the worker with the free thread, never left waiting for a held one.
"""

from __future__ import annotations

import socket
import time

import pytest
import requests

from tests.integration.conftest import CALLER_KEY
from tests.integration.servers import STIGG_KEY, service_process

pytestmark = pytest.mark.integration

WORKERS, THREADS = 2, 2
# Longer than the test: the held threads stay held until the test lets them go.
READ_TIMEOUT_S = 60
NEW_CONNECTIONS = 12
# On the old behaviour a new connection lands on the full worker about half the time and
# waits out READ_TIMEOUT_S; answered at once it takes milliseconds.
ANSWER_TIMEOUT_S = 5
HALF_A_REQUEST = b"POST /v1/actions/create-customer-with-email HTTP/1.1\r\nHost: 127.0.0.1\r\n"


@pytest.fixture
def two_small_workers(sandbox, tmp_path):
    env = {
        "STIGG_API_URL": sandbox.graphql_url,
        "STIGG_API_KEY": STIGG_KEY,
        "ACTIONS_API_KEYS": CALLER_KEY,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'service.db'}",
        "REQUEST_READ_TIMEOUT_S": str(READ_TIMEOUT_S),
    }
    with service_process(env, workers=WORKERS, threads=THREADS) as (base_url, _process):
        yield base_url


def hold_a_thread(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(HALF_A_REQUEST)
    return sock


def test_new_connections_go_to_the_worker_with_a_free_thread(two_small_workers):
    port = int(two_small_workers.rsplit(":", 1)[1])
    held = []
    try:
        for _ in range(WORKERS * THREADS - 1):
            held.append(hold_a_thread(port))
            # Its worker's thread picks it up before the next one is sent.
            time.sleep(0.3)
        for number in range(NEW_CONNECTIONS):
            try:
                answer = requests.get(
                    f"{two_small_workers}/healthz",
                    headers={"Connection": "close"},
                    timeout=ANSWER_TIMEOUT_S,
                )
            except requests.Timeout:
                pytest.fail(f"new connection {number + 1} waited for a busy worker's thread")
            assert answer.status_code == 200
    finally:
        for sock in held:
            sock.close()
