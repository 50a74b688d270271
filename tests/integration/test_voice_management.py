"""Managing a voice end to end: the whole service on the real embedded Valkey and Postgres with
the ElevenLabs adapter pointed at the fake ElevenLabs server. A rename (and description, labels)
reaches ElevenLabs, and a change ElevenLabs refuses changes nothing in Chorus either; a voice's
default settings go with every job that gives none (and are part of the cache key); a preview
made again is a job like any other: charged once, refused over the quota; the first preview
follows the same quota rule."""

from __future__ import annotations

from typing import Any

import pytest
import trio

import web.auth
from protocols.messages import User
from protocols.providers.elevenlabs.provider import ElevenLabsProvider
from protocols.settings import Secret
from tests.integration.test_voices import poll
from tests.support.clips import clip as sample_clip
from tests.support.elevenlabs.server import FakeElevenLabs
from tests.support.harness import Running, make_settings, running_service

CAP_S = 40.0
EDIT = "POST /v1/voices/{voice_id}/edit"


def el_settings(tmp_path: Any, fake: FakeElevenLabs, **overrides: Any) -> Any:
    return make_settings(
        tmp_path, elevenlabs_api_key=Secret("test-key"), elevenlabs_base_url=fake.base_url,
        voice_poll_s=0.05, voice_poll_max_s=0.2, elevenlabs_timeout_s=5.0, **overrides,
    )


async def clone(run: Running, fake: FakeElevenLabs, *, ready: bool = True) -> tuple[str, str]:
    """A clone of the service's user, uploaded over HTTP: (our id, ElevenLabs' id)."""
    files = [("files", ("a.mp3", sample_clip("mp3"), "audio/mpeg"))]
    r = await run.client.post("/v1/voices", files=files, data={
        "name": "Fox", "description": "warm", "labels": '{"accent": "irish"}'})
    assert r.status_code == 202, r.text
    pid = fake.clone_uploads[-1]["voice_id"]
    if ready:
        fake.mark_voice_ready(pid)
    return r.json()["id"], pid


@pytest.fixture
def fresh_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    """A quota change shows at the next request (not after the API key cache's seconds)."""
    monkeypatch.setattr(web.auth, "AUTH_TTL_S", 0.0)


async def user_of(run: Running, store: Any) -> User:
    user = await store.authenticate(run.api_key)
    assert user is not None
    return user


def calls_with(fake: FakeElevenLabs, text: str) -> list[Any]:
    return [c for c in fake.calls if c.text == text and c.status == 200]


async def test_a_rename_reaches_elevenlabs_and_a_refused_edit_changes_nothing(
    redis_url: str, store: Any, fake_elevenlabs: FakeElevenLabs, tmp_path: Any
) -> None:
    fake = fake_elevenlabs
    settings = el_settings(tmp_path, fake, provider_max_attempts=1)
    with trio.fail_after(CAP_S):
        async with ElevenLabsProvider.open(settings) as provider, running_service(
            redis_url=redis_url, store=store, settings=settings, provider=provider
        ) as run:
            vid, pid = await clone(run, fake, ready=False)
            r = await run.client.patch(f"/v1/voices/{vid}", json={
                "name": "Vixen", "description": "bright", "labels": {"accent": "welsh"}})
            assert r.status_code == 200, r.text
            assert (r.json()["name"], r.json()["labels"]) == ("Vixen", {"accent": "welsh"})
            at = fake.voice(pid)
            assert (at["name"], at["description"], at["labels"]) == (
                "Vixen", "bright", {"accent": "welsh"})
            edits = fake.endpoint_counts[EDIT]

            # fields ElevenLabs does not hold, or no change at all: nothing is sent
            r = await run.client.patch(f"/v1/voices/{vid}",
                                       json={"visibility": "public", "name": "Vixen"})
            assert r.status_code == 200 and r.json()["visibility"] == "public"
            assert fake.endpoint_counts[EDIT] == edits

            # ElevenLabs refuses: a typed error, and Chorus keeps the voice as it was
            fake.inject(400, "invalid_parameters", message="That name is not allowed",
                        path_prefix=f"/v1/voices/{pid}/edit")
            r = await run.client.patch(f"/v1/voices/{vid}", json={"name": "Rude"})
            assert r.status_code == 502 and r.json()["code"] == "provider_rejected", r.text
            assert r.json()["incident"]  # the provider's words are logged under this id

            # ElevenLabs is away (outcome unknown): the old values are sent back, nothing kept
            fake.inject(503, "service_unavailable", path_prefix=f"/v1/voices/{pid}/edit")
            r = await run.client.patch(f"/v1/voices/{vid}", json={"name": "Lost"})
            assert r.status_code == 502 and r.json()["code"] == "provider_unavailable", r.text
            assert fake.endpoint_counts[EDIT] == edits + 3  # refused, failed, put back
            body = (await run.client.get(f"/v1/voices/{vid}")).json()
            assert (body["name"], body["description"]) == ("Vixen", "bright")
            assert fake.voice(pid)["name"] == "Vixen"


