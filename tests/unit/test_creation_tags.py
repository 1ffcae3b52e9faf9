"""The tag that marks what a request created in Stigg identifies that request: caller key,
operation, Idempotency-Key and body. Something found under a reused key is never taken for
another request's creation."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from actions.once import KEY_FIELD, TAG_FIELD, CreationTag
from tests.conftest import PROMOTIONAL_GRANT, ROTATED_CALLER_KEY

PATH = "create-credit-grant"


@pytest.fixture
def key() -> dict:
    # The unit tests share one database: every test its own key.
    return {"Idempotency-Key": f"opp-{uuid.uuid4().hex[:8]}-grant"}


def tag(**changes) -> CreationTag:
    fields = {
        "caller_key_id": "key_a",
        "operation": "createCreditGrant",
        "key": "opp-42-grant",
        "fingerprint": "f" * 64,
        "look_first": True,
    }
    return CreationTag(**{**fields, **changes})


def test_every_part_of_the_request_changes_the_tag():
    base = tag()
    others = [
        tag(caller_key_id="key_b"),
        tag(operation="createSubscription"),
        tag(key="opp-43-grant"),
        tag(fingerprint="e" * 64),
    ]

    assert len({base.digest, *(other.digest for other in others)}) == 5
    assert not any(other.marks(base.metadata) for other in others)
    assert base.marks(base.metadata)
    assert base.metadata == {KEY_FIELD: "opp-42-grant", TAG_FIELD: base.digest}
    assert not base.marks({KEY_FIELD: "opp-42-grant"})  # a bare key is never enough
    assert not base.marks(None)


def test_another_caller_reusing_a_key_gets_its_own_grant(caller, stigg, key):
    first = caller.post(PATH, {**PROMOTIONAL_GRANT, "amount": 500}, headers=key)
    second = caller.post(
        PATH, {**PROMOTIONAL_GRANT, "amount": 999}, headers=key, key=ROTATED_CALLER_KEY
    )

    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json["amount"] == 999
    assert second.json["creditGrantId"] != first.json["creditGrantId"]
    assert [call.input["amount"] for call in stigg.calls_to("GrantCredits")] == [500, 999]


def test_a_key_reused_with_another_body_after_its_ttl_gets_a_new_grant(app, caller, stigg, key):
    first = caller.post(PATH, {**PROMOTIONAL_GRANT, "amount": 100}, headers=key)
    app.extensions["store"].idempotency.purge_expired(datetime.now(UTC) + timedelta(days=2))

    later = caller.post(PATH, {**PROMOTIONAL_GRANT, "amount": 700}, headers=key)

    assert later.status_code == 200
    assert later.json["amount"] == 700
    assert later.json["creditGrantId"] != first.json["creditGrantId"]
    assert len(stigg.calls_to("GrantCredits")) == 2


def test_the_same_request_after_its_ttl_finds_its_grant(app, caller, stigg, key):
    first = caller.post(PATH, PROMOTIONAL_GRANT, headers=key)
    app.extensions["store"].idempotency.purge_expired(datetime.now(UTC) + timedelta(days=2))

    again = caller.post(PATH, PROMOTIONAL_GRANT, headers=key)

    assert again.json["creditGrantId"] == first.json["creditGrantId"]
    assert len(stigg.calls_to("GrantCredits")) == 1


def test_null_and_blank_optionals_are_the_same_request_as_absent_ones(caller, stigg, key):
    first = caller.post(PATH, PROMOTIONAL_GRANT, headers=key)
    again = caller.post(
        PATH,
        {
            **PROMOTIONAL_GRANT,
            "comment": None,
            "resourceId": "  ",
            "displayName": f"  {PROMOTIONAL_GRANT['displayName']} ",
        },
        headers=key,
    )

    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json == first.json
    assert len(stigg.calls_to("GrantCredits")) == 1
