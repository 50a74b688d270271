"""tests/support/elevenlabs/ behaves like the documented ElevenLabs API, seen through the official
SDK (retries off, as everywhere under trio) and through plain httpx."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import av
import httpx
import pytest
import trio
from elevenlabs import AsyncElevenLabs, PronunciationDictionaryVersionLocator
from elevenlabs.core.api_error import ApiError

from protocols.domain.audio import FORMAT_NAMES
from tests.support.elevenlabs.server import FakeElevenLabs, tone_hz
from tests.support.timing import capped_at

NO_RETRY: Any = {"max_retries": 0}
RACHEL = "21m00Tcm4TlvDq8ikWAM"
KEY = {"xi-api-key": "test-key"}
TTS = f"/v1/text-to-speech/{RACHEL}"


@asynccontextmanager
async def sdk(fake: FakeElevenLabs, key: str = "test-key") -> AsyncIterator[AsyncElevenLabs]:
    async with httpx.AsyncClient(timeout=5) as http:
        yield AsyncElevenLabs(api_key=key, base_url=fake.base_url, httpx_client=http, timeout=5)


@asynccontextmanager
async def raw(fake: FakeElevenLabs) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=fake.base_url, headers=KEY, timeout=5) as http:
        yield http


def decoded_seconds(data: bytes) -> float:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        return samples / stream.codec_context.sample_rate


def detail(exc: ApiError) -> dict[str, Any]:
    assert isinstance(exc.body, dict)
    return exc.body["detail"]


async def convert(client: AsyncElevenLabs, text: str, voice: str = RACHEL, **kw: Any) -> bytes:
    """The whole clip of a ``convert`` call (retries off unless ``request_options`` says)."""
    kw.setdefault("request_options", NO_RETRY)
    chunks = client.text_to_speech.convert(voice, text=text, **kw)
    return b"".join([chunk async for chunk in chunks])


capped = capped_at(5)


@capped
async def test_convert_raw_response_headers_and_mp3_duration(fake_elevenlabs):
    text = "a" * 100  # 10 ms per character: 1 s
    async with sdk(fake_elevenlabs) as client:
        async with client.text_to_speech.with_raw_response.convert(
            RACHEL,
            text=text,
            model_id="eleven_flash_v2_5",
            output_format="mp3_44100_128",
            seed=7,
            previous_text="before",
            language_code="en",
            request_options=NO_RETRY,
        ) as response:
            audio = b"".join([chunk async for chunk in response.data])
            headers = response.headers
    assert len(headers["request-id"]) == 20
    assert headers["character-cost"] == "100"
    assert headers["content-type"] == "audio/mpeg"
    assert headers["maximum-concurrent-requests"] == "3"
    assert headers["current-concurrent-requests"] == "1"
    assert "history-item-id" in headers
    assert 0.95 <= decoded_seconds(audio) <= 1.1
    [call] = fake_elevenlabs.calls
    assert (call.status, call.request_id, call.model_id) == (
        200,
        headers["request-id"],
        "eleven_flash_v2_5",
    )
    assert (call.seed, call.previous_text, call.language_code) == (7, "before", "en")
    assert call.output_format == "mp3_44100_128"
    assert fake_elevenlabs.characters_billed == fake_elevenlabs.character_count == 100


@capped
async def test_wav_over_stream_and_request_ids_are_unique(fake_elevenlabs):
    async with raw(fake_elevenlabs) as http:
        first = await http.post(
            f"{TTS}/stream", params={"output_format": "wav_16000"}, json={"text": "b" * 50}
        )
        second = await http.post(TTS, params={"output_format": "pcm_16000"}, json={"text": "b"})
    assert first.headers["transfer-encoding"] == "chunked"
    assert first.content[:4] == b"RIFF"
    assert decoded_seconds(first.content) == pytest.approx(0.5, abs=0.01)
    assert len(second.content) == 0.05 * 16000 * 2  # pcm: raw s16le, 50 ms minimum
    assert first.headers["request-id"] != second.headers["request-id"]
    counts = fake_elevenlabs.endpoint_counts
    assert counts["POST /v1/text-to-speech/{voice_id}/stream"] == 1
    assert counts["POST /v1/text-to-speech/{voice_id}"] == 1
    assert tone_hz("x") in (220, 262, 330, 392, 440, 494, 523, 587)


@capped
async def test_every_output_format_encodes_and_unknown_is_400(fake_elevenlabs):
    async with raw(fake_elevenlabs) as http:
        for name in sorted(FORMAT_NAMES):
            response = await http.post(TTS, params={"output_format": name}, json={"text": "hi"})
            assert response.status_code == 200, name
            assert response.content and response.headers["content-type"] == "audio/mpeg"
        bad = await http.post(TTS, params={"output_format": "flac_44100"}, json={"text": "hi"})
    assert bad.status_code == 400
    assert bad.json()["detail"]["code"] == "invalid_parameters"
    assert bad.json()["detail"]["param"] == "output_format"


@capped
async def test_concurrency_limit_answers_429_and_counts_peak():
    with FakeElevenLabs(concurrency_limit=2, latency_s=0.2) as fake:
        statuses: list[int] = []
        bodies: list[dict] = []
        async with raw(fake) as http:

            async def one() -> None:
                response = await http.post(TTS, json={"text": "hello"})
                statuses.append(response.status_code)
                if response.status_code == 429:
                    bodies.append(response.json())

            async with trio.open_nursery() as nursery:
                for _ in range(5):
                    nursery.start_soon(one)
        assert sorted(statuses) == [200, 200, 429, 429, 429]
        assert fake.peak_concurrency == 2
        assert fake.rejected_429 == 3
        assert fake.characters_billed == 10  # rejected requests cost nothing
        assert bodies[0]["detail"]["status"] == "too_many_concurrent_requests"
        assert "code" not in bodies[0]["detail"]  # legacy shape by default

        fake.concurrency_limit, fake.concurrency_error_shape = 0, "current"
        async with sdk(fake) as client:
            with pytest.raises(ApiError) as caught:
                await convert(client, "hello")
        assert caught.value.status_code == 429
        assert detail(caught.value)["code"] == "concurrent_limit_exceeded"
        assert detail(caught.value)["status"] == "too_many_concurrent_requests"


@capped
async def test_quota_exceeded_is_a_legacy_401():
    with FakeElevenLabs(character_limit=100, character_count=95) as fake:
        async with sdk(fake) as client:
            with pytest.raises(ApiError) as caught:
                await convert(client, "0123456789")
            assert caught.value.status_code == 401
            assert detail(caught.value) == {
                "status": "quota_exceeded",
                "message": "This request exceeds your quota of 100. You have 5 credits "
                "remaining, while 10 credits are required for this request.",
            }
            await convert(client, "01234")
            subscription = await client.user.subscription.get(request_options=NO_RETRY)
        assert subscription.character_count == fake.character_count == 100


@capped
async def test_injected_503_twice_then_success(fake_elevenlabs):
    fake_elevenlabs.inject(status=503, code="service_unavailable", times=2)
    async with sdk(fake_elevenlabs) as client:
        for _ in range(2):
            with pytest.raises(ApiError) as caught:
                await convert(client, "hello")
            assert caught.value.status_code == 503
            assert detail(caught.value)["code"] == "service_unavailable"
        assert await convert(client, "hello")
    assert [c.status for c in fake_elevenlabs.calls] == [503, 503, 200]
    assert [c.error_code for c in fake_elevenlabs.calls] == ["service_unavailable"] * 2 + [None]
    assert fake_elevenlabs.characters_billed == 5  # injected failures charge nothing
    assert fake_elevenlabs.injected == 2


@capped
async def test_injected_legacy_error_on_any_path_with_headers(fake_elevenlabs):
    fake_elevenlabs.inject(
        429, "system_busy", shape="legacy", path_prefix="/v1/models", headers={"retry-after": "1"}
    )
    async with sdk(fake_elevenlabs) as client:
        with pytest.raises(ApiError) as caught:
            await client.models.list(request_options=NO_RETRY)
        assert await client.models.list(request_options=NO_RETRY)
    assert caught.value.status_code == 429
    assert detail(caught.value)["status"] == "system_busy"
    assert caught.value.headers["retry-after"] == "1"


@capped
async def test_stall_makes_a_client_timeout(fake_elevenlabs):
    fake_elevenlabs.stall(3.0)
    async with sdk(fake_elevenlabs) as client:
        with pytest.raises(httpx.ReadTimeout):
            options = {"max_retries": 0, "timeout_in_seconds": 0.1}
            await convert(client, "hello", request_options=options)
        assert await convert(client, "hello")  # only the next request stalled
    assert fake_elevenlabs.stalled == 1


@capped
async def test_bad_key_voice_not_found_and_missing_text(fake_elevenlabs):
    async with sdk(fake_elevenlabs, key="wrong") as client:
        with pytest.raises(ApiError) as caught:
            await client.voices.get_all(request_options=NO_RETRY)
    assert caught.value.status_code == 401
    assert detail(caught.value) == {"status": "invalid_api_key", "message": "Invalid API key"}
    async with sdk(fake_elevenlabs) as client:
        with pytest.raises(ApiError) as caught:
            await convert(client, "hello", voice="AAAAAAAAAAAAAAAAAAAA")
    assert caught.value.status_code == 404
    assert detail(caught.value)["code"] == detail(caught.value)["status"] == "voice_not_found"
    async with raw(fake_elevenlabs) as http:
        response = await http.post(TTS, json={"model_id": "eleven_multilingual_v2"})
    assert response.status_code == 422
    assert response.json() == {
        "detail": [{"loc": ["body", "text"], "msg": "Field required", "type": "missing"}]
    }


@capped
async def test_max_character_limit_follows_model_limits(fake_elevenlabs):
    fake_elevenlabs.model_limits = {"eleven_flash_v2_5": 50}
    async with sdk(fake_elevenlabs) as client:
        with pytest.raises(ApiError) as caught:
            await convert(client, "x" * 51, model_id="eleven_flash_v2_5")
        assert await convert(client, "x" * 50, model_id="eleven_flash_v2_5")
        models = {m.model_id: m for m in await client.models.list(request_options=NO_RETRY)}
    assert caught.value.status_code == 400
    assert detail(caught.value)["code"] == "max_character_limit_exceeded"
    assert models["eleven_flash_v2_5"].maximum_text_length_per_request == 50
    assert models["eleven_multilingual_v2"].maximum_text_length_per_request == 10000


@capped
async def test_language_code_only_for_models_that_take_it(fake_elevenlabs):
    async with sdk(fake_elevenlabs) as client:
        with pytest.raises(ApiError) as caught:
            await convert(client, "안녕", model_id="eleven_multilingual_v2", language_code="ko")
        for model in ("eleven_flash_v2_5", "eleven_turbo_v2_5", "eleven_v3"):
            assert await convert(client, "안녕하세요", model_id=model, language_code="ko")
        fake_elevenlabs.strict_language_code = False
        assert await convert(
            client, "안녕하세요", model_id="eleven_multilingual_v2", language_code="ko"
        )
    assert caught.value.status_code == 400
    assert detail(caught.value)["code"] == "invalid_parameters"
    assert detail(caught.value)["param"] == "language_code"


@capped
async def test_models_catalogue(fake_elevenlabs):
    async with sdk(fake_elevenlabs) as client:
        models = {m.model_id: m for m in await client.models.list(request_options=NO_RETRY)}
        with pytest.raises(ApiError) as caught:
            await convert(client, "hello", model_id="eleven_multilingual_sts_v2")
        with pytest.raises(ApiError) as unknown:
            await convert(client, "hello", model_id="eleven_v9")
    langs = {mid: {lang.language_id for lang in m.languages or ()} for mid, m in models.items()}
    assert {"he", "th"} <= langs["eleven_v3"] and "he" not in langs["eleven_flash_v2_5"]
    assert (
        len(langs["eleven_multilingual_v2"]) == 29
        and {"ko", "en"} <= langs["eleven_multilingual_v2"]
    )
    assert len(langs["eleven_flash_v2_5"]) == len(langs["eleven_turbo_v2_5"]) == 32
    assert {"hu", "no", "vi"} <= langs["eleven_flash_v2_5"] - langs["eleven_multilingual_v2"]
    assert langs["eleven_flash_v2"] == {"en"}
    assert models["eleven_v3"].maximum_text_length_per_request == 5000
    assert models["eleven_flash_v2"].maximum_text_length_per_request == 30000
    assert models["eleven_multilingual_sts_v2"].can_do_text_to_speech is False
    assert models["eleven_flash_v2_5"].concurrency_group == "turbo"
    assert models["eleven_flash_v2_5"].model_rates.character_cost_multiplier == 0.5
    assert caught.value.status_code == unknown.value.status_code == 400
    assert detail(unknown.value)["code"] == "model_not_found"


@capped
async def test_v2_voices_pagination_and_filters(fake_elevenlabs):
    async with sdk(fake_elevenlabs) as client:
        seen: list[str] = []
        token = None
        while True:
            page = await client.voices.search(
                page_size=3, next_page_token=token, request_options=NO_RETRY
            )
            seen += [v.voice_id for v in page.voices]
            assert page.total_count == 8
            if not page.has_more:
                assert page.next_page_token is None
                break
            token = page.next_page_token
        found = await client.voices.search(
            search="rachel", category="premade", request_options=NO_RETRY
        )
        personal = await client.voices.search(voice_type="personal", request_options=NO_RETRY)
        legacy = await client.voices.get_all(request_options=NO_RETRY)
    assert sorted(seen) == sorted(fake_elevenlabs.voice_ids) and len(seen) == 8
    assert [v.name for v in found.voices] == ["Rachel"]
    assert personal.voices == [] and personal.total_count == 0
    rachel = next(v for v in legacy.voices if v.voice_id == RACHEL)
    assert rachel.category == "premade" and rachel.labels["gender"] == "female"
    assert rachel.verified_languages and rachel.verified_languages[0].language == "en"
    async with raw(fake_elevenlabs) as http:
        too_big = await http.get("/v2/voices", params={"page_size": 101})
    assert too_big.status_code == 422


@capped
async def test_clone_processing_then_ready_then_speaks(fake_elevenlabs):
    files = [("one.mp3", b"\xff\xfb" * 500, "audio/mpeg"), ("two.wav", b"RIFF" * 100, "audio/wav")]
    async with sdk(fake_elevenlabs) as client:
        created = await client.voices.ivc.create(
            name="Narrator",
            files=files,
            description="warm",
            labels={"language": "ko"},
            remove_background_noise=True,
            request_options=NO_RETRY,
        )
        assert created.requires_verification is False
        voice = await client.voices.get(created.voice_id, request_options=NO_RETRY)
        assert voice.category == "cloned"
        assert voice.fine_tuning and set(voice.fine_tuning.state.values()) == {"fine_tuning"}
        with pytest.raises(ApiError) as caught:
            await convert(client, "hello", voice=created.voice_id)
        assert detail(caught.value)["code"] == "voice_not_ready"

        fake_elevenlabs.mark_voice_ready(created.voice_id)
        voice = await client.voices.get(created.voice_id, request_options=NO_RETRY)
        assert set(voice.fine_tuning.state.values()) == {"fine_tuned"}
        assert await convert(client, "hello", voice=created.voice_id)
        subscription = await client.user.subscription.get(request_options=NO_RETRY)
        assert subscription.voice_slots_used == 1

        fake_elevenlabs.mark_voice_failed(created.voice_id, "too noisy")
        voice = await client.voices.get(created.voice_id, request_options=NO_RETRY)
        assert set(voice.fine_tuning.state.values()) == {"failed"}
        assert set(voice.fine_tuning.message.values()) == {"too noisy"}
        deleted = await client.voices.delete(created.voice_id, request_options=NO_RETRY)
        assert deleted.status == "ok"
        with pytest.raises(ApiError) as gone:
            await client.voices.get(created.voice_id, request_options=NO_RETRY)
        assert gone.value.status_code == 404
    [upload] = fake_elevenlabs.clone_uploads
    assert upload["labels"] == {"language": "ko"} and upload["description"] == "warm"
    assert upload["remove_background_noise"] is True
    assert [(f["file_name"], f["size_bytes"]) for f in upload["files"]] == [
        ("one.mp3", 1000),
        ("two.wav", 400),
    ]


@capped
async def test_clone_rules_ready_at_once_limits_and_gating():
    with FakeElevenLabs(clone_ready_after_s=0, voice_limit=1) as fake:
        async with sdk(fake) as client:
            created = await client.voices.ivc.create(
                name="Quick", files=[("a.mp3", b"abc", "audio/mpeg")], request_options=NO_RETRY
            )
            voice = await client.voices.get(created.voice_id, request_options=NO_RETRY)
            assert set(voice.fine_tuning.state.values()) == {"fine_tuned"}
            with pytest.raises(ApiError) as full:
                await client.voices.ivc.create(
                    name="More", files=[("a.mp3", b"abc", "audio/mpeg")], request_options=NO_RETRY
                )
            assert (full.value.status_code, detail(full.value)["status"]) == (
                400,
                "voice_limit_reached",
            )
            fake.can_use_instant_voice_cloning = False
            with pytest.raises(ApiError) as denied:
                await client.voices.ivc.create(
                    name="More", files=[("a.mp3", b"abc", "audio/mpeg")], request_options=NO_RETRY
                )
            assert denied.value.status_code == 403
        assert fake.clone_uploads[0]["labels"] == {}  # the SDK sends labels="null"
        async with raw(fake) as http:
            no_files = await http.post("/v1/voices/add", files={"name": (None, "X")})
            no_name = await http.post("/v1/voices/add", files={"files": ("a.mp3", b"abc")})
        assert no_files.status_code == no_name.status_code == 400


@capped
async def test_subscription_and_user(fake_elevenlabs):
    async with sdk(fake_elevenlabs) as client:
        await convert(client, "twelve chars")
        subscription = await client.user.subscription.get(request_options=NO_RETRY)
        user = await client.user.get(request_options=NO_RETRY)
    assert (subscription.tier, subscription.status) == ("creator", "active")
    assert (subscription.character_count, subscription.character_limit) == (12, 100_000)
    assert subscription.can_use_instant_voice_cloning is True
    assert subscription.next_character_count_reset_unix
    assert user.subscription.character_count == 12


@capped
async def test_pronunciation_dictionaries_and_locators(fake_elevenlabs):
    pls = (
        b'<?xml version="1.0" encoding="UTF-8"?><lexicon version="1.0" '
        b'xmlns="http://www.w3.org/2005/01/pronunciation-lexicon" alphabet="ipa" '
        b'xml:lang="en-US"><lexeme><grapheme>Chorus</grapheme><alias>Kaw-rus</alias></lexeme>'
        b"</lexicon>"
    )
    async with sdk(fake_elevenlabs) as client:
        created = await client.pronunciation_dictionaries.create_from_rules(
            name="names",
            rules=[{"type": "alias", "string_to_replace": "Nyx", "alias": "Nix"}],
            request_options=NO_RETRY,
        )
        added = await client.pronunciation_dictionaries.rules.add(
            created.id,
            rules=[
                {
                    "type": "phoneme",
                    "string_to_replace": "tomato",
                    "phoneme": "təˈmeɪtoʊ",
                    "alphabet": "ipa",
                }
            ],
            request_options=NO_RETRY,
        )
        from_file = await client.pronunciation_dictionaries.create_from_file(
            name="lexicon", file=("lex.pls", pls, "application/pls+xml"), request_options=NO_RETRY
        )
        got = await client.pronunciation_dictionaries.get(created.id, request_options=NO_RETRY)
        listed = await client.pronunciation_dictionaries.list(request_options=NO_RETRY)
        locator = PronunciationDictionaryVersionLocator(
            pronunciation_dictionary_id=created.id, version_id=created.version_id
        )
        assert await convert(client, "Nyx", pronunciation_dictionary_locators=[locator])
        with pytest.raises(ApiError) as unknown:
            missing = PronunciationDictionaryVersionLocator(pronunciation_dictionary_id="nope")
            await convert(client, "Nyx", pronunciation_dictionary_locators=[missing])
        with pytest.raises(ApiError) as too_many:
            await convert(client, "Nyx", pronunciation_dictionary_locators=[locator] * 4)
    assert (added.id, added.version_rules_num) == (created.id, 2)
    assert added.version_id != created.version_id
    assert got.latest_version_id == added.version_id and len(got.rules) == 2
    assert from_file.version_rules_num == 1
    assert {d.id for d in listed.pronunciation_dictionaries} == {created.id, from_file.id}
    assert unknown.value.status_code == 404 and too_many.value.status_code == 400
    assert fake_elevenlabs.calls[0].pronunciation_dictionary_locators == [
        {"pronunciation_dictionary_id": created.id, "version_id": created.version_id}
    ]


@capped
async def test_request_id_and_context_fields_are_checked_and_recorded(fake_elevenlabs):
    async with raw(fake_elevenlabs) as http:
        ok = await http.post(
            TTS,
            json={
                "text": "second",
                "previous_request_ids": ["a", "b", "c"],
                "next_text": "third",
                "voice_settings": {"stability": 0.4, "speed": 1.1},
                "apply_text_normalization": "off",
            },
        )
        too_many = await http.post(TTS, json={"text": "x", "next_request_ids": ["a"] * 4})
        bad_settings = await http.post(TTS, json={"text": "x", "voice_settings": {"speed": 3}})
        bad_seed = await http.post(TTS, json={"text": "x", "seed": -1})
    assert ok.status_code == 200
    assert too_many.status_code == 400
    assert bad_settings.status_code == bad_seed.status_code == 422
    call = fake_elevenlabs.calls[0]
    assert call.previous_request_ids == ["a", "b", "c"] and call.next_text == "third"
    assert call.voice_settings == {"stability": 0.4, "speed": 1.1}
    assert call.apply_text_normalization == "off"
    fake_elevenlabs.reset_stats()
    assert fake_elevenlabs.calls == [] and fake_elevenlabs.endpoint_counts == {}
    assert fake_elevenlabs.character_count == 6  # the quota is not a statistic
    assert fake_elevenlabs.server_errors == []


@capped
async def test_history_records_each_generation_and_serves_it_through_the_sdk(fake_elevenlabs):
    fake = fake_elevenlabs
    other = next(v for v in fake.voice_ids if v != RACHEL)
    async with sdk(fake) as client:
        async with client.text_to_speech.with_raw_response.convert(
            RACHEL, text="first line", model_id="eleven_flash_v2_5",
            output_format="mp3_22050_32", voice_settings={"stability": 0.2},
            request_options=NO_RETRY,
        ) as response:
            audio = b"".join([chunk async for chunk in response.data])
            headers = response.headers
        await convert(client, "second line", model_id="eleven_multilingual_v2")
        await convert(client, "third line", voice=other, model_id="eleven_flash_v2_5")
        everything = await client.history.list(request_options=NO_RETRY)
        rachel = await client.history.list(voice_id=RACHEL, page_size=1,
                                           request_options=NO_RETRY)
        rest = await client.history.list(
            voice_id=RACHEL, page_size=1, request_options=NO_RETRY,
            start_after_history_item_id=rachel.last_history_item_id,
        )
        flash = await client.history.list(model_id="eleven_flash_v2_5", source="TTS",
                                          sort_direction="asc", request_options=NO_RETRY)
        first = rest.history[0]
        one = await client.history.get(first.history_item_id, request_options=NO_RETRY)
        async with client.history.with_raw_response.get_audio(
            first.history_item_id, request_options=NO_RETRY
        ) as got:
            again = b"".join([chunk async for chunk in got.data])
        future = await client.history.list(date_after_unix=first.date_unix + 3600,
                                           request_options=NO_RETRY)
        past = await client.history.list(date_before_unix=first.date_unix,
                                         request_options=NO_RETRY)
    assert [h.text for h in everything.history] == ["third line", "second line", "first line"]
    assert not everything.has_more
    assert [h.text for h in rachel.history] == ["second line"] and rachel.has_more
    assert [h.text for h in rest.history] == ["first line"] and not rest.has_more
    assert [h.text for h in flash.history] == ["first line", "third line"]
    assert (one.history_item_id, one.request_id) == (headers["history-item-id"],
                                                     headers["request-id"])
    assert (one.voice_id, one.model_id, one.output_format, one.source) == (
        RACHEL, "eleven_flash_v2_5", "mp3_22050_32", "TTS")
    assert one.settings is not None and one.settings["stability"] == 0.2  # as sent
    assert one.settings["similarity_boost"] == 0.75  # the voice's own
    assert one.character_count_change_to - one.character_count_change_from == len("first line")
    assert again == audio
    assert future.history == [] and past.history == []
    async with raw(fake) as http:
        missing = await http.get("/v1/history/nope/audio")
        no_source = await http.get("/v1/history", params={"model_id": "eleven_flash_v2_5"})
    assert missing.status_code == 404 and no_source.status_code == 400