async def test_a_voices_default_settings_go_with_jobs_that_give_none(
    redis_url: str, store: Any, fake_elevenlabs: FakeElevenLabs, tmp_path: Any
) -> None:
    fake = fake_elevenlabs
    settings = el_settings(tmp_path, fake)
    with trio.fail_after(CAP_S):
        async with ElevenLabsProvider.open(settings) as provider, running_service(
            redis_url=redis_url, store=store, settings=settings, provider=provider
        ) as run:
            vid, pid = await clone(run, fake)
            await poll(run.client, f"/v1/voices/{vid}", lambda b: b["status"] == "completed", 15)
            r = await run.client.patch(f"/v1/voices/{vid}", json={
                "voice_settings": {"stability": 0.3, "speed": 1.1}})
            assert r.status_code == 200, r.text
            assert r.json()["voice_settings"] == {"stability": 0.3, "speed": 1.1}
            assert (await run.client.get(f"/v1/voices/{vid}")).json()["voice_settings"] == {
                "stability": 0.3, "speed": 1.1}

            async def speak(text: str, **body: Any) -> dict[str, Any]:
                r = await run.submit(text, voice_id=vid, **body)
                assert r.status_code in (200, 202), r.text
                return (await run.wait_done([r.json()["id"]]))[r.json()["id"]]

            await speak("Defaults apply to me.")
            (call,) = calls_with(fake, "Defaults apply to me.")
            assert call.voice_id == pid
            assert call.voice_settings == {"stability": 0.3, "speed": 1.1}
            await speak("I set one of my own.", voice_settings={"stability": 0.9})
            (call,) = calls_with(fake, "I set one of my own.")
            assert call.voice_settings == {"stability": 0.9, "speed": 1.1}

            # the defaults are in the cache key: changing them makes the same text again
            again = await speak("Defaults apply to me.")
            assert again["cached"] is True and len(calls_with(fake, "Defaults apply to me.")) == 1
            r = await run.client.patch(f"/v1/voices/{vid}",
                                       json={"voice_settings": {"speed": 0.9}})
            assert r.json()["voice_settings"] == {"speed": 0.9}
            fresh = await speak("Defaults apply to me.")
            assert fresh["cached"] is False
            assert calls_with(fake, "Defaults apply to me.")[-1].voice_settings == {"speed": 0.9}

            r = await run.client.patch(f"/v1/voices/{vid}", json={"voice_settings": None})
            assert r.json()["voice_settings"] == {}
            await speak("No defaults any more.")
            assert calls_with(fake, "No defaults any more.")[0].voice_settings is None
            r = await run.client.patch(f"/v1/voices/{vid}",
                                       json={"voice_settings": {"stability": 2}})
            assert r.status_code == 422 and r.json()["code"] == "invalid_input"
            assert fake.endpoint_counts.get(EDIT, 0) == 0  # settings live in Chorus


