"""Supervision and crash recovery of the worker actors (supervision-and-trio.md §4 matrix).

Faults enter through the settings' ``FaultPlan`` or a provider of our own; the service runs on the
real embedded Valkey and a fresh Postgres database, on the real clock with the harness's short
timeouts. Every test ends with the total-queue check.
"""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import coredis
import httpx
import msgspec
import pytest
import trio

from actors.pipeline.dead_letters import redrive
from actors.supervision.supervisor import SupervisorEvent, SupervisorGaveUp
from protocols.embedded.servers import run_psql
from protocols.faults import FaultPlan
from protocols.messages import (
    Job,
    JobStatus,
    SpeechJob,
    SynthesisRequest,
    SynthesisResult,
    VoiceInfo,
)
from protocols.ports import JobStore
from protocols.providers.base import LocalProvider
from protocols.providers.fake import FakeProvider
from protocols.redis.keys import Keys
from protocols.redis.queue import open_queue
from protocols.settings import Settings
from tests.support.harness import Running, make_settings, running_service, total_queue_check

TEST_LIMIT_S = 60


# --- helpers --------------------------------------------------------------------------------------


@asynccontextmanager
async def serving(**kwargs: Any) -> AsyncIterator[Running]:
    """``running_service``, with an HTTP client that keeps no idle connection: hypercorn holds
    its shutdown (up to its keep-alive / graceful timeout) while a keep-alive connection is open,
    and meanwhile the reader goes on reading, which would blur the shutdown tests."""
    async with running_service(**kwargs) as svc:
        harness_client = svc.client
        async with httpx.AsyncClient(
            base_url=harness_client.base_url, headers=harness_client.headers, timeout=10,
            limits=httpx.Limits(max_keepalive_connections=0),
        ) as svc.client:
            yield svc
        svc.client = harness_client


async def wait_until(check: Callable[[], Awaitable[bool]], what: str, limit_s: float = 20) -> None:
    """Poll ``check`` (real clock) until true; fail with ``what`` after ``limit_s``."""
    with trio.move_on_after(limit_s):
        while not await check():  # noqa: ASYNC110 - state in Redis/Postgres: no Event to wait on
            await trio.sleep(0.02)
        return
    raise AssertionError(f"timed out after {limit_s} s waiting for {what}")


async def wait_terminal(
    store: JobStore, job_ids: Iterable[str], limit_s: float = 20
) -> dict[str, Job]:
    """Every job terminal in Postgres (read directly: jobs of any owner)."""
    jobs: dict[str, Job] = {}

    async def all_terminal() -> bool:
        for job_id in job_ids:
            job = await store.get_job(job_id)
            assert job is not None, f"job {job_id} lost"
            jobs[job_id] = job
        return all(j.status.terminal for j in jobs.values())

    await wait_until(all_terminal, "every job to be terminal", limit_s)
    return jobs


async def wait_status(store: JobStore, job_id: str, status: JobStatus, limit_s: float = 20) -> Job:
    found: list[Job] = []

    async def reached() -> bool:
        job = await store.get_job(job_id)
        assert job is not None
        found[:] = [job]
        return job.status == status

    await wait_until(reached, f"job {job_id} to be {status}", limit_s)
    return found[0]


async def wait_drained(redis_url: str, settings: Settings, limit_s: float = 20) -> None:
    """Nothing pending and nothing left in the job stream (every entry acked)."""
    async with open_queue(redis_url, Keys(settings.redis_prefix), stream_timeout=5) as queue:

        async def drained() -> bool:
            return await queue.pending_count() == 0 and await queue.backlog() == 0

        await wait_until(drained, "the job stream to drain", limit_s)


async def wait_stopped(svc: Running, limit_s: float = 20) -> None:
    async def stopped() -> bool:
        return svc.service.supervisor.statistics().state == "stopped"

    await wait_until(stopped, "the service to stop", limit_s)


