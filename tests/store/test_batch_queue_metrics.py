"""The batch queue's gauges (app/metrics.py BatchQueueCollector), read from the database at
scrape time, on SQLite and PostgreSQL."""

from __future__ import annotations

from app.metrics import PREFIX, BatchQueueCollector
from app.store.batches import NewItem


def gauges(collector) -> dict:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in collector.collect()
        for sample in family.samples
    }


def item(index: int, entity: str) -> NewItem:
    return NewItem(index, "createCreditGrant", f"key-{entity}-{index}", None, {"a": 1}, entity)


def test_an_empty_queue(store, database_url, clock):
    assert gauges(BatchQueueCollector(database_url, clock=clock)) == {
        (f"{PREFIX}_batch_items", (("status", "queued"),)): 0,
        (f"{PREFIX}_batch_items", (("status", "running"),)): 0,
        (f"{PREFIX}_batch_oldest_queued_item_age_seconds", ()): 0,
    }


def test_items_queued_and_running_and_the_age_of_the_oldest_queued(store, database_url, clock):
    store.batches.create(
        batch_id="bat_1", caller_key_id="k", new_items=[item(0, "acme"), item(1, "acme")]
    )
    clock.advance(30)
    store.batches.create(batch_id="bat_2", caller_key_id="k", new_items=[item(0, "globex")])
    # acme's first item runs (its second waits behind it), globex's is taken too.
    assert len(store.batches.claim(owner="w", limit=10, lease_s=60)) == 2
    clock.advance(12.5)

    assert gauges(BatchQueueCollector(database_url, clock=clock)) == {
        (f"{PREFIX}_batch_items", (("status", "queued"),)): 1,
        (f"{PREFIX}_batch_items", (("status", "running"),)): 2,
        # acme's second item, stored 42.5 s ago.
        (f"{PREFIX}_batch_oldest_queued_item_age_seconds", ()): 42.5,
    }


def test_an_unreachable_database_leaves_the_gauges_out(tmp_path):
    collector = BatchQueueCollector(f"sqlite:///{tmp_path / 'missing' / 'nothing.db'}")

    assert list(collector.collect()) == []