async def test_a_preview_made_again_is_charged_once_and_refused_over_the_quota(
    redis_url: str, store: Any, fake_elevenlabs: FakeElevenLabs, tmp_path: Any,
    fresh_quota: None,
) -> None:
    fake = fake_elevenlabs
    settings = el_settings(tmp_path, fake)
    with trio.fail_after(CAP_S):
        async with ElevenLabsProvider.open(settings) as provider, running_service(
            redis_url=redis_url, store=store, settings=settings, provider=provider
        ) as run:
            user = await user_of(run, store)
            vid, _ = await clone(run, fake)
            first = await poll(run.client, f"/v1/voices/{vid}", lambda b: "preview_url" in b, 15)
            before = await store.usage(user.id)
            assert before.used > 0  # the first preview was charged to the owner

            text = "A brand new preview, read with care."
            key = {"Idempotency-Key": "remake-1"}
            r = await run.client.post(f"/v1/voices/{vid}/preview", json={"text": text},
                                      headers=key)
            assert r.status_code == 202, r.text
            job_id = r.json()["job"]["id"]
            assert r.headers["Location"] == f"/v1/jobs/{job_id}"
            assert r.json()["voice"]["preview_job_id"] == job_id
            assert r.json()["voice"]["preview_audio_id"] == first["preview_audio_id"]
            job = (await run.wait_done([job_id]))[job_id]
            assert job["status"] == "succeeded"
            voice = await poll(run.client, f"/v1/voices/{vid}",
                               lambda b: b.get("preview_audio_id") == job["audio_id"], 15)
            assert "preview_job_id" not in voice  # linked: nothing pending
            clip = await run.client.get(voice["preview_url"])
            made = await run.client.get(f"/v1/audio/{job['audio_id']}")
            assert clip.status_code == 200 and clip.content == made.content

            # the same request again is the same job: nothing generated, nothing charged
            r = await run.client.post(f"/v1/voices/{vid}/preview", json={"text": text},
                                      headers=key)
            assert r.status_code == 200 and r.json()["job"]["id"] == job_id
            after = await store.usage(user.id)
            assert after.used - before.used == len(text)
            assert len(calls_with(fake, text)) == 1

            # over the quota: 429 like any job, and the voice keeps its preview
            await store.set_quota(user.name, after.used + 5)
            r = await run.client.post(f"/v1/voices/{vid}/preview",
                                      json={"text": "This one does not fit in what is left."})
            assert r.status_code == 429 and r.json()["code"] == "quota_exceeded", r.text
            body = (await run.client.get(f"/v1/voices/{vid}")).json()
            assert body["preview_audio_id"] == job["audio_id"] and "preview_job_id" not in body
            assert (await store.usage(user.id)).used == after.used

            # only the owner may remake it; a clone not ready cannot speak yet
            _, other_key = await store.create_user("mallory")
            r = await run.client.post(f"/v1/voices/{vid}/preview",
                                      headers={"Authorization": f"Bearer {other_key}"})
            assert r.status_code == 404 and r.json()["code"] == "voice_not_found"
            await store.set_quota(user.name, None)
            waiting, _ = await clone(run, fake, ready=False)
            r = await run.client.post(f"/v1/voices/{waiting}/preview")
            assert r.status_code == 409 and r.json()["code"] == "voice_not_ready"


async def test_the_first_preview_follows_the_owners_quota_too(
    redis_url: str, store: Any, fake_elevenlabs: FakeElevenLabs, tmp_path: Any,
    fresh_quota: None,
) -> None:
    """Policy: every preview is a job of the voice's owner. A clone that becomes ready when
    its owner's quota has no room is completed without a preview (nothing generated, nothing
    charged); the owner makes one later, once there is room."""
    fake = fake_elevenlabs
    settings = el_settings(tmp_path, fake)
    with trio.fail_after(CAP_S):
        async with ElevenLabsProvider.open(settings) as provider, running_service(
            redis_url=redis_url, store=store, settings=settings, provider=provider
        ) as run:
            user = await user_of(run, store)
            await store.set_quota(user.name, 10)
            vid, _ = await clone(run, fake)
            done = await poll(run.client, f"/v1/voices/{vid}",
                              lambda b: b["status"] == "completed", 15)
            assert "preview_url" not in done and "preview_job_id" not in done
            assert fake.calls == [] and (await store.usage(user.id)).used == 0

            await store.set_quota(user.name, None)
            r = await run.client.post(f"/v1/voices/{vid}/preview")
            assert r.status_code == 202, r.text
            voice = await poll(run.client, f"/v1/voices/{vid}", lambda b: "preview_url" in b, 15)
            assert voice["preview_audio_id"]
            assert (await store.usage(user.id)).used == len(fake.calls[0].text)
