"""Streaming a job's audio while it is made (``GET /v1/jobs/{id}/stream``), on the real embedded
Valkey and Postgres: first bytes before the job is finished, the streamed body is the stored
clip, charged once, a client that leaves mid-stream loses nothing, a cache hit streams the
stored clip, another user gets a 404."""

from __future__ import annotations

import io

import av
import trio

from protocols.providers.espeak import EspeakProvider
from protocols.providers.fake import FakeProvider
from tests.support.harness import make_settings, running_service, total_queue_check


def _decoded_s(data: bytes) -> float:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        return sum(f.samples for f in container.decode(stream)) / stream.rate


async def _stored(svc, job_id: str) -> bytes:  # type: ignore[no-untyped-def]
    job = (await svc.wait_done([job_id]))[job_id]
    assert job["status"] == "succeeded", job
    r = await svc.client.get(f"/v1/audio/{job['audio_id']}")
    assert r.status_code == 200
    return r.content


async def test_audio_flows_before_the_job_is_done_and_is_the_stored_clip(
    redis_url, store, tmp_path
):
    settings = make_settings(tmp_path)
    provider = FakeProvider()
    provider.hold = trio.Event()  # after its first piece, the fake waits for this
    text = "A fox streams its story."
    with trio.fail_after(60):
        async with running_service(
            redis_url=redis_url, store=store, settings=settings, provider=provider
        ) as svc:
            r = await svc.submit(text, stream=True)
            assert r.status_code == 202, r.text
            job_id = r.json()["id"]
            body = bytearray()
            async with svc.client.stream("GET", f"/v1/jobs/{job_id}/stream") as live:
                assert live.status_code == 200
                assert live.headers["content-type"] == "audio/mpeg"
                chunks = live.aiter_bytes()
                body += await anext(chunks)
                assert body
                # the first bytes are here, and the job is still being made
                job = (await svc.client.get(f"/v1/jobs/{job_id}")).json()
                assert job["status"] == "running", job
                provider.hold.set()
                async for chunk in chunks:
                    body += chunk
            stored = await _stored(svc, job_id)
            assert bytes(body) == stored
            assert _decoded_s(stored) > 0.05
            usage = (await svc.client.get("/v1/usage")).json()
            assert usage["jobs_charged"] == 1 and usage["used"] == len(text)
            assert provider.calls == 1

            # a cache hit streams the stored clip, nothing generated or charged
            again = await svc.submit(text, stream=True)
            assert again.status_code == 200 and again.json()["status"] == "succeeded"
            r = await svc.client.get(f"/v1/jobs/{again.json()['id']}/stream")
            assert r.status_code == 200 and r.content == stored
            assert provider.calls == 1
            assert (await svc.client.get("/v1/usage")).json()["jobs_charged"] == 1

            # another user's job is a 404, as if it did not exist
            _, other_key = await store.create_user("eve-live")
            r = await svc.client.get(f"/v1/jobs/{job_id}/stream",
                                     headers={"Authorization": f"Bearer {other_key}"})
            assert r.status_code == 404
            r = await svc.client.get("/v1/jobs/job_nope/stream")
            assert r.status_code == 404
        await total_queue_check(store, redis_url, settings, svc.accepted)


async def test_a_client_that_leaves_mid_stream_loses_nothing(redis_url, store, tmp_path):
    settings = make_settings(tmp_path)
    provider = FakeProvider()
    provider.hold = trio.Event()
    with trio.fail_after(60):
        async with running_service(
            redis_url=redis_url, store=store, settings=settings, provider=provider
        ) as svc:
            r = await svc.submit("Gone before the end.", stream=True)
            job_id = r.json()["id"]
            async with svc.client.stream("GET", f"/v1/jobs/{job_id}/stream") as live:
                first = await anext(live.aiter_bytes())
                assert first
            # the client is gone; the job goes on
            provider.hold.set()
            stored = await _stored(svc, job_id)
            assert stored.startswith(first)
            # a new follower gets the whole clip
            r = await svc.client.get(f"/v1/jobs/{job_id}/stream")
            assert r.status_code == 200 and r.content == stored
            assert (await svc.client.get("/v1/usage")).json()["jobs_charged"] == 1
        await total_queue_check(store, redis_url, settings, svc.accepted)


