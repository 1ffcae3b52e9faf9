"""Where one credit grant's CPU goes, in one process, without gunicorn or wrk.

    .venv/bin/python bench/parts.py [--requests 2000] [--warmup 200] [--rounds 2]
                                    [--store sqlite|postgres] [--target createCreditGrant]

The service's app and the baseline's are driven in turn by Flask's test client, the
sandbox answering over HTTP from its own process, exactly as `bench/run.py` sends them
(same bodies, same keys, logging at INFO to a file). Each named part is timed with
`time.thread_time` around the function that does it; "whole request" is the test client's
call. Parts nest (the row transaction is inside the ledger's open), so they do not add up.
The numbers are CPU microseconds of this thread per request; what runs in other threads
(the outcome writer, when a request's outcome is not carried by the next one) is reported
separately from the process's CPU. Each timed call adds two clock reads (a few
microseconds) to the service's whole request. Machines here are noisy: compare the service
with the baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

import run as bench_run  # noqa: E402  (bench/run.py: bodies, keys, the sandbox starter)


class Timer:
    """Accumulates thread CPU time per part; re-entrant calls of one part count once."""

    def __init__(self):
        self.totals: dict[str, float] = defaultdict(float)
        self.depth: dict[str, int] = defaultdict(int)

    def wrap(self, owner, attribute: str, part: str) -> None:
        original = getattr(owner, attribute)
        timer = self

        def timed(*args, **kwargs):
            if timer.depth[part]:
                return original(*args, **kwargs)
            timer.depth[part] += 1
            began = time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                timer.totals[part] += time.thread_time() - began
                timer.depth[part] -= 1

        setattr(owner, attribute, timed)

    def reset(self) -> None:
        self.totals.clear()


def parts() -> list[tuple[object, str, str]]:
    """(owner, attribute, label) of the function doing each part, in the order printed;
    a label's dashes say what it is part of."""
    import requests
    import sqlalchemy.engine.base as sqlalchemy_engine
    import sqlalchemy.pool.base as sqlalchemy_pool
    from gql.transport.requests import RequestsHTTPTransport
    from marshmallow import Schema

    from app import execution, ledger, logs, metrics, pipeline
    from app.stigg import client
    from app.store import group_commit, postgres_script, provisioning_log, sqlite_writer

    return [
        (pipeline, "authenticate", "auth"),
        (pipeline, "read_json_object", "body read + JSON parse"),
        (execution.Executor, "load", "validation (schema load)"),
        (execution, "canonical", "fingerprint's canonical form"),
        (ledger.Ledger, "open", "Ledger.open (the row before any work)"),
        (group_commit.GroupCommit, "run", "- group commit (the row's transaction)"),
        (sqlalchemy_engine.Engine, "raw_connection", "- - pool checkout"),
        (sqlite_writer.WriterLockedConnection, "begin_immediate", "- - flock + BEGIN IMMEDIATE"),
        (provisioning_log.ProvisioningLog, "queue_start", "- - the row's INSERT (queued)"),
        (provisioning_log.ProvisioningLog, "send_finish", "- - the carried outcome's UPDATE"),
        (sqlite_writer.WriterLockedConnection, "commit", "- - SQLite COMMIT + unlock"),
        (postgres_script.PostgresScript, "_send", "- - PostgreSQL: messages sent (round trips)"),
        (sqlalchemy_pool._ConnectionFairy, "close", "- - pool checkin"),
        (client.StiggSession, "execute", "Stigg call (policy, metrics, gql, requests)"),
        (client.StiggClient, "attempt", "- one attempt (gql + requests)"),
        (RequestsHTTPTransport, "execute", "- - gql transport's execute"),
        (requests.Session, "request", "- - - requests' Session.request"),
        (metrics, "stigg_call", "- Stigg call metrics"),
        (Schema, "dump", "response dump"),
        (ledger.Entry, "_finish", "Entry._finish (the outcome handed over)"),
        (ledger, "_report", "- outcome log line + metrics"),
        (metrics, "request_finished", "- - request metrics"),
        (logging.Logger, "_log", "a log line (logging's machinery + format + write)"),
        (logs.JsonFormatter, "format", "- JSON formatter"),
        (logging.StreamHandler, "flush", "- the handler's flush"),
        (pipeline, "respond", "response built"),
    ]


