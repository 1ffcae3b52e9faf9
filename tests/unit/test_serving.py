"""app/serving.py: the read deadline on client sockets, the worker class and its options.

The whole thing under real gunicorn is tests/integration/test_slow_clients.py; here the
parts, on socket pairs. The deadlines are short, but nothing asserts how long anything
took: only which error a read ends with.
"""

from __future__ import annotations

import gc
import os
import socket
import threading
import time
from types import SimpleNamespace

import pytest
from gunicorn.arbiter import Arbiter
from gunicorn.config import Config
from gunicorn.glogging import Logger

from app.config import ConfigError
from app.serving import (
    ReadDeadlineWorker,
    RequestReadTimeout,
    _DeadlineSocket,
    gunicorn_options,
    on_child_exit,
    on_exit,
    on_starting,
)


@pytest.fixture
def pair():
    ours, theirs = socket.socketpair()
    yield _DeadlineSocket(ours), theirs
    ours.close()
    theirs.close()


def trickle(sock: socket.socket, stop: threading.Event, every_s: float = 0.05, limit: int = 200):
    """Send one byte every `every_s` until stopped (at most `limit` bytes)."""
    for _ in range(limit):
        if stop.wait(every_s):
            return
        try:
            sock.send(b"x")
        except OSError:
            return


def test_reads_share_one_deadline_however_often_bytes_arrive(pair):
    sock, client = pair
    stop = threading.Event()
    feeder = threading.Thread(target=trickle, args=(client, stop))
    feeder.start()
    sock.arm(0.3)
    received = b""
    try:
        with pytest.raises(RequestReadTimeout) as refusal:
            while len(received) < 200:
                received += sock.recv(1024)
    finally:
        stop.set()
        feeder.join()

    # Each read got its byte well inside the deadline; all of them together did not.
    assert 0 < len(received) < 200
    assert sock.expired
    error = refusal.value
    assert (error.status, error.code, error.retryable) == (408, "REQUEST_TIMEOUT", True)
    assert error.message == "The request did not arrive within 0.3 s; send it again."


def test_the_deadline_starts_at_the_first_read_after_arming(pair):
    sock, client = pair
    sock.arm(0.2)
    time.sleep(0.3)  # waiting for a thread, or for the first byte, is not reading
    client.send(b"GET")

    assert sock.recv(10) == b"GET"


def test_the_socket_timeout_is_restored_after_each_read(pair):
    sock, client = pair
    sock.arm(5)
    client.send(b"abc")

    assert sock.recv(10) == b"abc"
    assert sock.gettimeout() is None


def test_a_callers_own_shorter_timeout_stays_the_callers(pair):
    sock, _client = pair
    sock.arm(5)
    sock.settimeout(0.1)  # as gunicorn's body drain does

    with pytest.raises(TimeoutError) as timeout:
        sock.recv(10)

    assert not isinstance(timeout.value, RequestReadTimeout)
    assert not sock.expired
    assert sock.gettimeout() == 0.1


def test_a_late_body_makes_gunicorn_close_the_connection(pair):
    sock, _client = pair
    sock.arm(0.1)
    sock.message = SimpleNamespace(must_close=False)  # the request whose headers were read

    with pytest.raises(RequestReadTimeout):
        sock.recv(10)

    assert sock.message.must_close is True


def test_once_expired_and_disarmed_reads_fail_at_once(pair):
    sock, client = pair
    sock.arm(0.1)
    with pytest.raises(RequestReadTimeout):
        sock.recv(10)
    sock.disarm()
    client.send(b"more")  # a client that keeps trickling after it was cut off

    # gunicorn's graceful close drains with recv on its main loop: it must not wait.
    with pytest.raises(ConnectionAbortedError):
        sock.recv(10)


def test_disarmed_reads_are_plain_reads(pair):
    sock, client = pair
    client.send(b"keep-alive")

    assert sock.recv(100) == b"keep-alive"
    assert sock.gettimeout() is None


