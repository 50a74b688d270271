"""The default offline setup end to end (real embedded Valkey and Postgres, the whole service):
the embedded provider with Piper for English and espeak-ng for Korean, as ``make run`` gets it
without an ElevenLabs key. Skipped only when Piper is not installed."""

from __future__ import annotations

import io
from typing import Any

import av
import pytest
import trio

from protocols.providers import open_provider, piper
from tests.support.harness import make_settings, running_service, total_queue_check

pytestmark = pytest.mark.skipif(not piper.installed(), reason="Piper is not installed")


def decoded_seconds(data: bytes) -> float:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        return sum(frame.samples for frame in container.decode(stream)) / stream.rate


async def test_voices_of_both_engines_and_jobs_spoken_by_each(
    redis_url: str, store: Any, tmp_path: Any
) -> None:
    settings = make_settings(tmp_path)
    with trio.fail_after(90):
        async with open_provider(settings) as provider, running_service(
            redis_url=redis_url, store=store, settings=settings, provider=provider
        ) as svc:
            r = await svc.client.get("/v1/voices", params={"language": "en", "search": "joe"})
            assert r.status_code == 200, r.text
            (joe,) = r.json()["voices"]
            assert joe["voice_id"] == "en_US-joe-medium" and "Piper" in joe["description"]
            r = await svc.client.get("/v1/voices", params={"language": "ko"})
            korean = {v["voice_id"]: v for v in r.json()["voices"]}
            assert "ko" in korean and "espeak-ng" in korean["ko"]["description"]

            en = await svc.submit("Once upon a time, a small fox lived at the edge of the forest.")
            ko = await svc.submit("옛날 옛적에 작은 여우가 숲 가장자리에 살았어요.", language="ko")
            assert en.status_code == 202 and ko.status_code == 202, (en.text, ko.text)
            jobs = await svc.wait_done(svc.accepted, limit_s=60)
            durations = {}
            for job in jobs.values():
                assert job["status"] == "succeeded", job
                r = await svc.client.get(f"/v1/audio/{job['audio_id']}")
                assert r.status_code == 200 and r.headers["content-type"] == "audio/mpeg"
                durations[job["voice_id"]] = decoded_seconds(r.content)
            assert set(durations) == {"en_US-joe-medium", "ko"}
            assert 2.0 < durations["en_US-joe-medium"] < 8.0
            assert 1.5 < durations["ko"] < 10.0
        await total_queue_check(store, redis_url, settings, svc.accepted)
