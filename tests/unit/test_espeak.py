"""protocols/providers/espeak.py against the real embedded libespeak-ng (fast: ~1000x real time).

espeak-ng output is not bit-identical between calls (its pitch "flutter" index is a C static
that carries over between utterances), so audio is compared by a fingerprint (duration,
zero-crossing rate, RMS) with tolerances well above that jitter (~0.5%) and well below what a
different voice, variant or text changes (5-40%).
"""

from __future__ import annotations

import array
import io
import math

import av
import pytest
import trio

from protocols.errors import InvalidInput, TextEmpty, UnknownVoice, UnsupportedFormat
from protocols.messages import SynthesisRequest
from protocols.ports import SpeechProvider
from protocols.providers.espeak import SAMPLE_RATE, EspeakProvider

EN_20 = (
    "The quick brown fox jumps over the lazy dog while the children watch "
    "from the window and laugh at birds."
)
KO = "옛날 옛적에 깊은 산속에 여우가 살았어요. 여우는 매일 마을로 내려왔어요."


class Print:
    def __init__(self, pcm: bytes) -> None:
        samples = array.array("h", pcm)
        self.seconds = len(samples) / SAMPLE_RATE
        crossings = sum(1 for a, b in zip(samples, samples[1:], strict=False) if (a < 0) != (b < 0))
        self.zcr = crossings / self.seconds
        self.rms = math.sqrt(sum(x * x for x in samples) / len(samples))

    def same(self, other: Print) -> bool:
        return (
            other.seconds == pytest.approx(self.seconds, rel=0.01)
            and other.zcr == pytest.approx(self.zcr, rel=0.03)
            and other.rms == pytest.approx(self.rms, rel=0.03)
        )


async def pcm(provider: EspeakProvider, text: str, voice_id: str = "", language=None) -> bytes:
    request = SynthesisRequest(
        text=text, voice_id=voice_id, language=language, output_format="pcm_22050"
    )
    return (await provider.synthesize(request)).audio


@pytest.fixture
def provider() -> EspeakProvider:
    return EspeakProvider()


async def test_is_a_speech_provider(provider):
    p: SpeechProvider = provider
    assert p.name == "espeak"
    assert {"mp3_44100_128", "opus_48000_64", "wav_22050", "pcm_22050"} <= p.formats()


async def test_voices_include_languages_and_variants(provider):
    with trio.fail_after(10):
        voices = await provider.voices()
    by_id = {v.voice_id: v for v in voices}
    assert len(by_id) == len(voices), "voice ids are unique"
    assert len(voices) > 100
    for vid in ("en-us", "en-gb", "ko", "en-us+f3", "en-gb+m1", "ko+m2", "ko+f1"):
        assert vid in by_id, vid
    assert by_id["ko"].language == "ko" and by_id["en-us"].language == "en"
    assert by_id["en-us+f3"].language == "en"
    assert all(v.provider == "espeak" and v.category == "default" for v in voices)


@pytest.mark.parametrize(
    ("voice_id", "language", "expected"),
    [
        (None, None, "en-us"),
        ("", None, "en-us"),
        (None, "ko", "ko"),
        (None, "ko-KR", "ko"),
        (None, "en", "en-us"),
        (None, "en-GB", "en-gb"),
        (None, "en_us", "en-us"),
        (None, "fr", "fr-fr"),
        ("ko", "en", "ko"),  # an explicit id wins over the language
        ("EN-US+F3", None, "en-us+f3"),
        ("en-gb-scotland+klatt", None, "en-gb-scotland+klatt"),  # valid, though not listed
    ],
)
async def test_resolve_voice(provider, voice_id, language, expected):
    with trio.fail_after(10):
        voice = await provider.resolve_voice(voice_id, language)
    assert voice.voice_id == expected


@pytest.mark.parametrize("voice_id", ["21m00Tcm4TlvDq8ikWAM", "en-us+nope", "xx+f3", "+f3"])
async def test_unknown_voice(provider, voice_id):
    with trio.fail_after(10):
        with pytest.raises(UnknownVoice) as info:
            await provider.resolve_voice(voice_id, None)
        assert info.value.status == 404
        with pytest.raises(UnknownVoice):
            await provider.synthesize(SynthesisRequest(text="hello", voice_id=voice_id))


