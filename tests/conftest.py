from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import responses
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from app import create_app
from tests.fakes import STIGG_URL, FakeStigg

POSTGRES_URL = os.environ.get(
    "STIGG_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REQUIRE_POSTGRES = os.environ.get("STIGG_TEST_REQUIRE_POSTGRES") == "1"


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[object]:
    """An engine on the shared PostgreSQL database, used to create and drop test schemas."""
    engine = create_engine(
        POSTGRES_URL,
        poolclass=NullPool,
        isolation_level="AUTOCOMMIT",
        connect_args={"connect_timeout": 5},
    )
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as error:
        why = f"PostgreSQL at {make_url(POSTGRES_URL)!r} is unreachable: {error.orig or error}"
        if REQUIRE_POSTGRES:
            pytest.fail(f"{why} (STIGG_TEST_REQUIRE_POSTGRES=1)", pytrace=False)
        pytest.skip(why)
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_url(postgres_admin) -> Iterator[str]:
    """The URL of a fresh, empty schema of the test database, dropped after the test."""
    schema = f"store_test_{uuid.uuid4().hex[:16]}"
    with postgres_admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    yield url.render_as_string(hide_password=False)
    with postgres_admin.connect() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path) -> str:
    """An empty database: a new SQLite file, or a new PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("postgres_url")


CALLER_KEY = "caller-key-0123456789abcdef"
ROTATED_CALLER_KEY = "caller-key-next-fedcba9876543210"
STIGG_KEY = "server-stigg-secret-key-42"

# An Account ID in both forms (the 18-character one carries the case checksum).
ACCOUNT_15 = "001D000000IqhSL"
ACCOUNT_18 = "001D000000IqhSLIAZ"
OPPORTUNITY_15 = "006D000000CkYtr"

# A valid promotional grant, for tests about the pipeline rather than the grant mapping.
PROMOTIONAL_GRANT = {
    "stiggCustomerId": "acme",
    "grantType": "PROMOTIONAL",
    "currencyId": "cred-type-ai-tokens",
    "displayName": "Welcome",
    "amount": 100,
}

BASE_CONFIG = {
    "ACTIONS_API_KEYS": f"{CALLER_KEY},{ROTATED_CALLER_KEY}",
    "STIGG_API_URL": STIGG_URL,
    "STIGG_API_KEY": STIGG_KEY,
    "STIGG_CUSTOMER_URL_TEMPLATE": "https://app.stigg.test/env-1/customers/{customerId}",
    "STIGG_SUBSCRIPTION_URL_TEMPLATE": "https://app.stigg.test/env-1/subscriptions/{subscriptionId}",
    "STIGG_TIMEOUT_S": "5",
    "STIGG_DEADLINE_S": "20",
    # The limiter's budget is real time shared through the database, which these tests
    # share; its own tests (tests/rate_limit/) switch it on with a fake clock.
    "STIGG_RATE_LIMITS_ENABLED": "false",
}


@pytest.fixture(scope="session")
def database_file(tmp_path_factory):
    # One migrated SQLite file for the whole session: tests use distinct keys and IDs.
    return tmp_path_factory.mktemp("store") / "unit.db"


@pytest.fixture
def config(database_file) -> dict:
    return {**BASE_CONFIG, "DATABASE_URL": f"sqlite:///{database_file}"}


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
        return self._client.post(
            f"/v1/actions/{operation_path}", json=body, headers=self._headers(key, headers)
        )

    def post_raw(
        self, operation_path: str, data: str, *, content_type="application/json", key=CALLER_KEY
    ):
        """A body exactly as given, for malformed JSON and wrong media types."""
        return self._client.post(
            f"/v1/actions/{operation_path}",
            data=data,
            content_type=content_type,
            headers=self._headers(key, None),
        )

    @staticmethod
    def _headers(key: str | None, headers: dict | None) -> dict:
        all_headers = dict(headers or {})
        if key is not None:
            all_headers["Authorization"] = f"Bearer {key}"
        return all_headers


@pytest.fixture
def caller(app) -> Caller:
    return Caller(app.test_client())