def service_app(env: dict):
    os.environ.update(env)
    from app.web import create_app

    app = create_app()
    return app


def drive(client, path: str, body: str, headers: dict, count: int, keyed: bool) -> list[float]:
    """CPU seconds of this thread for each of `count` requests."""
    samples = []
    for number in range(count):
        extra = {"Idempotency-Key": f"parts-{time.time_ns()}-{number}"} if keyed else {}
        account = f"001{number:012d}"
        began = time.thread_time()
        answer = client.post(
            path,
            data=body.replace("@ID@", account),
            headers={"Content-Type": "application/json", **headers, **extra},
        )
        samples.append(time.thread_time() - began)
        if answer.status_code != 200:
            raise SystemExit(f"{path} answered {answer.status_code}: {answer.get_data(True)}")
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--target", default="createCreditGrant")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="stigg-parts-"))
    sandbox = bench_run.start_sandbox(workdir)
    schema = f"parts_{os.getpid()}" if args.store == "postgres" else None
    try:
        return _measure(args, workdir, sandbox, schema)
    finally:
        sandbox.stop()
        if schema is not None:
            bench_run._drop_postgres_schema(schema)


def _measure(args, workdir: Path, sandbox, schema: str | None) -> int:
    upstream = {"STIGG_API_URL": f"{sandbox.base_url}/graphql", "STIGG_API_KEY": "sandbox"}
    database = f"sqlite:///{workdir}/parts.db"
    if schema is not None:
        database = bench_run._postgres_schema_url(schema, create=True)
    app = service_app(
        {
            **upstream,
            "ACTIONS_API_KEYS": bench_run.CALLER_KEY,
            "DATABASE_URL": database,
            "STIGG_RATE_LIMITS_ENABLED": "false",
        }
    )
    # Like the bench's servers: INFO lines written to a file.
    log_file = open(workdir / "service.log", "w")  # noqa: SIM115
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(log_file)
    import baseline

    baseline_app = baseline.create_app()
    bench_run.Sandbox(sandbox).reset()

    targets = {t.name: t for t in bench_run.targets()}
    service_target = targets[args.target]
    baseline_target = targets["baseline"]
    timer = Timer()
    measured = parts()
    for owner, attribute, label in measured:
        timer.wrap(owner, attribute, label)
    service_client, baseline_client = app.test_client(), baseline_app.test_client()

    rows = defaultdict(list)
    try:
        for round_number in range(1, args.rounds + 1):
            for name, client, target in (
                ("baseline", baseline_client, baseline_target),
                ("service", service_client, service_target),
            ):
                drive(client, target.path, target.body, target.headers, args.warmup, target.keyed)
                timer.reset()
                process_began = time.process_time()
                samples = drive(
                    client, target.path, target.body, target.headers, args.requests, target.keyed
                )
                process_cpu = time.process_time() - process_began
                whole = sum(samples)
                rows[f"{name}: whole request (this thread)"].append(whole)
                rows[f"{name}: the process (all threads)"].append(process_cpu)
                if name == "service":
                    for _owner, _attribute, label in measured:
                        rows[label].append(timer.totals.get(label, 0.0))
                else:
                    rows["baseline: requests' Session.request"].append(
                        timer.totals.get("- - - requests' Session.request", 0.0)
                    )
            print(f"round {round_number} of {args.rounds} done", file=sys.stderr, flush=True)
    finally:
        # Before the PostgreSQL schema is dropped: the outcome thread must not commit then.
        app.extensions["store"].close()

    print(
        f"{args.target} on {args.store}, {args.requests} requests x {args.rounds} rounds "
        f"(after {args.warmup} of warm-up); us of CPU per request, each round"
    )
    width = max(len(name) for name in rows)
    for name, totals in rows.items():
        per_request = [total / args.requests * 1e6 for total in totals]
        shown = " / ".join(f"{value:7.1f}" for value in per_request)
        print(f"  {name:<{width}}  {shown}   (median {statistics.median(per_request):.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
