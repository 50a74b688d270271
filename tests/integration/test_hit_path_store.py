"""A cache hit answered with its audio (a compatible convert) on the real Postgres: its job row
is committed with ``synchronous_commit`` off for that statement's transaction only, keeps
idempotency and charges nothing; every other job row still waits for the flush."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from protocols.messages import JobStatus, NewAudio, NewJob
from protocols.postgres import jobs_sql
from protocols.postgres.store import PgStore

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
