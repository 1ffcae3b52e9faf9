"""Start-up refuses missing or malformed settings with one line naming the setting."""

import pytest

from app import create_app
from app.config import ConfigError, load_serving_settings, load_settings, port_setting
from tests.conftest import BASE_CONFIG, STIGG_KEY


def settings_with(**changes):
    environ = {**BASE_CONFIG, **changes}
    return load_settings({key: value for key, value in environ.items() if value is not None})


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"ACTIONS_API_KEYS": None}, "ACTIONS_API_KEYS"),
        ({"ACTIONS_API_KEYS": " , "}, "ACTIONS_API_KEYS"),
        ({"ACTIONS_API_KEYS": "short"}, "ACTIONS_API_KEYS key #1"),
        ({"ACTIONS_API_KEYS": "a-perfectly-fine-key-1234,changeme"}, "ACTIONS_API_KEYS key #2"),
        ({"STIGG_API_KEY": None, "STIGG_API_URL": None}, "STIGG_API_KEY"),
        ({"STIGG_API_URL": "ftp://stigg"}, "STIGG_API_URL"),
        (
            {"STIGG_CUSTOMER_URL_TEMPLATE": "https://app.stigg.io/customers/"},
            "STIGG_CUSTOMER_URL_TEMPLATE",
        ),
        (
            {"STIGG_SUBSCRIPTION_URL_TEMPLATE": "https://app.stigg.io/subscriptions/"},
            "STIGG_SUBSCRIPTION_URL_TEMPLATE",
        ),
        (
            {"STIGG_SUBSCRIPTION_URL_TEMPLATE": "app.stigg.io/subscriptions/{subscriptionId}"},
            "STIGG_SUBSCRIPTION_URL_TEMPLATE",
        ),
        (
            # The customer's placeholder is not the subscription's.
            {"STIGG_SUBSCRIPTION_URL_TEMPLATE": "https://app.stigg.io/subscriptions/{customerId}"},
            "STIGG_SUBSCRIPTION_URL_TEMPLATE",
        ),
        ({"STIGG_TIMEOUT_S": "ten"}, "STIGG_TIMEOUT_S"),
        ({"STIGG_TIMEOUT_S": "-1"}, "STIGG_TIMEOUT_S"),
        ({"STIGG_DEADLINE_S": "5", "STIGG_TIMEOUT_S": "10"}, "STIGG_DEADLINE_S"),
        ({"STIGG_DEADLINE_S": "150"}, "STIGG_DEADLINE_S"),
        ({"MAX_BODY_BYTES": "0"}, "MAX_BODY_BYTES"),
        # Each of these crashed start-up with a traceback, or was accepted and then broke
        # every request (issue 9, item 8).
        ({"LOG_LEVEL": "BOGUS"}, "LOG_LEVEL"),
        ({"LOG_LEVEL": "verbose"}, "LOG_LEVEL"),
        ({"DATABASE_URL": "garbage"}, "DATABASE_URL"),
        ({"DATABASE_URL": "mysql://stigg@db/provisioning"}, "DATABASE_URL"),
        ({"MAX_BODY_BYTES": "inf"}, "MAX_BODY_BYTES"),
        ({"MAX_BODY_BYTES": "nan"}, "MAX_BODY_BYTES"),
        ({"MAX_BODY_BYTES": "0.5"}, "MAX_BODY_BYTES"),
        ({"MAX_BODY_BYTES": "65536.0"}, "MAX_BODY_BYTES"),
        ({"MAX_BODY_BYTES": "1023"}, "MAX_BODY_BYTES"),
        ({"MAX_BODY_BYTES": "1e9"}, "MAX_BODY_BYTES"),
        ({"MAX_BODY_BYTES": "-65536"}, "MAX_BODY_BYTES"),
        ({"MAX_BODY_BYTES": "9" * 5000}, "MAX_BODY_BYTES"),
        ({"IDEMPOTENCY_TTL_S": "inf"}, "IDEMPOTENCY_TTL_S"),
        ({"IDEMPOTENCY_TTL_S": "0"}, "IDEMPOTENCY_TTL_S"),
        ({"IDEMPOTENCY_TTL_S": "1.5"}, "IDEMPOTENCY_TTL_S"),
        ({"IDEMPOTENCY_TTL_S": "99999999999"}, "IDEMPOTENCY_TTL_S"),
        ({"IDEMPOTENCY_LOCK_S": "inf"}, "IDEMPOTENCY_LOCK_S"),
        ({"IDEMPOTENCY_LOCK_S": "nan"}, "IDEMPOTENCY_LOCK_S"),
        ({"IDEMPOTENCY_LOCK_S": "86401"}, "IDEMPOTENCY_LOCK_S"),
        ({"STIGG_TIMEOUT_S": "inf"}, "STIGG_TIMEOUT_S"),
        ({"STIGG_TIMEOUT_S": "nan"}, "STIGG_TIMEOUT_S"),
        ({"STIGG_DEADLINE_S": "inf"}, "STIGG_DEADLINE_S"),
        ({"ACTIONS_API_KEYS": "a-perfectly-fine-key-1234,caller-key-0123456789é"}, "key #2"),
        ({"ACTIONS_API_KEYS": "caller-key-0123456789\x7f"}, "ACTIONS_API_KEYS key #1"),
        ({"STIGG_API_KEY": "server-stigg-secret-kéy-42"}, "STIGG_API_KEY"),
        ({"LOG_RETENTION_DAYS": "0"}, "LOG_RETENTION_DAYS"),
        ({"LOG_RETENTION_DAYS": "7.5"}, "LOG_RETENTION_DAYS"),
        ({"LOG_RETENTION_DAYS": "forever"}, "LOG_RETENTION_DAYS"),
        ({"LOG_RETENTION_DAYS": "36501"}, "LOG_RETENTION_DAYS"),
        ({"OUTCOME_WRITE_DELAY_MS": "-1"}, "OUTCOME_WRITE_DELAY_MS"),
        ({"OUTCOME_WRITE_DELAY_MS": "2.5"}, "OUTCOME_WRITE_DELAY_MS"),
        ({"OUTCOME_WRITE_DELAY_MS": "1001"}, "OUTCOME_WRITE_DELAY_MS"),
        ({"OUTCOME_WRITE_DELAY_MS": "soon"}, "OUTCOME_WRITE_DELAY_MS"),
    ],
)
def test_bad_settings_stop_start_up_naming_the_setting(changes, named):
    with pytest.raises(ConfigError) as refusal:
        settings_with(**changes)

    message = str(refusal.value)
    assert named in message
    assert "\n" not in message
    assert STIGG_KEY not in message


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"LOG_LEVEL": "debug"}, {"log_level": "DEBUG"}),
        ({"LOG_LEVEL": " Warning "}, {"log_level": "WARNING"}),
        ({"LOG_LEVEL": ""}, {"log_level": "INFO"}),
        ({"MAX_BODY_BYTES": "1024"}, {"max_body_bytes": 1024}),
        ({"LOG_RETENTION_DAYS": "30"}, {"log_retention_days": 30}),
        ({}, {"outcome_write_delay_ms": 10}),
        ({"OUTCOME_WRITE_DELAY_MS": "0"}, {"outcome_write_delay_ms": 0}),
        ({"OUTCOME_WRITE_DELAY_MS": "250"}, {"outcome_write_delay_ms": 250}),
        ({"MAX_BODY_BYTES": "1048576"}, {"max_body_bytes": 1048576}),
        ({"IDEMPOTENCY_TTL_S": "3"}, {"idempotency_ttl_s": 3}),
        ({"IDEMPOTENCY_LOCK_S": "20.5"}, {"idempotency_lock_s": 20.5}),
        ({"STIGG_TIMEOUT_S": "2.5"}, {"stigg_timeout_s": 2.5}),
        ({"DATABASE_URL": "postgresql://stigg:pw@db/provisioning"}, {}),
        ({"DATABASE_URL": "sqlite:////var/lib/stigg/actions.db"}, {}),
    ],
)
def test_good_values_are_accepted_as_given(changes, expected):
    settings = settings_with(**changes)

    for name, value in expected.items():
        assert getattr(settings, name) == value


