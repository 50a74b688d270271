"""The offline engines' ``synthesize_streaming``: several chunks, the first before the last part
is spoken, and the chunks joined are the returned clip, which decodes in every kind of format."""

from __future__ import annotations

import pytest
import trio

from protocols.domain.audio import audio_duration, parse_format
from protocols.domain.ssml import Pause
from protocols.domain.timing import plan
from protocols.messages import SynthesisRequest
from protocols.providers.embedded import EmbeddedProvider
from protocols.providers.espeak import EspeakProvider
from protocols.providers.piper import JOE, PiperProvider, installed
from protocols.providers.streaming import Part, stream_plan, stream_split

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


def test_parts_keep_breaks_and_never_split_a_words_markup():
    text = ("Please say the long word <phoneme ph='x'>supercalifragilistic</phoneme> slowly"
            " and clearly. It is a long word, the teacher said. The class laughed and the"
            " lesson went on for a long while, until the bell rang for the end of the day."
            " <break time='1s'/> Then rest.")
    steps = plan(text, render=lambda rule: "[[ " + "s u p " * 12 + "]]", escape=lambda t: t)
    parts = stream_plan(steps)
    assert [type(p) for p in parts] == [Part, Part, Pause, Part]
    texts = [p.text for p in parts if isinstance(p, Part)]
    assert all(t.count("[[") == t.count("]]") == 0 for t in texts[1:]), texts
    assert texts[0].count("[[") == texts[0].count("]]") == 1, texts
    assert len(texts[0]) > 48  # ran on past the first part's limit to the markup's end
    assert parts[0].end_pause and not parts[1].end_pause  # before the break: it is the pause
    assert parts[3].end_pause


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


SSML = ('Say <phoneme alphabet="ipa" ph="təˈmɑːtoʊ">tomato</phoneme> twice.'
        ' <break time="1s"/> The fox ran to the river, quick as the wind, and drank the water.')
SPOKEN = "Say tomato twice. The fox ran to the river, quick as the wind, and drank the water."


def check_words(alignment, spoken: str, clip_s: float) -> None:  # type: ignore[no-untyped-def]
    """Every spoken word, in order, monotonic, the last ending within 100 ms of the clip."""
    words = alignment.words
    assert [w.text for w in words] == spoken.split()
    assert "".join(alignment.characters) == spoken
    starts = alignment.character_start_times_seconds
    assert all(a <= b for a, b in zip(starts, starts[1:], strict=False))
    for a, b in zip(words, words[1:], strict=False):
        assert a.start_s <= a.end_s <= b.start_s <= b.end_s
    assert abs(words[-1].end_s - clip_s) <= 0.1, (words[-1], clip_s)


async def test_espeak_streamed_words_are_timed_as_synthesize_times_them():
    """Breaks are silence and phoneme hints are read, as ``synthesize`` does; each part's
    words are shifted by the audio before it, so the words match the whole clip's."""
    provider = EspeakProvider()
    request = SynthesisRequest(text=SSML, voice_id="en-us", output_format="wav_22050")
    chunks: list[bytes] = []

    async def sink(data: bytes) -> None:
        chunks.append(data)

    with trio.fail_after(60):
        streamed_result = await provider.synthesize_streaming(request, sink)
        whole = await provider.synthesize(request)
    assert len(chunks) >= 3
    clip_s = audio_duration(streamed_result.audio, parse_format("wav_22050"))
    assert streamed_result.alignment is not None
    check_words(streamed_result.alignment, SPOKEN, clip_s)
    assert streamed_result.characters == whole.characters == len(SPOKEN)  # the break: free
    # the break is a second of silence between "twice." and "The"
    words = {w.text: w for w in streamed_result.alignment.words}
    assert words["The"].start_s - words["twice."].end_s >= 0.95
    # the same words at about the same times as the clip made whole (parts split differently)
    assert abs(clip_s - whole.duration_s) < 0.5
    for a, b in zip(streamed_result.alignment.words, whole.alignment.words, strict=True):  # type: ignore[union-attr]
        assert a.text == b.text and abs(a.start_s - b.start_s) < 0.5


@pytest.mark.skipif(not installed(), reason="Piper is not installed")
async def test_piper_streamed_words_are_timed_and_breaks_are_silence():
    provider = PiperProvider(voices=installed())
    chunks: list[bytes] = []

    async def sink(data: bytes) -> None:
        chunks.append(data)

    request = SynthesisRequest(text=SSML, voice_id=JOE.voice_id, output_format="wav_22050")
    with trio.fail_after(120):
        result = await provider.synthesize_streaming(request, sink)
    assert len(chunks) >= 3 and b"".join(chunks) == result.audio
    assert result.alignment is not None
    check_words(result.alignment, SPOKEN, audio_duration(result.audio, parse_format("wav_22050")))
    words = {w.text: w for w in result.alignment.words}
    assert words["The"].start_s - words["twice."].end_s >= 0.95
