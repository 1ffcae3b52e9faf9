"""Bulk at Stigg's limits: N Opportunities sent as batches of 200, against the sandbox with
Stigg's rate limits on, and the service's limiter set to the same limits.

    .venv/bin/python bench/bulk.py [--opportunities 1000] [--window 6]

Each Opportunity is one `createSubscription` item (the customer upsert, then the
subscription: two mutations), as the Salesforce bulk action sends it, so N Opportunities
are ceil(N/200) callouts. Stigg's limits are per window; the window is shrunk (6 s instead
of 60 by default) to keep the run short, with every limit unchanged, so every time here is
a tenth of what it would be against real Stigg.

Reported against the floor the limits set: for each Stigg mutation, its count divided by its
limit per window times the window (the largest of these), and the same per customer. Also:
Stigg 429s received, items failed, duplicate mutations (executed minus expected), callouts.
Targets (issue "Bulk-safe provisioning"): at most 1.10x the floor, 0 failed, 0 duplicates,
ceil(N/200) callouts.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import requests
from run import REPO, RESULTS, Server, start, summarise_profile  # bench/run.py

sys.path.insert(0, str(REPO))
from schemas.salesforce_id import to_18

CALLER_KEY = "bench-bulk-caller-key-0123456789"
SANDBOX_KEY = "sandbox"
BATCH_SIZE = 200
# Stigg's published limits per window (reference §4.5): what the sandbox enforces and the
# service's limiter is configured to.
MUTATIONS_PER_WINDOW = 250
READS_PER_WINDOW = 3000
PER_CUSTOMER_PER_WINDOW = 30
MUTATIONS_PER_OPPORTUNITY = ("provisionCustomer", "provisionSubscriptionV2")
TARGET_RATIO = 1.10
# The longest the bench waits between two looks at a batch (it follows retryAfterSeconds
# below that), so the wall time is known to within about this much.
POLL_FLOOR_S = 0.5


def bulk_at_limits(
    *,
    opportunities: int,
    window_s: float,
    workdir: Path,
    profile_to: Path | None = None,
    service_env: dict | None = None,
) -> dict:
    servers: list[Server] = []
    try:
        sandbox = start(
            "bulk-sandbox",
            [sys.executable, "-m", "sandbox", "--host", "127.0.0.1", "--port", "{port}"],
            env={
                "SANDBOX_API_KEYS": SANDBOX_KEY,
                "SANDBOX_RATE_LIMITS": "on",
                "SANDBOX_RATE_WINDOW_S": str(window_s),
            },
            workdir=workdir,
        )
        servers.append(sandbox)
        service = start(
            "bulk-service",
            [sys.executable, "bench/serve.py", "service", "--bind", "127.0.0.1:{port}"],
            env={
                "STIGG_API_URL": f"{sandbox.base_url}/graphql",
                "STIGG_API_KEY": SANDBOX_KEY,
                "ACTIONS_API_KEYS": CALLER_KEY,
                "DATABASE_URL": f"sqlite:///{workdir}/bulk.db",
                "STIGG_RATE_LIMIT_WINDOW_S": str(window_s),
                "STIGG_RATE_LIMIT_MUTATIONS": str(MUTATIONS_PER_WINDOW),
                "STIGG_RATE_LIMIT_READS": str(READS_PER_WINDOW),
                "STIGG_RATE_LIMIT_PER_CUSTOMER": str(PER_CUSTOMER_PER_WINDOW),
                "LOG_LEVEL": "WARNING",
                **(service_env or {}),
            },
            workdir=workdir,
        )
        servers.append(service)
        recorder = _py_spy(service, profile_to) if profile_to else None
        row = _run(service.base_url, sandbox.base_url, opportunities, window_s)
        if recorder is not None:
            recorder.send_signal(signal.SIGINT)
            recorder.wait(timeout=60)
            row["profile"] = summarise_profile(profile_to)
        return row
    finally:
        for server in reversed(servers):
            server.stop()


def _py_spy(service: Server, out: Path) -> subprocess.Popen:
    """py-spy on every service worker for the whole run (stopped with SIGINT)."""
    py_spy = Path(sys.executable).parent / "py-spy"
    if not py_spy.exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "py-spy"], check=True)
    command = [str(py_spy), "record", "--pid", str(service.process.pid), "--subprocesses"]
    command += ["--format", "raw", "--rate", "200", "--output", str(out), "--nonblocking"]
    if os.environ.get("BENCH_PROFILE_GIL"):
        command.append("--gil")  # only the thread holding the GIL: where the CPU goes
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _run(service_url: str, sandbox_url: str, opportunities: int, window_s: float) -> dict:
    run = secrets.token_hex(2).upper()
    items = [_item(number, run) for number in range(opportunities)]
    batches = [items[at : at + BATCH_SIZE] for at in range(0, len(items), BATCH_SIZE)]
    headers = {"Authorization": f"Bearer {CALLER_KEY}"}
    http = requests.Session()

    began = time.perf_counter()
    batch_ids = []
    for batch in batches:
        answer = http.post(
            f"{service_url}/v1/batches", json={"items": batch}, headers=headers, timeout=60
        )
        answer.raise_for_status()
        batch_ids.append(answer.json()["batchId"])
    # Polled as the Salesforce poller does: each batch when its retryAfterSeconds says (at
    # most every POLL_FLOOR_S here, to see the end to within that).
    polls = 0
    finished: dict[str, dict] = {}
    due = dict.fromkeys(batch_ids, time.perf_counter() + POLL_FLOOR_S)
    while len(finished) < len(batch_ids):
        batch_id = min((b for b in batch_ids if b not in finished), key=due.__getitem__)
        time.sleep(max(0.0, due[batch_id] - time.perf_counter()))
        polls += 1
        document = http.get(
            f"{service_url}/v1/batches/{batch_id}", headers=headers, timeout=30
        ).json()
        if document["status"] == "COMPLETED":
            finished[batch_id] = document
        else:
            wait_s = min(document.get("retryAfterSeconds", 1), POLL_FLOOR_S)
            due[batch_id] = time.perf_counter() + wait_s
    elapsed = time.perf_counter() - began

    stats = requests.get(f"{sandbox_url}/_admin/stats", timeout=10).json()
    executed = stats["executed"]
    item_statuses = Counter(
        item["status"] for document in finished.values() for item in document["items"]
    )
    # Every mutation of an Opportunity happens once, and each has the same limit.
    floor_s = opportunities / MUTATIONS_PER_WINDOW * window_s
    per_customer_floor_s = len(MUTATIONS_PER_OPPORTUNITY) / PER_CUSTOMER_PER_WINDOW * window_s
    duplicates = sum(
        max(0, executed.get(field, 0) - opportunities) for field in MUTATIONS_PER_OPPORTUNITY
    )
    row = {
        "opportunities": opportunities,
        "window_s": window_s,
        "limits": {
            "mutations_per_window": MUTATIONS_PER_WINDOW,
            "reads_per_window": READS_PER_WINDOW,
            "per_customer_per_window": PER_CUSTOMER_PER_WINDOW,
        },
        "seconds": elapsed,
        "floor_s": floor_s,
        "per_customer_floor_s": per_customer_floor_s,
        "ratio_to_floor": elapsed / floor_s,
        "stigg_429s": sum(stats.get("rateLimited", {}).values()),
        "items_failed": item_statuses["FAILED"],
        "items_succeeded": item_statuses["SUCCEEDED"],
        "duplicate_mutations": duplicates,
        "executed": {field: executed.get(field, 0) for field in MUTATIONS_PER_OPPORTUNITY},
        "callouts": len(batch_ids),
        "expected_callouts": math.ceil(opportunities / BATCH_SIZE),
        "polls": polls,
    }
    row["meets_targets"] = (
        row["ratio_to_floor"] <= TARGET_RATIO
        and row["items_failed"] == 0
        and row["duplicate_mutations"] == 0
        and row["callouts"] == row["expected_callouts"]
        and row["items_succeeded"] == opportunities
    )
    print(
        f"  bulk at Stigg's limits: {opportunities} Opportunities in {elapsed:.1f} s "
        f"(floor {floor_s:.1f} s, x{row['ratio_to_floor']:.2f}), 429s {row['stigg_429s']}, "
        f"failed {row['items_failed']}, duplicates {duplicates}, callouts {row['callouts']}",
        flush=True,
    )
    return row


def _item(number: int, run: str) -> dict:
    account = to_18(f"001BK{run}{number:06d}")
    return {
        "operation": "createSubscription",
        "idempotencyKey": f"bench-{run}-{number}:createSubscription",
        "reference": account,
        "body": {
            "salesforceAccountId": account,
            "customerName": f"Bulk {number}",
            "customerEmail": f"billing{number}@bench.example",
            "planId": "plan-pro",
            "billingPeriod": "monthly",
            "paymentCollectionMethod": "INVOICE",
        },
    }


def table(row: dict) -> str:
    mark = "meets" if row["meets_targets"] else "MISSES"
    return "\n".join(
        [
            "| bulk at Stigg's limits | value | target |",
            "|---|---|---|",
            f"| Opportunities (1 createSubscription item each) | {row['opportunities']} | |",
            f"| window (limits unchanged: {MUTATIONS_PER_WINDOW}/mutation, "
            f"{PER_CUSTOMER_PER_WINDOW}/customer) | {row['window_s']:g} s | |",
            f"| wall time | {row['seconds']:.1f} s | |",
            f"| floor set by the limits (per customer: {row['per_customer_floor_s']:.1f} s) "
            f"| {row['floor_s']:.1f} s | |",
            f"| ratio to the floor | {row['ratio_to_floor']:.2f} | <= {TARGET_RATIO} |",
            f"| Stigg 429s received | {row['stigg_429s']} | |",
            f"| items failed | {row['items_failed']} | 0 |",
            f"| duplicate mutations | {row['duplicate_mutations']} | 0 |",
            f"| callouts (POST /v1/batches) | {row['callouts']} | {row['expected_callouts']} |",
            f"| {mark} the targets | | |",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--opportunities", type=int, default=1000)
    parser.add_argument("--window", type=float, default=6.0, help="Stigg's window, shrunk")
    parser.add_argument("--profile", action="store_true", help="py-spy the service workers")
    parser.add_argument(
        "--env", action="append", default=[], help="NAME=VALUE for the service (repeatable)"
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="stigg-bulk-bench-"))
    row = bulk_at_limits(
        opportunities=args.opportunities,
        window_s=args.window,
        workdir=workdir,
        profile_to=workdir / "bulk-profile.txt" if args.profile else None,
        service_env=dict(pair.split("=", 1) for pair in args.env),
    )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"bulk-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.write_text(json.dumps(row, indent=2))
    print()
    print(table(row))
    if "profile" in row:
        print("\npy-spy, service workers, own time (all threads, waiting included):")
        print(*[f"  {share:5.1f}%  {frame}" for frame, share in row["profile"]["own"]], sep="\n")
        print("inclusive:")
        inclusive = row["profile"]["inclusive"]
        print(*[f"  {share:5.1f}%  {frame}" for frame, share in inclusive], sep="\n")
    print(f"\nraw results: {out.relative_to(REPO)}")
    return 0 if row["meets_targets"] else 1


if __name__ == "__main__":
    sys.exit(main())