def test_a_database_url_is_described_never_quoted():
    with pytest.raises(ConfigError) as refusal:
        settings_with(DATABASE_URL="postgres//stigg:hunter2@db/provisioning")

    assert "hunter2" not in str(refusal.value)
    assert str(refusal.value).startswith("DATABASE_URL is not a database URL")


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"WEB_CONCURRENCY": "abc"}, "WEB_CONCURRENCY"),
        ({"WEB_CONCURRENCY": "0"}, "WEB_CONCURRENCY"),
        ({"WEB_CONCURRENCY": "2.5"}, "WEB_CONCURRENCY"),
        ({"WEB_CONCURRENCY": "inf"}, "WEB_CONCURRENCY"),
        ({"GUNICORN_THREADS": "0"}, "GUNICORN_THREADS"),
        ({"GUNICORN_THREADS": "-4"}, "GUNICORN_THREADS"),
        ({"GUNICORN_THREADS": "many"}, "GUNICORN_THREADS"),
        ({"REQUEST_READ_TIMEOUT_S": "0"}, "REQUEST_READ_TIMEOUT_S"),
        ({"REQUEST_READ_TIMEOUT_S": "inf"}, "REQUEST_READ_TIMEOUT_S"),
        ({"REQUEST_READ_TIMEOUT_S": "nan"}, "REQUEST_READ_TIMEOUT_S"),
        ({"REQUEST_READ_TIMEOUT_S": "61"}, "REQUEST_READ_TIMEOUT_S"),
        ({"REQUEST_READ_TIMEOUT_S": "5s"}, "REQUEST_READ_TIMEOUT_S"),
        ({"METRICS_PORT": "0"}, "METRICS_PORT"),
        ({"METRICS_PORT": "9100.5"}, "METRICS_PORT"),
        ({"METRICS_PORT": "65536"}, "METRICS_PORT"),
        ({"METRICS_HOST": "0.0.0.0:9100"}, "METRICS_HOST"),
        ({"METRICS_HOST": "http://metrics"}, "METRICS_HOST"),
    ],
)
def test_bad_serving_settings_are_refused_naming_the_setting(environ, named):
    with pytest.raises(ConfigError) as refusal:
        load_serving_settings(environ)

    assert str(refusal.value).startswith(named)
    assert "\n" not in str(refusal.value)


