"""The offline engines' ``synthesize_streaming``: several chunks, the first before the last part
is spoken, and the chunks joined are the returned clip, which decodes in every kind of format."""

from __future__ import annotations

import pytest
import trio

from protocols.domain.audio import audio_duration, parse_format
from protocols.messages import SynthesisRequest
from protocols.providers.embedded import EmbeddedProvider
from protocols.providers.espeak import EspeakProvider
from protocols.providers.piper import JOE, PiperProvider, installed
from protocols.providers.streaming import stream_split

TEXT = ("The fox ran to the river, quick as the wind. It drank the cold water and looked around. "
        "Then it went home through the tall grass, singing a quiet song to itself.")


async def streamed(provider, fmt: str, voice: str) -> tuple[list[bytes], object]:  # type: ignore[no-untyped-def]
    chunks: list[bytes] = []

    async def sink(data: bytes) -> None:
        chunks.append(data)

    with trio.fail_after(60):
        result = await provider.synthesize_streaming(
            SynthesisRequest(text=TEXT, voice_id=voice, output_format=fmt), sink)
    return chunks, result


def test_the_first_part_is_short_and_nothing_is_lost():
    parts = stream_split(TEXT)
    assert len(parts[0]) <= 48 and len(parts) >= 2
    assert " ".join(parts).split() == TEXT.split()


@pytest.mark.parametrize("fmt", ["mp3_44100_128", "opus_48000_64", "wav_22050", "pcm_16000"])
async def test_espeak_streams_part_by_part(fmt):
    chunks, result = await streamed(EspeakProvider(), fmt, "en-us")
    assert len(chunks) >= 3
    assert b"".join(chunks) == result.audio  # type: ignore[attr-defined]
    seconds = audio_duration(result.audio, parse_format(fmt))  # type: ignore[attr-defined]
    assert 5.0 < seconds < 15.0
    assert abs(seconds - result.duration_s) < 0.1  # type: ignore[attr-defined]


@pytest.mark.skipif(not installed(), reason="Piper is not installed")
async def test_piper_streams_through_the_embedded_provider():
    provider = EmbeddedProvider([PiperProvider(voices=installed()), EspeakProvider()])
    chunks, result = await streamed(provider, "mp3_22050_32", JOE.voice_id)
    assert len(chunks) >= 3
    assert b"".join(chunks) == result.audio  # type: ignore[attr-defined]
    assert 4.0 < audio_duration(result.audio, parse_format("mp3_22050_32")) < 20.0  # type: ignore[attr-defined]
