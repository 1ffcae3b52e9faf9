"""Fixtures for the store tests: every test runs on SQLite and on PostgreSQL.

PostgreSQL: ``STIGG_TEST_POSTGRES_URL`` (default: the local server's ``test`` database).
Each test gets a schema of its own, created empty and dropped afterwards, selected by
``search_path`` in the URL, so tests never see each other's rows or anyone else's tables
in that shared database, and child processes can open the same schema from the URL alone.
With ``STIGG_TEST_REQUIRE_POSTGRES=1`` (as .ci/run sets it) an unreachable server fails
the PostgreSQL tests; without it they are skipped.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from app.store import Store

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