async def test_unknown_language(provider):
    with trio.fail_after(10):
        with pytest.raises(InvalidInput, match="zz-top"):
            await provider.resolve_voice(None, "zz-top")


async def test_english_sentence_mp3(provider):
    assert len(EN_20.split()) == 20
    with trio.fail_after(20):
        result = await provider.synthesize(SynthesisRequest(text=EN_20, voice_id="en-us"))
    assert result.content_type == "audio/mpeg"
    assert result.characters == len(EN_20)
    assert 3.0 < result.duration_s < 15.0
    with av.open(io.BytesIO(result.audio)) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.sample_rate == 44100
        decoded = sum(f.samples for f in container.decode(stream)) / 44100
    assert decoded == pytest.approx(result.duration_s, rel=0.05)


async def test_korean_is_spoken_with_the_korean_voice(provider):
    with trio.fail_after(20):
        korean = Print(await pcm(provider, KO, language="ko"))
        detected = Print(await pcm(provider, KO))  # Hangul, no voice or language: Korean
        by_english_voice = Print(await pcm(provider, KO, voice_id="en-us"))
        english = Print(await pcm(provider, EN_20))
    assert 2.0 < korean.seconds < 15.0
    assert korean.same(detected)
    assert not korean.same(by_english_voice)
    assert not korean.same(english)


async def test_variants_change_the_audio(provider):
    with trio.fail_after(20):
        base = Print(await pcm(provider, EN_20, "en-us"))
        again = Print(await pcm(provider, EN_20, "en-us"))
        female = Print(await pcm(provider, EN_20, "en-us+f3"))
        male = Print(await pcm(provider, EN_20, "en-us+m2"))
        ko_base = Print(await pcm(provider, KO, "ko"))
        ko_variant = Print(await pcm(provider, KO, "ko+m2"))
    assert base.same(again)
    assert not base.same(female)
    assert not base.same(male)
    assert not female.same(male)
    assert not ko_base.same(ko_variant)


async def test_concurrent_calls_match_serial_results(provider):
    # Two providers: each has its own CapacityLimiter, so worker threads really contend for
    # the module's library lock (the guarantee), not just for one limiter.
    providers = [provider, EspeakProvider()]
    texts = [EN_20, KO, "Short one.", EN_20 + " " + EN_20, "Numbers: 1, 2, 3, 4, 5, 6, 7."]
    voices = ["en-us", "ko", "en-gb", "en-us+f3", "en-us"]
    with trio.fail_after(30):
        serial = [Print(await pcm(provider, t, v)) for t, v in zip(texts, voices, strict=True)]
        concurrent: list[Print | None] = [None] * len(texts)

        async def one(i: int) -> None:
            concurrent[i] = Print(await pcm(providers[i % 2], texts[i], voices[i]))

        async with trio.open_nursery() as nursery:
            for i in range(len(texts)):
                nursery.start_soon(one, i)
    for i, (alone, together) in enumerate(zip(serial, concurrent, strict=True)):
        assert together is not None and alone.same(together), i
        assert not any(together.same(other) for j, other in enumerate(serial) if j != i)


async def test_long_text_without_punctuation(provider):
    text = " ".join(["word"] * 300)  # 1499 characters, no sentence mark: 2 chunks
    chunked = EspeakProvider(chunk_chars=200)
    with trio.fail_after(30):
        result = await provider.synthesize(
            SynthesisRequest(text=text, voice_id="en-us", output_format="opus_48000_32")
        )
        small = await chunked.synthesize(
            SynthesisRequest(text=text, voice_id="en-us", output_format="pcm_16000")
        )
        unbroken = await provider.synthesize(
            SynthesisRequest(text="x" * 2500, voice_id="en-us", output_format="pcm_16000")
        )
    assert result.content_type == "audio/ogg"
    assert 300 * 0.1 < result.duration_s < 300 * 0.6
    assert small.duration_s == pytest.approx(result.duration_s, rel=0.1)
    assert unbroken.duration_s > 1.0


async def test_bad_requests(provider):
    with trio.fail_after(10):
        with pytest.raises(TextEmpty):
            await provider.synthesize(SynthesisRequest(text=" \n ", voice_id="en-us"))
        with pytest.raises(UnsupportedFormat):
            await provider.synthesize(
                SynthesisRequest(text="hi", voice_id="en-us", output_format="mp3_1_1")
            )
