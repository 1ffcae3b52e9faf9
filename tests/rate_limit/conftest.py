"""Fixtures for the rate limiter's tests: the window store on every backend.

PostgreSQL as in tests/store (a schema per test). Redis: ``STIGG_TEST_REDIS_URL`` (default
the machine's server at 127.0.0.1:6379), with a key prefix of its own per test, deleted
afterwards; skipped when unreachable unless ``STIGG_TEST_REQUIRE_REDIS=1`` (.ci/run).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from app.stigg.rate_limit import (
    MemoryWindowStore,
    RedisWindowStore,
    SqlWindowStore,
    WindowStore,
)
from app.store import create_engine_for

REDIS_URL = os.environ.get("STIGG_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REQUIRE_REDIS = os.environ.get("STIGG_TEST_REQUIRE_REDIS") == "1"

WINDOW_S = 60.0
IN_FLIGHT_S = 10.0


class FakeClock:
    """Epoch seconds that move only when the limiter sleeps (or the test says so)."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def redis_client():
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as error:
        client.close()
        why = f"Redis at {REDIS_URL} is unreachable: {error}"
        if REQUIRE_REDIS:
            pytest.fail(f"{why} (STIGG_TEST_REQUIRE_REDIS=1)", pytrace=False)
        pytest.skip(why)
    yield client
    client.close()


@pytest.fixture
def redis_prefix(redis_client) -> Iterator[str]:
    """A key prefix no other test uses (in one hash slot, like the service's), cleaned up."""
    prefix = f"stigg-flow-actions-test:{{rate-limit-{uuid.uuid4().hex[:12]}}}:"
    yield prefix
    keys = list(redis_client.scan_iter(match=f"{prefix}*"))
    if keys:
        redis_client.delete(*keys)


@pytest.fixture(
    params=[
        "memory",
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        "redis",
    ]
)
def backend(request) -> str:
    return request.param


@pytest.fixture
def backend_url(backend, request, tmp_path) -> str | None:
    """What a process needs to open the same store: a database URL, a Redis prefix."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'rate-limits.db'}"
    if backend == "postgres":
        return request.getfixturevalue("postgres_url")
    if backend == "redis":
        return request.getfixturevalue("redis_prefix")
    return None


def open_window_store(
    backend: str, url: str | None, *, window_s: float = WINDOW_S, in_flight_s: float = IN_FLIGHT_S
) -> WindowStore:
    if backend == "memory":
        return MemoryWindowStore(window_s=window_s, in_flight_s=in_flight_s)
    if backend == "redis":
        import redis

        return RedisWindowStore(
            redis.Redis.from_url(REDIS_URL), window_s=window_s, in_flight_s=in_flight_s, prefix=url
        )
    return SqlWindowStore.create(create_engine_for(url), window_s=window_s, in_flight_s=in_flight_s)


@pytest.fixture
def window_store(backend, backend_url) -> Iterator[WindowStore]:
    store = open_window_store(backend, backend_url)
    yield store
    store.close()
