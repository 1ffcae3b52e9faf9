"""Hostile HTTP against the real gunicorn service: bodies that lie about their size."""

import json
import socket
from urllib.parse import urlsplit

import pytest

from tests.integration.conftest import CALLER_KEY

pytestmark = pytest.mark.integration

GRANT = {
    "stiggCustomerId": "acme-chunked",
    "grantType": "PROMOTIONAL",
    "currencyId": "cred-type-ai-tokens",
    "displayName": "Welcome",
    "amount": 10,
}


def send_chunked(base_url: str, path: str, chunks: list[bytes]) -> tuple[int, dict]:
    """POST with Transfer-Encoding: chunked over a raw socket; the status and JSON body."""
    parts = urlsplit(base_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as connection:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Authorization: Bearer {CALLER_KEY}\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        ).encode()
        connection.sendall(head)
        try:
            for chunk in chunks:
                connection.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            connection.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before reading everything: fine
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)


def test_an_oversized_chunked_body_is_413_not_truncated(service_url, sandbox):
    padding = b" " * (64 * 1024)
    chunks = [json.dumps(GRANT).encode()] + [padding] * 80  # about 5 MB

    status, body = send_chunked(service_url, "/v1/actions/create-credit-grant", chunks)

    assert status == 413
    assert body["code"] == "PAYLOAD_TOO_LARGE"
    assert sandbox.stats()["received"].get("createCreditGrant", 0) == 0


def test_a_truncated_looking_chunked_object_is_413_when_over_the_limit(service_url, sandbox):
    text = json.dumps({**GRANT, "comment": "x" * 70_000}).encode()
    chunks = [text[i : i + 1000] for i in range(0, len(text), 1000)]

    status, body = send_chunked(service_url, "/v1/actions/create-credit-grant", chunks)

    assert status == 413
    assert body["code"] == "PAYLOAD_TOO_LARGE"


def test_a_chunked_body_within_the_limit_is_served(service, service_url, sandbox):
    customer = service.post(
        "create-customer-without-email",
        {
            "salesforceAccountId": "001D000000IqhSL",
            "stiggCustomerId": "acme-chunked",
            "customerName": "Acme",
        },
    )
    assert customer.status_code == 200, customer.text
    text = json.dumps(GRANT).encode()
    chunks = [text[i : i + 7] for i in range(0, len(text), 7)]

    status, body = send_chunked(service_url, "/v1/actions/create-credit-grant", chunks)

    assert status == 200, body
    assert body["amount"] == 10
    assert sandbox.stats()["executed"]["createCreditGrant"] == 1


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (b"GARBAGE\r\n\r\n", 400, "MALFORMED_REQUEST"),
        (b"POST /v1/actions/create-credit-grant HTTP/9.9\r\nHost: x\r\n\r\n", 400, None),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "URI_TOO_LONG"),
        (
            b"POST /v1/actions/create-credit-grant HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer " + CALLER_KEY.encode() + b"\r\n"
            b"Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\nzz\r\n",
            400,
            "MALFORMED_REQUEST",
        ),
    ],
)
def test_what_gunicorn_refuses_itself_is_json_too(service_url, request_bytes, status, code):
    parts = urlsplit(service_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as connection:
        connection.sendall(request_bytes)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")

    assert int(head.split(b" ", 2)[1]) == status
    assert b"Content-Type: application/json" in head
    error = json.loads(body)
    assert error["retryable"] is False
    if code:
        assert error["code"] == code
