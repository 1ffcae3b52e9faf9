"""Idempotency records (app/store/idempotency.py)."""

from __future__ import annotations

import json
import threading

import pytest

from app.store import Claimed, InProgress, Mismatch, Replay, fingerprint

BODY = {"salesforceAccountId": "001000000000001AAA", "planId": "plan-pro", "amount": 10}
OTHER_BODY = BODY | {"planId": "plan-basic"}
LOCK_S = 60


class Caller:
    """Claims on behalf of one caller and operation, so tests say only what differs."""

    def __init__(self, store, *, caller_key_id="caller-a", operation="createSubscription"):
        self.idempotency = store.idempotency
        self.caller_key_id = caller_key_id
        self.operation = operation
        self.requests = 0

    def claim(self, key="key-1", body=BODY, **overrides):
        self.requests += 1
        arguments = {
            "caller_key_id": self.caller_key_id,
            "operation": self.operation,
            "key": key,
            "fingerprint": fingerprint(body),
            "request_id": f"request-{self.requests}",
            "lock_s": LOCK_S,
        }
        return self.idempotency.claim(**(arguments | overrides))


@pytest.fixture
def caller(store):
    return Caller(store)


# fingerprint


def test_fingerprint_ignores_key_order_and_whitespace():
    compact = json.loads('{"a":1,"b":{"y":[1,2],"x":"é"}}')
    spaced = json.loads('{ "b": { "x": "é", "y": [1, 2] },\n  "a": 1 }')
    assert fingerprint(compact) == fingerprint(spaced)


def test_fingerprint_treats_integral_floats_as_the_integers_they_equal():
    assert fingerprint({"amount": 10.0}) == fingerprint({"amount": 10})
    assert fingerprint({"amount": 10.5}) != fingerprint({"amount": 10})


def test_fingerprint_tells_different_bodies_apart():
    assert fingerprint(BODY) != fingerprint(OTHER_BODY)
    assert fingerprint({"a": [1, 2]}) != fingerprint({"a": [2, 1]})
    assert fingerprint({"a": True}) != fingerprint({"a": 1})
    assert fingerprint({"a": None}) != fingerprint({})


def test_fingerprint_is_sha256_hex():
    value = fingerprint(BODY)
    assert len(value) == 64
    assert int(value, 16) >= 0


def test_fingerprint_refuses_what_is_not_json():
    with pytest.raises(ValueError):
        fingerprint({"amount": float("nan")})


# claim, complete, replay


def test_the_first_claim_executes(caller):
    claim = caller.claim()
    assert isinstance(claim, Claimed)
    assert claim.resumed is False


def test_the_same_key_and_body_replay_the_stored_answer(store, caller):
    claim = caller.claim()
    answer = {"stiggCustomerId": "001000000000001AAA", "nested": {"list": [1, "é", None]}}
    assert store.idempotency.complete(claim.record_id, status=200, body=answer) is True

    assert caller.claim() == Replay(status=200, body=answer)


def test_a_stored_rejection_replays_too(store, caller):
    claim = caller.claim()
    error = {"code": "STIGG_REJECTED", "retryable": False, "stiggErrorCode": "PlanNotFound"}
    store.idempotency.complete(claim.record_id, status=422, body=error)

    assert caller.claim() == Replay(status=422, body=error)


def test_an_equal_body_written_differently_replays(store, caller):
    claim = caller.claim(body={"a": 1, "b": 2.0})
    store.idempotency.complete(claim.record_id, status=200, body={"ok": True})

    assert caller.claim(body={"b": 2, "a": 1}) == Replay(status=200, body={"ok": True})


def test_the_same_key_with_another_body_is_a_mismatch_once_completed(store, caller):
    claim = caller.claim()
    store.idempotency.complete(claim.record_id, status=200, body={})

    assert caller.claim(body=OTHER_BODY) == Mismatch()


def test_the_same_key_with_another_body_is_a_mismatch_while_running(caller):
    caller.claim()
    assert caller.claim(body=OTHER_BODY) == Mismatch()


def test_the_same_key_while_the_first_request_runs_is_in_progress(caller, clock):
    caller.claim()
    clock.advance(LOCK_S - 1)

    claim = caller.claim()

    assert isinstance(claim, InProgress)
    assert claim.locked_until is not None
    assert claim.locked_until > clock()


# scope


def test_keys_are_scoped_to_the_caller(store, caller):
    caller.claim()
    assert isinstance(Caller(store, caller_key_id="caller-b").claim(), Claimed)


