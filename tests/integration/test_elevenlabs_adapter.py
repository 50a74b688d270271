"""The ElevenLabs adapter against a real HTTP server on 127.0.0.1 that behaves like the
documented API (tests/support/elevenlabs/): requests as sent, headers kept, every documented error
mapped to our typed errors, retries as documented, long text split and stitched."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from protocols.domain.audio import audio_duration, parse_format
from protocols.errors import (
    InvalidInput,
    ProviderAuthFailed,
    ProviderBlocked,
    ProviderQuotaExhausted,
    ProviderRejected,
    ProviderUnavailable,
    UnknownVoice,
)
from protocols.messages import DictionaryRef, SpeechParams, SynthesisRequest
from protocols.providers.elevenlabs.models import FLASH, MULTILINGUAL, V3, Preference
from protocols.providers.elevenlabs.provider import ElevenLabsProvider
from protocols.settings import Secret, Settings
from tests.support.clips import clip
from tests.support.elevenlabs.server import FakeElevenLabs

LIMIT_S = 20
RACHEL = "21m00Tcm4TlvDq8ikWAM"


def settings_for(fake: FakeElevenLabs, tmp_path: Any, **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        data_dir=str(tmp_path), elevenlabs_api_key=Secret("test-key"),
        elevenlabs_base_url=fake.base_url, elevenlabs_timeout_s=5.0, provider_wait_s=10.0,
    )
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def adapter(fake: FakeElevenLabs, tmp_path: Any, **overrides: Any
                  ) -> AsyncIterator[ElevenLabsProvider]:
    async with ElevenLabsProvider.open(settings_for(fake, tmp_path, **overrides)) as provider:
        yield provider


def request(text: str, *, model: str = FLASH, fmt: str = "mp3_44100_128",
            language: str | None = "en", **params: Any) -> SynthesisRequest:
    return SynthesisRequest(
        text=text, voice_id=RACHEL, language=language, output_format=fmt,
        params=SpeechParams(model_id=model, **params),
    )


def ok_calls(fake: FakeElevenLabs) -> list[Any]:
    return [c for c in fake.calls if c.status == 200]


async def test_convert_sends_the_job_and_keeps_request_id_and_cost(fake_elevenlabs, tmp_path):
    fake = fake_elevenlabs
    with trio.fail_after(LIMIT_S):
        async with adapter(fake, tmp_path) as el:
            result = await el.synthesize(request(
                "Hello from Chorus.", seed=7, model=FLASH,
            ))
    (call,) = fake.calls
    assert (call.text, call.model_id, call.output_format) == (
        "Hello from Chorus.", FLASH, "mp3_44100_128")
    assert call.language_code == "en" and call.seed == 7
    assert result.request_ids == (call.request_id,)
    assert result.character_cost == len("Hello from Chorus.")
    fmt = parse_format("mp3_44100_128")
    assert result.duration_s == pytest.approx(audio_duration(result.audio, fmt), abs=0.01)
    assert result.duration_s > 0.1


async def test_language_code_only_goes_to_models_that_accept_it(fake_elevenlabs, tmp_path):
    with trio.fail_after(LIMIT_S):
        async with adapter(fake_elevenlabs, tmp_path) as el:
            await el.synthesize(
                request("안녕하세요. 반갑습니다.", model=MULTILINGUAL, language="ko")
            )
            await el.synthesize(request("안녕하세요. 반갑습니다.", model=V3, language="ko-KR"))
    multi, v3 = fake_elevenlabs.calls
    assert multi.status == 200 and multi.language_code is None  # would be a 400 there
    assert v3.status == 200 and v3.language_code == "ko"


async def test_long_text_is_split_at_sentences_and_stitched_in_order(fake_elevenlabs, tmp_path):
    fake = fake_elevenlabs
    fake.model_limits = {FLASH: 60}
    sentences = [f"This is sentence number {n} of the story." for n in range(1, 7)]
    text = " ".join(sentences)
    with trio.fail_after(LIMIT_S):
        async with adapter(fake, tmp_path) as el:
            assert (await el.models())[FLASH].max_chars == 60  # the live catalogue wins
            result = await el.synthesize(request(text, fmt="wav_16000"))
    calls = ok_calls(fake)
    assert [c.text for c in calls] == sentences  # whole sentences, in order, nothing lost
    assert calls[0].previous_request_ids is None and calls[0].next_text == sentences[1]
    for i, call in enumerate(calls[1:], start=1):  # continuity: the parts before, at most 3
        assert call.previous_request_ids == [c.request_id for c in calls[max(0, i - 3):i]]
    assert result.request_ids == tuple(c.request_id for c in calls)
    # one file, as long as the parts together (10 ms per character in the fake)
    fmt = parse_format("wav_16000")
    expected = sum(len(s) for s in sentences) * 0.01
    assert audio_duration(result.audio, fmt) == pytest.approx(expected, rel=0.05)
    assert result.audio[:4] == b"RIFF" and result.audio.count(b"RIFF") == 1


async def test_concurrency_429_waits_without_spending_attempts(fake_elevenlabs, tmp_path):
    fake = fake_elevenlabs
    fake.inject(429, "too_many_concurrent_requests", times=4, shape="legacy")
    with trio.fail_after(LIMIT_S):
        async with adapter(fake, tmp_path, provider_max_attempts=2) as el:
            result = await el.synthesize(request("Busy account."))
            stats = el.statistics()
    assert result.audio and len(ok_calls(fake)) == 1
    assert stats.waits == 4 and stats.backoffs == 0  # more 429s than attempts: still fine


@pytest.mark.parametrize(
    ("status", "code"), [(429, "system_busy"), (429, "rate_limit_exceeded"), (500, None),
                         (503, "service_unavailable")],
)
async def test_transient_errors_back_off_and_retry(fake_elevenlabs, tmp_path, status, code):
    fake = fake_elevenlabs
    fake.inject(status, code or "internal_server_error", times=2)
    with trio.fail_after(LIMIT_S):
        async with adapter(fake, tmp_path, provider_max_attempts=3) as el:
            await el.synthesize(request("Try again."))
            assert el.statistics().backoffs == 2
    assert len(ok_calls(fake)) == 1


async def test_transient_errors_past_the_attempts_are_retryable_for_the_job(
    fake_elevenlabs, tmp_path
):
    fake_elevenlabs.inject(503, "service_unavailable", times=None)
    with trio.fail_after(LIMIT_S):
        async with adapter(fake_elevenlabs, tmp_path, provider_max_attempts=3) as el:
            with pytest.raises(ProviderUnavailable) as caught:
                await el.synthesize(request("Down."))
    assert caught.value.retryable  # the job is released and redelivered later
    assert len(fake_elevenlabs.calls) == 3


async def test_a_timeout_is_retried(fake_elevenlabs, tmp_path):
    fake_elevenlabs.stall(3.0, times=1)
    with trio.fail_after(LIMIT_S):
        async with adapter(fake_elevenlabs, tmp_path, elevenlabs_timeout_s=0.5) as el:
            await el.synthesize(request("Slow at first."))
            assert el.statistics().timeouts == 1  # logged as possibly charged


@pytest.mark.parametrize(
    ("status", "code", "shape", "error"),
    [
        (401, "invalid_api_key", "legacy", ProviderAuthFailed),
        (401, "quota_exceeded", "legacy", ProviderQuotaExhausted),
        (401, "detected_unusual_activity", "legacy", ProviderBlocked),
        (400, "max_character_limit_exceeded", "current", ProviderRejected),
        (400, "invalid_parameters", "current", ProviderRejected),
        (404, "voice_not_found", "current", UnknownVoice),
    ],
)
async def test_permanent_errors_fail_at_once(fake_elevenlabs, tmp_path, status, code, shape,
                                             error):
    fake_elevenlabs.inject(status, code, times=1, shape=shape)
    with trio.fail_after(LIMIT_S):
        async with adapter(fake_elevenlabs, tmp_path) as el:
            with pytest.raises(error) as caught:
                await el.synthesize(request("Nope."))
    assert not caught.value.retryable
    assert code in caught.value.detail
    assert "test-key" not in caught.value.detail
    assert len(fake_elevenlabs.calls) == 1  # never retried


async def test_a_wrong_key_is_a_typed_error_without_the_key(fake_elevenlabs, tmp_path):
    with trio.fail_after(LIMIT_S):
        async with adapter(fake_elevenlabs, tmp_path,
                           elevenlabs_api_key=Secret("sk-secret-wrong")) as el:
            with pytest.raises(ProviderAuthFailed) as caught:
                await el.synthesize(request("Hi."))
    assert "sk-secret-wrong" not in str(caught.value) + repr(caught.value.extra)


async def test_the_account_running_dry_fails_early_without_a_call(fake_elevenlabs, tmp_path):
    fake = fake_elevenlabs
    fake.character_limit, fake.character_count = 1000, 995
    with trio.fail_after(LIMIT_S):
        async with adapter(fake, tmp_path) as el:
            assert await el.remaining_characters() == 5
            with pytest.raises(ProviderQuotaExhausted):
                await el.synthesize(request("More than five characters."))
    assert fake.calls == []


async def test_unknown_voice_and_default_voice(fake_elevenlabs, tmp_path):
    with trio.fail_after(LIMIT_S):
        async with adapter(fake_elevenlabs, tmp_path) as el:
            with pytest.raises(UnknownVoice):
                await el.resolve_voice("no-such-voice-id-here", None)
            korean = await el.resolve_voice(None, "ko")
            assert "ko" in korean.languages
            assert (await el.resolve_voice(RACHEL, None)).name == "Rachel"


async def test_prepare_picks_models_and_pins_dictionary_versions(fake_elevenlabs, tmp_path):
    fake = fake_elevenlabs
    dict_id, version = fake.add_dictionary("names", [
        {"type": "alias", "string_to_replace": "Chorus", "alias": "Kohrus"}])
    with trio.fail_after(LIMIT_S):
        async with adapter(fake, tmp_path) as el:
            voice = await el.resolve_voice(RACHEL, None)

            async def model(text: str, lang: str | None, pref: Preference | None = None,
                            model_id: str = "") -> str:
                params = await el.prepare(text, voice, lang, SpeechParams(model_id=model_id),
                                          pref)
                return params.model_id

            assert await model("Hello.", "en") == FLASH
            assert await model("Call 555-0100 on 3 May.", "en") == MULTILINGUAL
            assert await model("Hello.", "en", Preference.latency) == FLASH
            assert await model("Hello.", "en", Preference.quality) == MULTILINGUAL
            assert await model("Hello.", "en", Preference.expressive) == V3
            assert await model("שלום", "he") == V3  # only v3 speaks Hebrew
            assert await model("Hello.", "en", Preference.quality, model_id=V3) == V3
            with pytest.raises(InvalidInput):
                await model("Hello.", "en", model_id="eleven_nonexistent")
            pinned = await el.prepare("Chorus.", voice, "en", SpeechParams(
                dictionaries=(DictionaryRef(pronunciation_dictionary_id=dict_id),)))
            assert pinned.dictionaries[0].version_id == version
            with pytest.raises(InvalidInput):
                await el.prepare("x", voice, "en", SpeechParams(dictionaries=(
                    DictionaryRef(pronunciation_dictionary_id="missing"),)))
            await el.synthesize(request("Chorus.", dictionaries=pinned.dictionaries))
    sent = ok_calls(fake)[-1].pronunciation_dictionary_locators
    assert sent == [{"pronunciation_dictionary_id": dict_id, "version_id": version}]


async def test_a_clone_upload_is_resent_whole_after_a_429_but_never_after_a_5xx(
    fake_elevenlabs, tmp_path
):
    from protocols.messages import CloneFile
    from protocols.providers.elevenlabs.voices import ElevenLabsVoices

    fake = fake_elevenlabs
    sample = CloneFile(filename="a.mp3", content_type="audio/mpeg", data=clip("mp3"))
    with trio.fail_after(LIMIT_S):
        async with adapter(fake, tmp_path) as el:
            voices = ElevenLabsVoices(el)
            fake.inject(429, "system_busy", times=1, path_prefix="/v1/voices/add")
            voice_id, _ = await voices.clone("Grandpa", "warm", {"accent": "scottish"}, [sample])
            (upload,) = fake.clone_uploads  # the retried upload carried every field
            assert voice_id in fake.voice_ids
            fake.inject(503, "service_unavailable", times=1, path_prefix="/v1/voices/add")
            with pytest.raises(ProviderUnavailable):  # outcome unknown: not sent twice
                await voices.clone("Grandma", "", {}, [sample])
    assert len(fake.clone_uploads) == 1
    assert upload["labels"] == {"accent": "scottish"} and upload["description"] == "warm"


async def test_voices_are_listed_through_the_legacy_route_when_v2_fails(
    fake_elevenlabs, tmp_path
):
    fake_elevenlabs.inject(404, "not_found", times=None, path_prefix="/v2/voices")
    with trio.fail_after(LIMIT_S):
        async with adapter(fake_elevenlabs, tmp_path) as el:
            names = {v.name for v in await el.voices()}
    assert "Rachel" in names
    assert fake_elevenlabs.endpoint_counts["GET /v1/voices"] == 1
