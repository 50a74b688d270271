"""The soak's Chorus: a real ``run.py serve`` child process that owns the embedded servers.

The child is started with ``REDIS_URL`` and ``DATABASE_URL`` empty on the soak's data dir, so it
holds the embedded Valkey and Postgres (shared with the soak through the servers' holder files)
and keeps them alive itself (``protocols/embedded/watch.py``): a killed one is started again by
``serve``, not by the soak. A SIGKILLed ``serve`` leaves the servers running; the next one
adopts them. Each start gets a fresh port (no waiting for a killed listener's port) and writes
its output to ``serve-N.log`` in the data dir. Readiness is ``GET /readyz`` answering 200.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx
import psutil
import trio

__all__ = ["ServeChild", "postmaster", "valkey_server"]

POLL_S = 0.05


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def valkey_server(data_dir: Path) -> psutil.Process | None:
    """The live valkey-server whose working directory is ``data_dir/valkey``."""
    vdir = str((data_dir / "valkey").resolve())
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] != "valkey-server":
            continue
        try:
            if proc.cwd() == vdir and proc.status() != psutil.STATUS_ZOMBIE:
                return proc
        except psutil.Error:
            continue
    return None


def postmaster(data_dir: Path) -> psutil.Process | None:
    """The live postmaster named in ``data_dir/pg/postmaster.pid``."""
    try:
        pid = int((data_dir / "pg" / "postmaster.pid").read_text().splitlines()[0])
        proc = psutil.Process(pid)
        return proc if proc.status() != psutil.STATUS_ZOMBIE else None
    except (OSError, ValueError, IndexError, psutil.Error):
        return None


class ServeChild:
    """Starts, kills and stops ``run.py serve``; one process at a time."""

    def __init__(self, run_py: Path, data_dir: Path, env: Mapping[str, str]) -> None:
        self.run_py, self.data_dir = run_py, data_dir
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("CHORUS_", "ELEVENLABS_"))
                    and k not in ("REDIS_URL", "DATABASE_URL")}
        self.env.update(env, PYTHONUNBUFFERED="1", CHORUS_DATA_DIR=str(data_dir),
                        CHORUS_HOST="127.0.0.1", REDIS_URL="", DATABASE_URL="")
        self.proc: trio.Process | None = None
        self.base_url = ""
        self.starts = 0

    async def start(self) -> None:
        """Start a new ``serve`` (the previous one must be gone)."""
        port = free_port()
        self.starts += 1
        with open(self.data_dir / f"serve-{self.starts}.log", "ab") as log:  # noqa: ASYNC230
            self.proc = await trio.lowlevel.open_process(
                [sys.executable, str(self.run_py), "serve"],
                cwd=str(self.run_py.parent), env={**self.env, "CHORUS_PORT": str(port)},
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )
        self.base_url = f"http://127.0.0.1:{port}"

    async def ready(self, http: httpx.AsyncClient, timeout_s: float) -> float:
        """Wait for ``/readyz`` 200 from the current process; returns when (``time.monotonic``).
        Raises ``RuntimeError`` if the process exits or ``timeout_s`` passes first."""
        with trio.move_on_after(timeout_s):
            while True:
                if self.proc is None or self.proc.returncode is not None:
                    raise RuntimeError(f"run.py serve exited ({self.exit_note()})")
                try:
                    r = await http.get(f"{self.base_url}/readyz", timeout=2.0)
                    if r.status_code == 200:
                        return time.monotonic()
                except httpx.HTTPError:
                    pass
                await trio.sleep(POLL_S)
        raise RuntimeError(f"run.py serve not ready within {timeout_s:.0f} s ({self.exit_note()})")

    async def kill(self) -> None:
        """SIGKILL the process and reap it."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()

    async def stop(self, grace_s: float) -> int | None:
        """SIGTERM, SIGKILL after ``grace_s``; the exit status (None if never started)."""
        if self.proc is None:
            return None
        with trio.CancelScope(shield=True):
            if self.proc.returncode is None:
                self.proc.send_signal(signal.SIGTERM)
                with trio.move_on_after(grace_s):
                    await self.proc.wait()
                await self.kill()
        return self.proc.returncode

    @property
    def exited(self) -> bool:
        return self.proc is not None and self.proc.returncode is not None

    def exit_note(self) -> str:
        rc = None if self.proc is None else self.proc.returncode
        return f"rc={rc}; see {self.data_dir / f'serve-{self.starts}.log'}"
