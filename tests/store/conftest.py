"""Fixtures for the store tests: every test runs on SQLite and on PostgreSQL.

PostgreSQL: ``STIGG_TEST_POSTGRES_URL`` (default: the local server's ``test`` database).
Each test gets a schema of its own, created empty and dropped afterwards, selected by
``search_path`` in the URL, so tests never see each other's rows or anyone else's tables
in that shared database, and child processes can open the same schema from the URL alone.
With ``STIGG_TEST_REQUIRE_POSTGRES=1`` (as .ci/run sets it) an unreachable server fails
the PostgreSQL tests; without it they are skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from app.store import Store


class FakeClock:
    """A clock the test moves by hand; starts at the real time so stored values look real."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(database_url, clock) -> Iterator[Store]:
    """A migrated store on a fresh database, with the fake clock."""
    store = Store.from_url(database_url, clock=clock)
    yield store
    store.close()
