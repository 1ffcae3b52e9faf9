"""The hourly retention job of the web processes (app/retention.py)."""

from __future__ import annotations

import logging
import threading

from app import metrics
from app.retention import RetentionJob
from app.store import Store, StoreError
from tests.store.conftest import FakeClock

DAY_S = 24 * 3600


def purged_rows(table: str) -> float:
    value = metrics.get().registry.get_sample_value(
        f"{metrics.PREFIX}_purged_rows_total", {"table": table}
    )
    return value or 0.0


def test_the_job_purges_on_its_schedule_and_counts_what_went(tmp_path):
    clock = FakeClock()
    store = Store.from_url(f"sqlite:///{tmp_path / 'job.db'}", clock=clock)
    for number in range(3):
        entry = store.log.start(
            request_id=f"r-{number}", operation="createCreditGrant", caller_key_id="k"
        )
        store.log.finish(entry, outcome="succeeded", http_status=200, attempts=1, duration_ms=1)
    clock.advance(91 * DAY_S)
    before = purged_rows("provisioning_log")
    ran = threading.Event()
    job = RetentionJob(store, days=90, interval_s=3600, first_run_s=0.01)
    run_once = job.run_once
    job.run_once = lambda: (run_once(), ran.set())

    job.start()
    try:
        assert ran.wait(10)
    finally:
        job.stop()
        job.join()

    assert store.log.list() == []
    assert purged_rows("provisioning_log") - before == 3
    store.close()


def test_a_failing_database_is_logged_and_tried_again_next_time(tmp_path, caplog):
    store = Store.from_url(f"sqlite:///{tmp_path / 'job.db'}")

    def down(**_):
        raise StoreError("database at sqlite:///job.db: disk I/O error")

    store.retention.purge = down
    job = RetentionJob(store, days=90, first_run_s=0)

    with caplog.at_level(logging.WARNING, logger="app.retention"):
        assert job.run_once() is None

    assert [record.getMessage() for record in caplog.records if record.name == "app.retention"] == [
        "retention: purge failed: database at sqlite:///job.db: disk I/O error"
    ]
    store.close()


def test_the_first_run_comes_minutes_after_start_at_a_random_moment(tmp_path):
    store = Store.from_url(f"sqlite:///{tmp_path / 'job.db'}")

    delays = {RetentionJob(store, days=90).first_run_s for _ in range(20)}

    assert all(60 <= delay <= 600 for delay in delays)
    assert len(delays) > 1
    store.close()
