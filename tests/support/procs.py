"""Real ``run.py`` processes for process-fault tests (SIGKILL, SIGTERM, crash loops).

``chorus_process(...)`` starts ``run.py serve`` (or another role) against the session's Valkey and
a test's Postgres database, with the fake provider and short timings, waits for its "listening
on" line and always kills it on the way out. Output (stdout and stderr, merged) is collected
line by line, so tests can wait for a log line and show the output when they fail.

``client(...)`` opens an HTTP client *without keep-alive*: an idle keep-alive connection holds up
hypercorn's graceful stop for its whole ``graceful_timeout`` (see the report in
``tests/faults/test_process_faults.py``), and the tests here time shutdowns.
"""

from __future__ import annotations

import inspect
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import trio

from protocols.embedded.servers import run_psql

ROOT = Path(__file__).resolve().parents[2]
TERMINAL = ("succeeded", "failed", "dead")

#: short timings for real processes (strings: they go into the environment)
PROCESS_ENV = {
    "CHORUS_PROVIDER": "fake",
    "CHORUS_FAKE_LATENCY_S": "0.15",
    "CHORUS_LEASE_S": "3",
    "CHORUS_RECLAIM_INTERVAL_S": "0.5",
    "CHORUS_READ_BLOCK_MS": "200",
    "CHORUS_SHUTDOWN_GRACE_S": "5",
    "CHORUS_SUBMIT_TIMEOUT_S": "2",
    "CHORUS_RESTART_INTENSITY": "20",
    "CHORUS_RESTART_PERIOD_S": "10",
    "CHORUS_LOG_LEVEL": "INFO",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unique_prefix() -> str:
    return f"p{uuid.uuid4().hex[:10]}"


class ChorusProcess:
    """One running ``run.py``; see :func:`chorus_process`."""

    def __init__(self, proc: trio.Process, port: int, name: str) -> None:
        self.proc = proc
        self.port = port
        self.name = name
        self.base_url = f"http://127.0.0.1:{port}"
        self.lines: list[str] = []
        self.eof = False
        self._partial = b""
        self._changed = trio.Event()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    async def pump(self) -> None:
        assert self.proc.stdout is not None
        try:
            async for chunk in self.proc.stdout:
                *done, self._partial = (self._partial + chunk).split(b"\n")
                self.lines.extend(line.decode(errors="replace") for line in done)
                self._notify()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            if self._partial:
                self.lines.append(self._partial.decode(errors="replace"))
            self.eof = True
            self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def find(self, text: str) -> str | None:
        return next((line for line in self.lines if text in line), None)

    async def wait_for_line(self, text: str, timeout: float) -> str:  # noqa: ASYNC109
        """The first output line containing ``text``; fails if the process ends first."""
        with trio.fail_after(timeout):
            while (line := self.find(text)) is None:
                if self.eof:
                    raise AssertionError(
                        f"{self.name} ended (rc={self.proc.returncode}) before printing "
                        f"{text!r}:\n{self.output}"
                    )
                await self._changed.wait()
        return line

    async def wait_exit(self, timeout: float) -> int:  # noqa: ASYNC109
        with trio.fail_after(timeout):
            return await self.proc.wait()

    def send_signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)


def process_env(
    *,
    data_dir: Path,
    port: int,
    redis_url: str,
    database_url: str,
    consumer: str,
    prefix: str,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith("CHORUS_") and k not in ("REDIS_URL", "DATABASE_URL")
    }
    env.update(PROCESS_ENV)
    env.update(
        PYTHONUNBUFFERED="1",
        CHORUS_DATA_DIR=str(data_dir),
        CHORUS_HOST="127.0.0.1",
        CHORUS_PORT=str(port),
        REDIS_URL=redis_url,
        DATABASE_URL=database_url,
        CHORUS_CONSUMER=consumer,
        CHORUS_REDIS_PREFIX=prefix,
    )
    env.update(extra or {})
    return env


