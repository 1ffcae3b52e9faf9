"""The rate-limit settings: Stigg's published defaults, overrides, one-line refusals."""

import pytest

from app.config import ConfigError, RateLimitSettings, load_settings
from tests.conftest import BASE_CONFIG


def settings_with(**changes):
    environ = {**BASE_CONFIG, **changes}
    return load_settings({key: value for key, value in environ.items() if value is not None})


def test_defaults_are_stiggs_published_limits():
    limits = load_settings(
        {key: value for key, value in BASE_CONFIG.items() if "RATE_LIMIT" not in key}
    ).rate_limits

    assert limits.enabled is True
    assert limits.window_s == 60
    assert limits.per_customer == 30
    for mutation in (
        "provisionCustomer",
        "updateOneCustomer",
        "provisionSubscriptionV2",
        "createCreditGrant",
        "someFutureMutation",
    ):
        assert limits.limit_for(mutation, is_mutation=True) == 250
    assert limits.limit_for("getCustomerByRefId", is_mutation=False) == 3000
    assert limits.limit_for("getActiveSubscriptions", is_mutation=False) == 3000
    assert limits.limit_for("creditGrants", is_mutation=False) == 500


def test_every_limit_is_configurable():
    limits = settings_with(
        STIGG_RATE_LIMITS_ENABLED="false",
        STIGG_RATE_LIMIT_WINDOW_S="2.5",
        STIGG_RATE_LIMIT_MUTATIONS="10",
        STIGG_RATE_LIMIT_READS="200",
        STIGG_RATE_LIMIT_PER_CUSTOMER="3",
        STIGG_RATE_LIMITS=" createCreditGrant=4 , creditGrants=900,",
    ).rate_limits

    assert limits == RateLimitSettings(
        enabled=False,
        window_s=2.5,
        mutations=10,
        reads=200,
        per_customer=3,
        overrides={"createCreditGrant": 4, "creditGrants": 900},
    )
    assert limits.limit_for("createCreditGrant", is_mutation=True) == 4
    assert limits.limit_for("provisionCustomer", is_mutation=True) == 10
    # An explicit override wins over the reads' setting; a lower reads' setting caps
    # creditGrants' published 500 when there is no override.
    assert limits.limit_for("creditGrants", is_mutation=False) == 900
    assert RateLimitSettings(reads=200).limit_for("creditGrants", is_mutation=False) == 200


@pytest.mark.parametrize("value", ["true", "TRUE", "1", "yes", "on"])
def test_enabled_spellings(value):
    assert settings_with(STIGG_RATE_LIMITS_ENABLED=value).rate_limits.enabled is True


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"STIGG_RATE_LIMITS_ENABLED": "maybe"}, "STIGG_RATE_LIMITS_ENABLED"),
        ({"STIGG_RATE_LIMIT_WINDOW_S": "abc"}, "STIGG_RATE_LIMIT_WINDOW_S"),
        ({"STIGG_RATE_LIMIT_WINDOW_S": "inf"}, "STIGG_RATE_LIMIT_WINDOW_S"),
        ({"STIGG_RATE_LIMIT_WINDOW_S": "nan"}, "STIGG_RATE_LIMIT_WINDOW_S"),
        ({"STIGG_RATE_LIMIT_WINDOW_S": "0"}, "STIGG_RATE_LIMIT_WINDOW_S"),
        ({"STIGG_RATE_LIMIT_WINDOW_S": "-60"}, "STIGG_RATE_LIMIT_WINDOW_S"),
        ({"STIGG_RATE_LIMIT_MUTATIONS": "abc"}, "STIGG_RATE_LIMIT_MUTATIONS"),
        ({"STIGG_RATE_LIMIT_MUTATIONS": "inf"}, "STIGG_RATE_LIMIT_MUTATIONS"),
        ({"STIGG_RATE_LIMIT_MUTATIONS": "nan"}, "STIGG_RATE_LIMIT_MUTATIONS"),
        ({"STIGG_RATE_LIMIT_MUTATIONS": "0"}, "STIGG_RATE_LIMIT_MUTATIONS"),
        ({"STIGG_RATE_LIMIT_MUTATIONS": "2.5"}, "STIGG_RATE_LIMIT_MUTATIONS"),
        ({"STIGG_RATE_LIMIT_MUTATIONS": "-3"}, "STIGG_RATE_LIMIT_MUTATIONS"),
        ({"STIGG_RATE_LIMIT_READS": "1e3"}, "STIGG_RATE_LIMIT_READS"),
        # Past Python's int() digit limit: refused in one line, not a ValueError traceback.
        ({"STIGG_RATE_LIMIT_READS": "9" * 5000}, "STIGG_RATE_LIMIT_READS"),
        ({"STIGG_RATE_LIMITS": "creditGrants=" + "9" * 5000}, "STIGG_RATE_LIMITS (creditGrants)"),
        ({"STIGG_RATE_LIMIT_PER_CUSTOMER": "inf"}, "STIGG_RATE_LIMIT_PER_CUSTOMER"),
        ({"STIGG_RATE_LIMIT_PER_CUSTOMER": "thirty"}, "STIGG_RATE_LIMIT_PER_CUSTOMER"),
        ({"STIGG_RATE_LIMITS": "createCreditGrant"}, "STIGG_RATE_LIMITS"),
        ({"STIGG_RATE_LIMITS": "=5"}, "STIGG_RATE_LIMITS"),
        ({"STIGG_RATE_LIMITS": "createCreditGrant=inf"}, "STIGG_RATE_LIMITS (createCreditGrant)"),
        ({"STIGG_RATE_LIMITS": "createCreditGrant=nan"}, "STIGG_RATE_LIMITS (createCreditGrant)"),
        ({"STIGG_RATE_LIMITS": "createCreditGrant=0"}, "STIGG_RATE_LIMITS (createCreditGrant)"),
        ({"STIGG_RATE_LIMITS": "createCreditGrant=abc"}, "STIGG_RATE_LIMITS (createCreditGrant)"),
        # A misspelt operation would otherwise silently limit nothing.
        (
            {"STIGG_RATE_LIMITS": "createCreditGrants=100"},
            "STIGG_RATE_LIMITS: 'createCreditGrants'",
        ),
        ({"STIGG_RATE_LIMITS": "GrantCredits=100"}, "STIGG_RATE_LIMITS: 'GrantCredits'"),
        ({"STIGG_RATE_LIMITS": "creditGrants=1,creditGrants=2"}, "STIGG_RATE_LIMITS sets"),
        ({"REDIS_URL": "http://127.0.0.1:6379"}, "REDIS_URL"),
        ({"REDIS_URL": "127.0.0.1:6379"}, "REDIS_URL"),
    ],
)
def test_malformed_rate_limit_settings_refuse_start_up_in_one_line(changes, named):
    with pytest.raises(ConfigError) as refusal:
        settings_with(**changes)

    message = str(refusal.value)
    assert message.startswith(named)
    assert "\n" not in message


def test_a_redis_url_is_kept_but_never_shown():
    settings = settings_with(REDIS_URL="redis://:hunter2-secret@127.0.0.1:6379/3")

    assert settings.redis_url == "redis://:hunter2-secret@127.0.0.1:6379/3"
    assert "hunter2" not in repr(settings)

    with pytest.raises(ConfigError) as refusal:
        settings_with(REDIS_URL="http://:hunter2-secret@127.0.0.1:6379")
    assert "hunter2" not in str(refusal.value)