async def stream_state(
    redis_url: str, settings: Settings
) -> tuple[dict[str, str], dict[str, tuple[str, int, int]]]:
    """(job id -> entry id of every entry in the job stream,
    entry id -> (consumer, idle ms, deliveries) of every pending entry)."""
    keys = Keys(settings.redis_prefix)
    client: coredis.Redis[bytes] = coredis.Redis.from_url(redis_url, decode_responses=False)
    async with client:
        entries = await client.xrange(keys.jobs, "-", "+")
        rows = await client.xpending(keys.jobs, keys.group, start="-", end="+", count=10_000)
    stream = {
        msgspec.msgpack.decode(e.field_values[b"m"], type=SpeechJob).job_id: _s(e.identifier)
        for e in entries
    }
    pel = {_s(p.identifier): (_s(p.consumer), int(p.idle), int(p.delivered)) for p in rows}
    return stream, pel


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def audio_rows(database_url: str) -> int:
    out = await trio.to_thread.run_sync(run_psql, database_url, "SELECT count(*) FROM audio")
    return int(out)


def blob_files(settings: Settings) -> list[Path]:
    return [p for p in (settings.data_path / "audio").rglob("*") if p.is_file()]


def leaves(exc: BaseException | None) -> list[BaseException]:
    """The exceptions inside (nested) exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [] if exc is None else [exc]


def of(events: Sequence[SupervisorEvent], kind: str, supervisor: str | None = None) -> list[str]:
    """Child ids of the events of ``kind`` (from ``supervisor``, if given), in order."""
    return [
        e.child_id or ""
        for e in events
        if e.kind == kind and (supervisor is None or e.supervisor == supervisor)
    ]


async def submit_all(svc: Running, texts: Iterable[str]) -> None:
    """Submit concurrently; every one must be accepted."""
    answers: list[int] = []

    async def one(text: str) -> None:
        answers.append((await svc.submit(text)).status_code)

    async with trio.open_nursery() as nursery:
        for text in texts:
            nursery.start_soon(one, text)
    assert answers and set(answers) == {202}, answers


class CountingStore:
    """Our JobStore, delegating every call and counting them per method."""

    def __init__(self, inner: JobStore) -> None:
        self.inner = inner
        self.calls: collections.Counter[str] = collections.Counter()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return await method(*args, **kwargs)

        return counted


class ScriptedProvider(LocalProvider):
    """A SpeechProvider of our own around FakeProvider: ``poison`` texts raise RuntimeError
    (until ``healed``), ``slow`` texts take ``slow_s``; everything else is delegated."""

    model_id = "fake"

    def __init__(
        self,
        inner: FakeProvider,
        *,
        poison: Iterable[str] = (),
        slow: Iterable[str] = (),
        slow_s: float = 0.0,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.poison = set(poison)
        self.slow = set(slow)
        self.slow_s = slow_s
        self.healed = False
        self.poison_calls = 0

    def formats(self) -> frozenset[str]:
        return self.inner.formats()

    async def voices(self) -> Sequence[VoiceInfo]:
        return await self.inner.voices()

    async def resolve_voice(self, voice_id: str | None, language: str | None) -> VoiceInfo:
        return await self.inner.resolve_voice(voice_id, language)

    async def synthesize(self, request: SynthesisRequest) -> SynthesisResult:
        if request.text in self.poison and not self.healed:
            self.poison_calls += 1
            raise RuntimeError(f"provider chokes on {request.text!r}")
        if request.text in self.slow:
            await trio.sleep(self.slow_s)
        return await self.inner.synthesize(request)


# --- 1. an actor crashes mid-job ------------------------------------------------------------------


async def test_actor_crash_mid_job_restarts_only_that_actor(redis_url, store, tmp_path):
    plan = FaultPlan(1).add("tts.before_synth", RuntimeError("injected: actor dies mid-job"))
    settings = make_settings(tmp_path, faults=plan)
    provider = FakeProvider()
    with trio.fail_after(TEST_LIMIT_S):
        async with serving(
            redis_url=redis_url, store=store, settings=settings, provider=provider
        ) as svc:
            await submit_all(svc, ["a crash, then a redelivery"])
            jobs = await wait_terminal(store, svc.accepted)
            await wait_drained(redis_url, settings)
            assert svc.service.reader is not None
            reclaimed = svc.service.reader.statistics().reclaimed
        await total_queue_check(store, redis_url, settings, svc.accepted)

    (job,) = jobs.values()
    assert job.status == JobStatus.succeeded
    assert job.attempts == 2  # started, crashed, redelivered, started again
    assert job.error_code is None  # the crash note is cleared by the success
    assert plan.fired == ["tts.before_synth"] and provider.calls == 1
    assert reclaimed == 1  # released by the crash, reclaimed after its backoff

    crashed = of(svc.events, "crash")
    assert len(crashed) == 1 and crashed[0].startswith("tts-"), svc.events
    assert of(svc.events, "crash", "tts-pool") == crashed
    assert of(svc.events, "restart") == crashed  # only that actor, once
    assert of(svc.events, "give_up") == []
    assert sorted(of(svc.events, "start", "root")) == [
        "events", "http", "producer", "reporter", "storybook-runner", "stream-reader",
        "sweeper", "tts-pool", "voice-sync",
    ]
    (crash,) = [e for e in svc.events if e.kind == "crash"]
    assert [str(e) for e in leaves(crash.exception)] == ["injected: actor dies mid-job"]


# --- 2. a crash after the audio is stored, before the ack -----------------------------------------


async def test_crash_after_store_before_ack_only_acks_on_redelivery(
    redis_url, store, database_url, tmp_path
):
    plan = FaultPlan(2).add("tts.after_store_before_ack", RuntimeError("injected: lost the ack"))
    settings = make_settings(tmp_path, faults=plan)
    provider = FakeProvider()
    counting = CountingStore(store)
    with trio.fail_after(TEST_LIMIT_S):
        async with serving(
            redis_url=redis_url, store=counting, settings=settings, provider=provider
        ) as svc:
            await submit_all(svc, ["stored before the crash"])
            jobs = await wait_terminal(store, svc.accepted)
            await wait_drained(redis_url, settings)  # acked only by the redelivery
            assert svc.service.reader is not None
            reclaimed = svc.service.reader.statistics().reclaimed
        await total_queue_check(store, redis_url, settings, svc.accepted)

    (job,) = jobs.values()
    assert job.status == JobStatus.succeeded
    assert job.attempts == 1  # the redelivery found it finished and did not start it again
    assert plan.fired == ["tts.after_store_before_ack"]
    assert reclaimed == 1  # it was delivered a second time ...
    starts = counting.calls["start_job_cached"] + counting.calls["start_jobs_cached"]
    assert starts == 2  # ... found finished ...
    assert counting.calls["finish_jobs"] == 1  # ... and only acked
    assert provider.calls == 1
    assert await audio_rows(database_url) == 1
    assert len(blob_files(settings)) == 1
    crashed = of(svc.events, "crash")
    assert len(crashed) == 1 and crashed[0].startswith("tts-")
    assert of(svc.events, "restart") == crashed


# --- 3. a poison job ------------------------------------------------------------------------------


async def test_poison_job_is_dead_lettered_then_redriven(redis_url, store, tmp_path):
    poison = "the line nobody can say"
    good = [f"an ordinary line {i}" for i in range(4)]
    provider = ScriptedProvider(FakeProvider(), poison=[poison])
    settings = make_settings(tmp_path, max_deliveries=3)
    keys = Keys(settings.redis_prefix)
    with trio.fail_after(TEST_LIMIT_S):
        async with serving(
            redis_url=redis_url, store=store, settings=settings, provider=provider
        ) as svc:
            await submit_all(svc, [*good, poison])
            jobs = await wait_terminal(store, svc.accepted)
            await wait_drained(redis_url, settings)
            poison_id = next(i for i, j in jobs.items() if j.text == poison)
            dead = jobs[poison_id]
            assert dead.status == JobStatus.dead
            assert dead.error_code == "max_deliveries_exceeded"
            assert all(j.status == JobStatus.succeeded for i, j in jobs.items() if i != poison_id)
            async with open_queue(redis_url, keys, stream_timeout=5) as queue:
                (letter,) = await queue.dead_letters()
                assert letter.job.job_id == poison_id
                assert letter.deliveries == 4
                assert "delivered 4 times (max 3)" in letter.reason
                assert f"RuntimeError: provider chokes on {poison!r}" in letter.reason
                assert dead.error_message == letter.reason
                assert dead.attempts == 3 and provider.poison_calls == 3
                events_before_redrive = list(svc.events)

                provider.healed = True
                redriven = await redrive(queue, store, [poison_id])
                assert [d.job.job_id for d in redriven] == [poison_id]
                healed = await wait_status(store, poison_id, JobStatus.succeeded)
                await wait_drained(redis_url, settings)
                assert await queue.dead_letters() == []
        await total_queue_check(store, redis_url, settings, svc.accepted)

    assert healed.audio_id is not None and healed.error_code is None
    assert provider.inner.calls == len(good) + 1
    # each poisoned delivery crashed an actor (3 crashes, 3 restarts), nobody gave up
    crashed = of(events_before_redrive, "crash")
    assert len(crashed) == 3 and all(c.startswith("tts-") for c in crashed)
    assert len(of(events_before_redrive, "restart")) == 3
    assert of(svc.events, "give_up") == []
    assert of(svc.events, "crash") == crashed  # none after the redrive


# --- 4. a crash loop: the supervisor gives up, nothing is lost ------------------------------------


async def test_crash_loop_gives_up_and_loses_nothing(redis_url, store, tmp_path):
    plan = FaultPlan(4).add(
        "tts.before_synth", *(RuntimeError(f"injected crash {i}") for i in range(60))
    )
    settings = make_settings(
        tmp_path, faults=plan, restart_intensity=3, restart_period_s=10, max_deliveries=100
    )
    provider = FakeProvider()
    texts = [f"crash loop line {i}" for i in range(12)]
    first: list[Running] = []
    with trio.fail_after(TEST_LIMIT_S):
        # service.run raises a bare SupervisorGaveUp; the harness's nursery wraps it once
        with pytest.RaisesGroup(SupervisorGaveUp):
            async with serving(
                redis_url=redis_url, store=store, settings=settings, provider=provider
            ) as svc:
                first.append(svc)
                await submit_all(svc, texts)
                with trio.fail_after(20):
                    await trio.sleep_forever()  # until the give-up cancels this body
        (svc,) = first
        assert len(svc.accepted) == len(texts)
        events = list(svc.events)
        give_ups = [e for e in events if e.kind == "give_up"]
        # the pool gave up four times (4 crashes each), then root gave up on the pool
        assert [(e.supervisor, e.child_id) for e in give_ups][-1] == ("root", "tts-pool")
        assert len(of(events, "give_up", "tts-pool")) == len(of(events, "crash", "root")) == 4
        assert len(of(events, "restart", "root")) == 3
        assert set(of(events, "crash", "root")) == {"tts-pool"}
        assert len(plan.fired) >= 16 and provider.calls == 0
        # root stopped the rest in reverse start order
        last_give_up = events.index(give_ups[-1])
        assert of(events[last_give_up:], "stop", "root") == [
            "http", "storybook-runner", "producer", "sweeper", "stream-reader", "voice-sync",
            "events", "reporter",
        ]
        # ... each in time, although no actor was left to take the reader's next delivery
        assert [e.error for e in events[last_give_up:] if e.kind == "stop"] == [None] * 8

        # nothing lost: every job is still in Postgres, unfinished, and its entry in the stream;
        # every job that was started has its entry pending (PEL) for this consumer
        stream, pel = await stream_state(redis_url, settings)
        assert set(stream) == set(svc.accepted)
        assert set(pel) <= set(stream.values())
        started = 0
        for job_id in svc.accepted:
            job = await store.get_job(job_id)
            assert job is not None and not job.status.terminal, job
            if job.attempts:
                started += 1
                assert pel[stream[job_id]][0] == "worker-a"
        assert started >= 4

        # a fresh service with the same consumer name (faults exhausted) finishes everything
        healed = msgspec.structs.replace(settings, faults=None)
        async with serving(
            redis_url=redis_url, store=store, settings=healed, provider=provider
        ) as second:
            jobs = await wait_terminal(store, svc.accepted)
            await wait_drained(redis_url, healed)
        tally = await total_queue_check(store, redis_url, healed, svc.accepted)

    assert tally["succeeded"] == len(texts)
    assert all(j.status == JobStatus.succeeded for j in jobs.values())
    assert provider.calls == len(texts)
    assert of(second.events, "crash") == [] and of(second.events, "give_up") == []


# --- 5. the StreamReader crashes while actors hold deliveries -------------------------------------


async def test_reader_crash_restarts_only_the_reader(redis_url, store, tmp_path):
    plan = FaultPlan(5).add("reader.before_ack", RuntimeError("injected: reader dies"))
    settings = make_settings(tmp_path, faults=plan)
    fast, slow = "the quick one", ["a slow one", "another slow one"]
    queued = [f"queued {i}" for i in range(3)]
    provider = ScriptedProvider(FakeProvider(), slow=slow, slow_s=1.5)
    with trio.fail_after(TEST_LIMIT_S):
        async with serving(
            redis_url=redis_url, store=store, settings=settings, provider=provider
        ) as svc:
            def busy() -> int:
                return sum(a.statistics().busy for a in svc.service.actors)

            async def two_busy() -> bool:
                return busy() == 2

            async def crashed() -> bool:
                return plan.fired == ["reader.before_ack"]

            await submit_all(svc, slow)
            await wait_until(two_busy, "two actors on the slow jobs", 10)
            await submit_all(svc, [fast])  # settles first: its ack crashes the reader
            await wait_until(crashed, "the reader to crash on its first ack", 10)
            assert busy() == 2  # while the two slow jobs were still with their actors
            await submit_all(svc, queued)
            jobs = await wait_terminal(store, svc.accepted)
            await wait_drained(redis_url, settings)
        await total_queue_check(store, redis_url, settings, svc.accepted)

    assert all(j.status == JobStatus.succeeded and j.attempts == 1 for j in jobs.values())
    assert provider.inner.calls == len(jobs) == 6  # nothing ran twice
    assert of(svc.events, "crash") == ["stream-reader"]
    assert of(svc.events, "restart") == ["stream-reader"]
    assert of(svc.events, "give_up") == []


# --- 6. graceful stop with jobs running -----------------------------------------------------------


async def test_graceful_stop_finishes_running_jobs_and_keeps_queued(redis_url, store, tmp_path):
    settings = make_settings(tmp_path, shutdown_grace_s=8.0)
    provider = FakeProvider(latency_s=1.5)
    texts = [f"graceful {i}" for i in range(6)]
    with trio.fail_after(TEST_LIMIT_S):
        async with serving(
            redis_url=redis_url, store=store, settings=settings, provider=provider
        ) as svc:
            await submit_all(svc, texts)

            async def three_running() -> bool:
                return provider.active == 3

            await wait_until(three_running, "three jobs running", 10)
            svc.service.request_shutdown()  # what the first SIGTERM does
            await wait_stopped(svc)
        assert provider.calls == 3  # the queued ones were not read

        jobs = {i: await store.get_job(i) for i in svc.accepted}
        done = [j for j in jobs.values() if j and j.status == JobStatus.succeeded]
        queued = [j for j in jobs.values() if j and j.status == JobStatus.queued]
        assert len(done) == 3 and all(j.attempts == 1 for j in done)
        assert len(queued) == 3 and all(j.attempts == 0 for j in queued)
        stream, pel = await stream_state(redis_url, settings)
        assert pel == {}  # the running ones were acked ...
        assert set(stream) == {j.id for j in queued}  # ... the queued ones are still there
        assert len(of(svc.events, "shutdown", "root")) == 1
        assert of(svc.events, "stop", "root") == [
            "http", "storybook-runner", "producer", "sweeper", "stream-reader", "tts-pool",
            "voice-sync", "events", "reporter",
        ]
        assert all(e.error is None for e in svc.events if e.kind == "stop")  # nobody killed
        assert of(svc.events, "crash") == []

        second_provider = FakeProvider()
        async with serving(
            redis_url=redis_url, store=store, settings=settings, provider=second_provider
        ):
            jobs2 = await wait_terminal(store, svc.accepted)
            await wait_drained(redis_url, settings)
        tally = await total_queue_check(store, redis_url, settings, svc.accepted)

    assert tally["succeeded"] == len(texts)
    assert all(j.attempts == 1 for j in jobs2.values())
    assert second_provider.calls == 3


async def test_grace_shorter_than_job_releases_for_immediate_redelivery(
    redis_url, store, tmp_path
):
    # one actor; a job far longer than the grace; a lease long enough to notice if we waited
    settings = make_settings(tmp_path, concurrency=1, shutdown_grace_s=0.5, lease_s=30.0)
    provider = FakeProvider(latency_s=60.0)
    with trio.fail_after(TEST_LIMIT_S):
        async with serving(
            redis_url=redis_url, store=store, settings=settings, provider=provider
        ) as svc:
            await submit_all(svc, ["far too long", "still queued"])

            async def running() -> bool:
                return provider.active == 1

            await wait_until(running, "the long job to be running", 10)
            svc.service.request_shutdown()
            await wait_stopped(svc)
        # the grace ran out: the entry was released (idle = lease, so immediately reclaimable),
        # then the busy actor was killed at its shutdown time; the job is left unfinished
        before = {j.status: j for j in [await store.get_job(i) for i in svc.accepted] if j}
        assert set(before) == {JobStatus.running, JobStatus.queued}, before
        long_id, queued_id = before[JobStatus.running].id, before[JobStatus.queued].id
        assert before[JobStatus.running].attempts == 1
        stream, pel = await stream_state(redis_url, settings)
        assert set(pel) == {stream[long_id]}
        consumer, idle_ms, deliveries = pel[stream[long_id]]
        assert consumer == "worker-a" and deliveries == 1
        assert idle_ms >= settings.lease_s * 1000
        stops = [e for e in svc.events if e.kind == "stop" and e.child_id == "tts-0"]
        assert len(stops) == 1 and stops[0].error == "killed after 5.0 s"

        # another worker (so its own-PEL recovery cannot help) picks it up without waiting out
        # the 30 s lease
        other = msgspec.structs.replace(settings, consumer="worker-b")
        provider.latency_s = 0.0
        async with serving(
            redis_url=redis_url, store=store, settings=other, provider=provider
        ):
            jobs = await wait_terminal(store, svc.accepted, limit_s=settings.lease_s / 3)
            await wait_drained(redis_url, settings, limit_s=settings.lease_s / 3)
        await total_queue_check(store, redis_url, settings, svc.accepted)

    assert jobs[long_id].status == JobStatus.succeeded and jobs[long_id].attempts == 2
    assert jobs[queued_id].status == JobStatus.succeeded and jobs[queued_id].attempts == 1

