"""Real processes on loopback for the integration tests: the sandbox and gunicorn."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
# The key the session's service uses against the sandbox: distinctive, so that the log
# tests can look for it.
STIGG_KEY = "server-integration-stigg-key-77"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_healthy(url: str, process: subprocess.Popen, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited with {process.returncode} before it was healthy")
        try:
            if requests.get(url, timeout=0.5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not become healthy in {timeout_s} s")


def stop(process: subprocess.Popen, *, sig: int = signal.SIGTERM, timeout_s: float = 10) -> None:
    """Send `sig` to the process's group, and SIGKILL when it has not exited in
    `timeout_s`. Nothing when it has exited already (a test may have killed it)."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, sig)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextmanager
def spawned(command: list[str], *, env: dict | None = None, log_path=None, stop_timeout_s=10):
    """`command` from the repository root in a session of its own (stderr appended to
    `log_path`), stopped on exit."""
    log_file = open(log_path, "ab") if log_path else None  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        command,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        start_new_session=True,
        stderr=log_file,
    )
    try:
        yield process
    finally:
        stop(process, timeout_s=stop_timeout_s)
        if log_file:
            log_file.close()


@contextmanager
def running(command: list[str], *, health_url: str, env: dict | None = None, log_path=None):
    with spawned(command, env=env, log_path=log_path) as process:
        wait_until_healthy(health_url, process)
        yield process


class SandboxControl:
    """The sandbox's admin API."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.graphql_url = f"{base_url}/graphql"

    def reset(self) -> None:
        requests.post(f"{self.base_url}/_admin/reset", timeout=5).raise_for_status()

    def inject(self, *rules: dict) -> None:
        requests.post(
            f"{self.base_url}/_admin/faults", json=list(rules), timeout=5
        ).raise_for_status()

    def stats(self) -> dict:
        return requests.get(f"{self.base_url}/_admin/stats", timeout=5).json()

    def state(self) -> dict:
        return requests.get(f"{self.base_url}/_admin/state", timeout=5).json()

    def limits(self) -> dict:
        return requests.get(f"{self.base_url}/_admin/limits", timeout=5).json()

    def workflow_runs(self) -> list[dict]:
        """The triggerWorkflow calls the sandbox ran, oldest first, with their payloads."""
        return requests.get(f"{self.base_url}/_admin/workflow-runs", timeout=5).json()["runs"]

    def set_limits(self, **settings) -> dict:
        """Change Stigg's rate limits (enabled, windowSeconds, perOperation, perEntity);
        reset() restores the start-up ones."""
        response = requests.post(f"{self.base_url}/_admin/limits", json=settings, timeout=5)
        response.raise_for_status()
        return response.json()

    def set_unknown_customer(self, answer: str) -> None:
        """What getCustomerByRefId answers for an unknown ID: "error" or "null"."""
        requests.post(
            f"{self.base_url}/_admin/settings", json={"unknownCustomer": answer}, timeout=5
        ).raise_for_status()


@contextmanager
def sandbox_process():
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "sandbox", "--host", "127.0.0.1", "--port", str(port)]
    # Stigg's rate limits off: the session sends many fast requests for one customer.
    # A test that wants them turns them on with set_limits(); reset() turns them off again.
    env = {"SANDBOX_API_KEYS": f"sandbox,{STIGG_KEY}", "SANDBOX_RATE_LIMITS": "off"}
    with running(command, health_url=f"{base_url}/healthz", env=env):
        yield SandboxControl(base_url)


@contextmanager
def service_process(env: dict, *, workers: int = 2, threads: int = 8, log_path=None):
    """`gunicorn 'app:create_app()'` from the repository root, as an operator runs it: the
    worker class, its settings and the start-up check come from gunicorn.conf.py."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "gunicorn", "app:create_app()", "--bind", f"127.0.0.1:{port}"]
    env = {"WEB_CONCURRENCY": str(workers), "GUNICORN_THREADS": str(threads), **env}
    with running(command, health_url=f"{base_url}/healthz", env=env, log_path=log_path) as process:
        yield base_url, process


@contextmanager
def worker_process(env: dict, *, log_path=None):
    """`stigg-flow-actions worker`: runs batch items, answers no HTTP. Stopped (SIGTERM)
    on exit unless the test killed it first."""
    command = [sys.executable, "-m", "app.cli", "worker"]
    with spawned(command, env=env, log_path=log_path, stop_timeout_s=15) as process:
        time.sleep(0.5)
        if process.poll() is not None:
            raise RuntimeError(f"the worker exited with {process.returncode} at start-up")
        yield process


def gunicorn_workers(master_pid: int) -> list[int]:
    """The worker processes of a gunicorn master (its children)."""
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children")
    return [int(pid) for pid in children.read_text().split()] if children.exists() else []
