"""Retention (app/store/retention.py), on SQLite and PostgreSQL: what goes, what stays."""

from __future__ import annotations

import pytest

from app.store.batches import NewItem
from app.store.retention import Retention

DAY_S = 24 * 3600
RETENTION_DAYS = 90
LONG_TTL_S = 200 * DAY_S


def entry(store, request_id, *, operation="createCustomerWithEmail", outcome="succeeded", **kw):
    """A log row started and (unless in_progress) finished at the clock's time."""
    entry_id = store.log.start(
        request_id=request_id, operation=operation, caller_key_id="caller-a", **kw
    )
    if outcome != "in_progress":
        store.log.finish(entry_id, outcome=outcome, http_status=200, attempts=1, duration_ms=5)
    return entry_id


def keyed(store, request_id, *, operation="createCreditGrant", body=None, ttl_s=LONG_TTL_S):
    """An idempotency record claimed by `request_id`, completed with a TTL of `ttl_s`."""
    claim = store.idempotency.claim(
        caller_key_id="caller-a",
        operation=operation,
        key=f"key-{request_id}",
        fingerprint="f" * 64,
        request_id=request_id,
        lock_s=60,
        ttl_s=ttl_s,
    )
    store.idempotency.complete(claim.record_id, status=200, body=body or {}, ttl_s=ttl_s)


def remaining_request_ids(store) -> set[str]:
    return {row["request_id"] for row in store.log.list(limit=1000)}


@pytest.fixture
def aged(store, clock):
    """Rows made 100 days ago (every case retention must get right), then rows made now."""
    ids = {}
    ids["succeeded"] = entry(store, "old-succeeded")
    ids["failed"] = entry(store, "old-failed", operation="createCreditGrant", outcome="failed")
    ids["rejected"] = entry(store, "old-rejected", outcome="rejected")
    ids["replayed"] = entry(
        store, "old-replayed", operation="createCreditGrant", outcome="replayed"
    )
    ids["crashed"] = entry(store, "old-crashed", outcome="in_progress")
    # Its idempotency record outlives the retention period: the row stays with it.
    ids["pinned"] = entry(store, "old-pinned", operation="createCreditGrant")
    keyed(store, "old-pinned")
    # Its record expired long ago: no reason to keep it.
    ids["unpinned"] = entry(store, "old-unpinned", operation="createCreditGrant")
    keyed(store, "old-unpinned", ttl_s=DAY_S)
    # A crashed request that `replay` re-ran: the re-run stays while the crashed one does.
    ids["crashed-replayed"] = entry(store, "old-crashed-replayed", outcome="in_progress")
    ids["its-replay"] = entry(store, "old-its-replay", replay_of=ids["crashed-replayed"])
    # A failed request replayed by another old one: both go, whichever goes first.
    ids["failed-replayed"] = entry(store, "old-failed-replayed", outcome="failed")
    ids["failed-replay"] = entry(store, "old-failed-replay", replay_of=ids["failed-replayed"])
    # A failed request that is replayed only now (below): it goes, its replay stays.
    ids["replayed-late"] = entry(store, "old-replayed-late", outcome="failed")
    # Started 100 days ago but finished only 10 days ago: not old yet.
    started_long_ago = store.log.start(
        request_id="old-but-slow", operation="createSubscription", caller_key_id="caller-a"
    )

    clock.advance(90 * DAY_S)
    store.log.finish(started_long_ago, outcome="failed", http_status=503, attempts=4, duration_ms=9)
    clock.advance(10 * DAY_S)

    ids["new"] = entry(store, "new-succeeded")
    ids["late-replay"] = entry(store, "new-late-replay", replay_of=ids["replayed-late"])
    return ids


def test_purge_deletes_exactly_the_finished_old_rows_nothing_points_to(store, aged):
    report = store.retention.purge(days=RETENTION_DAYS)

    assert remaining_request_ids(store) == {
        "old-crashed",
        "old-pinned",
        "old-crashed-replayed",
        "old-its-replay",
        "old-but-slow",
        "new-succeeded",
        "new-late-replay",
    }
    assert report.log_rows == {
        ("createCustomerWithEmail", "succeeded"): 2,  # old-succeeded, old-failed-replay
        ("createCustomerWithEmail", "rejected"): 1,
        ("createCustomerWithEmail", "failed"): 2,  # old-failed-replayed, old-replayed-late
        ("createCreditGrant", "failed"): 1,
        ("createCreditGrant", "replayed"): 1,
        ("createCreditGrant", "succeeded"): 1,  # old-unpinned
    }
    assert report.log_total == 8
    # Created before the cut-off and kept: the two crashed ones, the pinned one, the awaited
    # replay, and the one that finished only 10 days ago.
    assert report.kept_log_rows == 5
    # The references to deleted rows are gone with them; the others are untouched.
    late_replay = store.log.get("new-late-replay")
    assert late_replay["replay_of"] is None
    crashed = store.log.get("old-crashed-replayed")
    assert crashed["replayed_by"] == aged["its-replay"]
    assert store.log.get("old-its-replay")["replay_of"] == aged["crashed-replayed"]


