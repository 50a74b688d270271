"""Cache, single flight and quotas through HTTP, on the real embedded Valkey and Postgres, with
the ElevenLabs adapter talking to the fake ElevenLabs server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import trio

from protocols.providers.elevenlabs.provider import ElevenLabsProvider
from protocols.redis.coordination import read_counters
from protocols.redis.queue import open_queue
from protocols.settings import Secret
from tests.support.elevenlabs.server import FakeElevenLabs
from tests.support.harness import Running, make_settings, running_service, total_queue_check

LIMIT_S = 45


@asynccontextmanager
async def eleven_service(redis_url, store, tmp_path, fake: FakeElevenLabs, **overrides: Any
                         ) -> AsyncIterator[Running]:
    settings = make_settings(
        tmp_path, elevenlabs_api_key=Secret("test-key"), elevenlabs_base_url=fake.base_url,
        elevenlabs_timeout_s=5.0, **overrides,
    )
    async with (
        ElevenLabsProvider.open(settings) as provider,
        running_service(redis_url=redis_url, store=store, settings=settings,
                        provider=provider) as svc,
    ):
        yield svc


def tts_calls(fake: FakeElevenLabs, text: str) -> int:
    return sum(1 for c in fake.calls if c.text == text and c.status == 200)


async def counters(svc: Running) -> dict[str, int]:
    settings = svc.service.settings
    async with open_queue(svc.service.redis_url, svc.service.keys,
                          stream_timeout=settings.redis_timeout_s) as queue:
        return await read_counters(queue.client, svc.service.keys)


async def test_a_repeat_is_answered_from_the_cache_with_200_and_no_provider_call(
    redis_url, store, tmp_path, fake_elevenlabs
):
    fake = fake_elevenlabs
    text = "The cache remembers this sentence."
    with trio.fail_after(LIMIT_S):
        async with eleven_service(redis_url, store, tmp_path, fake) as svc:
            first = await svc.submit(text)
            assert first.status_code == 202 and first.json()["cached"] is False
            done = (await svc.wait_done([first.json()["id"]]))[first.json()["id"]]
            assert done["status"] == "succeeded" and done["request_ids"]
            assert done["character_cost"] == len(text)
            assert done["model_id"] == "eleven_flash_v2_5"

            again = await svc.submit(text)  # same request: cached at once
            assert again.status_code == 200, again.text
            hit = again.json()
            assert hit["status"] == "succeeded" and hit["cached"] is True
            assert hit["id"] != done["id"] and hit["audio_id"]
            a = await svc.client.get(done["audio_url"])
            b = await svc.client.get(hit["audio_url"])
            assert a.status_code == b.status_code == 200 and a.content == b.content

            other = await svc.submit(text, output_format="wav_16000")  # another format: miss
            assert other.status_code == 202
            await svc.wait_done([other.json()["id"]])
            stats = await counters(svc)
            usage = (await svc.client.get("/v1/usage")).json()
        await total_queue_check(store, redis_url, svc.service.settings, svc.accepted)
    assert tts_calls(fake, text) == 2  # mp3 once, wav once; the repeat never reached it
    assert (stats["api_cache_hits"], stats["api_cache_misses"]) == (1, 2)
    assert stats["provider_calls"] == 2
    assert usage["used"] == 2 * len(text) and usage["jobs_charged"] == 2  # the hit is free


async def test_another_user_gets_the_cached_audio_as_their_own(
    redis_url, store, tmp_path, fake_elevenlabs
):
    text = "Shared between two users."
    with trio.fail_after(LIMIT_S):
        async with eleven_service(redis_url, store, tmp_path, fake_elevenlabs) as svc:
            first = await svc.submit(text)
            await svc.wait_done([first.json()["id"]])
            _, bob_key = await store.create_user("bob-cache")
            bob = {"Authorization": f"Bearer {bob_key}"}
            r = await svc.client.post("/v1/jobs", json={"text": text}, headers=bob)
            assert r.status_code == 200 and r.json()["cached"] is True
            bob_audio = r.json()["audio_id"]
            # each sees their own audio row; neither sees the other's
            assert (await svc.client.get(f"/v1/audio/{bob_audio}", headers=bob)).status_code == 200
            assert (await svc.client.get(f"/v1/audio/{bob_audio}")).status_code == 404
            assert (await svc.client.get(f"/v1/jobs/{r.json()['id']}")).status_code == 404
    assert tts_calls(fake_elevenlabs, text) == 1


async def test_owner_scope_keeps_users_caches_apart(redis_url, store, tmp_path, fake_elevenlabs):
    text = "Private to each user."
    with trio.fail_after(LIMIT_S):
        async with eleven_service(redis_url, store, tmp_path, fake_elevenlabs,
                                  cache_scope="owner") as svc:
            first = await svc.submit(text)
            await svc.wait_done([first.json()["id"]])
            _, bob_key = await store.create_user("bob-owner-scope")
            bob = {"Authorization": f"Bearer {bob_key}"}
            r = await svc.client.post("/v1/jobs", json={"text": text}, headers=bob)
            assert r.status_code == 202
            await svc.wait_done([r.json()["id"]], headers=bob)
            mine = await svc.submit(text)
            assert mine.status_code == 200  # the owner's own repeat still hits
    assert tts_calls(fake_elevenlabs, text) == 2


async def test_identical_jobs_in_flight_generate_once(redis_url, store, tmp_path,
                                                      fake_elevenlabs):
    fake = fake_elevenlabs
    fake.latency_s = 0.3  # every actor picks one up while the first is still generating
    text = "Ten of us asked for this at once."
    with trio.fail_after(LIMIT_S):
        async with eleven_service(redis_url, store, tmp_path, fake, concurrency=3) as svc:
            async with trio.open_nursery() as nursery:
                for _ in range(10):
                    nursery.start_soon(svc.submit, text)
            jobs = await svc.wait_done(svc.accepted)
            stats = await counters(svc)
        await total_queue_check(store, redis_url, svc.service.settings, svc.accepted)
    assert len(jobs) == 10 and all(j["status"] == "succeeded" for j in jobs.values())
    assert tts_calls(fake, text) == 1
    assert stats["provider_calls"] == 1 and stats.get("flight_waits", 0) >= 1
    assert all(j["attempts"] <= 1 for j in jobs.values())


async def test_quota_refuses_with_remaining_and_reset_and_charges_exactly(
    redis_url, store, tmp_path, fake_elevenlabs
):
    with trio.fail_after(LIMIT_S):
        async with eleven_service(redis_url, store, tmp_path, fake_elevenlabs) as svc:
            user = await store.authenticate(svc.api_key)
            assert user is not None
            await store.set_quota(user.name, 30)

            async def post(text: str) -> httpx.Response:
                return await svc.client.post("/v1/jobs", json={"text": text})

            ok = await post("Twenty characters!!!")  # 20
            assert ok.status_code == 202
            refused = await post("Eleven more")  # 20 reserved + 11 > 30
            assert refused.status_code == 429, refused.text
            problem = refused.json()
            assert problem["code"] == "quota_exceeded"
            assert problem["remaining"] == 10 and problem["limit"] == 30
            assert problem["reset_at"].endswith("T00:00:00Z")
            assert int(refused.headers["Retry-After"]) > 0
            await svc.wait_done([ok.json()["id"]])
            repeat = await post("Twenty characters!!!")  # a cache hit: free, even near the limit
            assert repeat.status_code == 200
            fits = await post("Ten chars.")  # exactly what is left
            assert fits.status_code == 202
            await svc.wait_done([fits.json()["id"]])
            usage = (await svc.client.get("/v1/usage")).json()
            over = await post("x")
            assert over.status_code == 429 and over.json()["remaining"] == 0
            queued = await svc.service.store.usage(user.id)
    assert queued.reserved == 0  # nothing was queued for the refused requests
    assert usage == {**usage, "limit": 30, "used": 30, "reserved": 0, "remaining": 0,
                     "jobs_charged": 2}


async def test_a_dry_provider_account_refuses_at_submit(redis_url, store, tmp_path,
                                                        fake_elevenlabs):
    fake_elevenlabs.character_limit, fake_elevenlabs.character_count = 100, 98
    with trio.fail_after(LIMIT_S):
        async with eleven_service(redis_url, store, tmp_path, fake_elevenlabs) as svc:
            r = await svc.submit("This will not fit in two characters.")
    assert r.status_code == 503 and r.json()["code"] == "provider_quota_exhausted"
    assert fake_elevenlabs.calls == [] and svc.accepted == []
