"""Clients that trickle their request cannot starve the service (REQUEST_READ_TIMEOUT_S).

One gunicorn worker with THREADS threads, and THREADS connections that send their request
one byte a second (the headers; or the body, with a Content-Length or chunked) and
reconnect as soon as they are cut off. Meanwhile /healthz and a real action answer, and
every slow connection is closed by the service: after its headers with no answer, after
its body with 408 REQUEST_TIMEOUT.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
import requests

from tests.integration.conftest import CALLER_KEY, DEADLINE_S, TIMEOUT_S
from tests.integration.servers import STIGG_KEY, service_process

pytestmark = pytest.mark.integration

READ_TIMEOUT_S = 2
THREADS = 3
# Generous: a request may wait for one slow connection to be cut off (plus its linger).
ANSWER_TIMEOUT_S = READ_TIMEOUT_S + 5
# A slow connection the service has not closed by then is a failure, not a wait.
GIVE_UP_AFTER_S = READ_TIMEOUT_S + 10
MAX_ROUNDS = 5

ACCOUNT_15 = "001D000000IqhSL"
ACCOUNT_18 = "001D000000IqhSLIAZ"
CUSTOMER = {"salesforceAccountId": ACCOUNT_15, "customerName": "Acme", "customerEmail": "a@acme.io"}
ACTION_PATH = "/v1/actions/create-customer-with-email"
BODY = json.dumps(CUSTOMER).encode() * 50


def request_head(extra_headers: str) -> bytes:
    return (
        f"POST {ACTION_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {CALLER_KEY}\r\nContent-Type: application/json\r\n"
        f"{extra_headers}\r\n"
    ).encode()


# What each kind sends at once, then what it trickles one byte a second.
SLOW_REQUESTS = {
    "headers": (b"", request_head("Content-Length: 2\r\n") + b"X-Padding: " + b"p" * 60),
    "body": (request_head(f"Content-Length: {len(BODY)}\r\n"), BODY),
    "chunked": (
        request_head("Transfer-Encoding: chunked\r\n"),
        f"{len(BODY):x}\r\n".encode() + BODY + b"\r\n0\r\n\r\n",
    ),
}


@dataclass
class Round:
    """One connection of a slow client: what the service sent, and whether it closed."""

    received: bytes = b""
    closed_by_service: bool = False


@dataclass
class SlowClient:
    port: int
    head: bytes
    trickle: bytes
    stop: threading.Event
    rounds: list[Round] = field(default_factory=list)

    def run(self) -> None:
        # Reconnect when cut off, until told to stop: the pressure never lets up.
        while not self.stop.is_set() and len(self.rounds) < MAX_ROUNDS:
            self.rounds.append(self.one_connection())

    def one_connection(self) -> Round:
        result = Round()
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            try:
                if self.head:
                    sock.sendall(self.head)
                for byte in self.trickle:
                    if time.monotonic() - started > GIVE_UP_AFTER_S:
                        break
                    sock.sendall(bytes([byte]))
                    # A second until the next byte, reading whatever the service says.
                    readable, _, _ = select.select([sock], [], [], 1.0)
                    if readable:
                        data = sock.recv(65536)
                        if not data:
                            result.closed_by_service = True
                            break
                        result.received += data
            except OSError:  # reset, or a broken pipe: closed by the service too
                result.closed_by_service = True
        return result


@pytest.fixture(scope="module")
def slow_service(sandbox, tmp_path_factory):
    env = {
        "STIGG_API_URL": sandbox.graphql_url,
        "STIGG_API_KEY": STIGG_KEY,
        "ACTIONS_API_KEYS": CALLER_KEY,
        "STIGG_TIMEOUT_S": str(TIMEOUT_S),
        "STIGG_DEADLINE_S": str(DEADLINE_S),
        "DATABASE_URL": f"sqlite:///{tmp_path_factory.mktemp('slow') / 'service.db'}",
        "REQUEST_READ_TIMEOUT_S": str(READ_TIMEOUT_S),
    }
    with service_process(env, workers=1, threads=THREADS) as (base_url, _process):
        yield base_url


@pytest.mark.parametrize("kind", sorted(SLOW_REQUESTS))
def test_slow_clients_on_every_thread_do_not_starve_the_service(slow_service, sandbox, kind):
    head, trickle = SLOW_REQUESTS[kind]
    stop = threading.Event()
    clients = [SlowClient(urlsplit(slow_service).port, head, trickle, stop) for _ in range(THREADS)]
    threads = [threading.Thread(target=client.run, daemon=True) for client in clients]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)  # every thread of the worker is now reading a slow request

        health = requests.get(f"{slow_service}/healthz", timeout=ANSWER_TIMEOUT_S)
        action = requests.post(
            f"{slow_service}{ACTION_PATH}",
            json=CUSTOMER,
            headers={"Authorization": f"Bearer {CALLER_KEY}"},
            timeout=ANSWER_TIMEOUT_S,
        )
        # Each client stops only when told to (or after MAX_ROUNDS connections).
        pressure_held = all(thread.is_alive() for thread in threads)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=GIVE_UP_AFTER_S + 5)

    assert health.status_code == 200
    assert action.status_code == 200
    assert action.json()["stiggCustomerId"] == ACCOUNT_18
    assert [c["customerId"] for c in sandbox.state()["customers"]] == [ACCOUNT_18]
    assert pressure_held, "the answers must come while every slow client is still at it"
    assert not any(thread.is_alive() for thread in threads)

    rounds = [one for client in clients for one in client.rounds]
    assert len(rounds) >= THREADS
    assert all(one.closed_by_service for one in rounds), rounds
    for one in rounds:
        if kind == "headers":
            # Headers never complete: nothing to answer, the connection is just closed.
            assert one.received == b""
        else:
            assert_request_timeout(one.received)


def assert_request_timeout(received: bytes) -> None:
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value for name, _, value in (h.partition(": ") for h in header_lines)}
    assert status_line.split(" ")[:2] == ["HTTP/1.1", "408"]
    assert headers["connection"] == "close"
    assert headers["content-type"] == "application/json"
    answer = json.loads(body)
    assert answer["code"] == "REQUEST_TIMEOUT"
    assert answer["retryable"] is True
    assert answer["message"] == (
        f"The request did not arrive within {READ_TIMEOUT_S} s; send it again."
    )
