"""A cache hit's costs on the real Postgres and Valkey: answered with its audio (a compatible
convert), its job row is committed with ``synchronous_commit`` off for that statement's
transaction only, keeps idempotency and charges nothing, while every other job row still waits
for the flush; its hit/miss count rides on a round trip that goes anyway, and its events are
acked in groups by the storybook runner's subscriber."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import trio

from actors.events import subscriber as subscriber_module
from actors.events.subscriber import EventSubscriber
from protocols.messages import JobStatus, NewAudio, NewJob
from protocols.postgres import jobs_sql
from protocols.postgres.store import PgStore
from protocols.redis import coordination
from protocols.redis.coordination import Coordinator, read_counters
from protocols.redis.keys import Keys
from protocols.redis.queue import open_queue
from tests.unit.test_events import Collector, bus_opener, ev

CAP_S = 20


def new_job(owner: str, job_id: str, *, key: str | None = None) -> NewJob:
    return NewJob(id=job_id, owner=owner, text="Hello there", voice_id="en-us", language="en",
                  output_format="mp3_44100_128", idempotency_key=key, request_hash="h1",
                  cache_key="ck1")


async def test_a_hit_answered_with_audio_commits_without_the_flush_and_keeps_its_guarantees(
    store: PgStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(CAP_S):
        alice, _ = await store.create_user("alice")
        await store.create_job(new_job(alice.id, "j0"))
        await store.start_job("j0")
        await store.finish_job("j0", NewAudio(
            owner=alice.id, cache_key="ck1", format="mp3_44100_128", content_type="audio/mpeg",
            duration_s=1.0, size=10, path="ck/ck1.mp3", charge=11,
        ))
        clip = await store.find_audio(alice.id, "ck1")
        assert clip is not None

        flushes: list[bool] = []
        real = jobs_sql.create_jobs

        async def spying(conn: Any, jobs: Any, flush: bool = True) -> Any:
            flushes.append(flush)
            return await real(conn, jobs, flush)

        monkeypatch.setattr(jobs_sql, "create_jobs", spying)
        hit, created = await store.create_job(new_job(alice.id, "h1", key="k1"), cached=clip,
                                               durable=False)
        assert created and hit.status is JobStatus.succeeded and hit.cached
        assert hit.audio_id == clip.id
        assert await store.get_job("h1", owner=alice.id) == hit  # committed, visible
        again, created = await store.create_job(new_job(alice.id, "h2", key="k1"), cached=clip,
                                                durable=False)
        assert again.id == "h1" and not created  # the idempotency key holds
        await store.create_job(new_job(alice.id, "h3"), cached=clip)  # POST /v1/jobs' hit
        await store.create_job(new_job(alice.id, "q1"))  # a new job
        assert flushes == [False, False, True, True]  # h1, h2 (key taken: found), h3, q1
        assert (await store.usage(alice.id)).used == 11  # the hits charged nothing

        async def setting_inside(conn: Any, flush: bool) -> str:
            """What the statement's transaction commits with."""
            async with conn.transaction():
                await real(conn, [(new_job(alice.id, f"p{flush}"), clip.id)], flush)
                return str(await conn.fetchval("SHOW synchronous_commit"))

        async def setting(conn: Any) -> str:
            return str(await conn.fetchval("SHOW synchronous_commit"))

        assert await store._call(setting_inside, False) == "off"
        assert await store._call(setting_inside, True) == "on"
        for _ in range(3):  # for that transaction only: the pool's sessions keep the default
            assert await store._call(setting) == "on"


async def test_per_request_counts_wait_for_a_round_trip_that_goes_anyway(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Intake's hit/miss counts (``count_soon(linger=True)``) cost no round trip each: they
    go with the next slot release's, or on their own after ``COUNT_LINGER_S``."""
    keys = Keys(f"t{uuid.uuid4().hex[:8]}")
    with trio.fail_after(CAP_S):
        async with open_queue(redis_url, keys, stream_timeout=5) as q:
            c = Coordinator(q.client, keys, account="acct", limit=2, lease_s=5.0,
                            timeout_s=2.0, holder="w1")

            async def until(name: str, value: int) -> None:
                for _ in range(500):  # polled (Redis has no event for it), within CAP_S
                    if (await read_counters(q.client, keys)).get(name, 0) == value:
                        return
                    await trio.sleep(0.01)
                raise AssertionError(f"{name} never reached {value}")

            monkeypatch.setattr(coordination, "COUNT_LINGER_S", 30.0)
            async with c.keeping():
                for _ in range(3):
                    c.count_soon("api_cache_hits", linger=True)
                    await trio.sleep(0.02)  # each past RELEASE_LINGER_S: not one write each
                assert await read_counters(q.client, keys) == {}  # still waiting
                c.count_soon("provider_calls")  # counted with a slot's release: goes now
                await until("provider_calls", 1)
                assert (await read_counters(q.client, keys))["api_cache_hits"] == 3

                monkeypatch.setattr(coordination, "COUNT_LINGER_S", 0.05)
                c.count_soon("api_cache_misses", linger=True)
                await until("api_cache_misses", 1)  # nothing else went: on its own
                c.count_soon("api_cache_hits", linger=True)
            # leaving keeping() writes what is still due
            assert (await read_counters(q.client, keys))["api_cache_hits"] == 4


async def test_events_that_come_one_at_a_time_are_acked_together(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A durable subscriber (the storybook runner reads every job's events, a cache hit's
    too) acks what it handled every ``ACK_EVERY_S``, not one XACK per event; a stop acks the
    rest, so nothing handled comes back."""
    keys = Keys(f"t{uuid.uuid4().hex[:8]}")
    opener = bus_opener(redis_url, keys)
    handler = Collector()
    monkeypatch.setattr(subscriber_module, "ACK_EVERY_S", 30.0)
    with trio.fail_after(CAP_S):
        async with opener() as bus:
            sub, stop = EventSubscriber(opener, group="runner", consumer="r-1",
                                        handler=handler, block_ms=100), trio.Event()
            async with trio.open_nursery() as nursery:
                await nursery.start(sub.run, stop)
                for i in range(5):  # one at a time, each handled before the next is sent
                    await bus.publish([ev(i)])
                    await handler.wait_for(i + 1)
                assert await bus.pending("runner") == 5  # handled, their ack still waiting
                stop.set()
            assert await bus.pending("runner") == 0  # the stop acked them
            again, stop = EventSubscriber(opener, group="runner", consumer="r-1",
                                          handler=handler, block_ms=100), trio.Event()
            async with trio.open_nursery() as nursery:
                await nursery.start(again.run, stop)
                await bus.publish([ev(9)])
                await handler.wait_for(6)
                stop.set()
            assert len(handler.seen) == len(set(handler.seen)) == 6  # none came back
