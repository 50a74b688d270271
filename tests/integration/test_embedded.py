"""The embedded servers keep data across restarts and survive a SIGKILLed parent's leftovers.

These tests start real processes; the ones that kill processes only signal pids they started
(their own child, and the servers that child started under their own tmp data dir).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import psutil
import pytest

from protocols.embedded.servers import embedded_postgres, embedded_redis, run_psql

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import sys, time
from protocols.embedded.servers import embedded_postgres, embedded_redis
from tests.integration.test_embedded import write_data
data_dir, value, mode = sys.argv[1:4]
with embedded_redis(data_dir) as r, embedded_postgres(data_dir) as p:
    write_data(r, p, value)
    print("READY", r, p, flush=True)
    if mode == "hang":
        time.sleep(600)
"""


def resp(redis_url: str, *args: str) -> bytes:
    """One RESP command over a raw socket (no client library needed in a child process)."""
    port = int(redis_url.rsplit(":", 1)[1])
    payload = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(payload.encode())
        return sock.recv(4096)


def write_data(redis_url: str, pg_url: str, value: str) -> None:
    assert resp(redis_url, "SET", "k", value) == b"+OK\r\n"
    assert resp(redis_url, "WAITAOF", "1", "0", "5000").startswith(b"*2")  # fsynced to the AOF
    run_psql(pg_url, f"CREATE TABLE IF NOT EXISTS t (v text); INSERT INTO t VALUES ('{value}')")


def read_data(redis_url: str, pg_url: str) -> tuple[bytes, list[str]]:
    return resp(redis_url, "GET", "k"), run_psql(pg_url, "SELECT v FROM t").splitlines()


@contextmanager
def both(data_dir: Path) -> Iterator[tuple[str, str]]:
    with ExitStack() as stack:
        redis_url = stack.enter_context(embedded_redis(data_dir))
        pg_url = stack.enter_context(embedded_postgres(data_dir))
        yield redis_url, pg_url


def valkey_proc(data_dir: Path) -> psutil.Process | None:
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] == "valkey-server":
            try:
                if Path(proc.cwd()) == data_dir / "valkey" and proc.status() != "zombie":
                    return proc
            except psutil.Error:
                continue
    return None


def postmaster(data_dir: Path) -> psutil.Process | None:
    try:
        proc = psutil.Process(int((data_dir / "pg" / "postmaster.pid").read_text().split()[0]))
        return proc if proc.name() == "postgres" and proc.status() != "zombie" else None
    except (OSError, ValueError, IndexError, psutil.Error):
        return None


def assert_stopped(data_dir: Path) -> None:
    assert valkey_proc(data_dir) is None
    assert postmaster(data_dir) is None


def start_child(data_dir: Path, value: str, mode: str) -> tuple[subprocess.Popen, str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(data_dir), value, mode],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    line = child.stdout.readline()  # the child prints READY within seconds or dies
    assert line.startswith("READY"), f"child failed: {line!r} (exit {child.poll()})"
    _, redis_url, pg_url = line.split()
    return child, redis_url, pg_url