async def test_a_job_submitted_without_stream_is_followed_to_its_stored_clip(
    redis_url, store, tmp_path
):
    settings = make_settings(tmp_path)
    provider = FakeProvider()
    provider.gate = trio.Event()
    with trio.fail_after(60):
        async with running_service(
            redis_url=redis_url, store=store, settings=settings, provider=provider
        ) as svc:
            job_id = (await svc.submit("Not streamed, still followed.")).json()["id"]
            async with trio.open_nursery() as nursery:
                got: list[bytes] = []

                async def follow() -> None:
                    r = await svc.client.get(f"/v1/jobs/{job_id}/stream")
                    assert r.status_code == 200
                    got.append(r.content)

                nursery.start_soon(follow)
                provider.gate.set()
            assert got == [await _stored(svc, job_id)]


async def test_a_failed_job_is_a_problem_before_any_byte(redis_url, store, tmp_path):
    from protocols.errors import UnknownVoice

    settings = make_settings(tmp_path)
    provider = FakeProvider()
    provider.script.append(UnknownVoice("gone", voice_id="fake-en"))
    with trio.fail_after(60):
        async with running_service(
            redis_url=redis_url, store=store, settings=settings, provider=provider
        ) as svc:
            job_id = (await svc.submit("This one fails.", stream=True)).json()["id"]
            r = await svc.client.get(f"/v1/jobs/{job_id}/stream")
            assert r.status_code == 409, r.text
            assert r.json()["code"] == "job_not_succeeded"


async def test_the_embedded_engine_streams_the_stored_clip(redis_url, store, tmp_path):
    settings = make_settings(tmp_path)
    text = ("The fox ran to the river. It drank the cold water and looked around. "
            "Then it went home through the tall grass, singing a quiet song to itself.")
    with trio.fail_after(60):
        async with running_service(
            redis_url=redis_url, store=store, settings=settings, provider=EspeakProvider()
        ) as svc:
            job_id = (await svc.submit(text, stream=True)).json()["id"]
            pieces = []
            async with svc.client.stream("GET", f"/v1/jobs/{job_id}/stream") as live:
                assert live.status_code == 200
                async for chunk in live.aiter_raw():
                    pieces.append(chunk)
            body = b"".join(pieces)  # (part by part: tests/unit/test_streaming_engines.py)
            assert body == await _stored(svc, job_id)
            assert 4.0 < _decoded_s(body) < 15.0
        await total_queue_check(store, redis_url, settings, svc.accepted)


async def test_a_stream_broken_mid_way_is_taken_up_by_the_next_attempt(redis_url, store, tmp_path):
    """The first attempt dies after its first piece (aborted); the job is tried again and the
    follower, which already sent that piece, goes on with the next attempt's same bytes: one
    whole clip, each byte once, charged once."""
    from protocols.errors import ProviderUnavailable

    settings = make_settings(tmp_path)
    provider = FakeProvider()
    provider.break_stream = ProviderUnavailable("upstream stream reset")
    with trio.fail_after(60):
        async with running_service(
            redis_url=redis_url, store=store, settings=settings, provider=provider
        ) as svc:
            job_id = (await svc.submit("Broken, then whole.", stream=True)).json()["id"]
            r = await svc.client.get(f"/v1/jobs/{job_id}/stream")
            assert r.status_code == 200
            stored = await _stored(svc, job_id)
            assert r.content == stored
            assert provider.calls == 2
            job = (await svc.client.get(f"/v1/jobs/{job_id}")).json()
            assert job["attempts"] == 2
            assert (await svc.client.get("/v1/usage")).json()["jobs_charged"] == 1
        await total_queue_check(store, redis_url, settings, svc.accepted)
