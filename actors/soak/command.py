"""``run.py soak``: the chaos soak of issue 13 against a fresh Chorus, as an operator would run it.

A fresh data dir (temporary unless given); the soak's ElevenLabs (``stand_in.py``: 5 % 429 busy,
3 % 500) on 127.0.0.1; a real ``run.py serve`` child (``serve.py``) that starts and keeps alive
the embedded Valkey and Postgres itself. The soak joins the servers as a holder once ``serve``
is up, so it can read the figures after ``serve`` has stopped and the servers stop when it ends.
Then ``drive.py`` submits the jobs while the kills happen, the soak waits for the drain (every
accepted job final) and ``figures.py`` counts. Bounded: ``seconds`` caps the whole run (what is
not final by then is ``stuck``). Loopback only; nothing is sent anywhere else.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import trio

from actors.soak.drive import Load, Recovery, chaos, plan, submit_all
from actors.soak.figures import Figures, collect, dump, render, rows
from actors.soak.serve import ServeChild
from actors.soak.stand_in import NoisyElevenLabs
from protocols.embedded.servers import running_postgres, running_valkey

__all__ = ["SoakOptions", "run_soak", "soak"]

log = logging.getLogger("chorus.soak")

ACCOUNT_KEY = "soak-account-key"  # the stand-in's key; a dummy, nothing leaves 127.0.0.1
TERMINAL = ("succeeded", "failed", "dead", "cancelled")
FIRST_START_S = 120.0  # initdb and migrations on a fresh data dir
STOP_GRACE_S = 40.0  # serve's own shutdown grace (20 s) and more

#: the serve child's settings beyond the defaults: a killed process's provider slots and
#: entries come back after 5 s instead of 30 (the default lease), so six kills fit in minutes
SERVE_ENV = {"CHORUS_CONSUMER": "soak-serve", "CHORUS_LEASE_S": "5",
             "ELEVENLABS_TIMEOUT_S": "20", "CHORUS_LOG_LEVEL": "INFO"}


@dataclass(frozen=True)
class SoakOptions:
    jobs: int = 1000
    kills: int = 6  # SIGKILLs of serve, each followed by a new serve
    valkey_kills: int = 1
    postgres_kills: int = 1
    seconds: float = 600.0  # hard limit for the whole run
    seed: int = 13
    busy: float = 0.05  # share of TTS requests answered 429 system_busy
    broken: float = 0.03  # ... and 500
    latency_s: float = 0.2  # the stand-in's time per TTS request


def kill_order(opts: SoakOptions) -> list[str]:
    """Serve kills spread through the run, the Valkey kill(s) near a third, Postgres two thirds."""
    kinds = ["serve"] * opts.kills
    for _ in range(opts.valkey_kills):
        kinds.insert(len(kinds) // 3, "valkey")
    for _ in range(opts.postgres_kills):
        kinds.insert(2 * len(kinds) // 3, "postgres")
    return kinds


async def soak(opts: SoakOptions, run_py: Path, data_dir: Path) -> Figures:
    """Run the soak in ``data_dir`` (fresh); the figures, also when the run was cut short."""
    started = time.monotonic()
    fig = Figures(jobs=opts.jobs, kills={"serve": opts.kills, "valkey": opts.valkey_kills,
                                         "postgres": opts.postgres_kills})
    load, recoveries = Load(plan(opts.jobs, opts.seed)), list[Recovery]()
    held = contextlib.ExitStack()
    database_url: str | None = None
    with NoisyElevenLabs(api_key=ACCOUNT_KEY, busy=opts.busy, broken=opts.broken,
                         seed=opts.seed, latency_s=opts.latency_s,
                         character_limit=10**9) as fake:
        serve = ServeChild(run_py, data_dir, {**SERVE_ENV, "ELEVENLABS_API_KEY": ACCOUNT_KEY,
                                              "ELEVENLABS_BASE_URL": fake.base_url})
        async with httpx.AsyncClient(
            timeout=10.0, limits=httpx.Limits(max_keepalive_connections=0)
        ) as http:
            try:
                with trio.move_on_after(opts.seconds) as limit:
                    await serve.start()
                    await serve.ready(http, FIRST_START_S)
                    database_url = await trio.to_thread.run_sync(_hold, held, data_dir)
                    key = (data_dir / "local-api-key").read_text().strip()
                    http.headers["Authorization"] = f"Bearer {key}"
                    fig.drained = await _drive(http, serve, load, database_url,
                                               kill_order(opts), started, recoveries)
                if limit.cancelled_caught:
                    fig.notes.append(f"time limit of {opts.seconds:.0f} s reached")
            except RuntimeError as exc:  # serve gone, or not ready again after a kill
                fig.notes.append(str(exc))
            finally:
                if serve.exited:
                    fig.notes.append(f"run.py serve exited by itself ({serve.exit_note()})")
                fig.serve_exit = await serve.stop(STOP_GRACE_S)
        try:
            if database_url is not None:
                with trio.CancelScope(shield=True):
                    await collect(fig, load, database_url, fake.figures(), recoveries)
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(held.close)
    fig.seconds = time.monotonic() - started
    return fig


def _hold(held: contextlib.ExitStack, data_dir: Path) -> str:
    """Join serve's embedded servers as a holder; the database URL."""
    held.enter_context(running_valkey(data_dir))
    return held.enter_context(running_postgres(data_dir)).url


async def _drive(http: httpx.AsyncClient, serve: ServeChild, load: Load, database_url: str,
                 kills: list[str], started: float, recoveries: list[Recovery]) -> bool:
    """Submit while killing, then wait for the drain; whether every accepted job is final."""
    terminal_sql = f"SELECT count(*) FROM jobs WHERE status IN {TERMINAL}"

    async def progress() -> float:
        done = int((await rows(database_url, terminal_sql))[0][0])
        return (load.submitted + done) / (2 * len(load.jobs))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(chaos, http, serve, kills, progress, started, recoveries)
        await submit_all(http, serve, load)
        log.info("soak: %d jobs answered; draining", load.submitted)
    # every kill done; wait for every accepted job to be final
    ids = {job_id for got in load.accepted.values() for job_id in got}
    while True:
        if serve.exited:
            raise RuntimeError(f"run.py serve exited during the drain ({serve.exit_note()})")
        got = await rows(database_url, f"SELECT count(*) FROM jobs WHERE status IN {TERMINAL}")
        if int(got[0][0]) >= len(ids):
            return True
        await trio.sleep(0.5)


def run_soak(args: Any, run_py: Path) -> int:
    """``run.py soak``: print the figures (and write them as JSON); 0 only if the soak passed."""
    opts = SoakOptions(jobs=args.jobs, kills=args.kills, seconds=args.seconds, seed=args.seed)
    print(f"soak: {opts.jobs} jobs, {opts.kills} serve kills, {opts.valkey_kills} Valkey kill,"
          f" {opts.postgres_kills} Postgres kill; at most {opts.seconds:.0f} s", flush=True)
    with tempfile.TemporaryDirectory(prefix="chorus-soak-", ignore_cleanup_errors=True) as tmp:
        fig = trio.run(soak, opts, run_py, Path(tmp))
    print(render(fig), flush=True)
    if args.json:
        Path(args.json).write_text(dump(fig) + "\n")
    return 0 if not fig.failures() else 1
