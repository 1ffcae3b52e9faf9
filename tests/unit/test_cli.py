"""The console script's log and replay commands, and openapi."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from app import create_app
from app.cli import _cli_settings, main
from app.store import Store
from app.store.provisioning_log import entries
from tests.conftest import PROMOTIONAL_GRANT, Caller
from tests.fakes import Lost, Reply, data, page

GRANT = PROMOTIONAL_GRANT


@pytest.fixture
def environment(config, tmp_path, monkeypatch):
    config["DATABASE_URL"] = f"sqlite:///{tmp_path / 'cli.db'}"
    for name, value in config.items():
        monkeypatch.setenv(name, value)
    return config


@pytest.fixture
def app(environment):
    return create_app()


@pytest.fixture
def log(app):
    return app.extensions["store"].log


@pytest.fixture
def caller(app):
    return Caller(app.test_client())


def test_log_lists_filters_and_shows_entries(caller, stigg, capsys):
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

    assert main(["log", "req-failed"]) == 0  # a correlation ID finds its entry too
    shown = json.loads(capsys.readouterr().out)
    assert shown["outcome"] == "failed"
    assert shown["http_status"] == 503
    assert shown["payload"] == GRANT

    assert main(["log", "no-such-entry"]) == 1


def test_log_finds_entries_by_a_15_character_salesforce_id(caller, stigg, capsys):
    caller.post(
        "create-customer-without-email",
        {"salesforceAccountId": "001D000000IqhSL", "customerName": "Acme"},
    )
    capsys.readouterr()

    assert main(["log", "--salesforce-id", "001D000000IqhSL"]) == 0

    assert "createCustomerWithoutEmail" in capsys.readouterr().out


def test_replay_resends_a_failed_request_with_its_key(app, caller, log, stigg, capsys):
    stigg.script("GrantCredits", Reply(status=503, raw="down"))
    caller.post(
        "create-credit-grant",
        GRANT,
        headers={"Idempotency-Key": "grant-k2", "X-Request-Id": "req-2"},
    )
    failed_id = log.get("req-2")["id"]

    assert main(["replay", "req-2"]) == 0

    assert "HTTP 200" in capsys.readouterr().out
    replays = [e for e in log.list() if e["replay_of"] == failed_id]
    assert [(e["outcome"], e["idempotency_key"]) for e in replays] == [("succeeded", "grant-k2")]
    assert log.get(failed_id)["replayed_by"] == replays[0]["id"]
    assert replays[0]["stigg_credit_grant_id"] == stigg.grants[0]["grantId"]
    grant_calls = stigg.calls_to("GrantCredits")
    assert len(grant_calls) == 2
    assert grant_calls[1].input == grant_calls[0].input  # same body, same tag


def test_replaying_a_keyless_grant_twice_never_grants_twice(caller, log, stigg, capsys):
    # Stigg granted, the answer was lost and the grant was not listed yet: a 503.
    stigg.script("GrantCredits", Lost(Reply(status=503, raw="down")))
    stigg.script("CreditGrants", data(page([], {})))
    failed = caller.post("create-credit-grant", GRANT)
    assert failed.status_code == 503
    entry_id = log.get(failed.headers["X-Request-Id"])["id"]

    assert main(["replay", str(entry_id)]) == 0  # finds the grant by the original's tag
    assert main(["replay", str(entry_id)]) == 1  # already replayed successfully
    assert "already replayed it" in capsys.readouterr().err
    assert main(["replay", "--force", str(entry_id)]) == 0  # the stored answer, again

    assert len(stigg.calls_to("GrantCredits")) == 1
    assert len(stigg.grants) == 1
    replays = [e for e in log.list() if e["replay_of"] == entry_id]
    assert {e["stigg_credit_grant_id"] for e in replays} == {stigg.grants[0]["grantId"]}
    assert {e["idempotency_key"] for e in replays} == {f"request:{failed.headers['X-Request-Id']}"}


def test_replay_refuses_what_succeeded_or_was_refused_unless_forced(caller, log, stigg, capsys):
    ok = caller.post("create-credit-grant", GRANT)
    bad = caller.post("create-credit-grant", {**GRANT, "amount": -1})

    assert main(["replay", ok.headers["X-Request-Id"]]) == 1
    assert "it succeeded" in capsys.readouterr().err
    assert main(["replay", bad.headers["X-Request-Id"]]) == 1
    assert "refused (VALIDATION_FAILED)" in capsys.readouterr().err
    assert len(stigg.calls_to("GrantCredits")) == 1

    # Forced, the success is found again by its tag, not granted again.
    assert main(["replay", "--force", ok.headers["X-Request-Id"]]) == 0
    assert len(stigg.calls_to("GrantCredits")) == 1


def test_replay_refuses_a_running_entry_until_its_lock_lapses(app, log, stigg, capsys):
    entry_id = log.start(
        request_id="crashed-1",
        operation="createCreditGrant",
        caller_key_id="key_c91ad98942",
        idempotency_key="grant-crashed",
        payload=GRANT,
    )

    assert main(["replay", "crashed-1"]) == 1
    assert "still running" in capsys.readouterr().err
    assert stigg.calls == []

    lock_s = app.extensions["settings"].idempotency_lock_s
    with app.extensions["store"].engine.begin() as connection:
        connection.execute(
            update(entries)
            .where(entries.c.id == entry_id)
            .values(created_at=datetime.now(UTC) - timedelta(seconds=lock_s + 1))
        )
    assert main(["replay", "crashed-1"]) == 0
    assert len(stigg.calls_to("GrantCredits")) == 1


def test_replay_and_log_work_beside_make_run_without_exports(tmp_path, monkeypatch, capsys):
    for name in ("STIGG_API_KEY", "STIGG_API_URL", "ACTIONS_API_KEYS", "SANDBOX_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'beside.db'}")

    assert main(["replay", "4"]) == 1
    assert main(["log"]) == 0
    assert "no provisioning log entry '4'" in capsys.readouterr().err
    # The same Stigg `make run` talks to: the local sandbox on its default port.
    assert _cli_settings().stigg_api_url == "http://127.0.0.1:8090/graphql"
    monkeypatch.setenv("SANDBOX_PORT", "9123")
    assert _cli_settings().stigg_api_url == "http://127.0.0.1:9123/graphql"


def test_openapi_prints_the_document(capsys):
    assert main(["openapi"]) == 0
    assert json.loads(capsys.readouterr().out)["openapi"] == "3.0.3"


def test_purge_dry_run_shows_what_would_go_and_purge_deletes_it(tmp_path, monkeypatch, capsys):
    url = f"sqlite:///{tmp_path / 'retention.db'}"
    hundred_days_ago = datetime.now(UTC) - timedelta(days=100)
    old = Store.from_url(url, clock=lambda: hundred_days_ago)
    for number, (operation, outcome) in enumerate(
        [
            ("createCreditGrant", "succeeded"),
            ("createCreditGrant", "succeeded"),
            ("createCustomerWithEmail", "failed"),
            ("createSubscription", "in_progress"),
        ]
    ):
        entry_id = old.log.start(request_id=f"old-{number}", operation=operation, caller_key_id="k")
        if outcome != "in_progress":
            old.log.finish(entry_id, outcome=outcome, http_status=200, attempts=1, duration_ms=3)
    old.close()
    new = Store.from_url(url)
    new.log.start(request_id="new-1", operation="createCreditGrant", caller_key_id="k")
    new.close()
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.delenv("LOG_RETENTION_DAYS", raising=False)

    assert main(["purge", "--dry-run"]) == 0
    preview = capsys.readouterr().out.splitlines()

    assert preview[0].startswith("LOG_RETENTION_DAYS=90: rows finished before ")
    assert preview[1:] == [
        "provisioning log: would delete 3 rows",
        "  OPERATION                     OUTCOME     ROWS",
        "  createCreditGrant             succeeded   2",
        "  createCustomerWithEmail       failed      1",
        "  kept: 1 older rows still in progress, finished within the period, or pointed to "
        "by an unexpired Idempotency-Key",
        "batches: would delete 0 (0 items)",
    ]
    assert main(["log"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1 + 5  # header + every row

    assert main(["purge"]) == 0
    assert capsys.readouterr().out.splitlines()[1] == "provisioning log: deleted 3 rows"
    assert main(["log"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1 + 2  # the running one, the new one


def test_purge_refuses_a_bad_retention_setting(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'retention.db'}")
    monkeypatch.setenv("LOG_RETENTION_DAYS", "0")

    assert main(["purge", "--dry-run"]) == 2
    assert capsys.readouterr().err == (
        "configuration error: LOG_RETENTION_DAYS must be a whole number from 1 to 36500 (got '0')\n"
    )
