"""Request IDs and claim handles are time-ordered UUIDs (app/ids.py): the log's unique
index takes each new one on its last page instead of a random one."""

from __future__ import annotations

import uuid

import pytest

from app import ids
from app.ids import time_ordered_id
from app.request_context import clear_request_id, new_request_id
from app.store import Store


def test_an_id_is_an_rfc_9562_version_7_uuid_in_hex(monkeypatch):
    monkeypatch.setattr(ids.time, "time_ns", lambda: 1_796_102_690_865_123_456)
    made = time_ordered_id()
    parsed = uuid.UUID(made)
    assert made == parsed.hex and len(made) == 32
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    # The first 48 bits are the Unix time in milliseconds.
    assert int(made[:12], 16) == 1_796_102_690_865


def test_ids_sort_by_the_millisecond_they_were_made_in(monkeypatch):
    now = [1_796_102_690_865_000_000]
    monkeypatch.setattr(ids.time, "time_ns", lambda: now[0])
    made = []
    for _ in range(50):
        made.append(time_ordered_id())
        now[0] += 1_000_000
    assert made == sorted(made)


def test_ids_of_one_millisecond_still_differ(monkeypatch):
    monkeypatch.setattr(ids.time, "time_ns", lambda: 1_796_102_690_865_000_000)
    made = {time_ordered_id() for _ in range(20_000)}
    assert len(made) == 20_000
    assert {value[:12] for value in made} == {"01a230101831"}


def test_the_random_part_is_not_constant(monkeypatch):
    monkeypatch.setattr(ids.time, "time_ns", lambda: 1_796_102_690_865_000_000)
    tails = {time_ordered_id()[13:] for _ in range(100)}
    assert len(tails) == 100


def test_every_request_gets_one():
    try:
        assert uuid.UUID(new_request_id()).version == 7
    finally:
        clear_request_id()


@pytest.fixture
def store(tmp_path):
    opened = Store.from_url(f"sqlite:///{tmp_path / 'ids.db'}")
    yield opened
    opened.close()


def test_a_claim_handle_is_one_too(store):
    claim = store.idempotency.claim(
        caller_key_id="caller",
        operation="createCreditGrant",
        key="opp-1",
        fingerprint="f" * 64,
        request_id=time_ordered_id(),
        lock_s=60,
        ttl_s=3600,
    )
    assert uuid.UUID(claim.record_id).version == 7
