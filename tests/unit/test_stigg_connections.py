"""A call whose lost answer is final never goes out on a connection that sat idle.

Servers close idle keep-alive connections (the sandbox's gunicorn after 2 s); a request
written on one just as it closes is lost, and Stigg may have run it. A bench run saw it
twice in one full run: two workflow triggers answered WORKFLOW_OUTCOME_UNKNOWN. Here a
real HTTP/1.1 server on loopback counts the connections the client opens.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.stigg import client as client_module
from app.stigg.client import StiggClient
from app.stigg.operations import LOST_ANSWER_IS_FINAL, load_operations

ANSWERS = {
    "TriggerWorkflow": {"triggerWorkflow": {"runId": "run-1"}},
    "GetCustomer": {"getCustomerByRefId": None},
}


class CountingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.connections = 0
        self.requests = 0
        self.lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.connections += 1

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.requests += 1
        answer = json.dumps({"data": ANSWERS[body["operationName"]]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *_args) -> None:
        pass


@pytest.fixture
def server():
    server = CountingServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def clock(monkeypatch):
    """time.monotonic as the client sees it, moved by hand."""
    now = [1000.0]
    monkeypatch.setattr(client_module.time, "monotonic", lambda: now[0])
    return now


def stigg_client(server) -> StiggClient:
    host, port = server.server_address
    return StiggClient(
        api_url=f"http://{host}:{port}/graphql",
        api_key="key",
        timeout_s=5,
        deadline_s=10,
        customer_url_template="https://app.stigg.io/c/{customerId}",
        subscription_url_template="https://app.stigg.io/s/{subscriptionId}",
    )


def call(client: StiggClient, operation_name: str) -> None:
    operation = load_operations()[operation_name]
    client.attempt(operation, {"input": {"triggerId": "wf-1"}, "refId": "acme"}, timeout_s=5)


def test_only_the_workflow_trigger_s_lost_answer_is_final():
    final = {name for name, op in load_operations().items() if op.lost_answer_is_final}
    assert final == set(LOST_ANSWER_IS_FINAL) == {"TriggerWorkflow"}


def test_a_trigger_after_an_idle_second_opens_a_new_connection(server, clock):
    client = stigg_client(server)
    call(client, "TriggerWorkflow")
    clock[0] += client_module.FRESH_CONNECTION_AFTER_IDLE_S

    call(client, "TriggerWorkflow")

    assert (server.requests, server.connections) == (2, 2)


def test_a_trigger_right_after_another_call_keeps_the_connection(server, clock):
    client = stigg_client(server)
    call(client, "GetCustomer")
    clock[0] += client_module.FRESH_CONNECTION_AFTER_IDLE_S / 2

    call(client, "TriggerWorkflow")
    clock[0] += client_module.FRESH_CONNECTION_AFTER_IDLE_S / 2
    call(client, "TriggerWorkflow")

    assert (server.requests, server.connections) == (3, 1)


def test_other_calls_keep_an_idle_connection(server, clock):
    # They are resent (or looked up) if their answer is lost: a new connection each time
    # would only add a handshake.
    client = stigg_client(server)
    call(client, "GetCustomer")
    clock[0] += 60

    call(client, "GetCustomer")

    assert (server.requests, server.connections) == (2, 1)