@asynccontextmanager
async def chorus_process(
    *,
    data_dir: Path,
    redis_url: str,
    database_url: str,
    consumer: str,
    prefix: str,
    env: Mapping[str, str] | None = None,
    role: str = "serve",
    ready: str | None = "listening on",
    ready_timeout: float = 30.0,
) -> AsyncIterator[ChorusProcess]:
    """Start ``run.py ROLE``; wait for a line containing ``ready`` (None: don't wait).
    The process is SIGKILLed (if still running) and reaped when the block ends."""
    port = free_port()
    name = f"run.py {role} ({consumer})"
    proc = await trio.lowlevel.open_process(
        [sys.executable, str(ROOT / "run.py"), role],
        cwd=str(ROOT),
        env=process_env(
            data_dir=data_dir, port=port, redis_url=redis_url, database_url=database_url,
            consumer=consumer, prefix=prefix, extra=env,
        ),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    chorus = ChorusProcess(proc, port, name)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(chorus.pump)
            try:
                if ready is not None:
                    await chorus.wait_for_line(ready, ready_timeout)
                yield chorus
            finally:
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            if proc.returncode is None:
                proc.kill()
            with trio.move_on_after(10):
                await proc.wait()
            # shown by pytest only when the test fails
            print(f"--- {name}: rc={proc.returncode}, last output lines ---")
            print("\n".join(chorus.lines[-60:]))


def client(base_url: str, api_key: str, timeout: float = 10.0) -> httpx.AsyncClient:
    """An HTTP client without keep-alive (each request on its own connection)."""
    return httpx.AsyncClient(
        base_url=base_url,
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=timeout,
        limits=httpx.Limits(max_keepalive_connections=0),
    )


async def submit_all(http: httpx.AsyncClient, texts: Iterable[str]) -> list[str]:
    """Submit every text concurrently; each must be accepted (202). Returns the job ids."""
    ids: dict[int, str] = {}

    async def one(i: int, text: str) -> None:
        r = await http.post("/v1/jobs", json={"text": text})
        assert r.status_code == 202, r.text
        ids[i] = r.json()["id"]

    async with trio.open_nursery() as nursery:
        for i, text in enumerate(texts):
            nursery.start_soon(one, i, text)
    return [ids[i] for i in sorted(ids)]


async def eventually(
    predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.02  # noqa: ASYNC109
) -> object:
    """Poll ``predicate`` (sync or async) until it returns something truthy; return that.
    Fails with ``what`` after ``timeout`` seconds (real clock)."""
    last: object = None
    with trio.move_on_after(timeout):
        while True:
            last = predicate()
            if inspect.isawaitable(last):
                last = await last
            if last:
                return last
            await trio.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


# -- looking at the database directly (psql: one query, no second asyncpg loop) ------------------


async def sql(database_url: str, statement: str) -> list[list[str]]:
    out = await trio.to_thread.run_sync(lambda: run_psql(database_url, statement, timeout=10))
    return [line.split("|") for line in out.splitlines() if line]


async def job_rows(database_url: str) -> dict[str, tuple[str, int]]:
    """job id -> (status, attempts), for every job in the database."""
    rows = await sql(database_url, "SELECT id, status, attempts FROM jobs")
    return {r[0]: (r[1], int(r[2])) for r in rows}


async def status_counts(database_url: str) -> dict[str, int]:
    rows = await sql(database_url, "SELECT status, count(*) FROM jobs GROUP BY status")
    return {r[0]: int(r[1]) for r in rows}


async def audio_rows(database_url: str) -> int:
    return int((await sql(database_url, "SELECT count(*) FROM audio"))[0][0])


async def wait_for_counts(
    database_url: str,
    predicate: Callable[[dict[str, int]], bool],
    timeout: float,  # noqa: ASYNC109
    what: str,
) -> dict[str, int]:
    """Poll the job status counts until ``predicate(counts)``; fail after ``timeout``."""

    async def check() -> dict[str, int] | None:
        counts = await status_counts(database_url)
        return counts if predicate(counts) else None

    return await eventually(check, timeout, what, interval=0.05)  # type: ignore[return-value]


async def wait_all_terminal(
    database_url: str, total: int, timeout: float  # noqa: ASYNC109
) -> dict[str, int]:
    return await wait_for_counts(
        database_url, lambda c: sum(c.get(s, 0) for s in TERMINAL) >= total, timeout,
        f"{total} terminal jobs",
    )
