"""Which store the limiter keeps its windows in, from the settings; start-up refusals."""

from __future__ import annotations

import pytest

from app import create_app
from app.config import ConfigError, key_id_for, load_settings
from app.stigg.rate_limit import (
    REDIS_PREFIX,
    Limit,
    MemoryWindowStore,
    RateLimiter,
    RedisWindowStore,
    SqlWindowStore,
)
from app.store.sqlite_checkpoint import BACKSTOP_PAGES
from tests.conftest import BASE_CONFIG, STIGG_KEY
from tests.integration.servers import free_port
from tests.rate_limit.conftest import REDIS_URL


def limiter_for(database_url: str, **environ) -> RateLimiter:
    settings = load_settings({**BASE_CONFIG, "STIGG_RATE_LIMITS_ENABLED": "true", **environ})
    return RateLimiter.from_settings(settings, database_url=database_url)


def test_a_sqlite_database_keeps_the_windows_in_a_file_beside_it(tmp_path):
    limiter = limiter_for(f"sqlite:///{tmp_path / 'service.db'}")
    try:
        assert isinstance(limiter._store, SqlWindowStore)
        assert (tmp_path / "service-rate-limits.db").exists()
        assert not (tmp_path / "service.db").exists()  # the store's own file is the store's
        # Its WAL is checkpointed off the reservation path, like the store's own.
        checkpointer = limiter._store._checkpointer
        assert checkpointer.database_path == str(tmp_path / "service-rate-limits.db")
        assert checkpointer._thread.is_alive()
        with limiter._store._engine.connect() as connection:
            setting = connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
        assert setting == BACKSTOP_PAGES
    finally:
        limiter.close()
    assert not checkpointer._thread.is_alive()


def test_an_in_memory_database_gets_an_in_process_store():
    limiter = limiter_for("sqlite://")
    assert isinstance(limiter._store, MemoryWindowStore)


@pytest.mark.postgres
def test_postgresql_keeps_the_windows_in_its_own_tables(postgres_url, postgres_admin):
    limiter = limiter_for(postgres_url)
    try:
        assert isinstance(limiter._store, SqlWindowStore)
        limiter.acquire("provisionCustomer", "acme", timeout_s=0).done()
        assert len(limiter._store.releases("operation:provisionCustomer", limiter._clock())) == 1
    finally:
        limiter.close()


def test_redis_keeps_the_windows_apart_per_stigg_key(tmp_path, redis_client):
    limiter = limiter_for(f"sqlite:///{tmp_path / 'service.db'}", REDIS_URL=REDIS_URL)
    prefix = f"{REDIS_PREFIX}{key_id_for(STIGG_KEY)}:"
    try:
        assert isinstance(limiter._store, RedisWindowStore)
        limiter.acquire("provisionCustomer", "acme", timeout_s=0).done()
        keys = {key.decode() for key in redis_client.scan_iter(match=f"{prefix}*")}
        assert keys == {
            f"{prefix}operation:provisionCustomer:answered",
            f"{prefix}customer:acme:answered",
        }
        assert STIGG_KEY not in "".join(keys)
    finally:
        for key in redis_client.scan_iter(match=f"{prefix}*"):
            redis_client.delete(key)
        limiter.close()


def test_switched_off_there_is_no_store(tmp_path):
    limiter = limiter_for(f"sqlite:///{tmp_path / 'service.db'}", STIGG_RATE_LIMITS_ENABLED="false")
    assert limiter.enabled is False
    assert not (tmp_path / "service-rate-limits.db").exists()


def test_an_unreachable_redis_refuses_start_up_in_one_line(tmp_path, caplog):
    url = f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0"
    config = {
        **BASE_CONFIG,
        "STIGG_RATE_LIMITS_ENABLED": "true",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'service.db'}",
        "REDIS_URL": url,
    }

    with pytest.raises(ConfigError) as refusal:
        create_app(config)

    message = str(refusal.value)
    assert message.startswith("REDIS_URL: cannot use Redis for the rate limiter")
    assert "\n" not in message
    assert "hunter2" not in message
    assert "hunter2" not in caplog.text
    assert f"configuration error: {message}" in caplog.text


def test_the_app_s_client_holds_the_limiter(tmp_path):
    app = create_app(
        {
            **BASE_CONFIG,
            "STIGG_RATE_LIMITS_ENABLED": "true",
            "STIGG_RATE_LIMIT_WINDOW_S": "2",
            "STIGG_RATE_LIMITS": "createCreditGrant=7",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'service.db'}",
        }
    )
    limiter = app.extensions["stigg"].rate_limiter

    assert limiter.enabled is True
    assert limiter.limit_for("createCreditGrant") == 7
    assert limiter.limit_for("provisionSubscriptionV2") == 250
    assert limiter._store.reserve([Limit("operation:x", 1)], "t", 0.0) is None
    limiter.close()
