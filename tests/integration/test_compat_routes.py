"""The compat routes on a live Chorus (real Valkey and Postgres, the fake provider held at a
gate): a convert past ``CHORUS_SYNC_WAIT_S`` is a 504 naming its job, which goes on; a client
that goes away mid-wait loses nothing (the job ends, is charged once, and the same convert is
then a cache hit); a quota is refused in each API's own shape."""

from __future__ import annotations

import httpx
import trio

from protocols.messages import NewVoice, Visibility, VoiceStatus
from tests.support.harness import make_settings, running_service

LIMIT_S = 45


async def test_waits_timeouts_disconnects_and_quotas(redis_url, store, tmp_path):
    settings = make_settings(tmp_path, sync_wait_s=1.0)
    with trio.fail_after(LIMIT_S):
        async with running_service(redis_url=redis_url, store=store, settings=settings) as svc:
            provider = svc.service.provider
            provider.gate = trio.Event()  # every provider call waits here
            _, key = await store.create_user("compat-routes")
            _, small = await store.create_user("compat-small-quota")
            await store.set_quota("compat-small-quota", 5)
            el = {"xi-api-key": key}
            client = httpx.AsyncClient(base_url=svc.client.base_url, timeout=10)

            late = await client.post("/v1/text-to-speech/fake-en", headers=el,
                                     json={"text": "Too slow for the wait."})
            assert late.status_code == 504, late.text
            detail = late.json()["detail"]
            assert detail["status"] == "sync_wait_timeout" and "/v1/jobs/" in detail["message"]
            late_id = detail["message"].split("/v1/jobs/")[1].rstrip(".")

            gone = "The client hangs up before this is made."
            try:
                await client.post("/v1/text-to-speech/fake-en", headers=el, json={"text": gone},
                                  timeout=0.3)
                raise AssertionError("the convert should still be waiting")
            except httpx.ReadTimeout:
                pass  # the client went away

            provider.gate.set()
            while True:  # the job went on after the 504
                job = (await client.get(f"/v1/jobs/{late_id}", headers=el)).json()
                if job["status"] == "succeeded":
                    break
                await trio.sleep(0.02)
            while True:  # the abandoned convert's job ends too
                history = (await client.get("/v1/history", headers=el)).json()["history"]
                if any(item["text"] == gone for item in history):
                    break
                await trio.sleep(0.02)
            calls = provider.calls
            used = (await client.get("/v1/user/subscription", headers=el)).json()
            assert used["character_count"] == len(gone) + len("Too slow for the wait.")
            again = await client.post("/v1/text-to-speech/fake-en", headers=el,
                                      json={"text": gone})
            assert again.status_code == 200 and again.headers["character-cost"] == "0"
            assert provider.calls == calls
            assert (await client.get("/v1/user/subscription", headers=el)).json()[
                "character_count"] == used["character_count"]

            over = "This does not fit in the quota."
            refused = await client.post("/v1/text-to-speech/fake-en",
                                        headers={"xi-api-key": small}, json={"text": over})
            assert refused.status_code == 401  # as ElevenLabs answers an exhausted quota
            assert refused.json()["detail"]["status"] == "quota_exceeded"
            openai = await client.post(
                "/v1/audio/speech", headers={"Authorization": f"Bearer {small}"},
                json={"model": "tts-1", "voice": "alloy", "input": over})
            assert openai.status_code == 429 and openai.headers["x-should-retry"] == "false"
            assert openai.json()["error"]["code"] == "insufficient_quota"

            # another user's private voice does not exist for this one, in either API
            owner, _ = await store.create_user("compat-voice-owner")
            await store.create_voice(NewVoice(
                id="voice_compat_secret", provider="fake", provider_voice_id="fake-secret",
                owner=owner.id, name="Secret Compat Voice", status=VoiceStatus.completed,
                visibility=Visibility.private))
            listed = await client.get("/v2/voices", headers=el, params={"search": "Secret"})
            assert listed.status_code == 200 and listed.json()["voices"] == []
            hidden = await client.post("/v1/text-to-speech/voice_compat_secret", headers=el,
                                       json={"text": "Not my voice."})
            assert hidden.status_code == 404
            assert hidden.json()["detail"]["status"] == "voice_not_found"
            hidden = await client.post(
                "/v1/audio/speech", headers={"Authorization": f"Bearer {key}"},
                json={"model": "tts-1", "voice": "voice_compat_secret", "input": "Not mine."})
            assert hidden.status_code == 404
            assert hidden.json()["error"]["code"] == "voice_not_found"
            await client.aclose()
