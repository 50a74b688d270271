"""Lanes through the real pipeline (StreamReader, Prestarter, one TTSActor) on the embedded
Valkey and Postgres: a single job (POST /v1/jobs) goes before storybook lines already queued
in the batch lane, and before batch entries the reader already holds; a batch line delivered
too often is dead-lettered and redriven into the batch lane."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable

import msgspec
import trio

from actors.pipeline.dead_letters import redrive
from actors.service import Role
from protocols.messages import JobRequest, JobStatus, Lane
from protocols.ports import JobStore
from protocols.providers.fake import FakeProvider
from protocols.redis.keys import Keys
from protocols.redis.queue import open_queue
from protocols.settings import Settings
from tests.support.harness import Running, make_settings, running_service, total_queue_check

LIMIT_S = 60


async def wait_until(check: Callable[[], Awaitable[bool] | bool], what: str) -> None:
    """Poll ``check`` (real clock: the state is in other tasks, Redis or Postgres)."""
    with trio.move_on_after(20):
        while True:
            done = check()
            if done if isinstance(done, bool) else await done:
                return
            await trio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def submit_batch(svc: Running, store: JobStore, texts: list[str]) -> list[str]:
    """Storybook lines into the batch lane, in order, as the Intake does (``settle``, the job
    row, its stream entry); the lane is set on the entry here because the job row keeps its
    lane only from the storybook store's migration on."""
    user, _ = await store.create_user(f"reader-{uuid.uuid4().hex[:6]}")
    out = []
    async with open_queue(svc.service.redis_url, svc.service.keys, stream_timeout=5) as q:
        for text in texts:
            new = await svc.service.intake.settle(JobRequest(text=text), user.id,
                                                  lane=Lane.batch)
            job, created = await store.create_job(new)
            assert created and job.status is JobStatus.queued
            await q.enqueue([msgspec.structs.replace(job.to_stream(time.time()),
                                                     lane=Lane.batch)])
            out.append(job.id)
    return out


def spoken(provider: FakeProvider) -> list[str]:
    return [r.text for r in provider.requests]


def settings_for(tmp_path, **overrides) -> Settings:
    return make_settings(tmp_path, concurrency=1, **overrides)  # one actor: the order shows


async def test_a_single_job_goes_before_queued_storybook_lines(redis_url, store, tmp_path):
    settings = settings_for(tmp_path)
    provider = FakeProvider()
    provider.gate = trio.Event()  # the actor holds the first line until we say
    lines = [f"line {i} of the book" for i in range(4)]
    with trio.fail_after(LIMIT_S):
        async with running_service(
            redis_url=redis_url, store=store, settings=settings, provider=provider
        ) as svc:
            batch = await submit_batch(svc, store, lines)
            await wait_until(lambda: provider.active == 1, "the first line to be spoken")
            r = await svc.submit("a single job")
            assert r.status_code == 202
            provider.gate.set()
            await wait_until(lambda: _all(store, [*batch, *svc.accepted], JobStatus.succeeded),
                             "every job to succeed")
        await total_queue_check(store, redis_url, settings, [*svc.accepted, *batch])
    assert spoken(provider) == [lines[0], "a single job", *lines[1:]]


async def test_a_single_job_goes_before_batch_entries_the_reader_holds(
    redis_url, store, tmp_path
):
    settings = settings_for(tmp_path)
    lines = [f"held line {i}" for i in range(4)]
    with trio.fail_after(LIMIT_S):
        async with running_service(
            redis_url=redis_url, store=store, settings=settings, role=Role.api
        ) as api:
            batch = await submit_batch(api, store, lines)
        # the worker read them all, then died: its next incarnation takes them back into its
        # hands (the reader's ``_waiting``), not from the stream
        async with open_queue(redis_url, Keys(settings.redis_prefix), stream_timeout=5) as q:
            await q.ensure_group()
            assert len(await q.read_new(settings.consumer, 10, 0)) == len(lines)
        provider = FakeProvider()
        provider.gate = trio.Event()
        async with running_service(
            redis_url=redis_url, store=store, settings=settings, provider=provider
        ) as svc:
            await wait_until(lambda: provider.active == 1, "the first line to be spoken")
            assert svc.service.reader is not None
            assert svc.service.reader.statistics().waiting_dispatch == len(lines) - 1
            r = await svc.submit("a single job")
            assert r.status_code == 202
            provider.gate.set()
            await wait_until(lambda: _all(store, [*batch, *svc.accepted], JobStatus.succeeded),
                             "every job to succeed")
        await total_queue_check(store, redis_url, settings, [*svc.accepted, *batch])
    assert spoken(provider) == [lines[0], "a single job", *lines[1:]]


async def test_a_batch_line_delivered_too_often_is_dead_lettered_and_redriven_as_batch(
    redis_url, store, tmp_path
):
    settings = settings_for(tmp_path, max_deliveries=1)
    keys = Keys(settings.redis_prefix)
    with trio.fail_after(LIMIT_S):
        async with running_service(
            redis_url=redis_url, store=store, settings=settings, role=Role.api
        ) as api:
            (job_id,) = await submit_batch(api, store, ["the line that kept failing"])
        async with open_queue(redis_url, keys, stream_timeout=5) as q:
            await q.ensure_group()
            (first,) = await q.read_new(settings.consumer, 10, 0)  # delivered once, then lost
            assert first.entry_id.startswith("b:")
            async with running_service(redis_url=redis_url, store=store, settings=settings):
                await wait_until(lambda: _status(store, job_id, JobStatus.dead), "dead job")
            (letter,) = await q.dead_letters()
            assert letter.job.job_id == job_id and letter.job.lane is Lane.batch
            assert letter.original_entry_id == first.entry_id and letter.deliveries == 2
            assert await q.lane_figures() == {Lane.interactive: (0, 0), Lane.batch: (0, 0)}

            await redrive(q, store, [job_id])
            assert await q.lane_figures() == {Lane.interactive: (0, 0), Lane.batch: (1, 0)}
            provider = FakeProvider()
            async with running_service(
                redis_url=redis_url, store=store, settings=settings, provider=provider
            ):
                await wait_until(lambda: _status(store, job_id, JobStatus.succeeded),
                                 "the redriven line to succeed")
            assert await q.dead_letters() == []
        await total_queue_check(store, redis_url, settings, [job_id])
    assert spoken(provider) == ["the line that kept failing"]


async def _status(store: JobStore, job_id: str, status: JobStatus) -> bool:
    job = await store.get_job(job_id)
    return job is not None and job.status is status


async def _all(store: JobStore, job_ids: list[str], status: JobStatus) -> bool:
    return all([await _status(store, job_id, status) for job_id in job_ids])