def kill(proc: psutil.Process | subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    os.kill(proc.pid, sig)


def wait_gone(proc: psutil.Process, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, f"pid {proc.pid} still running"
        time.sleep(0.02)


def test_data_survives_a_clean_restart(tmp_path: Path) -> None:
    started = time.monotonic()
    with both(tmp_path) as (redis_url, pg_url):
        first_start = time.monotonic() - started
        write_data(redis_url, pg_url, "v1")
    assert_stopped(tmp_path)
    started = time.monotonic()
    with both(tmp_path) as (redis_url, pg_url):
        restart = time.monotonic() - started
        assert read_data(redis_url, pg_url) == (b"$2\r\nv1\r\n", ["v1"])
    assert_stopped(tmp_path)
    assert first_start < 10 and restart < 5, (first_start, restart)


def test_a_second_process_shares_the_servers(tmp_path: Path) -> None:
    with both(tmp_path) as (redis_url, pg_url):
        child, child_redis, child_pg = start_child(tmp_path, "shared", "exit")
        assert child.wait(timeout=30) == 0
        assert (child_redis, child_pg) == (redis_url, pg_url)
        # the child left, we still hold the servers: they keep running
        assert read_data(redis_url, pg_url) == (b"$6\r\nshared\r\n", ["shared"])
    assert_stopped(tmp_path)


def test_leftovers_of_a_killed_parent_are_adopted(tmp_path: Path) -> None:
    child, redis_url, pg_url = start_child(tmp_path, "v1", "hang")
    kill(child)
    child.wait(timeout=10)
    valkey, pg = valkey_proc(tmp_path), postmaster(tmp_path)
    assert valkey is not None and pg is not None  # orphans of the killed parent
    with both(tmp_path) as (redis_url2, pg_url2):
        assert (redis_url2, pg_url2) == (redis_url, pg_url)
        assert valkey_proc(tmp_path) == valkey and postmaster(tmp_path) == pg  # reused
        assert read_data(redis_url2, pg_url2) == (b"$2\r\nv1\r\n", ["v1"])
    assert_stopped(tmp_path)  # the dead holder does not keep them alive


def test_killed_servers_and_a_taken_port_do_not_block_start_up(tmp_path: Path) -> None:
    child, redis_url, _ = start_child(tmp_path, "v1", "hang")
    valkey, pg = valkey_proc(tmp_path), postmaster(tmp_path)
    assert valkey is not None and pg is not None
    for proc in (child, valkey, pg):  # everything dies: stale pid files, sockets, a torn AOF
        kill(proc)
    child.wait(timeout=10)
    wait_gone(valkey)
    wait_gone(pg)
    old_port = int(redis_url.rsplit(":", 1)[1])
    with socket.socket() as squatter:  # someone else now holds the persisted port
        squatter.bind(("127.0.0.1", old_port))
        squatter.listen(1)
        with both(tmp_path) as (redis_url2, pg_url2):
            assert redis_url2 != redis_url
            assert read_data(redis_url2, pg_url2) == (b"$2\r\nv1\r\n", ["v1"])
    assert_stopped(tmp_path)


@pytest.mark.slow
def test_a_hung_leftover_valkey_is_replaced(tmp_path: Path) -> None:
    child, redis_url, _ = start_child(tmp_path, "v1", "hang")
    kill(child)
    child.wait(timeout=10)
    hung = valkey_proc(tmp_path)
    assert hung is not None
    kill(hung, signal.SIGSTOP)  # accepts connections, never answers
    try:
        with both(tmp_path) as (redis_url2, pg_url2):
            assert not hung.is_running() or hung.status() == psutil.STATUS_ZOMBIE
            assert read_data(redis_url2, pg_url2) == (b"$2\r\nv1\r\n", ["v1"])
    finally:
        if hung.is_running():
            kill(hung)
    assert_stopped(tmp_path)


def test_a_stale_postmaster_pid_file_is_ignored(tmp_path: Path) -> None:
    with both(tmp_path) as (redis_url, pg_url):
        write_data(redis_url, pg_url, "v1")
    pgdata = tmp_path / "pg"
    # lock files whose pid now belongs to another program (us), as after a host reboot
    lock = f"{os.getpid()}\n{pgdata}\n0\n5432\n{pgdata}\n\n0 0\nready\n"
    (pgdata / "postmaster.pid").write_text(lock)
    (pgdata / ".s.PGSQL.5432.lock").write_text(lock)
    with both(tmp_path) as (redis_url, pg_url):
        assert read_data(redis_url, pg_url)[1] == ["v1"]
    (pgdata / "postmaster.pid").write_text("999999999\n")  # truncated, dead pid
    with both(tmp_path) as (redis_url, pg_url):
        assert read_data(redis_url, pg_url)[1] == ["v1"]
    assert_stopped(tmp_path)


def test_the_last_holder_stops_a_postgres_another_holder_started_again(tmp_path: Path) -> None:
    # `run.py soak`'s case: serve (here: the inner holder) revives a killed postmaster, then
    # leaves; the last holder's own handle is of the dead postmaster, yet the live one must stop
    from protocols.embedded.servers import running_postgres

    with running_postgres(tmp_path) as last:
        with running_postgres(tmp_path) as reviver:
            first = postmaster(tmp_path)
            assert first is not None
            kill(first)
            wait_gone(first)
            assert reviver.revive()
            assert postmaster(tmp_path) not in (None, first)
            assert run_psql(last.url, "SELECT 1") == "1"  # the same URL serves again
    assert postmaster(tmp_path) is None
