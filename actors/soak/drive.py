"""The soak's load and its chaos, over loopback HTTP against the ``ServeChild``.

``submit_all``: every job is a text (half of them repeat another job's text) and its own
idempotency key; a submit that gets no answer (the process was killed), a 429, 503 or other 5xx
is sent again with the same key until accepted (200 or 202) or the run's deadline; a 4xx other
than 429 is recorded as refused. ``chaos``: the kills, in order, each once the run's progress
(jobs submitted plus jobs finished, over twice the jobs) reaches its share; after each, the time
until ``/readyz`` answers 200 again (a new ``serve`` for a serve kill; the same ``serve`` with the
server started again by itself for a Valkey or Postgres kill).
"""

from __future__ import annotations

import random
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import trio

from actors.soak.serve import ServeChild, postmaster, valkey_server

__all__ = ["Load", "chaos", "plan", "submit_all"]

RETRY_S = 0.2
SUBMITTERS = 16
READY_LIMIT_S = 120.0  # a kill whose recovery takes longer ends the run (reported)


@dataclass
class Load:
    """What the clients sent and were answered."""

    jobs: list[tuple[str, str]]  # (idempotency key, text), in submit order
    accepted: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # key -> ids
    refused: dict[str, str] = field(default_factory=dict)  # key -> last answer
    retries: Counter[str] = field(default_factory=Counter)  # why a submit was sent again
    submitted: int = 0  # jobs whose submit ended (accepted or refused)


def plan(jobs: int, seed: int) -> list[tuple[str, str]]:
    """``jobs`` (key, text) pairs: ``jobs // 2`` distinct texts, the rest repeats, shuffled."""
    rng = random.Random(seed)
    distinct = max(1, jobs - jobs // 2)
    texts = [f"Soak line {i}: the {rng.choice(WORDS)} {rng.choice(WORDS)} waits for its turn."
             for i in range(distinct)]
    chosen = texts + [rng.choice(texts) for _ in range(jobs - distinct)]
    rng.shuffle(chosen)
    return [(f"soak-{seed}-{i}", text) for i, text in enumerate(chosen)]


WORDS = ("amber", "quiet", "river", "lantern", "copper", "meadow", "harbour", "velvet", "north",
         "willow", "signal", "orchard")


async def submit_all(http: httpx.AsyncClient, serve: ServeChild, load: Load) -> None:
    """Submit every job of ``load`` from ``SUBMITTERS`` tasks; returns when all are answered."""
    send, receive = trio.open_memory_channel[tuple[str, str]](0)

    async def submitter(receive: trio.MemoryReceiveChannel[tuple[str, str]]) -> None:
        async with receive:
            async for key, text in receive:
                await _submit(http, serve, load, key, text)
                load.submitted += 1

    async with trio.open_nursery() as nursery:
        for _ in range(SUBMITTERS):
            nursery.start_soon(submitter, receive.clone())
        receive.close()
        async with send:
            for job in load.jobs:
                await send.send(job)


async def _submit(http: httpx.AsyncClient, serve: ServeChild, load: Load, key: str,
                  text: str) -> None:
    while True:
        try:
            r = await http.post(f"{serve.base_url}/v1/jobs", json={"text": text},
                                headers={"Idempotency-Key": key})
        except httpx.HTTPError as exc:
            load.retries[type(exc).__name__] += 1
        else:
            if r.status_code in (200, 202):
                load.accepted[key].add(r.json()["id"])
                return
            if r.status_code != 429 and r.status_code < 500:
                load.refused[key] = f"{r.status_code} {r.text[:200]}"
                return
            load.retries[str(r.status_code)] += 1
        await trio.sleep(RETRY_S)


@dataclass
class Recovery:
    kind: str  # "serve" | "valkey" | "postgres"
    at_s: float  # since the run started
    ready_s: float | None  # kill -> /readyz 200 again (None: not within READY_LIMIT_S)


async def chaos(
    http: httpx.AsyncClient, serve: ServeChild, kills: list[str],
    progress: Callable[[], Awaitable[float]], started: float, out: list[Recovery],
) -> None:
    """Carry out ``kills`` ("serve" | "valkey" | "postgres"), kill i once ``progress()`` (0..1)
    reaches (i + 1) / (len(kills) + 1); append a ``Recovery`` per kill to ``out``."""
    for i, kind in enumerate(kills):
        while await progress() < (i + 1) / (len(kills) + 1):  # noqa: ASYNC110 (polls Postgres)
            await trio.sleep(0.25)
        killed = time.monotonic()
        try:
            await _kill(kind, serve)
            ready = await serve.ready(http, READY_LIMIT_S)
        except RuntimeError:
            out.append(Recovery(kind, killed - started, None))
            raise
        out.append(Recovery(kind, killed - started, ready - killed))


async def _kill(kind: str, serve: ServeChild) -> None:
    if kind == "serve":
        await serve.kill()
        await serve.start()
        return
    find = valkey_server if kind == "valkey" else postmaster
    first = find(serve.data_dir)
    if first is None:
        raise RuntimeError(f"no embedded {kind} to kill under {serve.data_dir}")
    first.send_signal(signal.SIGKILL)
    await _replaced(find, serve.data_dir, first)


async def _replaced(find: Callable[[Path], psutil.Process | None], data_dir: Path,
                    first: psutil.Process) -> None:
    """Wait until another server than ``first`` runs (started again by ``serve``)."""
    with trio.move_on_after(READY_LIMIT_S):
        while True:
            now = await trio.to_thread.run_sync(find, data_dir)
            if now is not None and now.pid != first.pid:
                return
            await trio.sleep(0.05)
    raise RuntimeError("the killed server was not started again")