def test_everything_else_is_the_sockets_own(pair):
    sock, client = pair
    sock.sendall(b"answer")

    assert client.recv(100) == b"answer"
    assert sock.fileno() == sock._sock.fileno()


def test_lingering_sends_fin_and_drains_what_the_client_still_sends(pair):
    sock, client = pair
    client.send(b"late body bytes")

    sock.linger(0.2, 1024)

    assert client.recv(100) == b""  # FIN after the answer


def test_the_options_name_our_worker_and_the_start_up_check(monkeypatch):
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    monkeypatch.setenv("GUNICORN_THREADS", "7")

    options = gunicorn_options()

    assert options["worker_class"] == "app.serving.ReadDeadlineWorker"
    assert (options["workers"], options["threads"]) == (3, 7)
    assert options["on_starting"] is on_starting
    assert (options["on_exit"], options["child_exit"]) == (on_exit, on_child_exit)
    assert "bind" not in options  # bare gunicorn: --bind, or gunicorn's own default
    assert gunicorn_options(bind="127.0.0.1:9", workers=1, threads=2)["bind"] == "127.0.0.1:9"


def test_the_options_refuse_bad_worker_settings(monkeypatch):
    monkeypatch.setenv("GUNICORN_THREADS", "0")

    with pytest.raises(ConfigError, match=r"^GUNICORN_THREADS"):
        gunicorn_options()


def test_the_worker_reads_its_deadline_from_the_environment(monkeypatch):
    monkeypatch.setenv("REQUEST_READ_TIMEOUT_S", "2.5")

    assert worker_with(app=None).request_read_timeout_s == 2.5


def test_a_worker_whose_app_refuses_its_configuration_exits_without_a_traceback():
    class RefusingApp:
        def wsgi(self):
            raise ConfigError("LOG_LEVEL must be one of ...")

    with pytest.raises(SystemExit) as exit_:
        worker_with(app=RefusingApp()).load_wsgi()

    # gunicorn's master stops ("App failed to load.") instead of retrying the worker.
    assert exit_.value.code == Arbiter.APP_LOAD_ERROR


def worker_with(*, app) -> ReadDeadlineWorker:
    cfg = Config()
    return ReadDeadlineWorker(1, os.getpid(), [], app, 30, cfg, Logger(cfg))


def test_a_worker_accepts_only_while_a_thread_is_free_for_the_connection():
    cfg = Config()
    cfg.set("threads", 2)
    worker = ReadDeadlineWorker(1, os.getpid(), [], None, 30, cfg, Logger(cfg))

    def accepts(*, connections: int, kept_alive: int = 0, waiting_for_data: int = 0) -> bool:
        # gunicorn's accept loop: `can_accept = self.nr_conns < self.worker_connections`
        worker.nr_conns = connections
        worker.keepalived_conns = [object()] * kept_alive
        worker.pending_conns = [object()] * waiting_for_data
        return worker.nr_conns < worker.worker_connections

    assert accepts(connections=1)
    assert not accepts(connections=2)  # both threads serve a connection
    assert accepts(connections=2, kept_alive=1)  # an idle kept-alive one holds no thread
    assert accepts(connections=2, waiting_for_data=1)  # nor one still silent
    assert not accepts(connections=3, kept_alive=1)
    # gunicorn's own limit on connections still holds.
    worker.worker_connections = 10
    assert not accepts(connections=10, kept_alive=10)
    assert accepts(connections=9, kept_alive=9)


def test_the_master_freezes_what_it_loaded_before_each_fork():
    """A worker's collections then never walk (and write to) the objects it shares with
    the master: 47 -> 29 MiB of private memory per worker (bench/README.md)."""
    pre_fork = gunicorn_options()["pre_fork"]
    gc.unfreeze()
    try:
        loaded = [[] for _ in range(1000)]  # objects the GC tracks
        pre_fork(SimpleNamespace(), SimpleNamespace())
        assert gc.get_freeze_count() >= len(loaded)
    finally:
        gc.unfreeze()
