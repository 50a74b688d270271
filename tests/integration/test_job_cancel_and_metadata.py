"""Jobs' lane, metadata and the cancelled status, on the real embedded Postgres (and Valkey for
the worker): a cancelled job is ended everywhere, and a worker that reads its entry never
generates it."""

from __future__ import annotations

import time

import pytest
import trio

from protocols.errors import QuotaExceeded
from protocols.messages import JobStatus, Lane, NewAudio, NewJob
from protocols.postgres.store import PgStore
from protocols.providers.fake import FakeProvider
from protocols.redis.keys import Keys
from protocols.redis.queue import open_queue
from tests.support.harness import make_settings, running_service

CAP_S = 20


def new_job(owner: str, job_id: str, *, text: str = "Hello there", lane: Lane = Lane.interactive,
            metadata: dict | None = None, key: str | None = None) -> NewJob:
    return NewJob(
        id=job_id, owner=owner, text=text, voice_id="fake-en", language="en",
        output_format="mp3_44100_128", idempotency_key=key, request_hash="h", lane=lane,
        metadata=metadata, cache_key=f"ck-{job_id}",
    )


def new_audio(owner: str, cache_key: str, charge: int) -> NewAudio:
    return NewAudio(
        owner=owner, cache_key=cache_key, format="mp3_44100_128", content_type="audio/mpeg",
        duration_s=1.5, size=100, path=f"ab/{cache_key}.mp3", charge=charge,
    )


async def test_metadata_and_lane_round_trip_on_every_read(store: PgStore) -> None:
    meta = {"book": "b1", "page": 2, "tags": ["a", "b"], "nested": {"x": None, "y": 1.5}}
    with trio.fail_after(CAP_S):
        alice, _ = await store.create_user("alice")
        # with a quota (one statement path) and without (the batched insert)
        one, _ = await store.create_job(new_job(alice.id, "j1", lane=Lane.batch, metadata=meta),
                                        quota=1000)
        many = [new_job(alice.id, f"m{i}", metadata={"i": i}) for i in range(3)]
        async with trio.open_nursery() as nursery:
            for job in many:
                nursery.start_soon(store.create_job, job)
        plain, _ = await store.create_job(new_job(alice.id, "j2"))
        assert (one.lane, one.metadata) == (Lane.batch, meta)
        assert (plain.lane, plain.metadata) == (Lane.interactive, None)
        for i in range(3):
            got = await store.get_job(f"m{i}")
            assert got is not None and got.metadata == {"i": i}
        assert (await store.get_job("j1", alice.id)).metadata == meta
        started = await store.start_job("j1")
        assert started.status is JobStatus.running and started.metadata == meta
        (batch_started, _), = await store.start_jobs_cached([("m0", "ck-m0")])
        assert batch_started.metadata == {"i": 0}
        finished = await store.finish_job("j1", new_audio(alice.id, "ck-j1", 11))
        assert finished.lane is Lane.batch and finished.metadata == meta
        assert one.to_stream().lane is Lane.batch  # and it reaches the stream entry


async def test_cancel_job_is_a_compare_and_set_on_queued_jobs(store: PgStore) -> None:
    with trio.fail_after(CAP_S):
        alice, _ = await store.create_user("alice")
        bob, _ = await store.create_user("bob")
        await store.set_quota("alice", 30)
        await store.create_job(new_job(alice.id, "q"))  # 11 characters each
        await store.create_job(new_job(alice.id, "r"))
        assert (await store.usage(alice.id)).reserved == 22
        with pytest.raises(QuotaExceeded):
            await store.create_job(new_job(alice.id, "s"), quota=30)
        assert await store.cancel_job("q", bob.id) is None  # not bob's: nothing happens
        assert (await store.get_job("q")).status is JobStatus.queued
        cancelled = await store.cancel_job("q", alice.id)
        assert cancelled.status is JobStatus.cancelled and cancelled.finished_at is not None
        assert (await store.cancel_job("q")).status is JobStatus.cancelled  # a repeat
        assert await store.cancel_job("nope") is None
        # its reservation is freed: another job fits again
        assert (await store.usage(alice.id)).reserved == 11
        await store.create_job(new_job(alice.id, "s"), quota=30)
        # a started job cannot be cancelled
        await store.start_job("r")
        assert (await store.cancel_job("r", alice.id)).status is JobStatus.running


async def test_a_cancelled_job_stays_ended_for_every_store_path(store: PgStore) -> None:
    with trio.fail_after(CAP_S):
        alice, _ = await store.create_user("alice")
        await store.create_job(new_job(alice.id, "c"))
        await store.cancel_job("c")
        assert (await store.start_job("c")).status is JobStatus.cancelled
        assert (await store.start_job_cached("c", "ck-c"))[0].status is JobStatus.cancelled
        (job, audio), = await store.start_jobs_cached([("c", "ck-c")])
        assert job.status is JobStatus.cancelled and job.attempts == 0 and audio is None
        assert (await store.fail_job("c", "x", "y")).status is JobStatus.cancelled
        assert (await store.requeue_job("c")).status is JobStatus.cancelled  # no redrive
        finished = await store.finish_job("c", new_audio(alice.id, "ck-c", 11))
        assert finished.status is JobStatus.cancelled and finished.audio_id is None
        assert (await store.usage(alice.id)).used == 0  # never charged
        assert await store.orphan_candidates(0.0, 3600.0) == []  # the sweeper ignores it
        assert await store.discard_job("c") is False  # ended: kept as it is


async def test_a_worker_acks_a_cancelled_batch_job_without_generating_it(
    redis_url, store, tmp_path
) -> None:
    """Regression: the TTSActor may call the provider before the job's start is known (a
    first delivery with its lock free); a batch job cancelled while queued was generated."""
    settings = make_settings(tmp_path)
    provider = FakeProvider()
    with trio.fail_after(60):
        alice, _ = await store.create_user("alice")
        jobs = [
            (await store.create_job(new_job(alice.id, f"c{i}", text=f"Cancelled line {i}.",
                                            lane=Lane.batch)))[0]
            for i in range(3)
        ]
        async with open_queue(redis_url, Keys(settings.redis_prefix), stream_timeout=5) as q:
            await q.ensure_group()
            await q.enqueue([job.to_stream(time.time()) for job in jobs])
            for job in jobs:
                assert (await store.cancel_job(job.id, alice.id)).status is JobStatus.cancelled
            async with running_service(
                redis_url=redis_url, store=store, settings=settings, provider=provider
            ) as svc:
                r = await svc.submit("Still spoken.")
                assert r.status_code == 202
                done = await svc.wait_done(svc.accepted)
                assert [j["status"] for j in done.values()] == ["succeeded"]
                while True:  # the cancelled entries are acked too (polled: real servers)
                    if not (await q.backlog() or await q.pending_count()):
                        break
                    await trio.sleep(0.02)
        assert [req.text for req in provider.requests] == ["Still spoken."]
        for job in jobs:
            after = await store.get_job(job.id)
            assert after.status is JobStatus.cancelled and after.audio_id is None
