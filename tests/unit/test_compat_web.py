"""The compat routes' seams on in-memory fakes (Quart test client): a job's audio followed as
it is made (``WebContext.follow_audio``) is relayed by ``/stream`` and OpenAI's speech route
without waiting for the job, and a clip's recorded timings (``WebContext.alignment_of``) are
answered instead of the approximate even spread."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import trio
import trio.testing

from protocols.messages import Alignment, Audio, Job, JobStatus
from tests.unit.test_web import Env, env  # noqa: F401 (the fixture)


def following(seen: list[Job]) -> Any:
    async def follow(job: Job) -> AsyncIterator[bytes]:
        seen.append(job)
        for piece in (b"first ", b"second"):
            await trio.lowlevel.checkpoint()
            yield piece

    return follow


async def test_stream_relays_the_audio_as_it_is_made(env: Env) -> None:  # noqa: F811
    seen: list[Job] = []
    ctx = dataclasses.replace(env.ctx, follow_audio=following(seen))
    env.ctx = ctx
    r = await env.client().post("/v1/text-to-speech/en-1/stream", headers={"xi-api-key": env.key},
                                json={"text": "Follow me."})
    assert r.status_code == 200 and await r.get_data() == b"first second"
    assert [j.status for j in seen] == [JobStatus.queued]  # not waited for
    assert r.headers["request-id"] == seen[0].id and r.mimetype == "audio/mpeg"
    assert [j.job_id for j in env.submitted] == [seen[0].id]

    r = await env.client().post("/v1/audio/speech", headers=env.auth, json={
        "model": "tts-1", "voice": "alloy", "input": "Follow me too."})
    assert r.status_code == 200 and await r.get_data() == b"first second"
    assert len(seen) == 2 and seen[1].voice_id == "en-1"  # alloy: the first English voice


async def test_recorded_timings_are_answered(env: Env) -> None:  # noqa: F811
    recorded = Alignment(characters=("h", "i"), character_start_times_seconds=(0.0, 0.7),
                         character_end_times_seconds=(0.7, 1.5))
    asked: list[Audio] = []

    async def alignment_of(audio: Audio) -> Alignment | None:
        asked.append(audio)
        return recorded

    env.ctx = dataclasses.replace(env.ctx, alignment_of=alignment_of)
    client = env.client()
    async with trio.open_nursery() as nursery:
        async def finish_it() -> None:
            await trio.testing.wait_all_tasks_blocked()  # the route waits for the job
            await env.finish(env.submitted[0].job_id, b"ID3-hi")

        nursery.start_soon(finish_it)
        r = await client.post("/v1/text-to-speech/en-1/with-timestamps",
                              headers={"xi-api-key": env.key}, json={"text": "hi"})
    body = await r.get_json()
    assert r.status_code == 200, body
    assert base64.b64decode(body["audio_base64"]) == b"ID3-hi"
    assert body["alignment"]["character_end_times_seconds"] == [0.7, 1.5]
    assert len(asked) == 1
