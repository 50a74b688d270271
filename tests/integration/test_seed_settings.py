"""The seed's settings on the real service (embedded Valkey and Postgres): the default model
(``ELEVENLABS_MODEL_ID``), the supported languages (``CHORUS_SUPPORTED_LANGUAGES``, for jobs and
storybooks), the default voice (``ELEVENLABS_DEFAULT_VOICE_ID``) and the default pronunciation
dictionaries (``ELEVENLABS_PRONUNCIATION_DICTIONARIES``); what reaches ElevenLabs is read from
the fake ElevenLabs server's records."""

from __future__ import annotations

from typing import Any

import trio

from protocols.providers.elevenlabs.models import FLASH, MULTILINGUAL
from protocols.providers.elevenlabs.provider import ElevenLabsProvider
from protocols.providers.fake import FakeProvider
from protocols.settings import Secret
from tests.support.elevenlabs.server import FakeElevenLabs
from tests.support.harness import Running, make_settings, running_service

CAP_S = 40.0
JOSH = "TxGEqnHWrfWFTfGW9XjX"  # a premade voice of the fake, not the one chosen by default


def el_settings(tmp_path: Any, fake: FakeElevenLabs, **overrides: Any) -> Any:
    return make_settings(
        tmp_path, elevenlabs_api_key=Secret("test-key"), elevenlabs_base_url=fake.base_url,
        elevenlabs_timeout_s=5.0, **overrides,
    )


async def spoken(run: Running, fake: FakeElevenLabs, text: str, **body: Any) -> Any:
    """Submit, wait for the job, and return (job, the TTS call ElevenLabs received)."""
    r = await run.submit(text, **body)
    assert r.status_code == 202, r.text
    job = (await run.wait_done([r.json()["id"]]))[r.json()["id"]]
    assert job["status"] == "succeeded", job
    (call,) = [c for c in fake.calls if c.text == text]
    return job, call


async def test_the_default_model_is_used_unless_a_request_names_a_model_or_preference(
    redis_url: str, store: Any, fake_elevenlabs: FakeElevenLabs, tmp_path: Any
) -> None:
    fake = fake_elevenlabs
    settings = el_settings(tmp_path, fake, elevenlabs_model_id=MULTILINGUAL)
    with trio.fail_after(CAP_S):
        async with ElevenLabsProvider.open(settings) as provider, running_service(
            redis_url=redis_url, store=store, settings=settings, provider=provider
        ) as run:
            # without the setting, "balanced" would pick Flash for text without numbers
            job, call = await spoken(run, fake, "Good night, little fox.")
            assert job["model_id"] == call.model_id == MULTILINGUAL
            job, call = await spoken(run, fake, "Named by the request.", model_id=FLASH)
            assert job["model_id"] == call.model_id == FLASH
            job, call = await spoken(run, fake, "A preference of the request.",
                                     preference="latency")
            assert job["model_id"] == call.model_id == FLASH

    # a default model that does not speak the language: selection goes on as without it
    settings = el_settings(tmp_path, fake, elevenlabs_model_id="eleven_flash_v2")  # English
    with trio.fail_after(CAP_S):
        async with ElevenLabsProvider.open(settings) as provider, running_service(
            redis_url=redis_url, store=store, settings=settings, provider=provider
        ) as run:
            job, call = await spoken(run, fake, "Bonne nuit, petit renard.", language="fr")
            assert job["model_id"] == call.model_id == FLASH
            job, call = await spoken(run, fake, "Good morning, fox.", language="en")
            assert job["model_id"] == call.model_id == "eleven_flash_v2"


async def test_languages_outside_the_supported_list_are_refused_for_jobs_and_books(
    redis_url: str, store: Any, tmp_path: Any
) -> None:
    settings = make_settings(tmp_path, supported_languages=("en", "ko"))
    book = {"title": "Moon", "pages": [{"lines": [{"text": "Bonne nuit."}]}]}
    with trio.fail_after(CAP_S):
        async with running_service(
            redis_url=redis_url, store=store, settings=settings, provider=FakeProvider()
        ) as run:
            for language in ("fr", "fr-FR", "ja"):
                r = await run.submit("Bonne nuit.", language=language)
                assert r.status_code == 422, r.text
                assert r.json()["code"] == "unsupported_language"
                assert r.json()["supported"] == ["en", "ko"]
            r = await run.client.post("/v1/storybooks", json={**book, "language": "fr"})
            assert r.status_code == 422 and r.json()["code"] == "unsupported_language", r.text
            assert (await run.client.get("/v1/storybooks")).json()["storybooks"] == []

            for language in ("en", "en-US", "ko-KR", None):
                r = await run.submit(f"Good night ({language}).", language=language)
                assert r.status_code == 202, r.text
            r = await run.client.post("/v1/storybooks", json={**book, "language": "ko"})
            assert r.status_code == 202, r.text


async def test_the_default_voice_is_the_configured_one(
    redis_url: str, store: Any, fake_elevenlabs: FakeElevenLabs, tmp_path: Any
) -> None:
    fake = fake_elevenlabs
    async with ElevenLabsProvider.open(el_settings(tmp_path, fake)) as plain:
        assert (await plain.resolve_voice(None, None)).voice_id != JOSH
    settings = el_settings(tmp_path, fake, elevenlabs_default_voice_id=JOSH)
    with trio.fail_after(CAP_S):
        async with ElevenLabsProvider.open(settings) as provider, running_service(
            redis_url=redis_url, store=store, settings=settings, provider=provider
        ) as run:
            job, call = await spoken(run, fake, "Whose voice is this?")
            assert job["voice_id"] == call.voice_id == JOSH
            _, call = await spoken(run, fake, "Someone else's.",
                                   voice_id="21m00Tcm4TlvDq8ikWAM")
            assert call.voice_id == "21m00Tcm4TlvDq8ikWAM"


async def test_the_configured_dictionaries_go_with_jobs_that_name_none(
    redis_url: str, store: Any, fake_elevenlabs: FakeElevenLabs, tmp_path: Any
) -> None:
    fake = fake_elevenlabs
    names, names_v1 = fake.add_dictionary("Names", [
        {"type": "alias", "string_to_replace": "Hyeon-woo", "alias": "Hyun-woo"}])
    places, places_v1 = fake.add_dictionary("Places", [
        {"type": "alias", "string_to_replace": "Seoul", "alias": "Sole"}])
    own, own_v1 = fake.add_dictionary("Own", [
        {"type": "alias", "string_to_replace": "fox", "alias": "foks"}])
    settings = el_settings(tmp_path, fake,
                           elevenlabs_dictionaries=(names, f"{places}:{places_v1}"))
    with trio.fail_after(CAP_S):
        async with ElevenLabsProvider.open(settings) as provider, running_service(
            redis_url=redis_url, store=store, settings=settings, provider=provider
        ) as run:
            _, call = await spoken(run, fake, "Hyeon-woo lives in Seoul.")
            assert call.pronunciation_dictionary_locators == [  # the first pinned at submit
                {"pronunciation_dictionary_id": names, "version_id": names_v1},
                {"pronunciation_dictionary_id": places, "version_id": places_v1},
            ]
            _, call = await spoken(run, fake, "The fox has its own.",
                                   pronunciation_dictionary_locators=[
                                       {"pronunciation_dictionary_id": own}])
            assert call.pronunciation_dictionary_locators == [
                {"pronunciation_dictionary_id": own, "version_id": own_v1}]
