"""Voices end to end: the whole service on the real embedded Valkey and Postgres with the
ElevenLabs adapter pointed at the fake ElevenLabs server. A clone uploaded over HTTP is
``processing``, becomes ``completed`` with a playable preview once the fake says ready; another
user sees neither the private voice nor its preview; VoiceSync is tracked in Redis."""

from __future__ import annotations

from typing import Any

import httpx
import trio

from protocols.providers.elevenlabs.provider import ElevenLabsProvider
from protocols.redis.keys import Keys
from protocols.redis.queue import open_queue
from protocols.redis.voice_queue import RedisVoiceSyncQueue
from protocols.settings import Secret
from tests.support.clips import clip as sample_clip
from tests.support.elevenlabs.server import FakeElevenLabs
from tests.support.harness import make_settings, running_service

CAP_S = 20.0


async def poll(client: httpx.AsyncClient, path: str, until: Any, limit_s: float,
               headers: dict[str, str] | None = None) -> Any:
    with trio.fail_after(limit_s):
        while True:
            body = (await client.get(path, headers=headers)).json()
            if until(body):
                return body
            await trio.sleep(0.05)


async def test_clone_over_http_becomes_completed_with_a_preview(
    redis_url: str, store: Any, fake_elevenlabs: FakeElevenLabs, tmp_path: Any
) -> None:
    with trio.fail_after(CAP_S):
        settings = make_settings(
            tmp_path, elevenlabs_api_key=Secret("test-key"),
            elevenlabs_base_url=fake_elevenlabs.base_url, voice_poll_s=0.05,
            voice_poll_max_s=0.2, elevenlabs_timeout_s=5.0,
        )
        async with ElevenLabsProvider.open(settings) as provider, running_service(
            redis_url=redis_url, store=store, settings=settings, provider=provider
        ) as run:
            files = [("files", ("a.mp3", sample_clip("mp3"), "audio/mpeg")),
                     ("files", ("b.wav", sample_clip("wav"), "audio/wav"))]
            r = await run.client.post(
                "/v1/voices", files=files,
                data={"name": "Fox", "description": "warm", "labels": '{"accent": "irish"}'},
            )
            assert r.status_code == 202, r.text
            voice = r.json()
            assert voice["status"] == "processing"
            (upload,) = fake_elevenlabs.clone_uploads
            assert upload["name"] == "Fox" and upload["labels"] == {"accent": "irish"}
            assert upload["description"] == "warm" and len(upload["files"]) == 2
            pid = upload["voice_id"]
            async with open_queue(redis_url, Keys(settings.redis_prefix),
                                  stream_timeout=3) as q:
                tracked = await RedisVoiceSyncQueue(q.client, Keys(settings.redis_prefix)
                                                    ).tracked()
            assert voice["id"] in {t.voice_id for t in tracked}

            # another user: the private voice does not exist, a job naming it neither
            _, other_key = await store.create_user("mallory")
            other = {"Authorization": f"Bearer {other_key}"}
            assert (await run.client.get(f"/v1/voices/{voice['id']}", headers=other)
                    ).json()["code"] == "voice_not_found"
            r = await run.client.post("/v1/jobs", headers=other,
                                      json={"text": "hi", "voice_id": voice["id"]})
            assert r.status_code == 404 and r.json()["code"] == "voice_not_found"
            r = await run.client.post("/v1/jobs", json={"text": "hi", "voice_id": voice["id"]})
            assert r.status_code == 409 and r.json()["code"] == "voice_not_ready"

            fake_elevenlabs.mark_voice_ready(pid)
            done = await poll(run.client, f"/v1/voices/{voice['id']}",
                              lambda b: "preview_url" in b, 15)
            assert done["status"] == "completed"
            clip = await run.client.get(done["preview_url"])
            assert clip.status_code == 200 and clip.headers["content-type"] == "audio/mpeg"
            assert len(clip.content) > 100
            assert (await run.client.get(done["preview_url"], headers=other)).status_code == 404
            audio = await run.client.get(f"/v1/audio/{done['preview_audio_id']}", headers=other)
            assert audio.status_code == 404
            listed = (await run.client.get("/v1/voices?visibility=default")).json()["voices"]
            assert listed and all(v["visibility"] == "default" for v in listed)

            r = await run.client.delete(f"/v1/voices/{voice['id']}")
            assert r.status_code == 204 and pid not in fake_elevenlabs.voice_ids
            mine = await run.client.get(f"/v1/audio/{done['preview_audio_id']}")
            assert mine.status_code == 200  # audio made with it is kept


