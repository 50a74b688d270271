"""protocols/domain/audio.py ``probe_audio``: real clips pass with their rate, channels and
duration; text, an ELF binary, garbage, truncated files, lying headers and playlists that would
open other files are ``InvalidAudio`` naming the file."""

from __future__ import annotations

import random
import struct

import pytest

from protocols.domain.audio import FORMATS, encode_pcm, probe_audio
from protocols.errors import InvalidAudio
from tests.support.clips import RATE, clip, elf_bytes, text_bytes, tone


@pytest.mark.parametrize(
    ("kind", "container", "codec", "rate"),
    [("mp3", "mp3", "mp3", 22050), ("wav", "wav", "pcm_s16le", 16000),
     ("ogg", "ogg", "opus", 48000)],
)
def test_real_clips_are_audio(kind: str, container: str, codec: str, rate: int) -> None:
    found = probe_audio(clip(kind, 1.0), name=f"a.{kind}")
    assert found.container == container and found.codec.startswith(codec)
    assert found.sample_rate == rate and found.channels == 1
    assert found.duration_s == pytest.approx(1.0, abs=0.1)


def test_a_clip_without_a_known_duration_still_passes() -> None:
    # an mp3 without its Xing header: FFmpeg estimates; the check never needs a duration
    found = probe_audio(clip("mp3", 2.0)[-4000:], name="cut.mp3")
    assert found.sample_rate == 22050


def wav_with(rate: int | None = None, data_size: int | None = None) -> bytes:
    """A real wav clip with its header's sample rate or data size overwritten."""
    wav = bytearray(clip("wav", 0.5))
    if rate is not None:
        wav[24:28] = struct.pack("<I", rate)
        wav[28:32] = struct.pack("<I", rate * 2)  # byte rate, kept consistent
    if data_size is not None:
        at = wav.index(b"data") + 4
        wav[at:at + 4] = struct.pack("<I", data_size)
    return bytes(wav)


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("notes.mp3", text_bytes()),
        ("tool.wav", elf_bytes()),
        ("noise.ogg", random.Random(13).randbytes(50_000)),
        ("zeros.wav", bytes(50_000)),
        ("empty.mp3", b""),
        ("head.mp3", clip("mp3")[:40]),  # the ID3 tag and nothing after it
        ("head.wav", clip("wav")[:44]),  # a wav header without one sample
        ("head.ogg", clip("ogg")[:60]),  # the first page cut short
        ("raw.wav", tone(0.5)),  # headerless PCM: nobody knows its rate
        ("slow.wav", wav_with(rate=1)),  # 1 Hz
        ("fast.wav", wav_with(rate=10_000_000)),
        ("list.mp3", b"#EXTM3U\n#EXTINF:1,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n"),
        ("concat.mp3", b"ffconcat version 1.0\nfile '/etc/passwd'\n"),
        ("subs.mp3", b"WEBVTT\n\n00:00.000 --> 00:01.000\nhello\n"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",  # stable across processes
)
def test_not_audio_is_refused_naming_the_file(name: str, data: bytes) -> None:
    with pytest.raises(InvalidAudio) as info:
        probe_audio(data, name=name)
    err = info.value
    assert err.status == 422 and err.code == "invalid_audio"
    assert name in err.detail and err.extra["file"] == name


def test_the_elf_sample_is_an_elf_binary() -> None:
    assert elf_bytes()[:4] == b"\x7fELF"


def test_a_header_claiming_years_of_audio_is_refused() -> None:
    # FFmpeg trusts the frame count of an mp3's Info (Xing) header: 2^31 frames of 576 samples
    # at 22050 Hz say about 1.8 years. (A wav's data size is clamped to the file's by FFmpeg.)
    mp3 = bytearray(clip("mp3", 0.5))
    at = mp3.index(b"Info")
    assert struct.unpack(">I", mp3[at + 4:at + 8])[0] & 1  # the frames field is present
    mp3[at + 8:at + 12] = struct.pack(">I", 0x7FFF_FFFF)
    with pytest.raises(InvalidAudio) as info:
        probe_audio(bytes(mp3), name="long.mp3")
    assert "long.mp3 declares a duration of" in info.value.detail
    assert probe_audio(clip("mp3", 0.5)).duration_s == pytest.approx(0.5, abs=0.1)


def test_real_audio_of_other_formats_passes() -> None:
    for name in ("mp3_44100_128", "opus_48000_64", "wav_8000"):
        data = encode_pcm(tone(0.3), RATE, FORMATS[name])
        assert probe_audio(data, name=name).channels == 1
