"""The orphan sweeper on the real embedded Valkey and Postgres: a job whose row was written but
whose XADD never happened (and whose discard failed) is failed with ``enqueue_failed``, freeing
its quota reservation; an idempotent retry puts it back on the queue."""

from __future__ import annotations

import trio

from actors.pipeline.sweeper import OrphanSweeper
from protocols.domain.jobs import request_hash
from protocols.events import EventKind
from protocols.messages import DEFAULT_FORMAT, JobStatus, NewJob
from protocols.redis.keys import Keys
from protocols.redis.queue import open_queue
from tests.support.fakes import RecordingEvents
from tests.support.harness import make_settings, running_service

LIMIT_S = 30


TEXT = "Lost on the way."


def orphan(owner: str, job_id: str, key: str) -> NewJob:
    """The row ``POST /v1/jobs`` wrote for this request before its XADD failed."""
    return NewJob(
        id=job_id, owner=owner, text=TEXT, voice_id="fake-en", language=None,
        output_format=DEFAULT_FORMAT, idempotency_key=key,
        request_hash=request_hash(TEXT, "fake-en", None, DEFAULT_FORMAT),
    )


async def test_a_job_that_never_reached_the_stream_is_failed_and_a_retry_requeues_it(
    redis_url, store, tmp_path
):
    settings = make_settings(tmp_path, orphan_age_s=0.0)
    keys = Keys(settings.redis_prefix)
    events = RecordingEvents()
    with trio.fail_after(LIMIT_S):
        async with running_service(redis_url=redis_url, store=store, settings=settings) as svc:
            user = await store.authenticate(svc.api_key)
            assert user is not None
            await store.set_quota(user.name, 100)
            # a normal job: in the stream (its marker exists), left alone
            ok = await svc.submit("This one made it.")
            await svc.wait_done([ok.json()["id"]])
            # the row of a submit whose XADD failed and whose discard failed too
            lost, _ = await store.create_job(orphan(user.id, "job_lost", key="retry-me"))
            assert (await store.usage(user.id)).reserved == len(lost.text)
            sweeper = OrphanSweeper(settings=settings, store=store, events=events,
                                    open_queue=lambda: open_queue(redis_url, keys,
                                                                  stream_timeout=3))
            async with open_queue(redis_url, keys, stream_timeout=3) as queue:
                assert await sweeper.sweep(queue) == ["job_lost"]
                assert await sweeper.sweep(queue) == []  # idempotent
            swept = await store.get_job("job_lost")
            assert swept is not None and swept.status is JobStatus.failed
            assert swept.error_code == "enqueue_failed"
            assert (await store.usage(user.id)).reserved == 0  # the quota is free again
            assert [e.kind for e in events.events] == [EventKind.job_failed]
            done = await store.get_job(ok.json()["id"])
            assert done is not None and done.status is JobStatus.succeeded

            # the client retries with the same idempotency key: the job runs after all
            retry = await svc.client.post(
                "/v1/jobs", json={"text": TEXT, "voice_id": "fake-en"},
                headers={"Idempotency-Key": "retry-me"},
            )
            assert retry.status_code == 202, retry.text
            assert retry.json()["id"] == "job_lost"
            jobs = await svc.wait_done(["job_lost"])
    assert jobs["job_lost"]["status"] == "succeeded"
