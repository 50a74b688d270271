"""The embedded provider (protocols/providers/embedded.py) and its registration: Piper for
English when installed, espeak-ng for Korean and the rest, and espeak-ng alone when Piper is
not there. Real engines, no stand-ins; the tests that need Piper skip only when it is absent.
"""

from __future__ import annotations

import array

import pytest
import trio

from protocols.errors import InvalidInput
from protocols.messages import NO_PARAMS, SpeechParams, SynthesisRequest
from protocols.providers import choose, open_provider, piper
from protocols.providers.embedded import EmbeddedProvider
from protocols.providers.espeak import EspeakProvider
from protocols.settings import Settings

needs_piper = pytest.mark.skipif(not piper.installed(), reason="Piper is not installed")

EN = "Once upon a time, a small fox lived at the edge of the forest."
KO = "옛날 옛적에 작은 여우가 숲 가장자리에 살았어요."


async def model_for(provider: EmbeddedProvider, voice_id: str | None, language: str | None,
                    text: str = EN) -> tuple[str, str]:
    """(voice id, model id) a job gets at submit: the model names the engine that speaks it."""
    voice = await provider.resolve_voice(voice_id, language)
    params = await provider.prepare(text, voice, language, NO_PARAMS)
    return voice.voice_id, params.model_id


@needs_piper
async def test_voices_of_both_engines_and_the_engine_chosen_per_voice():
    provider = EmbeddedProvider([piper.PiperProvider(), EspeakProvider()])
    with trio.fail_after(20):
        voices = {v.voice_id: v for v in await provider.voices()}
        assert voices["en_US-joe-medium"].provider == "piper"
        assert voices["ko"].provider == voices["en-us"].provider == "espeak"
        assert await model_for(provider, None, None) == ("en_US-joe-medium", "piper")
        assert await model_for(provider, None, "en-US") == ("en_US-joe-medium", "piper")
        assert await model_for(provider, None, "ko", KO) == ("ko", "espeak-ng")
        assert await model_for(provider, None, "en-GB") == ("en-gb", "espeak-ng")
        assert await model_for(provider, "en-us+f3", None) == ("en-us+f3", "espeak-ng")
        with pytest.raises(InvalidInput, match="espeak-ng"):  # an engine's model, not another's
            voice = await provider.resolve_voice("ko", None)
            await provider.prepare(KO, voice, "ko", SpeechParams(model_id="piper"))


@needs_piper
async def test_korean_is_spoken_by_espeak_and_english_by_piper():
    provider = EmbeddedProvider([piper.PiperProvider(), EspeakProvider()])
    alone = EspeakProvider()

    async def clip(p, text: str, voice_id: str) -> tuple[float, int]:
        """(seconds, peak sample): Piper scales each sentence to full range, espeak-ng not."""
        request = SynthesisRequest(text=text, voice_id=voice_id, output_format="pcm_22050")
        result = await p.synthesize(request)
        return result.duration_s, max(abs(s) for s in array.array("h", result.audio))

    with trio.fail_after(30):
        korean, korean_peak = await clip(provider, KO, "ko")
        english, english_peak = await clip(provider, EN, "en_US-joe-medium")
        by_espeak, _ = await clip(alone, KO, "ko")
        _, espeak_english_peak = await clip(alone, EN, "en-us")
    assert korean == pytest.approx(by_espeak, rel=0.01) and korean_peak < 32767
    assert english_peak == 32767 and espeak_english_peak < 32767
    assert 1.5 < korean < 10 and 1.5 < english < 8


async def test_without_piper_english_falls_back_to_espeak(monkeypatch):
    monkeypatch.setattr(piper, "installed", lambda *voices: ())
    registration, why = choose(Settings())
    assert registration.name == "embedded" and "Piper is not installed" in why
    with trio.fail_after(20):
        async with open_provider(Settings()) as provider:
            assert isinstance(provider, EmbeddedProvider)
            assert not [v for v in await provider.voices() if v.provider == "piper"]
            assert await model_for(provider, None, None) == ("en-us", "espeak-ng")
            assert await model_for(provider, None, "en") == ("en-us", "espeak-ng")
            result = await provider.synthesize(SynthesisRequest(text=EN, voice_id="en-us"))
    assert 2.0 < result.duration_s < 10.0


@needs_piper
async def test_the_default_registration_has_piper_when_installed():
    registration, why = choose(Settings())
    assert registration.name == "embedded" and "Piper for English" in why
    async with open_provider(Settings(piper_threads=2)) as provider:
        engine = provider.engines[0]  # type: ignore[attr-defined]
        assert isinstance(engine, piper.PiperProvider) and engine.threads == 2
    assert choose(Settings(provider="espeak"))[0].name == "espeak"  # espeak-ng alone
