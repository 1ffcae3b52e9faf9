"""The provisioning log's CPU under many threads of one process, without HTTP.

    .venv/bin/python bench/ledger_threads.py [--threads 2,8,32] [--seconds 6] [--rounds 2]
                                             [--store sqlite|postgres] [--tree DIR]

Each thread does what a worker thread does for a keyless credit grant, less everything
that is not the log: `Ledger.open` (the row before any work, through the group commit),
a 4 ms sleep where Stigg would answer, the outcome (`Entry.succeeded`, deferred to the
next transaction or the background thread), a 0.5 ms pause. It prints the process's CPU
(all threads, `time.process_time`) per request, the requests done and the transactions
committed. What it isolates is how the threads hand the store to one another: the group
commit's wake-ups and the background thread's, which `bench/parts.py` (one thread) cannot
see and wrk's runs drown in the noise of a shared machine.

`--tree DIR` measures another checkout's `app` (a worktree of an earlier commit, say) with
this script; run both in turn, several rounds, and compare.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent

PAYLOAD = {"stiggCustomerId": "bench-customer", "currencyId": "credits", "amount": 100}
BODY = {"creditGrantId": "grant-1", "stiggCustomerId": "bench-customer"}
STIGG_S = 0.004
BETWEEN_REQUESTS_S = 0.0005


def measure(threads: int, seconds: float, database_url: str) -> dict:
    from app.ledger import Ledger
    from app.request_context import new_request_id
    from app.store import Store

    store = Store.from_url(database_url, outcome_delay_s=0.01)
    ledger = Ledger(store, ttl_s=3600, lock_s=60)
    done: list[int] = []
    stop_at = time.monotonic() + seconds

    def worker() -> None:
        requests = 0
        while time.monotonic() < stop_at:
            new_request_id()
            entry, _replay = ledger.open(
                operation="createCreditGrant", caller_key_id="bench", payload=PAYLOAD
            )
            time.sleep(STIGG_S)
            entry.succeeded(BODY)
            time.sleep(BETWEEN_REQUESTS_S)
            requests += 1
        done.append(requests)

    commits_before = store.group_commit.commits
    cpu_before = time.process_time()
    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    cpu_s = time.process_time() - cpu_before
    commits = store.group_commit.commits - commits_before
    store.close()
    requests = sum(done)
    return {
        "threads": threads,
        "requests": requests,
        "cpu_us_per_request": 1e6 * cpu_s / max(requests, 1),
        "commits": commits,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", default="2,8,32")
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--tree", type=Path, default=BENCH.parent, help="whose app to measure")
    args = parser.parse_args()
    sys.path.insert(0, str(args.tree.resolve()))
    import app.ledger  # first: bench/run.py would import this tree's `app`

    sys.path.insert(0, str(BENCH))
    import run as bench_run  # bench/run.py: the PostgreSQL schema helpers

    logging.disable(logging.CRITICAL)  # the outcome's log line is bench/parts.py's business
    scratch = Path(tempfile.mkdtemp(prefix="ledger-threads-"))
    print(f"app from {Path(app.ledger.__file__).parent.parent}, {args.store}", flush=True)
    for round_number in range(1, args.rounds + 1):
        for threads in (int(n) for n in args.threads.split(",")):
            schema = f"ledger_threads_{os.getpid()}_{round_number}_{threads}"
            if args.store == "postgres":
                url = bench_run._postgres_schema_url(schema, create=True)
            else:
                url = f"sqlite:///{scratch}/{round_number}-{threads}.db"
            try:
                row = measure(threads, args.seconds, url)
            finally:
                if args.store == "postgres":
                    bench_run._drop_postgres_schema(schema)
            print(
                f"round {round_number}  threads {row['threads']:>3}  "
                f"requests {row['requests']:>6}  "
                f"CPU {row['cpu_us_per_request']:6.0f} us/request  "
                f"commits {row['commits']:>6} ({row['commits'] / max(row['requests'], 1):.2f}"
                " per request)",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
