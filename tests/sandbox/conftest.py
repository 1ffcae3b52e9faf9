"""Fixtures for the sandbox's own tests: an app, a test client, and a small Stigg caller."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sandbox import create_app

DOCUMENTS_DIR = Path(__file__).resolve().parents[2] / "app" / "stigg" / "documents"
API_KEY = "test-key"


def service_document(name: str) -> str:
    """One of the GraphQL documents the service sends (app/stigg/documents/<name>.graphql)."""
    return (DOCUMENTS_DIR / f"{name}.graphql").read_text(encoding="utf-8")


class StiggCaller:
    """Posts GraphQL to the sandbox the way the service does (X-API-KEY, JSON body)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def post(self, query: str, variables: dict | None = None, **headers: str) -> Any:
        headers = {"X-API-KEY": API_KEY, **headers}
        body: dict[str, Any] = {"query": query}
        if variables is not None:
            body["variables"] = variables
        return self.client.post("/graphql", json=body, headers=headers)

    def document(self, name: str, input: dict) -> Any:
        """Send a service document with `{"input": input}`; returns the response."""
        return self.post(service_document(name), {"input": input})

    def ok(self, name: str, input: dict) -> dict:
        """Send a service document and insist on success; returns `data`."""
        response = self.document(name, input)
        body = response.get_json()
        assert response.status_code == 200, body
        assert "errors" not in body, body
        return body["data"]

    def error(self, name: str, input: dict) -> dict:
        """Send a service document that must fail with a Stigg error; returns errors[0]."""
        response = self.document(name, input)
        body = response.get_json()
        assert response.status_code == 200, body
        assert body["data"] is None, body
        assert len(body["errors"]) == 1, body
        return body["errors"][0]

    # Shortcuts for setting the scene.
    def customer(self, customer_id: str = "cust-1", **fields: Any) -> str:
        self.ok("ProvisionCustomer", {"customerId": customer_id, **fields})
        return customer_id

    def subscription(self, **input: Any) -> dict:
        return self.ok("ProvisionSubscription", input)["provisionSubscription"]

    def grant(self, **input: Any) -> dict:
        base = {
            "customerId": "cust-1",
            "currencyId": "cred-type-ai-tokens",
            "displayName": "Grant",
            "amount": 100,
            "grantType": "PROMOTIONAL",
        }
        return self.ok("GrantCredits", {**base, **input})["createCreditGrant"]


class FakeClock:
    """The sandbox state's clock, moved by hand: time-based transitions without sleeping."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@pytest.fixture
def app(monkeypatch):
    # The sandbox's own defaults, whatever the environment running the tests says.
    for name in (
        "SANDBOX_FAULTS",
        "SANDBOX_RATE_LIMITS",
        "SANDBOX_RATE_WINDOW_S",
        "SANDBOX_UNKNOWN_CUSTOMER",
    ):
        monkeypatch.delenv(name, raising=False)
    return create_app(api_keys=[API_KEY])


@pytest.fixture
def sandbox(app):
    """The Sandbox object behind the app (state, limiter, settings)."""
    return app.extensions["stigg_sandbox"]


@pytest.fixture
def clock(sandbox) -> FakeClock:
    """Replace the state's clock: records read "now" from it, so they follow it."""
    fake = FakeClock(datetime(2026, 1, 15, 12, 0, tzinfo=UTC))
    sandbox.state.clock = fake
    return fake


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def stigg(client) -> StiggCaller:
    return StiggCaller(client)


@pytest.fixture
def admin(client):
    """The admin API (loopback-only; the test client's address is 127.0.0.1)."""
    return client