def test_keys_are_scoped_to_the_operation(store, caller):
    caller.claim()
    assert isinstance(Caller(store, operation="createCreditGrant").claim(), Claimed)


def test_other_keys_are_independent(caller):
    caller.claim(key="key-1")
    assert isinstance(caller.claim(key="key-2"), Claimed)


# retryable failures, crashed workers


def test_release_lets_the_next_request_execute(store, caller):
    claim = caller.claim()
    assert store.idempotency.release(claim.record_id) is True

    assert isinstance(caller.claim(), Claimed)


def test_release_does_not_drop_a_completed_answer(store, caller):
    claim = caller.claim()
    store.idempotency.complete(claim.record_id, status=200, body={"ok": True})

    assert store.idempotency.release(claim.record_id) is False
    assert isinstance(caller.claim(), Replay)


def test_a_lapsed_claim_is_taken_over_as_resumed(caller, clock):
    first = caller.claim()
    clock.advance(LOCK_S + 1)  # its worker died without an outcome

    second = caller.claim()

    assert isinstance(second, Claimed)
    assert second.resumed is True
    assert second.record_id != first.record_id
    assert isinstance(caller.claim(), InProgress)  # the new claim holds a fresh lock


def test_a_worker_that_lost_its_claim_cannot_complete_or_release_it(store, caller, clock):
    first = caller.claim()
    clock.advance(LOCK_S + 1)
    second = caller.claim()

    assert store.idempotency.complete(first.record_id, status=200, body={"late": True}) is False
    assert store.idempotency.release(first.record_id) is False

    store.idempotency.complete(second.record_id, status=200, body={"winner": True})
    assert caller.claim() == Replay(status=200, body={"winner": True})


def test_a_lapsed_claim_with_another_body_is_still_a_mismatch(caller, clock):
    caller.claim()
    clock.advance(LOCK_S + 1)
    assert caller.claim(body=OTHER_BODY) == Mismatch()


def test_only_one_of_concurrent_takeovers_wins(caller, clock):
    caller.claim()
    clock.advance(LOCK_S + 1)
    contenders = 8
    barrier = threading.Barrier(contenders)
    claims = []

    def take_over():
        barrier.wait(timeout=30)
        claims.append(caller.claim())

    threads = [threading.Thread(target=take_over) for _ in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    winners = [claim for claim in claims if isinstance(claim, Claimed)]
    assert len(claims) == contenders
    assert len(winners) == 1
    assert winners[0].resumed is True
    assert all(isinstance(claim, InProgress) for claim in claims if claim is not winners[0])


# expiry


def test_an_expired_answer_counts_as_absent(store, caller, clock):
    claim = caller.claim()
    store.idempotency.complete(claim.record_id, status=200, body={}, ttl_s=3600)
    clock.advance(3601)

    again = caller.claim(body=OTHER_BODY)

    assert isinstance(again, Claimed)
    assert again.resumed is False


def test_an_answer_replays_until_it_expires(store, caller, clock):
    claim = caller.claim()
    store.idempotency.complete(claim.record_id, status=200, body={"n": 1}, ttl_s=3600)
    clock.advance(3599)

    assert caller.claim() == Replay(status=200, body={"n": 1})


def test_purge_deletes_expired_answers_and_abandoned_claims_only(store, caller, clock):
    expiring = caller.claim(key="expiring")
    store.idempotency.complete(expiring.record_id, status=200, body={}, ttl_s=60)
    lasting = caller.claim(key="lasting")
    store.idempotency.complete(lasting.record_id, status=200, body={}, ttl_s=3600)
    caller.claim(key="abandoned", ttl_s=60)  # its worker dies; lock 60 s, kept 60 s
    clock.advance(120)
    caller.claim(key="running")

    assert store.idempotency.purge_expired() == 2

    assert isinstance(caller.claim(key="expiring"), Claimed)
    assert isinstance(caller.claim(key="lasting"), Replay)
    assert isinstance(caller.claim(key="abandoned"), Claimed)
    assert isinstance(caller.claim(key="running"), InProgress)


def test_purge_takes_an_explicit_time(store, caller, clock):
    claim = caller.claim()
    store.idempotency.complete(claim.record_id, status=200, body={}, ttl_s=60)

    assert store.idempotency.purge_expired(clock.now) == 0
    assert store.idempotency.purge_expired(clock.now.replace(year=clock.now.year + 1)) == 1
