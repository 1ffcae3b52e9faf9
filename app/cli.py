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

from app.config import ConfigError, load_serving_settings, port_setting

DEV_CALLER_KEY = "dev-key-local-sandbox-only-0001"
OUTCOMES = ("in_progress", "succeeded", "rejected", "failed", "replayed")
# A crashed request stays in_progress: it may be replayed like a failed one.
REPLAYABLE = ("failed", "in_progress")
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
        "--force", action="store_true", help="also re-send an entry that did not fail"
    )
    replay.set_defaults(run=cmd_replay)

    args = parser.parse_args(argv)
    return args.run(args) or 0


def cmd_serve(args) -> int:
    use_sandbox = not os.environ.get("STIGG_API_KEY") and not os.environ.get("STIGG_API_URL")
    sandbox_process = None
    try:
        port = args.port or port_setting(os.environ, "PORT", 8080)
        sandbox_port = args.sandbox_port or port_setting(os.environ, "SANDBOX_PORT", 8090)
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
        ServiceApplication(
            gunicorn_options(bind=f"{args.host}:{port}", workers=args.workers)
        ).run()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
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
        salesforce_id=args.salesforce_id,
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
    """Re-run a logged request through the whole pipeline, as its original caller."""
    from app import create_app

    app = create_app()
    store = app.extensions["store"]
    entry = store.log.get(args.entry)
    if entry is None:
        print(f"no provisioning log entry {args.entry!r}", file=sys.stderr)
        return 1
    if entry["outcome"] not in REPLAYABLE and not args.force:
        print(
            f"entry {entry['id']} {entry['outcome']}; only failed or crashed requests are "
            "replayed (use --force to re-send anyway)",
            file=sys.stderr,
        )
        return 1
    caller = next(
        (
            key
            for key in app.extensions["settings"].caller_keys
            if key.key_id == entry["caller_key_id"]
        ),
        None,
    )
    if caller is None:
        print(
            f"the caller key {entry['caller_key_id']} is no longer in ACTIONS_API_KEYS; "
            "its idempotency scope cannot be reused",
            file=sys.stderr,
        )
        return 1
    action = next(a for a in _actions() if a.operation_id == entry["operation"])
    headers = {"Authorization": f"Bearer {caller.secret}", "X-Replay-Of": str(entry["id"])}
    if entry["idempotency_key"]:
        headers["Idempotency-Key"] = entry["idempotency_key"]
    response = app.test_client().post(action.path, json=entry["payload"], headers=headers)
    print(f"replayed entry {entry['id']} ({entry['operation']}) -> HTTP {response.status_code}")
    print(response.get_data(as_text=True).strip())
    return 0 if response.status_code == 200 else 1


def _actions():
    from actions import ACTIONS

    return ACTIONS


def _open_store():
    # Only the database is needed to read the log, not the service's other settings.
    from app import default_database_url
    from app.store import Store

    return Store.from_url(os.environ.get("DATABASE_URL") or default_database_url())


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
        lines += ["", "Or play the whole Closed Won path: .venv/bin/stigg-flow-actions demo", ""]
    lines.append("Ctrl-C stops everything.")
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    sys.exit(main())