async def test_tracked_voices_survive_a_restart_even_with_the_redis_schedule_lost(
    redis_url: str, store: Any, fake_elevenlabs: FakeElevenLabs, tmp_path: Any
) -> None:
    """Postgres is the truth: a process restart (here with VoiceSync's Redis keys deleted as
    well) rebuilds the schedule, and the voices go on to completed / failed."""
    settings = make_settings(
        tmp_path, elevenlabs_api_key=Secret("test-key"),
        elevenlabs_base_url=fake_elevenlabs.base_url, voice_poll_s=0.05,
        voice_poll_max_s=0.2, elevenlabs_timeout_s=5.0,
    )
    keys = Keys(settings.redis_prefix)
    sample = [("files", ("a.mp3", sample_clip("mp3"), "audio/mpeg"))]
    with trio.fail_after(2 * CAP_S):
        async with ElevenLabsProvider.open(settings) as provider:
            async with running_service(
                redis_url=redis_url, store=store, settings=settings, provider=provider
            ) as run:
                ids = []
                for name in ("Ready", "Broken"):
                    r = await run.client.post("/v1/voices", files=sample, data={"name": name})
                    assert r.status_code == 202, r.text
                    ids.append(r.json()["id"])
                key = run.api_key
            # the process is gone; so is VoiceSync's schedule in Redis
            async with open_queue(redis_url, keys, stream_timeout=3) as q:
                await q.client.delete([keys.voice_sync, *(keys.voice_status(i) for i in ids)])
            by_name = {u["name"]: u["voice_id"] for u in fake_elevenlabs.clone_uploads}
            fake_elevenlabs.mark_voice_ready(by_name["Ready"])
            fake_elevenlabs.mark_voice_failed(by_name["Broken"], "samples too noisy")
            async with running_service(
                redis_url=redis_url, store=store, settings=settings, provider=provider
            ) as run:
                owner = {"Authorization": f"Bearer {key}"}
                ready = await poll(run.client, f"/v1/voices/{ids[0]}",
                                   lambda b: "preview_url" in b, 15, owner)
                broken = await poll(run.client, f"/v1/voices/{ids[1]}",
                                    lambda b: b["status"] == "failed", 15, owner)
                clip = await run.client.get(ready["preview_url"], headers=owner)
    assert ready["status"] == "completed" and clip.status_code == 200 and clip.content
    assert "samples too noisy" in broken["status_reason"]


async def test_an_account_voice_made_outside_chorus_is_usable_by_every_user(
    redis_url: str, store: Any, fake_elevenlabs: FakeElevenLabs, tmp_path: Any
) -> None:
    account_voice = fake_elevenlabs.add_voice("Made in the ElevenLabs app", category="cloned")
    settings = make_settings(
        tmp_path, elevenlabs_api_key=Secret("test-key"),
        elevenlabs_base_url=fake_elevenlabs.base_url, elevenlabs_timeout_s=5.0,
    )
    with trio.fail_after(CAP_S):
        async with ElevenLabsProvider.open(settings) as provider, running_service(
            redis_url=redis_url, store=store, settings=settings, provider=provider
        ) as run:
            body = {"text": "The operator's voice.", "voice_id": account_voice}
            r = await run.client.post("/v1/jobs", json=body)
            assert r.status_code == 202, r.text
            job = (await run.wait_done([r.json()["id"]]))[r.json()["id"]]
    assert job["status"] == "succeeded" and job["voice_id"] == account_voice
