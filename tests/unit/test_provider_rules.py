"""Pure rules behind the ElevenLabs adapter: model selection, error classification, cache key."""

from __future__ import annotations

import pytest

from protocols.domain.cachekey import cache_key
from protocols.errors import (
    InvalidInput,
    ProviderAuthFailed,
    ProviderBlocked,
    ProviderForbidden,
    ProviderQuotaExhausted,
    ProviderRejected,
    ProviderUnavailable,
    UnknownVoice,
    UnsupportedLanguage,
)
from protocols.messages import DictionaryRef, SpeechParams, VoiceSettings
from protocols.providers.elevenlabs.errors import classify
from protocols.providers.elevenlabs.models import (
    FLASH,
    MULTILINGUAL,
    STATIC_MODELS,
    V3,
    Preference,
    catalogue_from_api,
    pick_model,
    primary_language,
)


def pick(text: str = "Hello.", language: str | None = "en", **kw) -> str:
    return pick_model(STATIC_MODELS, language=language, characters=len(text), text=text,
                      **kw).model_id


def test_preferences_map_to_their_models() -> None:
    assert pick(preference=Preference.latency) == FLASH
    assert pick(preference=Preference.quality) == MULTILINGUAL
    assert pick(preference=Preference.expressive) == V3
    assert pick() == FLASH  # balanced, plain text
    assert pick("Call me at 555-0100.") == MULTILINGUAL  # balanced, numbers read better


def test_language_support_decides() -> None:
    assert pick(language="vi", preference=Preference.quality) == FLASH  # v2 lacks Vietnamese
    assert pick(language="he") == V3  # only v3 speaks Hebrew
    assert pick(language="th", preference=Preference.latency) == V3
    assert pick(language="ko-KR", preference=Preference.quality) == MULTILINGUAL
    with pytest.raises(UnsupportedLanguage):
        pick(language="tlh")  # Klingon: nobody


def test_long_text_with_numbers_stays_on_a_model_that_fits() -> None:
    long = "Room 101. " * 1500  # 15,000 characters: over Multilingual's 10,000
    assert pick(long) == FLASH


def test_explicit_model_wins_but_must_exist_and_speak_the_language() -> None:
    assert pick(model_id=V3, preference=Preference.latency) == V3
    with pytest.raises(InvalidInput):
        pick(model_id="eleven_made_up")
    with pytest.raises(UnsupportedLanguage):
        pick(language="ko", model_id="eleven_flash_v2")  # English only


def test_live_catalogue_overrides_the_static_table() -> None:
    live = catalogue_from_api([
        {"model_id": FLASH, "can_do_text_to_speech": True,
         "maximum_text_length_per_request": 123,
         "languages": [{"language_id": "en"}, {"language_id": "kor"}]},
        {"model_id": "eleven_multilingual_sts_v2", "can_do_text_to_speech": False},
    ])
    assert set(live) == {FLASH}  # speech-to-speech models are not TTS models
    assert live[FLASH].max_chars == 123 and live[FLASH].languages == {"en", "ko"}
    # Multilingual is gone from this account: "quality" falls back to what exists
    assert pick_model(live, language="en", characters=5, preference=Preference.quality
                      ).model_id == FLASH
    assert primary_language("heb") == "he" and primary_language(None) is None


@pytest.mark.parametrize(
    ("status", "body", "kind", "error"),
    [
        (429, {"detail": {"status": "too_many_concurrent_requests", "message": "m"}}, "wait",
         ProviderUnavailable),
        (429, {"detail": {"code": "concurrent_limit_exceeded", "status": "x"}}, "wait",
         ProviderUnavailable),
        (429, {"detail": "Too many concurrent requests"}, "wait", ProviderUnavailable),
        (429, {"detail": {"status": "system_busy"}}, "backoff", ProviderUnavailable),
        (429, {"detail": {"code": "rate_limit_exceeded"}}, "backoff", ProviderUnavailable),
        (500, "Internal Server Error", "backoff", ProviderUnavailable),
        (400, {"detail": {"status": "voice_not_ready", "message": "still processing"}},
         "backoff", ProviderUnavailable),
        (502, None, "backoff", ProviderUnavailable),
        (401, {"detail": {"status": "invalid_api_key"}}, "fatal", ProviderAuthFailed),
        (401, {"detail": {"status": "quota_exceeded", "message": "0 credits"}}, "fatal",
         ProviderQuotaExhausted),
        (401, {"detail": {"status": "detected_unusual_activity"}}, "fatal", ProviderBlocked),
        (400, {"detail": {"code": "max_character_limit_exceeded"}}, "fatal", ProviderRejected),
        (422, {"detail": [{"loc": ["body", "text"], "msg": "Field required"}]}, "fatal",
         ProviderRejected),
        (404, {"detail": {"code": "voice_not_found"}}, "fatal", UnknownVoice),
        (400, {"detail": {"status": "voice_not_found"}}, "fatal", UnknownVoice),
        (403, {"detail": {"status": "only_for_creator+"}}, "fatal", ProviderForbidden),
    ],
)
def test_documented_errors_are_classified(status, body, kind, error) -> None:
    failure = classify(status, body, {"x-trace-id": "t-1"})
    assert failure.kind == kind
    assert type(failure.error) is error
    assert failure.error.retryable == (kind != "fatal")
    assert "t-1" in failure.error.detail  # the trace id, for support


def test_retry_after_is_honoured_and_capped() -> None:
    busy = {"detail": {"status": "system_busy"}}
    assert classify(429, busy, {"retry-after": "2"}).retry_after == 2.0
    assert classify(429, busy, {"retry-after": "9999"}).retry_after == 60.0
    assert classify(429, busy, {"retry-after": "soon"}).retry_after is None


def test_cache_key_covers_everything_that_shapes_the_audio() -> None:
    base = dict(provider="elevenlabs", text="Hello  there.", voice_id="v1", language="en",
                output_format="mp3_44100_128", params=SpeechParams(model_id=FLASH))
    key = cache_key(**base)
    assert cache_key(**{**base, "text": " Hello there. "}) == key  # normalized text
    variants = [
        {"text": "Hello there!"}, {"voice_id": "v2"}, {"language": "ko"},
        {"output_format": "wav_16000"}, {"provider": "espeak"},
        {"params": SpeechParams(model_id=MULTILINGUAL)},
        {"params": SpeechParams(model_id=FLASH, seed=1)},
        {"params": SpeechParams(model_id=FLASH, voice_settings=VoiceSettings(stability=0.5))},
        {"params": SpeechParams(model_id=FLASH, dictionaries=(
            DictionaryRef(pronunciation_dictionary_id="d", version_id="1"),))},
        {"params": SpeechParams(model_id=FLASH, dictionaries=(
            DictionaryRef(pronunciation_dictionary_id="d", version_id="2"),))},
        {"owner": "alice"},
    ]
    keys = {cache_key(**{**base, **change}) for change in variants}
    assert key not in keys and len(keys) == len(variants)
