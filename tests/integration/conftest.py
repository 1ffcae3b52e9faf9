from __future__ import annotations

import pytest
import requests

from app.store import Store
from tests.integration.servers import STIGG_KEY, sandbox_process, service_process
from tests.integration.settled import SettledLog

CALLER_KEY = "integration-caller-key-0123456789"
# The deadline is short so that "Stigg is too slow" tests finish quickly.
TIMEOUT_S = 1.5
DEADLINE_S = 3.0


@pytest.fixture(scope="session")
def sandbox():
    with sandbox_process() as control:
        yield control


@pytest.fixture(scope="session")
def service_database_url(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'service.db'}"


@pytest.fixture(scope="session")
def service_log_file(tmp_path_factory):
    """Everything the session's service wrote to stderr (its JSON logs)."""
    return tmp_path_factory.mktemp("logs") / "service.log"


@pytest.fixture(scope="session")
def service_url(sandbox, service_database_url, service_log_file):
    env = {
        "STIGG_API_URL": sandbox.graphql_url,
        "STIGG_API_KEY": STIGG_KEY,
        "ACTIONS_API_KEYS": CALLER_KEY,
        "STIGG_TIMEOUT_S": str(TIMEOUT_S),
        "STIGG_DEADLINE_S": str(DEADLINE_S),
        "DATABASE_URL": service_database_url,
        "LOG_LEVEL": "INFO",
        # These tests send many mutations for one customer in quick succession, as the
        # sandbox (its limits off here) allows; the limiter still runs, with room for them.
        "STIGG_RATE_LIMIT_PER_CUSTOMER": "100000",
        "STIGG_RATE_LIMIT_MUTATIONS": "100000",
    }
    with service_process(env, log_path=service_log_file) as (base_url, _process):
        yield base_url


@pytest.fixture(autouse=True)
def clean_sandbox(request):
    if "sandbox" in request.fixturenames:
        request.getfixturevalue("sandbox").reset()


class Service:
    def __init__(self, base_url: str):
        self.base_url = base_url
        self.http = requests.Session()

    def post(self, path: str, body: dict, *, key: str = CALLER_KEY, headers: dict | None = None):
        return self.http.post(
            f"{self.base_url}/v1/actions/{path}",
            json=body,
            headers={"Authorization": f"Bearer {key}", **(headers or {})},
            timeout=30,
        )


@pytest.fixture
def service(service_url) -> Service:
    return Service(service_url)


@pytest.fixture(scope="session")
def service_log(service_url, service_database_url):
    """The running service's provisioning log, read from its database (once outcomes have
    arrived: they follow the answers)."""
    store = Store.from_url(service_database_url, run_migrations=False)
    yield SettledLog(store.log)
    store.close()
