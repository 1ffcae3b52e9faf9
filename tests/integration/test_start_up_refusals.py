"""A bad setting stops start-up with one line naming it: `serve` and bare gunicorn alike.

Each case runs the real command (`stigg-flow-actions serve`, as `make run` does, with the
local sandbox; and `python -m gunicorn 'app:create_app()'` from the repository root, which
reads gunicorn.conf.py) and expects: a non-zero exit, exactly one line on stderr, naming
the setting, no traceback, and no banner.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from contextlib import contextmanager

import pytest
import requests

from tests.integration.conftest import CALLER_KEY
from tests.integration.servers import REPO, free_port, stop, wait_until_healthy

pytestmark = pytest.mark.integration

SERVE = [str(REPO / ".venv" / "bin" / "stigg-flow-actions"), "serve"]
BANNER = "Stigg Flow Actions on"
# A refusal takes a second or two; a service that starts instead is killed after this.
RUN_AT_MOST_S = 30
# Settings the test environment must not leak into the commands.
OURS = (
    "STIGG_API_KEY",
    "STIGG_API_URL",
    "ACTIONS_API_KEYS",
    "DATABASE_URL",
    "LOG_LEVEL",
    "PORT",
    "HOST",
    "SANDBOX_PORT",
    "WEB_CONCURRENCY",
    "GUNICORN_THREADS",
    "GUNICORN_CMD_ARGS",
    "REQUEST_READ_TIMEOUT_S",
    "MAX_BODY_BYTES",
    "IDEMPOTENCY_TTL_S",
    "IDEMPOTENCY_LOCK_S",
    "LOG_RETENTION_DAYS",
    "METRICS_PORT",
    "METRICS_HOST",
    "PROMETHEUS_MULTIPROC_DIR",
)

BAD_SETTINGS = [
    ("LOG_LEVEL", "BOGUS"),
    ("DATABASE_URL", "garbage"),
    ("DATABASE_URL", "postgresql://stigg:hunter2@127.0.0.1:9/stigg?prepare_threshold=never"),
    ("MAX_BODY_BYTES", "inf"),
    ("MAX_BODY_BYTES", "0.5"),
    ("IDEMPOTENCY_TTL_S", "inf"),
    ("IDEMPOTENCY_LOCK_S", "inf"),
    ("WEB_CONCURRENCY", "abc"),
    ("GUNICORN_THREADS", "0"),
    ("REQUEST_READ_TIMEOUT_S", "0"),
    ("LOG_RETENTION_DAYS", "0"),
    ("METRICS_PORT", "0"),
    ("METRICS_HOST", "0.0.0.0:9100"),
    ("ACTIONS_API_KEYS", "caller-key-with-an-accent-é-0001"),
    ("ACTIONS_API_KEYS", f"{CALLER_KEY},caller-key-with-a-bell-\a-0002"),
]


def base_environment(tmp_path) -> dict:
    env = {name: value for name, value in os.environ.items() if name not in OURS}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'service.db'}"
    return env


def serve_command(tmp_path, *, port: int | None = None) -> tuple[list[str], dict]:
    """`make run` on a fresh machine: no Stigg key, so the sandbox and a development key."""
    env = base_environment(tmp_path)
    env.update(PORT=str(port or free_port()), SANDBOX_PORT=str(free_port()))
    return SERVE, env


def gunicorn_command(tmp_path, *, port: int | None = None) -> tuple[list[str], dict]:
    env = base_environment(tmp_path)
    env.update(ACTIONS_API_KEYS=CALLER_KEY, STIGG_API_URL="http://127.0.0.1:9/graphql")
    bind = f"127.0.0.1:{port or free_port()}"
    return [sys.executable, "-m", "gunicorn", "app:create_app()", "--bind", bind], env


COMMANDS = {"serve": serve_command, "gunicorn": gunicorn_command}


def run_refused(command: list[str], env: dict) -> subprocess.CompletedProcess:
    process = subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=RUN_AT_MOST_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"started instead of refusing:\n{stdout}\n{stderr}")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def assert_refused_in_one_line(result: subprocess.CompletedProcess, name: str) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr
    assert result.stderr.startswith(f"configuration error: {name}"), result.stderr
    assert BANNER not in result.stdout
    assert result.stdout == ""
    assert result.returncode == 2


def cases():
    for name, value in BAD_SETTINGS:
        for how in sorted(COMMANDS):
            marks = []
            if how == "gunicorn" and name == "WEB_CONCURRENCY":
                marks = pytest.mark.xfail(
                    strict=True,
                    reason="gunicorn parses WEB_CONCURRENCY itself when it is imported (its "
                    "default worker count), with a traceback, before gunicorn.conf.py or any "
                    "of our code runs",
                )
            label = value.encode("ascii", "backslashreplace").decode()
            yield pytest.param(how, name, value, marks=marks, id=f"{how}-{name}={label}")


@pytest.mark.parametrize(("how", "name", "value"), list(cases()))
def test_a_bad_setting_is_refused_in_one_line(tmp_path, how, name, value):
    command, env = COMMANDS[how](tmp_path)
    env[name] = value

    assert_refused_in_one_line(run_refused(command, env), name)


@pytest.mark.parametrize("how", sorted(COMMANDS))
def test_a_busy_port_is_refused_before_the_banner(tmp_path, how):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        command, env = COMMANDS[how](tmp_path, port=taken.getsockname()[1])

        result = run_refused(command, env)

    assert_refused_in_one_line(result, "PORT")
    assert "already in use" in result.stderr


@pytest.mark.parametrize("how", sorted(COMMANDS))
def test_a_busy_metrics_port_is_refused_before_the_banner(tmp_path, how):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        command, env = COMMANDS[how](tmp_path)
        env["METRICS_PORT"] = str(taken.getsockname()[1])

        result = run_refused(command, env)

    assert_refused_in_one_line(result, "METRICS_PORT")
    assert "already in use" in result.stderr


@pytest.mark.parametrize("how", sorted(COMMANDS))
def test_metrics_on_the_service_port_are_refused(tmp_path, how):
    port = free_port()
    command, env = COMMANDS[how](tmp_path, port=port)
    env["METRICS_PORT"] = str(port)

    result = run_refused(command, env)

    assert_refused_in_one_line(result, "METRICS_PORT")
    assert "the service's own port" in result.stderr


def test_a_busy_sandbox_port_is_refused_before_the_banner(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        command, env = serve_command(tmp_path)
        env["SANDBOX_PORT"] = str(taken.getsockname()[1])

        result = run_refused(command, env)

    assert_refused_in_one_line(result, "SANDBOX_PORT")


@contextmanager
def started(command: list[str], env: dict, port: int):
    process = subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}/healthz", process, timeout_s=RUN_AT_MOST_S)
        yield process
    finally:
        stop(process, sig=signal.SIGINT, timeout_s=15)


@pytest.mark.parametrize("how", sorted(COMMANDS))
def test_good_settings_start_and_a_lowercase_log_level_is_accepted(tmp_path, how):
    port = free_port()
    command, env = COMMANDS[how](tmp_path, port=port)
    env["LOG_LEVEL"] = "debug"

    with started(command, env, port) as process:
        assert requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
    if how == "serve":
        # The control for "no banner" above: a good start prints it.
        assert BANNER in process.stdout.read()
