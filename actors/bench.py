"""``run.py bench``: drive the real pipeline in one process and compare it with the targets.

Embedded Valkey and Postgres start in a temporary data dir (removed afterwards). Each workload
runs a real ``Service`` (supervisor, Producer, StreamReader, three TTSActors, HTTP on 127.0.0.1)
with a warmed-up FakeProvider, on its own stream prefix and user. Submitting goes through the
service's ``Intake``, as ``POST /v1/jobs`` does after parsing (validation, the cache lookup,
``store.create_job``, then the Producer's XADD), from 32 concurrent tasks. Times are read back
with the bundled psql: ``started_at`` / ``finished_at`` are Postgres ``now()`` of ``start_job`` /
of the ``finish_job`` transaction, on the same host clock as ``time.time()``. Each figure is
defined in ``NOTES`` (printed under the table). ``--quick`` shrinks every workload ~10x. Exit
status 0 when every target is met, 1 otherwise. The ``piper`` workload is the exception to all
of this: it times the Piper engine alone (no service), as information.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import random
import resource
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
import trio

from actors import bench_compat, bench_http, bench_stream
from actors.bench_stats import percentile
from actors.service import Role, Service
from protocols.embedded.servers import embedded_postgres, embedded_redis, run_psql
from protocols.messages import JobRequest, Lane, SynthesisRequest, User
from protocols.postgres.store import PgStore
from protocols.providers import piper as piper_engine
from protocols.providers.fake import FakeProvider
from protocols.settings import Settings
from protocols.storybooks import LineRequest, PageRequest, StorybookRequest

log = logging.getLogger("chorus.bench")

SLOTS, SUBMITTERS, HTTP_CONCURRENCY, LATENCY_S = 3, 32, 32, 0.2
VOICE, MB = "fake-en", 1024 * 1024
FULL = {"throughput": 5000, "utilization": 300, "pickup": 200, "http": 2000, "memory": 100_000,
        "repeats": 400, "lanes": 1000, "storybook": 300, "piper": 3, "http_front": 3000}
FULL["compat"] = 500  # actors/bench_compat.py
FULL["stream"] = 50  # actors/bench_stream.py (quick runs keep 50)
BOOK_PAGE = 9  # lines per page of the bench's books
BEHIND_BOOK = 1000  # lines of the book single jobs are submitted behind (workload "storybook")
REPEAT_LATENCY_S = 0.05
INTERACTIVE_JOBS = 20  # single jobs submitted behind the batch backlog (workload "lanes")
PICKUP_P99_S = 0.020  # the idle pickup's p99 target (queued -> started, nothing running)
PIPER_TEXT = (  # workload "piper": four sentences, about 19 s of speech
    "Once upon a time, in a small village by the sea, there lived a girl who loved to read. "
    "Every evening she climbed the hill behind her house and watched the boats come home. "
    "One night, a boat she had never seen before sailed quietly into the harbour, its lanterns "
    "glowing green and gold. She ran down the hill as fast as she could, her book still in her "
    "hand.")
Figure = tuple[str, float, str, str, bool | None]  # name, value, unit, target, pass (None: info)


def refill_gaps(starts: Sequence[float], finishes: Sequence[float], slots: int) -> list[float]:
    """With a backlog, the (k+slots)-th start took the slot the k-th finish freed (both sorted):
    how long each freed slot stayed empty (never negative: at most ``slots`` jobs run at once)."""
    s, f = sorted(starts), sorted(finishes)
    return [s[k + slots] - f[k] for k in range(len(s) - slots)]


#: how the process is composed (``run.build_service``): settings, role, redis_url=, store=,
#: provider= -> a Service with its HTTP front door
BuildService = Callable[..., Service]


class Bench:
    def __init__(self, build: BuildService, store: PgStore, redis_url: str, database_url: str,
                 data_dir: Path) -> None:
        self.build, self.store, self.redis_url = build, store, redis_url
        self.database_url, self.data_dir, self.run_id = database_url, data_dir, uuid.uuid4().hex[:6]

    async def user(self, name: str) -> tuple[User, str]:
        return await self.store.create_user(f"bench-{name}-{self.run_id}")

    async def times(self, owner: str) -> dict[str, tuple[str, float | None, float | None]]:
        """job id -> (status, started_at, finished_at) in unix seconds, read with psql."""
        query = ("SELECT id, status, extract(epoch FROM started_at), extract(epoch FROM"
                 f" finished_at) FROM jobs WHERE owner = '{owner}'")
        out = await trio.to_thread.run_sync(lambda: run_psql(self.database_url, query, timeout=300))
        rows = [line.split("|") for line in out.splitlines() if line]
        return {r[0]: (r[1], float(r[2]) if r[2] else None, float(r[3]) if r[3] else None)
                for r in rows}

    async def queued_to_started(self, owner: str) -> list[float]:
        """Seconds from each job's row being created (``created_at``: the Intake then hands it
        to the Producer at once) to its start (``started_at``), both Postgres ``now()``."""
        query = ("SELECT extract(epoch FROM started_at - created_at) FROM jobs"
                 f" WHERE owner = '{owner}' AND started_at IS NOT NULL")
        out = await trio.to_thread.run_sync(lambda: run_psql(self.database_url, query, timeout=60))
        return [float(line) for line in out.splitlines() if line.strip()]

    @asynccontextmanager
    async def serving(self, prefix: str, role: Role, latency_s: float = 0.0, *,
                      provider: FakeProvider | None = None, consumer: str = "bench-worker",
                      ) -> AsyncIterator[Service]:
        if provider is None:
            provider = FakeProvider(0.0)  # warm up: the first call per format encodes with PyAV
            await provider.synthesize(SynthesisRequest(text="warm-up", voice_id=VOICE))
            provider.latency_s = latency_s
        settings = Settings(
            data_dir=str(self.data_dir), port=0, redis_prefix=f"bench-{prefix}-{self.run_id}",
            consumer=consumer, concurrency=SLOTS, shutdown_grace_s=5.0,
            submit_timeout_s=10.0, provider_concurrency=SLOTS,
        )
        service = self.build(settings, role, redis_url=self.redis_url, store=self.store,
                             provider=provider)
        async with service.running():
            yield service

    async def submit(self, service: Service, user: User, text: str,
                     lane: Lane = Lane.interactive) -> tuple[str, float, float]:
        """Through the service's Intake, as ``POST /v1/jobs`` does after parsing (the provider's
        default voice), or as the StorybookRunner does with ``lane=Lane.batch``: (job id, wall
        clock when the submit call began, and when it returned)."""
        called = time.time()
        job, _ = await service.intake.submit(JobRequest(text=text), user, lane=lane)
        return job.id, called, time.time()

    async def submit_many(self, service: Service, user: User, n: int, tasks: int = SUBMITTERS,
                          lane: Lane = Lane.interactive) -> None:
        numbers = iter(range(n))

        async def submitter() -> None:
            for i in numbers:  # shared iterator: each number is taken once
                await self.submit(service, user, f"bench {self.run_id} {user.id} line {i}", lane)

        async with trio.open_nursery() as nursery:
            for _ in range(min(tasks, n)):
                nursery.start_soon(submitter)


async def _settled(service: Service, n: int, limit_s: float) -> None:
    """Until n jobs are finished by the actors and their stream entries acked."""
    assert service.reader is not None
    with trio.fail_after(limit_s):
        while service.finished() < n or service.reader.statistics().acked < n:
            with trio.move_on_after(0.05):  # actors settle and acks land through the Ledger
                await service.ledger.wait_changed()


async def throughput(b: Bench, n: int) -> dict[str, Any]:
    user, _ = await b.user("throughput")
    async with b.serving("throughput", Role.serve) as svc:
        t0 = time.time()
        await b.submit_many(svc, user, n)
        submitted = time.time()
        await _settled(svc, n, 60 + n / 20)
    times = await b.times(user.id)
    ok = sum(1 for st, _, _ in times.values() if st == "succeeded")
    seconds = max(f for _, _, f in times.values() if f is not None) - t0
    return {"jobs": n, "succeeded": ok, "submitters": SUBMITTERS, "seconds": seconds,
            "submit_phase_s": submitted - t0, "jobs_per_s": ok / seconds}


async def utilization(b: Bench, n: int) -> dict[str, Any]:
    user, _ = await b.user("utilization")
    async with b.serving("utilization", Role.api) as api:
        await b.submit_many(api, user, n)
    async with b.serving("utilization", Role.worker, LATENCY_S) as worker:
        await _settled(worker, n, 60 + n * LATENCY_S)
        peak = worker.provider.peak  # type: ignore[attr-defined]
    runs = [(s, f) for _, s, f in (await b.times(user.id)).values() if s and f]
    starts, finishes = [s for s, _ in runs], [f for _, f in runs]
    actual, ideal = max(finishes) - min(starts), n * LATENCY_S / SLOTS
    gaps = refill_gaps(starts, finishes, SLOTS)
    return {"jobs": n, "latency_s": LATENCY_S, "slots": SLOTS, "ideal_s": ideal,
            "actual_s": actual, "utilization": ideal / actual, "provider_peak": peak,
            "in_job_overhead_ms": (sum(f - s for s, f in runs) / len(runs) - LATENCY_S) * 1000,
            "refill_gap_p50_ms": percentile(gaps, 50) * 1000,
            "refill_gap_p99_ms": percentile(gaps, 99) * 1000}


async def pickup(b: Bench, n: int) -> dict[str, Any]:
    user, _ = await b.user("pickup")
    marks: dict[str, tuple[float, float]] = {}
    async with b.serving("pickup", Role.serve) as svc:
        await trio.sleep(0.2)  # the reader is blocked in XREADGROUP
        for i in range(n):
            job_id, called, returned = await b.submit(svc, user, f"pickup {b.run_id} {i}")
            marks[job_id] = (called, returned)
            await _settled(svc, i + 1, 30)
            await trio.sleep(0.005)  # idle again: the next read is blocked before we submit
    times = await b.times(user.id)
    queued = await b.queued_to_started(user.id)  # both on the Postgres clock
    whole = [times[j][1] - c for j, (c, _) in marks.items()]  # type: ignore[operator]
    lower = [times[j][1] - r for j, (_, r) in marks.items()]  # type: ignore[operator]
    return {"jobs": n, "p50_ms": percentile(queued, 50) * 1000,
            "p99_ms": percentile(queued, 99) * 1000,
            "from_call_p50_ms": percentile(whole, 50) * 1000,
            "from_call_p99_ms": percentile(whole, 99) * 1000,
            "from_return_p50_ms": percentile(lower, 50) * 1000,
            "from_return_p99_ms": percentile(lower, 99) * 1000}


async def http(b: Bench, n: int) -> dict[str, Any]:
    _, key = await b.user("http")
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    async with (
        b.serving("http", Role.api) as svc,
        httpx.AsyncClient(
            base_url=svc.http_binds[0], timeout=30, headers={"Authorization": f"Bearer {key}"},
            limits=httpx.Limits(max_connections=HTTP_CONCURRENCY,
                                max_keepalive_connections=HTTP_CONCURRENCY),
        ) as client,
    ):
        async def post_all(numbers: range, record: bool) -> float:
            todo = iter(numbers)

            async def poster() -> None:
                for i in todo:
                    t = time.perf_counter()
                    r = await client.post("/v1/jobs", json={"text": f"http {b.run_id} {i}"})
                    if record:
                        latencies.append(time.perf_counter() - t)
                        statuses[r.status_code] += 1

            t0 = time.perf_counter()
            async with trio.open_nursery() as nursery:
                for _ in range(HTTP_CONCURRENCY):
                    nursery.start_soon(poster)
            return time.perf_counter() - t0

        await post_all(range(n, n + 2 * HTTP_CONCURRENCY), False)  # warm-up: open connections
        elapsed = await post_all(range(n), True)
    return {"requests": n, "concurrency": HTTP_CONCURRENCY, "role": "api",
            "statuses": {str(k): v for k, v in statuses.items()}, "seconds": elapsed,
            "requests_per_s": n / elapsed, "p50_ms": percentile(latencies, 50) * 1000,
            "p99_ms": percentile(latencies, 99) * 1000}


def _maxrss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


async def memory(b: Bench, n: int) -> dict[str, Any]:
    user, _ = await b.user("backlog")
    me = psutil.Process()
    before_rss, before_max = me.memory_info().rss, _maxrss()
    async with b.serving("backlog", Role.api) as svc:
        t0 = time.perf_counter()
        await b.submit_many(svc, user, n, tasks=64)
        enqueue_s = time.perf_counter() - t0
        async with svc.redis.queue() as queue:
            backlog = await queue.backlog()
        rss = me.memory_info().rss
        valkey = sum(p.memory_info().rss for p in me.children(recursive=True)
                     if p.name() == "valkey-server")
    return {"jobs": n, "backlog": backlog, "enqueue_s": enqueue_s, "enqueue_per_s": n / enqueue_s,
            "path": "Intake.submit: PgStore.create_job (concurrent ones share one INSERT)"
                    " + Submitter.submit (batched XADD)",
            "rss_before_mb": before_rss / MB, "maxrss_before_mb": before_max / MB,
            "rss_mb": rss / MB, "maxrss_mb": _maxrss() / MB, "valkey_rss_mb": valkey / MB}


async def repeats(b: Bench, n: int) -> dict[str, Any]:
    """Half the jobs repeat an earlier text, submitted over HTTP in a shuffled order, and two
    worker Services (2 x 3 actors) share one provider account limited to 3 slots: how many
    provider calls per job, and the provider's peak concurrency against the limit."""
    _, key = await b.user("repeats")
    texts = [f"repeat {b.run_id} line {i}" for i in range(n // 2)] * 2
    random.Random(7).shuffle(texts)
    provider = FakeProvider(0.0)
    await provider.synthesize(SynthesisRequest(text="warm-up", voice_id=VOICE))
    provider.calls, provider.peak, provider.latency_s = 0, 0, REPEAT_LATENCY_S
    statuses: Counter[int] = Counter()
    ids: list[str] = []
    async with (
        b.serving("repeats", Role.worker, provider=provider, consumer="bench-w1") as w1,
        b.serving("repeats", Role.worker, provider=provider, consumer="bench-w2") as w2,
        b.serving("repeats", Role.api) as api,
        httpx.AsyncClient(base_url=api.http_binds[0], timeout=30,
                          headers={"Authorization": f"Bearer {key}"}) as client,
    ):
        todo = iter(texts)

        async def poster() -> None:
            for text in todo:
                r = await client.post("/v1/jobs", json={"text": text, "voice_id": VOICE})
                statuses[r.status_code] += 1
                if r.status_code in (200, 202):
                    ids.append(r.json()["id"])

        t0 = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(16):
                nursery.start_soon(poster)
        queued = len(ids) - statuses[200]
        with trio.fail_after(60 + n * REPEAT_LATENCY_S):
            while w1.succeeded() + w2.succeeded() < queued:
                with trio.move_on_after(0.05):  # either worker may finish the last one
                    await w1.ledger.wait_changed()
        seconds = time.perf_counter() - t0
    return {"jobs": len(texts), "distinct": n // 2, "answered_200_cached": statuses[200],
            "statuses": {str(k): v for k, v in statuses.items()},
            "provider_calls": provider.calls, "calls_per_job": provider.calls / len(texts),
            "provider_peak": provider.peak, "provider_limit": SLOTS,
            "local_actors": 2 * SLOTS, "latency_s": REPEAT_LATENCY_S, "seconds": seconds}


async def _ended(store: PgStore, job_id: str) -> None:
    """Until the job's row is terminal (polled: the row is the truth)."""
    while True:
        job = await store.get_job(job_id)
        if job is not None and job.status.terminal:
            return
        await trio.sleep(0.01)


async def lanes(b: Bench, n: int) -> dict[str, Any]:
    """``n`` batch jobs (storybook lines: Intake with ``lane=Lane.batch``, distinct texts) are
    queued first, on 3 slots of 200 ms; then ``INTERACTIVE_JOBS`` single jobs are submitted one
    at a time, each after the previous one finished and a random pause (so they meet the batch
    jobs at every phase): queued -> started of each. It stops once they are measured, with
    most of the batch still queued (its lane's length is read when each single job starts)."""
    batch_user, _ = await b.user("lanes-batch")
    user, _ = await b.user("lanes")
    pauses = random.Random(11)
    behind: list[int] = []
    async with b.serving("lanes", Role.serve, LATENCY_S) as svc:
        t0 = time.perf_counter()
        await b.submit_many(svc, batch_user, n, tasks=64, lane=Lane.batch)
        enqueue_s = time.perf_counter() - t0
        async with svc.redis.queue() as queue:
            if (await queue.lane_figures())[Lane.batch][0] == 0:
                # the store did not keep the jobs' lane: every one of them is in the
                # interactive lane, and a single job would wait behind all of them
                log.warning("lanes: no batch backlog (does the store keep a job's lane?)")
                return {"batch_jobs": n, "interactive_jobs": 0, "batch_lane_min": 0,
                        "p50_ms": math.nan, "p99_ms": math.nan, "p99_latencies": math.nan}
            with trio.fail_after(30 + INTERACTIVE_JOBS * 10 * LATENCY_S):
                for i in range(INTERACTIVE_JOBS):
                    await trio.sleep(pauses.uniform(0, LATENCY_S))
                    job_id, _, _ = await b.submit(svc, user, f"single {b.run_id} {i}")
                    behind.append((await queue.lane_figures())[Lane.batch][0])
                    await _ended(b.store, job_id)
    queued = await b.queued_to_started(user.id)
    units = [q / LATENCY_S for q in queued]
    return {"batch_jobs": n, "interactive_jobs": len(queued), "latency_s": LATENCY_S,
            "slots": SLOTS, "batch_enqueue_s": enqueue_s,
            "batch_lane_min": min(behind, default=0), "batch_lane_max": max(behind, default=0),
            "p50_ms": percentile(queued, 50) * 1000, "p99_ms": percentile(queued, 99) * 1000,
            "max_ms": max(queued, default=float("nan")) * 1000,
            "p50_latencies": percentile(units, 50), "p99_latencies": percentile(units, 99),
            "queued_ms": sorted(round(q * 1000, 1) for q in queued)}


def _book(run_id: str, name: str, lines: int) -> StorybookRequest:
    texts = [f"{name} {run_id} line {i}: the fox walks on" for i in range(lines)]
    return StorybookRequest(title=f"{name} {run_id}", pages=[
        PageRequest(lines=[LineRequest(text=t, voice_id=VOICE)
                           for t in texts[p:p + BOOK_PAGE]])
        for p in range(0, lines, BOOK_PAGE)
    ])


async def _book_ended(service: Service, book_id: str, limit_s: float) -> float:
    """Until the book has ended (its row, polled); returns the wall clock of the end."""
    assert service.books is not None
    with trio.fail_after(limit_s):
        while True:
            book = await service.books.get_storybook(book_id)
            if book is not None and book.status.terminal:
                return time.time()
            await trio.sleep(0.01)


async def storybook(b: Bench, n: int) -> dict[str, Any]:
    """A book of ``n`` lines (9 to a page, distinct texts) submitted as a client does
    (``StorybookIntake``) and made by the StorybookRunner on 3 slots of 200 ms, nothing else
    running: its time against the ideal n x 200 ms / 3, when its first page was ready, whether
    its lines started in reading order, and assembling it. Then single jobs behind a queued
    ``BEHIND_BOOK``-line book (cancelled at the end): their queued -> started."""
    user, _ = await b.user("storybook")
    single, _ = await b.user("storybook-single")
    pauses = random.Random(12)
    async with b.serving("storybook", Role.serve, LATENCY_S) as svc:
        assert svc.storybooks is not None and svc.books is not None
        assert svc.book_outputs is not None
        t0 = time.time()
        book, _ = await svc.storybooks.submit(_book(b.run_id, "bench", n), user)
        ended = await _book_ended(svc, book.id, 60 + n * LATENCY_S)
        book = await svc.books.get_storybook(book.id) or book
        lines = await svc.books.storybook_lines(book.id)
        t1 = time.perf_counter()
        audio = await svc.book_outputs.audio(book)
        assembly_s = time.perf_counter() - t1

        # single jobs behind a long queued book
        big, _ = await svc.storybooks.submit(_book(b.run_id, "big", BEHIND_BOOK), user)
        with trio.fail_after(60):
            while True:  # its first lines hold every slot
                if (await svc.books.line_counts(big.id))["running"] >= SLOTS:
                    break
                await trio.sleep(0.01)
        with trio.fail_after(30 + INTERACTIVE_JOBS * 10 * LATENCY_S):
            for i in range(INTERACTIVE_JOBS):
                await trio.sleep(pauses.uniform(0, LATENCY_S))
                # texts of their own: the lanes workload's would be cache hits here
                job_id, _, _ = await b.submit(svc, single, f"behind a book {b.run_id} {i}")
                await _ended(b.store, job_id)
        left = await svc.books.line_counts(big.id)
        await svc.storybooks.cancel(big.id, user.id)
    times = await b.times(user.id)
    by_line = [times[line.job_id] for line in lines if line.job_id in times]
    starts = [t[1] for t in by_line if t[1] is not None]
    in_order = sum(1 for a, c in zip(starts, starts[1:], strict=False) if c >= a - 0.001)
    first_page = [times[line.job_id][2] for line in lines
                  if line.page == 0 and line.job_id in times]
    first_ready = max(t or math.inf for t in first_page) - t0
    page_bound = math.ceil(BOOK_PAGE / SLOTS) * LATENCY_S + 0.050
    finishes = [t[2] for t in by_line if t[2] is not None]
    gaps = refill_gaps(starts, finishes, SLOTS)
    queued = await b.queued_to_started(single.id)
    ideal = n * LATENCY_S / SLOTS
    return {
        "lines": n, "status": book.status.value, "seconds": ended - t0, "ideal_s": ideal,
        "over_ideal_pct": ((ended - t0) / ideal - 1) * 100,
        "first_page_lines": BOOK_PAGE, "first_page_s": first_ready,
        "first_page_bound_s": page_bound,
        "starts_in_order_pct": 100 * in_order / max(1, len(starts) - 1),
        "first_start_ms": (min(starts) - t0) * 1000,
        "end_after_last_ms": (ended - max(finishes)) * 1000,
        "refill_gap_p50_ms": percentile(gaps, 50) * 1000,
        "refill_gap_p99_ms": percentile(gaps, 99) * 1000,
        "assembly_s": assembly_s, "book_audio_mb": len(audio.data) / MB,
        "behind_book_lines": BEHIND_BOOK, "behind_book_pending": left["pending"],
        "single_jobs": len(queued),
        "single_p50_ms": percentile(queued, 50) * 1000,
        "single_p99_ms": percentile(queued, 99) * 1000,
    }


async def piper(b: Bench, n: int) -> dict[str, Any]:
    """Piper's speed here, nothing else running: ``n`` syntheses of ``PIPER_TEXT`` (after one
    that loads the model) with 1, then 2 onnxruntime intra-op threads, one at a time. Not
    installed: says so (information, not a failure)."""
    voices = piper_engine.installed()
    if not voices:
        return {"installed": False}
    out: dict[str, Any] = {"installed": True, "runs": n, "characters": len(PIPER_TEXT)}
    request = SynthesisRequest(text=PIPER_TEXT, voice_id=voices[0].voice_id,
                               output_format="pcm_22050")
    for threads in (1, 2):
        provider = piper_engine.PiperProvider(threads=threads, concurrency=1, voices=voices)
        await provider.synthesize(request)  # loads the model and warms it up
        audio_s = wall_s = 0.0
        for _ in range(n):
            t0 = time.perf_counter()
            audio_s += (await provider.synthesize(request)).duration_s
            wall_s += time.perf_counter() - t0
        out[f"x_realtime_{threads}"] = audio_s / wall_s
        out[f"audio_s_{threads}"] = audio_s / n
    return out


WORKLOADS = {"throughput": throughput, "utilization": utilization, "pickup": pickup,
             "http": http, "memory": memory, "repeats": repeats, "lanes": lanes,
             "storybook": storybook, "piper": piper, "http_front": bench_http.http_front}
WORKLOADS["compat"] = bench_compat.cached_convert
WORKLOADS["stream"] = bench_stream.stream


async def _all(build: BuildService, database_url: str, redis_url: str, data_dir: Path,
               sizes: dict[str, int]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    async with PgStore.open(database_url, timeout=Settings().db_timeout_s) as store:
        b = Bench(build, store, redis_url, database_url, data_dir)
        for name, workload in WORKLOADS.items():
            if name not in sizes:
                continue
            print(f"bench: {name} ({sizes[name]}) ...", flush=True)
            started = time.perf_counter()
            results[name] = await workload(b, sizes[name])
            results[name]["wall_s"] = time.perf_counter() - started
    return results


def _figures(r: dict[str, Any]) -> list[Figure]:
    t, u, p, h, m, rp, ln, sb = (r[k] for k in ("throughput", "utilization", "pickup", "http",
                                                "memory", "repeats", "lanes", "storybook"))
    behind_batch = ln["batch_lane_min"] > 0  # the store kept the lane: a real batch backlog
    lanes_bound = LATENCY_S + PICKUP_P99_S  # one provider call, then an idle pickup
    return [
        (f"throughput, {t['jobs']} zero-latency jobs e2e", t["jobs_per_s"], "jobs/s", ">= 1000",
         t["jobs_per_s"] >= 1000 and t["succeeded"] == t["jobs"]),
        (f"utilization, {u['jobs']} x 200 ms, 3 slots", u["utilization"] * 100, "%", ">= 98",
         u["utilization"] >= 0.98),
        ("pickup p50, idle (queued -> started)", p["p50_ms"], "ms", "<= 3", p["p50_ms"] <= 3),
        ("pickup p99, idle (queued -> started)", p["p99_ms"], "ms",
         f"<= {PICKUP_P99_S * 1000:.0f}", p["p99_ms"] <= PICKUP_P99_S * 1000),
        ("pickup p50, idle (submit call -> started)", p["from_call_p50_ms"], "ms", "-", None),
        ("pickup p50, idle (submit returned -> started)", p["from_return_p50_ms"], "ms", "-", None),
        ("pickup p99, idle (submit returned -> started)", p["from_return_p99_ms"], "ms", "-", None),
        ("refill gap p50 under load (2)", u["refill_gap_p50_ms"], "ms", "-", None),
        ("refill gap p99 under load (2)", u["refill_gap_p99_ms"], "ms", "-", None),
        (f"HTTP POST /v1/jobs, {h['concurrency']} concurrent", h["requests_per_s"], "req/s", "-",
         None),
        ("HTTP latency p50", h["p50_ms"], "ms", "-", None),
        ("HTTP latency p99", h["p99_ms"], "ms", "-", None),
        (f"enqueue {m['jobs']} via store + Producer", m["enqueue_per_s"], "jobs/s", "-", None),
        ("peak RSS (maxrss, whole bench process)", m["maxrss_mb"], "MB", "<= 200",
         m["maxrss_mb"] <= 200),
        (f"current RSS, {m['backlog']} queued", m["rss_mb"], "MB", "<= 200", m["rss_mb"] <= 200),
        (f"provider calls per job, {rp['jobs']} jobs, 50% repeats", rp["calls_per_job"],
         "calls", "0.5", rp["calls_per_job"] <= 0.5),
        (f"provider peak concurrency, {rp['local_actors']} actors", rp["provider_peak"],
         "reqs", f"<= {rp['provider_limit']}", rp["provider_peak"] <= rp["provider_limit"]),
        (f"interactive start p50, {ln['batch_jobs']} batch queued", ln["p50_ms"], "ms", "-",
         None),
        (f"interactive start p99, {ln['batch_jobs']} batch queued", ln["p99_ms"], "ms",
         f"<= {lanes_bound * 1000:.0f}", behind_batch and ln["p99_ms"] <= lanes_bound * 1000),
        ("interactive start p99, in provider latencies", ln["p99_latencies"], "x", "-", None),
        (f"storybook, {sb['lines']} lines x 200 ms, 3 slots", sb["over_ideal_pct"],
         "% over", "<= 3", sb["status"] == "succeeded" and sb["over_ideal_pct"] <= 3),
        (f"storybook first page ({sb['first_page_lines']} lines) ready", sb["first_page_s"] * 1000,
         "ms", f"<= {sb['first_page_bound_s'] * 1000:.0f}",
         sb["first_page_s"] <= sb["first_page_bound_s"]),
        ("storybook lines started in reading order", sb["starts_in_order_pct"], "%", "100",
         sb["starts_in_order_pct"] >= 100),
        (f"storybook assembly, {sb['lines']} lines", sb["assembly_s"] * 1000, "ms", "<= 2000",
         sb["assembly_s"] <= 2),
        (f"single job start p99, behind {sb['behind_book_lines']}-line book",
         sb["single_p99_ms"], "ms", f"<= {lanes_bound * 1000:.0f}",
         sb["behind_book_pending"] > 0 and sb["single_p99_ms"] <= lanes_bound * 1000),
        *_piper_figures(r["piper"]),
        *bench_compat.figures(r.get("compat")),
        *bench_http.figures(r["http_front"]),
    ]


def _piper_figures(pp: dict[str, Any]) -> list[Figure]:
    if not pp["installed"]:
        return [("Piper speed: not installed", math.nan, "", "-", None)]
    return [(f"Piper speed, {n} onnxruntime thread{'s' * (n > 1)}", pp[f"x_realtime_{n}"],
             "x real", "-", None) for n in (1, 2)]


def _partial(results: dict[str, Any]) -> list[Figure]:
    """Some workloads only (``--only``): their headline numbers, as information."""
    keys = ("jobs_per_s", "utilization", "p50_ms", "p99_ms", "requests_per_s", "rss_mb",
            "calls_per_job", "provider_peak", "in_job_overhead_ms", "refill_gap_p50_ms",
            "p99_latencies", "batch_lane_min", "over_ideal_pct", "first_page_s",
            "starts_in_order_pct", "assembly_s", "single_p99_ms")
    return [(f"{name}: {k}", float(v) * (100 if k == "utilization" else 1), "", "-", None)
            for name, r in results.items() if name not in ("piper", "http_front")
            for k in keys if k in r for v in [r[k]]
            ] + (_piper_figures(results["piper"]) if "piper" in results else []
                 ) + bench_compat.figures(results.get("compat")
                 ) + (bench_http.figures(results["http_front"]) if "http_front" in results else [])


NOTES = """\
throughput: jobs / (last finished_at - first submit call); submitters and workers share the process.
utilization: jobs x 0.2 s / 3 slots / (last finished_at - first started_at); all jobs were enqueued
  first by an api-role Service, then run by a worker-role one.
pickup: queued -> started = Postgres started_at - created_at (the row is created, then handed to
  the Producer: includes the XADD round trip and the read); submit call -> started adds the rest
  of Intake.submit (validation, the cache look-up, create_job); from the submit's return it is a
  lower bound (the job often starts before the submit returns).
refill gap: sorted start[k+3] - sorted finish[k] in workload 2; negative when a slot's next job
  starts before the previous one is stored (storing overlaps the next provider call).
HTTP: api role (no workers running); the httpx client runs in the same process.
memory: backlog enqueued through the Intake (create_job + Producer); nothing consumes it.
repeats: POST /v1/jobs over HTTP (16 concurrent), each text twice in a shuffled order, to an api
  Service; two worker Services (3 actors each) share one provider account limited to 3 slots.
lanes: batch jobs (Intake, lane=batch, as storybook lines) queued first, 200 ms x 3 slots; then
  20 single jobs one at a time (each after the last finished, plus a random pause up to 200 ms):
  queued -> started of those (Postgres started_at - created_at). A single job starts when a slot
  frees: at worst one whole provider call (the fake's fixed latency keeps the 3 slots in step, so
  the waits spread evenly over 0-200 ms), then an idle pickup; the target is 200 ms + the pickup's
  20 ms, not the backlog's 1000 x 200 ms / 3. Fails unless the batch lane still held entries
  when each single job was submitted (the store must keep a job's lane). Full size with --quick
  too: the single jobs bound its time, not the backlog.
storybook: a book (9 lines a page, distinct texts) submitted through the StorybookIntake and made
  by the StorybookRunner (lines released into the batch lane, a window of 6 per book), nothing
  else running: submit -> the book's row ended, against lines x 200 ms / 3; first page ready =
  the last page-0 line's finished_at - submit; reading order = each line's started_at not before
  the previous line's (1 ms clock slack); assembly = BookOutputs.audio (fetch every clip, stitch
  with pauses, encode mp3, store the blob). Then 20 single jobs as in "lanes", behind a queued
  1000-line book (cancelled afterwards).
piper: the neural offline engine alone (no service): 3 syntheses of a 4-sentence paragraph (about
  19 s of speech) after a warm-up, one at a time, with 1 then 2 onnxruntime intra-op threads;
  x real = seconds of audio / seconds of wall clock (PCM out, so no encoding to speak of).
""" + bench_http.NOTES
NOTES += "\n" + bench_compat.NOTES


def run_bench(args: Any, build: BuildService) -> int:
    """``build``: the composition root's ``build_service`` (bench composes nothing itself)."""
    quick = bool(getattr(args, "quick", False))
    sizes = ({k: v if k in ("lanes", "storybook", "piper") else max(50, v // 10)
              for k, v in FULL.items()} if quick
             else dict(FULL))
    only = [w.strip() for w in (getattr(args, "only", None) or "").split(",") if w.strip()]
    unknown = set(only) - set(WORKLOADS)
    if unknown:
        print(f"unknown workload(s): {', '.join(sorted(unknown))}; known: {', '.join(WORKLOADS)}")
        return 2
    if only:
        sizes = {k: v for k, v in sizes.items() if k in only}
    chorus_log = logging.getLogger("chorus")
    chorus_log.setLevel(max(logging.WARNING, chorus_log.getEffectiveLevel()))  # no start events
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    with (
        tempfile.TemporaryDirectory(prefix="chorus-bench-", ignore_cleanup_errors=True) as tmp,
        ExitStack() as servers,
    ):
        redis_url = servers.enter_context(embedded_redis(Path(tmp) / "servers"))
        database_url = servers.enter_context(embedded_postgres(Path(tmp) / "servers"))
        results = trio.run(_all, build, database_url, redis_url, Path(tmp) / "service", sizes)
    runtime, load_after = time.perf_counter() - started, os.getloadavg()[0]
    figures = _figures(results) if len(results) == len(WORKLOADS) else _partial(results)
    figures += bench_stream.stream_figures(results["stream"]) if "stream" in results else []
    print(f"\n{'figure':<46} {'measured':>16} {'target':>8}  result\n{'-' * 80}")
    for name, value, unit, target, ok in figures:
        verdict = "info" if ok is None else ("PASS" if ok else "FAIL")
        print(f"{name:<46} {value:>9.1f} {unit:<6} {target:>8}  {verdict}")
    print(f"\n{'quick' if quick else 'full'} run, {runtime:.1f} s; {os.cpu_count()} CPUs; one"
          f" process, {SLOTS} slots; FakeProvider; embedded Valkey + Postgres.\n1-min load"
          f" average {load_before:.1f} before, {load_after:.1f} after (other processes on the"
          f" CPUs lower every figure).\n{NOTES}")
    if "memory" in results:
        print(f"enqueueing the {results['memory']['jobs']} backlog jobs took"
              f" {results['memory']['enqueue_s']:.1f} s.")
    report = {
        "quick": quick, "runtime_s": runtime, "sizes": sizes,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(), "loadavg_before": load_before,
                    "loadavg_after": load_after},
        "figures": [dict(zip(("figure", "measured", "unit", "target", "pass"), f, strict=True))
                    for f in figures],
        "workloads": results,
    }
    if getattr(args, "json", None):
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"results written to {args.json}")
    return 0 if all(ok is not False for *_, ok in figures) else 1
