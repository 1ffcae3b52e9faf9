"""`stigg-flow-actions`: serve the service, run the local sandbox, play the demo, print the spec.

`serve` with no Stigg key starts the local Stigg sandbox beside the service, so one command
on a fresh machine shows the whole thing working.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

from app.config import ConfigError, load_serving_settings, port_setting

DEV_CALLER_KEY = "dev-key-local-sandbox-only-0001"
DEFAULT_SANDBOX_PORT = 8090
OUTCOMES = ("in_progress", "succeeded", "rejected", "failed", "replayed")
LOG_COLUMNS = (
    ("id", 6),
    ("created_at", 20),
    ("operation", 26),
    ("outcome", 11),
    ("http_status", 4),
    ("error_code", 22),
    ("salesforce_account_id", 18),
    ("idempotency_key", 30),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stigg-flow-actions", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser(
        "serve", help="run the service (and the sandbox without a Stigg key)"
    )
    serve.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=None, help="default: $PORT, else 8080")
    serve.add_argument(
        "--sandbox-port", type=int, default=None, help="default: $SANDBOX_PORT, else 8090"
    )
    serve.add_argument("--workers", type=int, default=None)
    serve.set_defaults(run=cmd_serve)

    sandbox = commands.add_parser("sandbox", help="run only the local Stigg sandbox")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8090)
    sandbox.set_defaults(run=cmd_sandbox)

    demo = commands.add_parser("demo", help="play the Closed Won path against a running service")
    demo.add_argument("--url", default=os.environ.get("ACTIONS_URL", "http://127.0.0.1:8080"))
    demo.add_argument("--key", default=None, help="caller key (default: first of ACTIONS_API_KEYS)")
    demo.set_defaults(run=cmd_demo)

    openapi = commands.add_parser("openapi", help="print the OpenAPI document")
    openapi.set_defaults(run=cmd_openapi)

    sfdx = commands.add_parser("sfdx", help="write the External Service registration into sfdx/")
    sfdx.add_argument("--check", action="store_true", help="only list stale files (exit 1)")
    sfdx.set_defaults(run=cmd_sfdx)

    worker = commands.add_parser(
        "worker",
        help="run batch items (scale-out: as many as wanted, on machines sharing PostgreSQL)",
    )
    worker.add_argument("--threads", type=int, default=None, help="default BATCH_WORKER_THREADS")
    worker.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve this worker's metrics on this port (default $METRICS_PORT; not served "
        "when PROMETHEUS_MULTIPROC_DIR is set: a service on this machine serves them)",
    )
    worker.set_defaults(run=cmd_worker)

    purge = commands.add_parser(
        "purge",
        help="delete provisioning-log rows and batches finished more than LOG_RETENTION_DAYS "
        "ago (the service does it hourly)",
    )
    purge.add_argument(
        "--dry-run",
        action="store_true",
        help="only show what would go, by operation and outcome; delete nothing",
    )
    purge.set_defaults(run=cmd_purge)

    log = commands.add_parser("log", help="list the provisioning log, or show one entry")
    log.add_argument("entry", nargs="?", help="entry id or request ID to show in full")
    log.add_argument("--status", choices=OUTCOMES, help="only entries with this outcome")
    log.add_argument("--operation", help="only this operationId, e.g. createCreditGrant")
    log.add_argument("--salesforce-id", help="only this Account or Opportunity ID")
    log.add_argument("--limit", type=int, default=50)
    log.set_defaults(run=cmd_log)

    replay = commands.add_parser(
        "replay", help="re-send a failed request with its original body and Idempotency-Key"
    )
    replay.add_argument("entry", help="entry id or request ID")
    replay.add_argument(
        "--force",
        action="store_true",
        help="also re-send an entry that succeeded, was refused or was already replayed "
        "(still safe: its key replays or finds what it created)",
    )
    replay.set_defaults(run=cmd_replay)

    args = parser.parse_args(argv)
    try:
        return args.run(args) or 0
    except ConfigError as exc:
        # One line and exit 2, whichever command read the setting: never a traceback.
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2


def cmd_serve(args) -> int:
    use_sandbox = not os.environ.get("STIGG_API_KEY") and not os.environ.get("STIGG_API_URL")
    sandbox_process = None
    try:
        port = args.port or port_setting(os.environ, "PORT", 8080)
        sandbox_port = args.sandbox_port or port_setting(
            os.environ, "SANDBOX_PORT", DEFAULT_SANDBOX_PORT
        )
        if use_sandbox:
            os.environ["STIGG_API_URL"] = f"http://127.0.0.1:{sandbox_port}/graphql"
            if not os.environ.get("ACTIONS_API_KEYS"):
                os.environ["ACTIONS_API_KEYS"] = DEV_CALLER_KEY
        # Before gunicorn is imported: it parses WEB_CONCURRENCY itself, with a traceback.
        load_serving_settings(os.environ)
        from app.serving import ServiceApplication, check_configuration, gunicorn_options

        # Everything that can refuse start-up, before the sandbox or the banner prints a line.
        check_configuration(os.environ, addresses=[(args.host, port)])
        if use_sandbox:
            sandbox_process = _start_sandbox(sandbox_port)
        base_url = f"http://{args.host}:{port}"
        _print_banner(base_url, use_sandbox)
        ServiceApplication(gunicorn_options(bind=f"{args.host}:{port}", workers=args.workers)).run()
    except KeyboardInterrupt:
        pass
    finally:
        if sandbox_process is not None:
            sandbox_process.terminate()
            sandbox_process.wait(timeout=10)
    return 0


def cmd_sandbox(args) -> int:
    import sandbox

    sandbox.serve(host=args.host, port=args.port)
    return 0


def cmd_openapi(args) -> int:
    from actions import ACTIONS
    from app.openapi import build_spec

    print(json.dumps(build_spec(ACTIONS), indent=2))
    return 0


def cmd_sfdx(args) -> int:
    from app.sfdx_registration import main as registration_main

    return registration_main(["--check"] if args.check else [])


def cmd_demo(args) -> int:
    from app.demo import play

    key = args.key or (os.environ.get("ACTIONS_API_KEYS") or DEV_CALLER_KEY).split(",")[0].strip()
    return play(base_url=args.url.rstrip("/"), caller_key=key)


def cmd_worker(args) -> int:
    """Run batch items until SIGTERM or Ctrl-C; what is in hand finishes first."""
    from app.batch.worker import BatchWorker, wait_until_stopped
    from app.logs import configure_logging
    from app.runtime import Runtime

    configure_logging(os.environ.get("LOG_LEVEL", "INFO"))
    runtime = Runtime.build(_cli_settings())
    endpoint = _worker_metrics(runtime, port=args.metrics_port)
    try:
        wait_until_stopped(BatchWorker(runtime, threads=args.threads))
    finally:
        # The last items' outcomes (app/store/deferred.py).
        runtime.store.close()
        if endpoint is not None:
            endpoint.stop()
    return 0


def _worker_metrics(runtime, *, port: int | None):
    """Where a `worker` process's metrics go: into PROMETHEUS_MULTIPROC_DIR when it is set
    (the service on the same machine serves them with its own), else served on
    `port` / METRICS_PORT, else nowhere. Returns the endpoint it started, if any."""
    from app.metrics import MULTIPROC_ENV, MetricsEndpoint
    from app.runtime import database_url

    directory = os.environ.get(MULTIPROC_ENV, "").strip()
    if directory:
        if not os.path.isdir(directory):
            raise ConfigError(f"{MULTIPROC_ENV} {directory!r} is not a directory")
        return None
    serving = load_serving_settings(os.environ)
    port = port or serving.metrics_port
    if port is None:
        return None
    return MetricsEndpoint.start(
        host=serving.metrics_host,
        port=port,
        database_url=database_url(runtime.settings.database_url),
        multiprocess=False,
    )


def cmd_purge(args) -> int:
    """Apply LOG_RETENTION_DAYS now (or, with --dry-run, show what it would delete)."""
    from app.config import log_retention_days
    from app.retention import describe
    from app.store import StoreError

    days = log_retention_days(os.environ)
    store = _open_store()
    try:
        if args.dry_run:
            report = store.retention.preview(days=days)
        else:
            report = store.retention.purge(days=days)
    except StoreError as exc:
        print(f"purge failed: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print("\n".join(describe(report, days=days)))
    return 0


def cmd_log(args) -> int:
    store = _open_store()
    if args.entry:
        entry = store.log.get(args.entry)
        if entry is None:
            print(f"no provisioning log entry {args.entry!r}", file=sys.stderr)
            return 1
        print(json.dumps(entry, indent=2, default=str))
        return 0
    entries = store.log.list(
        outcome=args.status,
        operation=args.operation,
        salesforce_id=_normalised_salesforce_id(args.salesforce_id),
        limit=args.limit,
    )
    print("  ".join(name.upper()[:width].ljust(width) for name, width in LOG_COLUMNS))
    for entry in entries:
        cells = []
        for name, width in LOG_COLUMNS:
            value = entry.get(name)
            text = value.strftime("%Y-%m-%d %H:%M:%S") if hasattr(value, "strftime") else value
            cells.append(str("" if text is None else text)[:width].ljust(width))
        print("  ".join(cells))
    return 0


def cmd_replay(args) -> int:
    """Re-run a logged request through the same path as the original, as its caller.

    Safe to run twice: the replay carries the original's Idempotency-Key (or, for a request
    sent without one, the key that stands for its request ID), so a second run replays the
    first's answer and a creation the original made is found by its tag, not made again.
    """
    from app.runtime import Runtime

    runtime = Runtime.build(_cli_settings())
    try:
        return _replay(args, runtime)
    finally:
        runtime.store.close()  # commits the replay's outcome (app/store/deferred.py)


def _replay(args, runtime) -> int:
    from actions.once import key_for_request
    from app.request_context import new_request_id

    log = runtime.store.log
    entry = log.get(args.entry)
    if entry is None:
        print(f"no provisioning log entry {args.entry!r}", file=sys.stderr)
        return 1
    refusal = _replay_refusal(entry, log, lock_s=runtime.settings.idempotency_lock_s)
    if refusal and not (args.force and entry["payload"] is not None):
        print(f"entry {entry['id']}: {refusal}", file=sys.stderr)
        return 1
    key = entry["idempotency_key"] or key_for_request(entry["request_id"])
    new_request_id()
    outcome = runtime.executor.run(
        entry["operation"],
        caller_key_id=entry["caller_key_id"],
        payload=entry["payload"],
        idempotency_key=key,
        replay_of=entry["id"],
    )
    replayed = " (the stored answer of an earlier run)" if outcome.replayed else ""
    print(f"replayed entry {entry['id']} ({entry['operation']}) -> HTTP {outcome.status}{replayed}")
    print(json.dumps(outcome.body))
    return 0 if outcome.succeeded else 1


def _replay_refusal(entry: dict, log, *, lock_s: float) -> str | None:
    """Why `entry` must not be replayed (without --force), or None."""
    if entry["payload"] is None:
        return "its body could not be read when it arrived; there is nothing to re-send"
    if entry["outcome"] in ("succeeded", "replayed"):
        return f"it {entry['outcome']}; nothing to replay (--force re-sends it anyway, safely)"
    if entry["outcome"] == "rejected":
        return (
            f"it was refused ({entry['error_code']}); the same body gets the same answer. "
            "Fix the request at its source (--force re-sends it anyway)"
        )
    latest = entry
    while latest["replayed_by"] is not None:
        latest = log.get(latest["replayed_by"])
    if latest is not entry and latest["outcome"] in ("succeeded", "replayed"):
        return f"entry {latest['id']} already replayed it successfully"
    running = [e for e in (entry, latest) if e["outcome"] == "in_progress"]
    for candidate in running:
        lapses = candidate["created_at"] + timedelta(seconds=lock_s)
        if lapses > datetime.now(UTC):
            which = "it is" if candidate is entry else f"its replay, entry {candidate['id']}, is"
            return (
                f"{which} still running, or its worker died less than IDEMPOTENCY_LOCK_S ago; "
                f"try again after {lapses:%Y-%m-%d %H:%M:%S} UTC"
            )
    return None


def _normalised_salesforce_id(value: str | None) -> str | None:
    if not value:
        return value
    from schemas.salesforce_id import InvalidSalesforceId, to_18

    try:
        return to_18(value.strip())
    except InvalidSalesforceId:
        return value.strip()


def _open_store():
    # Only the database is needed to read the log, not the service's other settings.
    from app.runtime import open_store

    return open_store(os.environ.get("DATABASE_URL", "").strip() or None)


def local_sandbox_environment(environ) -> dict[str, str]:
    """What `serve` sets when no Stigg key is configured: the local sandbox's URL. The other
    commands (`replay`, `worker`) apply the same defaults, so they reach the same Stigg as
    the `make run` beside them without any export by hand."""
    if environ.get("STIGG_API_KEY") or environ.get("STIGG_API_URL"):
        return {}
    port = port_setting(environ, "SANDBOX_PORT", DEFAULT_SANDBOX_PORT)
    return {"STIGG_API_URL": f"http://127.0.0.1:{port}/graphql"}


def _cli_settings():
    """Settings for commands that run actions without serving HTTP: no caller keys needed."""
    from app.config import load_settings

    environ = {**os.environ, **local_sandbox_environment(os.environ)}
    return load_settings(environ, serving=False)


def _start_sandbox(port: int) -> subprocess.Popen:
    if _listening(port):
        raise ConfigError(f"SANDBOX_PORT {port} is already in use; set SANDBOX_PORT to a free port")
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--host", "127.0.0.1", "--port", str(port)]
    )
    deadline = time.monotonic() + 15
    while not _listening(port):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise ConfigError(f"the local Stigg sandbox did not start on port {port}")
        time.sleep(0.1)
    return process


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _print_banner(base_url: str, use_sandbox: bool) -> None:
    from actions import ACTIONS

    key = os.environ["ACTIONS_API_KEYS"].split(",")[0].strip()
    stigg_url = os.environ.get("STIGG_API_URL", "https://api.stigg.io/graphql")
    stigg_description = f"local sandbox at {stigg_url}" if use_sandbox else stigg_url
    lines = [
        "",
        f"Stigg Flow Actions on {base_url}",
        f"  Stigg: {stigg_description}",
        f"  OpenAPI: {base_url}/v1/openapi.json",
    ]
    if use_sandbox:
        # The sandbox printed its catalog when it started, just above.
        lines += ["  Development API key: " + key, "", "Try each action:"]
        for action in ACTIONS:
            lines.append(f"  # {action.summary}")
            lines.append(
                "  curl -sS -X POST "
                + shlex.quote(base_url + action.path)
                + f" -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json'"
                + " -d "
                + shlex.quote(json.dumps(action.example))
            )
        batch = {
            "items": [
                {
                    "operation": action.operation_id,
                    "idempotencyKey": f"try-{number}-{action.operation_id}",
                    "body": action.example,
                }
                for number, action in enumerate(ACTIONS[:3], start=1)
            ]
        }
        lines.append("  # Several at once, in one call (the bulk path); answered when done")
        lines.append(
            "  curl -sS -X POST "
            + shlex.quote(base_url + "/v1/batches")
            + f" -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json'"
            + " -H 'Prefer: wait=30' -d "
            + shlex.quote(json.dumps(batch))
        )
        lines += ["", "Or play the whole Closed Won path: .venv/bin/stigg-flow-actions demo", ""]
    lines.append("Ctrl-C stops everything.")
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    sys.exit(main())