def test_a_dry_run_counts_what_a_purge_deletes_and_deletes_nothing(store, aged):
    before = remaining_request_ids(store)

    preview = store.retention.preview(days=RETENTION_DAYS)

    assert remaining_request_ids(store) == before
    assert preview.dry_run
    report = store.retention.purge(days=RETENTION_DAYS)
    assert (preview.log_rows, preview.kept_log_rows) == (report.log_rows, report.kept_log_rows)
    assert store.retention.preview(days=RETENTION_DAYS).log_total == 0


def test_a_second_purge_finds_nothing(store, aged):
    store.retention.purge(days=RETENTION_DAYS)

    assert store.retention.purge(days=RETENTION_DAYS).log_total == 0


def test_nothing_younger_than_the_retention_period_goes(store, aged):
    report = store.retention.purge(days=101)

    assert report.log_total == 0
    assert len(remaining_request_ids(store)) == 15


def test_rows_go_in_chunks_with_a_pause_between_them(store, clock):
    for number in range(7):
        entry(store, f"chunked-{number}")
    clock.advance(91 * DAY_S)
    pauses: list[float] = []
    retention = Retention(store.engine, clock=clock, sleep=pauses.append)

    report = retention.purge(days=RETENTION_DAYS, chunk_rows=3, pause_s=0.25)

    assert report.log_total == 7
    assert pauses == [0.25, 0.25]  # after the two full chunks of 3; the last had 1
    assert remaining_request_ids(store) == set()


def batch(store, batch_id, *, queued=0, refused=0):
    new_items = [
        NewItem(i, "createCreditGrant", f"{batch_id}-{i}", None, {"amount": 1}, batch_id)
        for i in range(queued)
    ] + [
        NewItem(
            queued + i,
            "createCreditGrant",
            f"{batch_id}-r{i}",
            None,
            {},
            None,
            refused=(400, {"code": "VALIDATION_FAILED"}),
        )
        for i in range(refused)
    ]
    store.batches.create(batch_id=batch_id, caller_key_id="caller-a", new_items=new_items)


def finish_all(store, owner="worker-1"):
    while claimed := store.batches.claim(owner=owner, limit=10, lease_s=60):
        for item in claimed:
            store.batches.finish(item.id, owner=owner, succeeded=True, http_status=200, body={})


def test_finished_batches_go_with_their_items_unless_still_needed(store, clock):
    batch(store, "bat_done", queued=2, refused=1)
    finish_all(store)
    batch(store, "bat_waiting", queued=1)
    batch(store, "bat_finishing_late", queued=1)
    batch(store, "bat_replayable", refused=2)
    entry(store, "old-batch-request", operation="createBatch")
    keyed(
        store,
        "old-batch-request",
        operation="createBatch",
        body={"batchId": "bat_replayable"},
    )
    clock.advance(95 * DAY_S)
    # bat_waiting's item is still queued; bat_finishing_late's finishes only now.
    claimed = store.batches.claim(owner="w", limit=10, lease_s=60)
    late = next(item for item in claimed if item.batch_id == "bat_finishing_late")
    store.batches.finish(late.id, owner="w", succeeded=True, http_status=200, body={})
    batch(store, "bat_new", refused=1)

    preview = store.retention.preview(days=RETENTION_DAYS)
    report = store.retention.purge(days=RETENTION_DAYS)

    assert (preview.batches, preview.batch_items) == (1, 3)
    assert (report.batches, report.batch_items) == (1, 3)
    assert store.batches.get("bat_done") is None
    for kept in ("bat_waiting", "bat_finishing_late", "bat_replayable", "bat_new"):
        assert store.batches.get(kept) is not None, kept
    # The row the replayable batch's key points to stays too.
    assert "old-batch-request" in remaining_request_ids(store)
