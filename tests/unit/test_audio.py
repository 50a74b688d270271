"""protocols/domain/audio.py: every format encodes and decodes back to the right codec, rate,
length."""

from __future__ import annotations

import io
import math
import struct

import av
import pytest
import trio

from protocols.domain.audio import (
    FORMAT_NAMES,
    FORMATS,
    SAMPLE_WIDTH,
    concat_pcm,
    encode_pcm,
    parse_format,
    pcm_duration,
    silence,
)
from protocols.errors import InvalidInput, UnsupportedFormat
from protocols.messages import DEFAULT_FORMAT

RATE = 22050
DECODER = {"libmp3lame": "mp3", "libopus": "opus"}  # encoder → the decoder's codec family


def tone(seconds: float, rate: int = RATE, freq: float = 440.0) -> bytes:
    n = round(seconds * rate)
    return struct.pack(
        f"<{n}h", *(int(8000 * math.sin(2 * math.pi * freq * i / rate)) for i in range(n))
    )


PCM = tone(3.0)


def decode(data: bytes, fmt) -> tuple[str, int, int, float]:
    """(codec name, stream rate, channels, decoded seconds) of encoded bytes."""
    if fmt.raw:
        options = {"sample_rate": str(fmt.sample_rate), "ch_layout": "mono"}
        container = av.open(io.BytesIO(data), format=fmt.container, options=options)
    else:
        container = av.open(io.BytesIO(data))
    with container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        ctx = stream.codec_context
        return ctx.name, ctx.sample_rate, ctx.channels, samples / ctx.sample_rate


def test_expected_names_present():
    for name in (
        "mp3_22050_32", "mp3_44100_64", "mp3_44100_96", "mp3_44100_128", "mp3_44100_192",
        "opus_48000_32", "opus_48000_64", "opus_48000_96", "opus_48000_128", "opus_48000_192",
        "wav_8000", "wav_16000", "wav_22050", "wav_24000", "wav_44100",
        "pcm_16000", "pcm_22050", "pcm_44100", "ulaw_8000", "alaw_8000",
    ):  # fmt: skip
        assert name in FORMAT_NAMES
    assert parse_format(None).name == DEFAULT_FORMAT == "mp3_44100_128"


@pytest.mark.parametrize("name", sorted(FORMATS))
async def test_every_format_round_trips(name):
    fmt = FORMATS[name]
    with trio.fail_after(20):
        data = await trio.to_thread.run_sync(encode_pcm, PCM, RATE, fmt)
    assert data
    codec, rate, channels, seconds = decode(data, fmt)
    expected_codec = DECODER.get(fmt.codec, fmt.codec)
    assert codec.startswith(expected_codec), (codec, fmt.codec)
    assert rate == fmt.sample_rate
    assert channels == 1
    assert seconds == pytest.approx(pcm_duration(PCM, RATE), rel=0.05)


def test_format_metadata():
    assert FORMATS["mp3_44100_128"].content_type == "audio/mpeg"
    assert FORMATS["mp3_44100_128"].bitrate == 128_000
    assert FORMATS["mp3_22050_32"].sample_rate == 22050
    assert FORMATS["opus_48000_64"].content_type == "audio/ogg"
    assert FORMATS["opus_48000_64"].extension == "opus"
    assert FORMATS["wav_16000"].content_type == "audio/wav"
    assert FORMATS["pcm_22050"].content_type == "application/octet-stream"
    assert FORMATS["ulaw_8000"].content_type == "audio/basic"
    with pytest.raises(AttributeError):
        FORMATS["wav_16000"].sample_rate = 1  # frozen


def test_wav_header_and_raw_pcm_passthrough():
    wav = encode_pcm(PCM, RATE, FORMATS["wav_22050"])
    assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE"
    assert encode_pcm(PCM, RATE, FORMATS["pcm_22050"]) == PCM  # same rate: bytes unchanged
    resampled = encode_pcm(PCM, RATE, FORMATS["pcm_44100"])
    assert len(resampled) == pytest.approx(2 * len(PCM), rel=0.01)
    ulaw = encode_pcm(PCM, RATE, FORMATS["ulaw_8000"])
    assert len(ulaw) == pytest.approx(3 * 8000, rel=0.01)  # one byte per sample


async def test_bitrate_changes_size():
    with trio.fail_after(10):
        low = await trio.to_thread.run_sync(encode_pcm, PCM, RATE, FORMATS["mp3_44100_64"])
        high = await trio.to_thread.run_sync(encode_pcm, PCM, RATE, FORMATS["mp3_44100_192"])
    assert len(high) > 2 * len(low)


@pytest.mark.parametrize(
    "bad", ["mp3", "mp3_44100_999", "flac_44100", "opus_24000_32", "wav_11025", "", "  x "]
)
def test_bad_names_rejected(bad):
    if not bad:
        assert parse_format(bad).name == DEFAULT_FORMAT  # empty means default
        return
    with pytest.raises(UnsupportedFormat) as info:
        parse_format(bad)
    err = info.value
    assert isinstance(err, InvalidInput) and err.status == 422
    assert "mp3_44100_128" in err.detail and "opus_48000_64" in err.detail
    assert "mp3_44100_128" in err.extra["supported"]


def test_parse_is_case_and_space_tolerant():
    assert parse_format(" MP3_44100_128 ").name == "mp3_44100_128"


def test_pcm_helpers():
    assert pcm_duration(PCM, RATE) == pytest.approx(3.0)
    assert pcm_duration(44100, RATE) == pytest.approx(1.0)
    assert silence(0.5, RATE) == b"\0\0" * 11025
    joined = concat_pcm([PCM, PCM], RATE, gap_s=0.5)
    assert pcm_duration(joined, RATE) == pytest.approx(6.5)
    assert concat_pcm([b"ab", b"cd"], RATE) == b"abcd"
    with pytest.raises(ValueError):
        concat_pcm([b"abc"], RATE)
    with pytest.raises(ValueError):
        encode_pcm(b"abc", RATE, FORMATS["wav_22050"])


async def test_stitched_pcm_encodes_to_exact_length():
    clips = [tone(1.0, freq=f) for f in (300, 500, 700)]
    pcm = concat_pcm(clips, RATE, gap_s=0.5)
    with trio.fail_after(10):
        data = await trio.to_thread.run_sync(encode_pcm, pcm, RATE, FORMATS["mp3_44100_128"])
    _, _, _, seconds = decode(data, FORMATS["mp3_44100_128"])
    assert seconds == pytest.approx(4.0, abs=0.05)
    assert len(pcm) == SAMPLE_WIDTH * 4 * RATE
