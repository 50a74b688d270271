"""Submit -> audio, end to end on the real embedded Valkey and Postgres."""

from __future__ import annotations

import io
from functools import partial

import av
import trio

from protocols.providers.espeak import EspeakProvider
from protocols.providers.fake import FakeProvider
from tests.support.harness import make_settings, running_service, total_queue_check


def _decoded_duration(data: bytes) -> float:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        return samples / stream.rate


async def test_english_and_korean_become_playable_audio(redis_url, store, tmp_path):
    settings = make_settings(tmp_path)
    with trio.fail_after(60):
        async with running_service(
            redis_url=redis_url, store=store, settings=settings, provider=EspeakProvider()
        ) as svc:
            en = await svc.submit("Once upon a time, a small fox lived at the edge of the forest.")
            ko = await svc.submit("옛날 옛적에 작은 여우가 숲 가장자리에 살았어요.", language="ko")
            assert en.status_code == 202 and ko.status_code == 202
            jobs = await svc.wait_done(svc.accepted)
            durations = {}
            for job in jobs.values():
                assert job["status"] == "succeeded", job
                assert job["attempts"] == 1
                r = await svc.client.get(f"/v1/audio/{job['audio_id']}")
                assert r.status_code == 200
                assert r.headers["content-type"] == "audio/mpeg"
                assert int(r.headers["content-length"]) == len(r.content)
                durations[job["voice_id"]] = _decoded_duration(r.content)
            assert set(durations) == {"en-us", "ko"}
            assert 2.0 < durations["en-us"] < 10.0
            assert 1.5 < durations["ko"] < 10.0
        await total_queue_check(store, redis_url, settings, svc.accepted)


async def test_every_accepted_job_succeeds_once_with_repeats(redis_url, store, tmp_path):
    settings = make_settings(tmp_path)
    provider = FakeProvider(latency_s=0.01)
    with trio.fail_after(60):
        async with running_service(
            redis_url=redis_url, store=store, settings=settings, provider=provider
        ) as svc:
            async with trio.open_nursery() as nursery:
                for i in range(60):
                    nursery.start_soon(
                        partial(svc.submit, f"line {i % 20}", idempotency_key=f"k{i % 40}")
                    )
            jobs = await svc.wait_done(set(svc.accepted))
            assert len(jobs) == 40  # 60 submissions, 40 distinct idempotency keys
            assert all(j["status"] == "succeeded" for j in jobs.values())
            assert provider.peak <= settings.concurrency
        tally = await total_queue_check(store, redis_url, settings, svc.accepted)
        assert tally["succeeded"] == 40


async def test_permanent_error_fails_job_without_retry(redis_url, store, tmp_path):
    settings = make_settings(tmp_path)
    with trio.fail_after(30):
        async with running_service(
            redis_url=redis_url, store=store, settings=settings, provider=EspeakProvider()
        ) as svc:
            r = await svc.submit("   ")
            assert r.status_code == 422 and r.json()["code"] == "text_empty"
            r = await svc.submit("hello", voice_id="no-such-voice")
            assert r.status_code == 404 and r.json()["code"] == "voice_not_found"
            assert svc.accepted == []
