"""The batch items table as a work queue, on SQLite and PostgreSQL: claims in order, one
customer at a time, leases that lapse, delayed retries, and no item claimed twice."""

from __future__ import annotations

import threading
from datetime import timedelta

from app.store.batches import NewItem


def new_items(*entities, refused_at=()) -> list[NewItem]:
    return [
        NewItem(
            index=index,
            operation="createCreditGrant",
            idempotency_key=f"key-{index}",
            reference=f"ref-{index}",
            payload={"amount": index},
            entity_key=entity,
            refused=(400, {"code": "VALIDATION_FAILED"}) if index in refused_at else None,
        )
        for index, entity in enumerate(entities)
    ]


def claim(store, owner="w1", limit=10, lease_s=30):
    return store.batches.claim(owner=owner, limit=limit, lease_s=lease_s)


def finish(store, item, owner="w1", succeeded=True):
    assert store.batches.finish(
        item.id, owner=owner, succeeded=succeeded, http_status=200, body={"ok": item.index}
    )


def test_a_batch_is_stored_with_its_items_in_order(store):
    store.batches.create(batch_id="b1", caller_key_id="k", new_items=new_items("a", "b"))

    batch, rows = store.batches.get("b1")

    assert (batch["caller_key_id"], batch["item_count"]) == ("k", 2)
    assert [(r["item_index"], r["status"], r["reference"]) for r in rows] == [
        (0, "QUEUED", "ref-0"),
        (1, "QUEUED", "ref-1"),
    ]
    assert store.batches.get("missing") is None


def test_items_refused_at_submission_are_stored_finished_and_never_claimed(store):
    store.batches.create(
        batch_id="b1", caller_key_id="k", new_items=new_items("a", "b", refused_at=(0,))
    )

    claimed = claim(store)

    assert [item.index for item in claimed] == [1]
    _, rows = store.batches.get("b1")
    assert rows[0]["status"] == "FAILED" and rows[0]["error"] == {"code": "VALIDATION_FAILED"}


def test_one_customer_runs_one_item_at_a_time_in_submission_order(store):
    store.batches.create(batch_id="b1", caller_key_id="k", new_items=new_items("a", "a", "b"))
    store.batches.create(batch_id="b2", caller_key_id="k", new_items=new_items("a", "c"))

    first = claim(store)
    assert [(i.batch_id, i.index) for i in first] == [("b1", 0), ("b1", 2), ("b2", 1)]
    assert claim(store) == []  # customer a's next item waits for the first

    finish(store, first[0])
    second = claim(store)
    assert [(i.batch_id, i.index) for i in second] == [("b1", 1)]
    finish(store, second[0], succeeded=False)  # a failed item also lets the next one go
    assert [(i.batch_id, i.index) for i in claim(store)] == [("b2", 0)]


def test_items_without_an_entity_are_not_ordered_against_each_other(store):
    store.batches.create(batch_id="b1", caller_key_id="k", new_items=new_items(None, None))

    assert len(claim(store)) == 2


def test_a_lapsed_lease_is_taken_over_and_the_old_owner_cannot_finish(store, clock):
    store.batches.create(batch_id="b1", caller_key_id="k", new_items=new_items("a"))
    [mine] = claim(store, owner="dead", lease_s=5)
    clock.advance(4)
    assert claim(store, owner="w2") == []

    clock.advance(2)
    [taken] = claim(store, owner="w2")

    assert taken.id == mine.id and taken.attempts == 2
    assert not store.batches.finish(mine.id, owner="dead", succeeded=True, http_status=200, body={})
    finish(store, taken, owner="w2")
    assert store.batches.get("b1")[1][0]["status"] == "SUCCEEDED"


def test_renewed_leases_do_not_lapse(store, clock):
    store.batches.create(batch_id="b1", caller_key_id="k", new_items=new_items("a"))
    [item] = claim(store, lease_s=5)
    for _ in range(3):
        clock.advance(4)
        assert store.batches.renew(owner="w1", item_ids=[item.id], lease_s=5) == 1
    assert claim(store, owner="w2") == []


def test_a_requeued_item_waits_for_its_time_and_keeps_its_place(store, clock):
    store.batches.create(batch_id="b1", caller_key_id="k", new_items=new_items("a", "a"))
    [item] = claim(store)
    store.batches.requeue(
        item.id,
        owner="w1",
        not_before=clock.now + timedelta(seconds=10),
        http_status=503,
        body={"code": "STIGG_UNAVAILABLE"},
    )

    assert claim(store) == []  # not due yet, and the customer's next item waits behind it
    assert store.batches.next_due() is not None
    clock.advance(11)
    [again] = claim(store)
    assert (again.id, again.attempts) == (item.id, 2)


def test_the_queue_ahead_counts_unfinished_items_up_to_a_batch(store):
    store.batches.create(batch_id="b1", caller_key_id="k", new_items=new_items("a", "b"))
    store.batches.create(batch_id="b2", caller_key_id="k", new_items=new_items("c"))
    _, rows = store.batches.get("b1")

    assert store.batches.queue_ahead(rows[-1]["id"]) == {"createCreditGrant": 2}
    assert store.batches.oldest_queued_at() is not None


def test_a_batch_counts_its_own_unfinished_items_only(store):
    store.batches.create(
        batch_id="b1", caller_key_id="k", new_items=new_items("a", "b", "c", refused_at=(0,))
    )
    store.batches.create(batch_id="b2", caller_key_id="k", new_items=new_items("d"))
    assert store.batches.unfinished_in("b1") == 2

    [first, second, _] = claim(store)  # b1's two runnable items, then b2's
    assert store.batches.unfinished_in("b1") == 2  # RUNNING is unfinished too
    finish(store, first)
    finish(store, second, succeeded=False)

    assert store.batches.unfinished_in("b1") == 0
    assert store.batches.unfinished_in("b2") == 1
    assert store.batches.unfinished_in("missing") == 0


def test_concurrent_claimers_never_get_the_same_item(store):
    store.batches.create(
        batch_id="b1", caller_key_id="k", new_items=new_items(*[f"c{i}" for i in range(60)])
    )
    got: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(4)

    def claimer(owner: str) -> None:
        barrier.wait()
        while items := store.batches.claim(owner=owner, limit=3, lease_s=30):
            with lock:
                got.extend(item.id for item in items)

    threads = [threading.Thread(target=claimer, args=(f"w{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert len(got) == 60 and len(set(got)) == 60
