from __future__ import annotations

import pytest
import responses

from app import create_app
from tests.fakes import STIGG_URL, FakeStigg

CALLER_KEY = "caller-key-0123456789abcdef"
ROTATED_CALLER_KEY = "caller-key-next-fedcba9876543210"
STIGG_KEY = "server-stigg-secret-key-42"

# An Account ID in both forms (the 18-character one carries the case checksum).
ACCOUNT_15 = "001D000000IqhSL"
ACCOUNT_18 = "001D000000IqhSLIAZ"
OPPORTUNITY_15 = "006D000000CkYtr"

BASE_CONFIG = {
    "ACTIONS_API_KEYS": f"{CALLER_KEY},{ROTATED_CALLER_KEY}",
    "STIGG_API_URL": STIGG_URL,
    "STIGG_API_KEY": STIGG_KEY,
    "STIGG_CUSTOMER_URL_TEMPLATE": "https://app.stigg.test/env-1/customers/{customerId}",
    "STIGG_TIMEOUT_S": "5",
    "STIGG_DEADLINE_S": "20",
}


@pytest.fixture
def config() -> dict:
    return dict(BASE_CONFIG)


@pytest.fixture
def app(config):
    app = create_app(config)
    app.testing = True
    return app


@pytest.fixture
def sleeps(app) -> list[float]:
    """Backoff waits are recorded instead of slept, so retry tests run instantly."""
    recorded: list[float] = []
    app.extensions["stigg"]._sleep = recorded.append
    return recorded


@pytest.fixture
def stigg(sleeps):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield FakeStigg(mock)


class Caller:
    """Posts to an action the way Salesforce does."""

    def __init__(self, client):
        self._client = client

    def post(self, operation_path: str, body, *, key: str | None = CALLER_KEY, headers=None):
        all_headers = dict(headers or {})
        if key is not None:
            all_headers["Authorization"] = f"Bearer {key}"
        return self._client.post(f"/v1/actions/{operation_path}", json=body, headers=all_headers)


@pytest.fixture
def caller(app) -> Caller:
    return Caller(app.test_client())
