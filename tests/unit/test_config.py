"""Start-up refuses missing or malformed settings with one line naming the setting."""

import pytest

from app import create_app
from app.config import ConfigError, load_settings
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
        ({"STIGG_TIMEOUT_S": "ten"}, "STIGG_TIMEOUT_S"),
        ({"STIGG_TIMEOUT_S": "-1"}, "STIGG_TIMEOUT_S"),
        ({"STIGG_DEADLINE_S": "5", "STIGG_TIMEOUT_S": "10"}, "STIGG_DEADLINE_S"),
        ({"STIGG_DEADLINE_S": "150"}, "STIGG_DEADLINE_S"),
        ({"MAX_BODY_BYTES": "0"}, "MAX_BODY_BYTES"),
    ],
)
def test_bad_settings_stop_start_up_naming_the_setting(changes, named):
    with pytest.raises(ConfigError) as refusal:
        settings_with(**changes)

    message = str(refusal.value)
    assert named in message
    assert "\n" not in message
    assert STIGG_KEY not in message


def test_a_bad_key_is_named_by_position_never_by_value():
    with pytest.raises(ConfigError) as refusal:
        settings_with(ACTIONS_API_KEYS="a-perfectly-fine-key-1234,tiny-secret")

    assert "tiny-secret" not in str(refusal.value)


def test_create_app_refuses_and_logs_one_line(caplog):
    with pytest.raises(ConfigError, match="ACTIONS_API_KEYS"):
        create_app({**BASE_CONFIG, "ACTIONS_API_KEYS": ""})

    assert "configuration error: ACTIONS_API_KEYS" in caplog.text


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
    assert (settings.stigg_timeout_s, settings.stigg_deadline_s) == (10, 25)
    assert settings.idempotency_ttl_s == 24 * 3600


def test_settings_repr_hides_secrets():
    settings = settings_with()

    assert STIGG_KEY not in repr(settings)
    assert "caller-key" not in repr(settings)
