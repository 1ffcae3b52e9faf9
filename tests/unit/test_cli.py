"""The console script's log and replay commands, and openapi."""

import json

import pytest

from app import create_app
from app.cli import main
from tests.conftest import PROMOTIONAL_GRANT, Caller
from tests.fakes import Reply

GRANT = PROMOTIONAL_GRANT


@pytest.fixture
def environment(config, tmp_path, monkeypatch):
    config["DATABASE_URL"] = f"sqlite:///{tmp_path / 'cli.db'}"
    for name, value in config.items():
        monkeypatch.setenv(name, value)
    return config


def test_log_lists_filters_and_shows_entries(environment, stigg, capsys):
    caller = Caller(create_app().test_client())
    stigg.script("GrantCredits", Reply(status=503, raw="down"))
    caller.post(
        "create-credit-grant",
        GRANT,
        headers={"Idempotency-Key": "grant-k1", "X-Request-Id": "req-failed"},
    )
    caller.post("create-credit-grant", {**GRANT, "amount": 5}, headers={"X-Request-Id": "req-ok"})
    capsys.readouterr()

    assert main(["log", "--status", "failed"]) == 0
    listing = capsys.readouterr().out
    assert (
        "createCreditGrant" in listing and "STIGG_UNAVAILABLE" in listing and "grant-k1" in listing
    )
    assert "succeeded" not in listing

    assert main(["log", "req-failed"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["outcome"] == "failed"
    assert shown["http_status"] == 503
    assert shown["payload"] == GRANT

    assert main(["log", "no-such-entry"]) == 1


def test_replay_resends_a_failed_request_with_its_key(environment, stigg, capsys):
    app = create_app()
    caller = Caller(app.test_client())
    stigg.script("GrantCredits", Reply(status=503, raw="down"))
    caller.post(
        "create-credit-grant",
        GRANT,
        headers={"Idempotency-Key": "grant-k2", "X-Request-Id": "req-2"},
    )
    failed_id = app.extensions["store"].log.get("req-2")["id"]

    assert main(["replay", "req-2"]) == 0

    assert "HTTP 200" in capsys.readouterr().out
    replays = [e for e in app.extensions["store"].log.list() if e["replay_of"] == failed_id]
    assert [(e["outcome"], e["idempotency_key"]) for e in replays] == [("succeeded", "grant-k2")]
    grant_calls = stigg.calls_to("GrantCredits")
    assert len(grant_calls) == 2
    assert grant_calls[1].input == grant_calls[0].input  # same body, same tag


def test_replay_refuses_a_request_that_succeeded(environment, stigg, capsys):
    app = create_app()
    Caller(app.test_client()).post("create-credit-grant", GRANT, headers={"X-Request-Id": "req-3"})

    assert main(["replay", "req-3"]) == 1
    assert "only failed or crashed" in capsys.readouterr().err
    assert len(stigg.calls_to("GrantCredits")) == 1


def test_openapi_prints_the_document(capsys):
    assert main(["openapi"]) == 0
    assert json.loads(capsys.readouterr().out)["openapi"] == "3.0.3"