def test_serving_settings():
    defaults = load_serving_settings({})
    given = load_serving_settings(
        {"WEB_CONCURRENCY": "3", "GUNICORN_THREADS": "4", "REQUEST_READ_TIMEOUT_S": "2.5"}
    )

    assert defaults.threads == 32
    assert defaults.workers >= 2
    assert defaults.request_read_timeout_s == 5
    assert (given.workers, given.threads, given.request_read_timeout_s) == (3, 4, 2.5)
    # Metrics are not served unless asked for, and then on loopback unless told otherwise.
    assert (defaults.metrics_port, defaults.metrics_host) == (None, "127.0.0.1")
    metered = load_serving_settings({"METRICS_PORT": " 9100 ", "METRICS_HOST": "0.0.0.0"})
    assert (metered.metrics_port, metered.metrics_host) == (9100, "0.0.0.0")
    assert load_serving_settings({"METRICS_HOST": "metrics.internal"}).metrics_host == (
        "metrics.internal"
    )


@pytest.mark.parametrize("raw", ["abc", "0", "65536", "80.0", "-1"])
def test_a_bad_port_is_refused_naming_it(raw):
    with pytest.raises(ConfigError, match=r"^PORT must be a whole number from 1 to 65535"):
        port_setting({"PORT": raw}, "PORT", 8080)


def test_ports():
    assert port_setting({}, "PORT", 8080) == 8080
    assert port_setting({"SANDBOX_PORT": "9000"}, "SANDBOX_PORT", 8090) == 9000


def test_a_bad_key_is_named_by_position_never_by_value():
    with pytest.raises(ConfigError) as refusal:
        settings_with(ACTIONS_API_KEYS="a-perfectly-fine-key-1234,tiny-secret")

    assert "tiny-secret" not in str(refusal.value)


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"ACTIONS_API_KEYS": ""}, "ACTIONS_API_KEYS"),
        ({"LOG_LEVEL": "BOGUS"}, "LOG_LEVEL"),
        ({"DATABASE_URL": "garbage"}, "DATABASE_URL"),
        # Parses, but cannot be opened: refused by the store, named all the same.
        ({"DATABASE_URL": "sqlite:////nonexistent-folder/x/store.db"}, "DATABASE_URL"),
    ],
)
def test_create_app_refuses_and_logs_one_line(caplog, changes, named):
    with pytest.raises(ConfigError, match=f"^{named}"):
        create_app({**BASE_CONFIG, **changes})

    [line] = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert line.startswith(f"configuration error: {named}")


def test_create_app_accepts_a_lowercase_log_level(config):
    app = create_app({**config, "LOG_LEVEL": "debug"})

    assert app.extensions["settings"].log_level == "DEBUG"


def test_the_local_sandbox_needs_no_stigg_key():
    settings = settings_with(STIGG_API_KEY=None, STIGG_API_URL="http://127.0.0.1:8090/graphql")

    assert settings.uses_local_stigg
    assert settings.stigg_api_key == "sandbox"


def test_defaults():
    settings = load_settings(
        {"ACTIONS_API_KEYS": "a-perfectly-fine-key-1234", "STIGG_API_KEY": "k"}
    )

    assert settings.stigg_api_url == "https://api.stigg.io/graphql"
    assert settings.stigg_customer_url_template == "https://app.stigg.io/customers/{customerId}"
    assert (
        settings.stigg_subscription_url_template
        == "https://app.stigg.io/subscriptions/{subscriptionId}"
    )
    assert (settings.stigg_timeout_s, settings.stigg_deadline_s) == (10, 25)
    assert settings.idempotency_ttl_s == 24 * 3600
    assert settings.log_retention_days == 90


def test_settings_repr_hides_secrets():
    settings = settings_with()

    assert STIGG_KEY not in repr(settings)
    assert "caller-key" not in repr(settings)
