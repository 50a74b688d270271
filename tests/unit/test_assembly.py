"""protocols/domain/assembly.py on real encoded audio: a book's clips in mixed formats and rates
stitched with the book's pauses; the audio decodes (independently, with PyAV) to the sum of its
lines plus the pauses, the timeline says where the sound really is, a page with no audio is
left out with one page pause, one page alone starts at zero, bad bytes name their line."""

from __future__ import annotations

import array
import io
import math

import av
import pytest
import trio

from protocols.domain.assembly import (
    Clip,
    Skipped,
    assemble,
    assemble_page,
    measure_assembly,
)
from protocols.domain.audio import FORMATS, encode_pcm, parse_format
from protocols.errors import InvalidAudio, NotFound, UnsupportedFormat
from protocols.messages import SynthesisRequest
from protocols.providers.espeak import EspeakProvider
from tests.support.clips import elf_bytes, text_bytes, tone

LINE_MS = 400
PAGE_MS = 1200
TOLERANCE_S = 0.05  # the acceptance: the sum of the lines plus the pauses, ±50 ms

# (page, index, seconds, format): three pages, every input family, five input rates
BOOK = (
    (0, 0, 0.7, "mp3_22050_32"),
    (0, 1, 0.5, "wav_16000"),
    (0, 2, 0.3, "pcm_24000"),
    (1, 0, 0.6, "opus_48000_64"),
    (1, 1, 0.4, "ulaw_8000"),
    (2, 0, 0.45, "alaw_8000"),
    (2, 1, 0.8, "mp3_44100_128"),
)


def encoded(seconds: float, format_name: str, freq: float = 440.0) -> bytes:
    """``seconds`` of a tone made at 16 kHz and encoded (resampled) into the format."""
    return encode_pcm(tone(seconds, 16000, freq), 16000, FORMATS[format_name])


def clip(page: int, index: int, seconds: float, format_name: str, **extra) -> Clip:
    return Clip(
        line_id=f"ln-{page}-{index}",
        page=page,
        index=index,
        format=format_name,
        audio=encoded(seconds, format_name, 300.0 + 40 * (3 * page + index)),
        **extra,
    )


def decode(data: bytes, format_name: str) -> tuple[array.array, int]:
    """(s16 mono samples, rate) of encoded bytes, decoded with PyAV on its own (not the code
    under test)."""
    fmt = FORMATS[format_name]
    if fmt.family == "pcm":
        return array.array("h", data), fmt.sample_rate
    options = {"sample_rate": str(fmt.sample_rate), "ch_layout": "mono"} if fmt.raw else {}
    samples = array.array("h")
    with av.open(io.BytesIO(data), format=fmt.container, options=options) as source:
        stream = source.streams.audio[0]
        resampler = av.AudioResampler(format="s16", layout="mono", rate=fmt.sample_rate)
        for frame in source.decode(stream):
            for part in resampler.resample(frame):
                samples.frombytes(bytes(part.planes[0])[: part.samples * 2])
        for part in resampler.resample(None):
            samples.frombytes(bytes(part.planes[0])[: part.samples * 2])
    return samples, fmt.sample_rate


def seconds_of(data: bytes, format_name: str) -> float:
    samples, rate = decode(data, format_name)
    return len(samples) / rate


def pauses_s(clips: list[Clip]) -> float:
    total = 0.0
    for before, after in zip(clips, clips[1:], strict=False):
        total += (LINE_MS if before.page == after.page else PAGE_MS) / 1000
    return total


def rms(samples: array.array) -> float:
    return math.sqrt(sum(x * x for x in samples) / len(samples)) if samples else 0.0


@pytest.fixture(scope="module")
def book() -> list[Clip]:
    return [clip(page, index, seconds, name) for page, index, seconds, name in BOOK]


@pytest.mark.parametrize(
    "output",
    ["mp3_44100_128", "mp3_22050_32", "opus_48000_64", "wav_22050", "pcm_16000", "ulaw_8000"],
)
def test_book_decodes_to_its_lines_plus_pauses(book, output):
    result = assemble(book, output_format=output, pause_line_ms=LINE_MS, pause_page_ms=PAGE_MS)
    expected = sum(seconds_of(c.audio, c.format) for c in book) + pauses_s(book)

    assert result.format == output
    assert result.content_type == FORMATS[output].content_type
    assert abs(seconds_of(result.audio, output) - expected) <= TOLERANCE_S
    assert abs(result.duration_s - expected) <= TOLERANCE_S
    # the timeline: every line in reading order, each as long as its own clip decodes to
    assert [span.line_id for span in result.lines] == [c.line_id for c in book]
    for span, c in zip(result.lines, book, strict=True):
        assert span.end_s - span.start_s == pytest.approx(seconds_of(c.audio, c.format), abs=0.01)
    assert result.lines[-1].end_s == result.duration_s  # no pause after the last line
    assert not result.partial
    if FORMATS[output].family in ("pcm", "wav"):  # lossless: to the sample
        samples, rate = decode(result.audio, output)
        assert len(samples) == round(result.duration_s * rate)


def test_timeline_says_where_the_sound_is(book):
    """Decoded output: each line's span is sound, each gap is digital silence of exactly the
    line or page pause."""
    result = assemble(book, output_format="wav_16000", pause_line_ms=LINE_MS, pause_page_ms=PAGE_MS)
    samples, rate = decode(result.audio, "wav_16000")
    assert len(samples) == round(result.duration_s * rate)

    def window(start_s: float, end_s: float) -> array.array:
        return samples[round(start_s * rate) : round(end_s * rate)]

    for span in result.lines:
        quarter = (span.end_s - span.start_s) / 4
        assert rms(window(span.start_s + quarter, span.end_s - quarter)) > 2000, span
    for before, after in zip(result.lines, result.lines[1:], strict=False):
        gap = after.start_s - before.end_s
        assert gap == pytest.approx(
            (LINE_MS if before.page == after.page else PAGE_MS) / 1000, abs=1 / rate
        )
        assert not any(window(before.end_s, after.start_s))
    assert [(p.page, p.first_line_id, p.last_line_id) for p in result.pages] == [
        (0, "ln-0-0", "ln-0-2"),
        (1, "ln-1-0", "ln-1-1"),
        (2, "ln-2-0", "ln-2-1"),
    ]
    assert result.pages[1].start_s == result.lines[3].start_s
    assert result.pages[1].end_s == result.lines[4].end_s


async def test_spoken_lines_in_english_and_korean_add_up():
    """Real speech from the embedded espeak-ng engine, in the formats a provider returns."""
    provider = EspeakProvider()
    spoken = [
        (0, 0, "Once upon a time, a fox lived in the hills.", "mp3_44100_128"),
        (0, 1, "옛날 옛적에 깊은 산속에 여우가 살았어요.", "opus_48000_64"),
        (1, 0, "The end.", "pcm_22050"),
    ]
    clips = []
    with trio.fail_after(30):
        for page, index, text, name in spoken:
            result = await provider.synthesize(
                SynthesisRequest(text=text, voice_id="", output_format=name)
            )
            clips.append(
                Clip(
                    line_id=f"ln-{page}-{index}",
                    page=page,
                    index=index,
                    audio=result.audio,
                    format=name,
                    text=text,
                )
            )
        result = await trio.to_thread.run_sync(
            lambda: assemble(
                clips, output_format="mp3_44100_128", pause_line_ms=LINE_MS, pause_page_ms=PAGE_MS
            )
        )
    expected = sum(seconds_of(c.audio, c.format) for c in clips) + pauses_s(clips)
    assert expected > 3  # really speech, not an empty clip
    assert abs(seconds_of(result.audio, "mp3_44100_128") - expected) <= TOLERANCE_S
    assert [span.text for span in result.lines] == [text for _, _, text, _ in spoken]


def test_a_page_without_audio_is_left_out_with_one_page_pause(book):
    kept = [c for c in book if c.page != 1 and c.line_id != "ln-0-1"]
    skipped = [
        Skipped(line_id="ln-1-1", page=1, index=1, error_code="provider_rejected"),
        Skipped(line_id="ln-0-1", page=0, index=1),
        Skipped(line_id="ln-1-0", page=1, index=0, status="cancelled"),
    ]
    result = assemble(
        kept,
        output_format="wav_16000",
        pause_line_ms=LINE_MS,
        pause_page_ms=PAGE_MS,
        skipped=skipped,
        page_titles=("Woods", "River", "Home", "Epilogue"),
    )

    assert result.partial
    assert [s.line_id for s in result.skipped] == ["ln-0-1", "ln-1-0", "ln-1-1"]
    assert result.missing_pages == (1, 3)  # page 3: only known from its title
    assert [(p.page, p.title, p.skipped_line_ids) for p in result.pages] == [
        (0, "Woods", ("ln-0-1",)),
        (2, "Home", ()),
    ]
    page0_end, page2_start = result.pages[0].end_s, result.pages[1].start_s
    assert page2_start - page0_end == pytest.approx(PAGE_MS / 1000, abs=1 / 16000)
    expected = sum(seconds_of(c.audio, c.format) for c in kept) + pauses_s(kept)
    assert abs(seconds_of(result.audio, "wav_16000") - expected) <= TOLERANCE_S
    # without the titles, the skipped lines alone say that page 1 exists and has no audio
    untitled = assemble(
        kept,
        output_format="pcm_16000",
        pause_line_ms=LINE_MS,
        pause_page_ms=PAGE_MS,
        skipped=skipped,
    )
    assert untitled.missing_pages == (1,)
    assert [p.title for p in untitled.pages] == [None, None]


def test_one_page_alone_starts_at_zero(book):
    page1 = [c for c in book if c.page == 1]
    result = assemble_page(
        book,
        1,
        output_format="opus_48000_64",
        pause_line_ms=LINE_MS,
        skipped=[Skipped(line_id="ln-2-9", page=2, index=9)],
    )

    assert [span.line_id for span in result.lines] == ["ln-1-0", "ln-1-1"]
    assert result.lines[0].start_s == 0.0
    assert result.skipped == ()  # another page's failure is not this page's
    expected = sum(seconds_of(c.audio, c.format) for c in page1) + LINE_MS / 1000
    assert abs(seconds_of(result.audio, "opus_48000_64") - expected) <= TOLERANCE_S


def test_nothing_to_play_is_not_found(book):
    with pytest.raises(NotFound):
        assemble_page(book, 7, output_format="mp3_44100_128", pause_line_ms=LINE_MS)
    with pytest.raises(NotFound):
        assemble([], output_format="wav_16000", pause_line_ms=0, pause_page_ms=0)


def test_clips_are_played_in_reading_order_whatever_order_they_come_in(book):
    result = assemble(
        list(reversed(book)), output_format="pcm_16000", pause_line_ms=0, pause_page_ms=0
    )
    assert [span.line_id for span in result.lines] == [c.line_id for c in book]
    with pytest.raises(ValueError, match="two clips"):
        assemble([book[0], book[0]], output_format="pcm_16000", pause_line_ms=0, pause_page_ms=0)


@pytest.mark.parametrize(
    ("audio", "format_name"),
    [
        (text_bytes(), "mp3_44100_128"),
        (elf_bytes(), "opus_48000_64"),
        (encoded(0.3, "mp3_44100_128"), "wav_16000"),  # mp3 bytes under a wav name
        (encoded(0.3, "wav_16000")[:40], "wav_16000"),  # a header and nothing after it
        (b"\x01\x02\x03", "pcm_16000"),  # half a sample
        (b"", "ulaw_8000"),
        (encoded(0.3, "wav_16000"), "flac_48000"),  # a format the service does not have
    ],
    ids=["text", "elf", "wrong-format", "truncated", "odd-pcm", "empty", "unknown-format"],
)
def test_bad_bytes_are_a_typed_error_naming_the_line(book, audio, format_name):
    bad = Clip(line_id="ln-broken", page=1, index=1, audio=audio, format=format_name)
    clips = [c for c in book if c.line_id != "ln-1-1"] + [bad]
    with pytest.raises(InvalidAudio) as caught:
        assemble(clips, output_format="mp3_44100_128", pause_line_ms=LINE_MS, pause_page_ms=PAGE_MS)
    assert caught.value.extra == {"line_id": "ln-broken", "page": 1, "index": 1}
    assert "page 2 line 2 (ln-broken)" in caught.value.detail


def test_identical_lines_each_get_their_place():
    """Lines with the very same bytes (one generation shared) each play at their own place."""
    same = encoded(0.25, "mp3_44100_128")
    clips = [
        Clip(line_id=f"ln-{n}", page=0, index=n, audio=same, format="mp3_44100_128")
        for n in range(4)
    ]
    result = assemble(clips, output_format="wav_44100", pause_line_ms=100, pause_page_ms=0)
    one = seconds_of(same, "mp3_44100_128")
    for n, span in enumerate(result.lines):
        assert span.start_s == pytest.approx(n * (one + 0.1), abs=0.001)
    assert abs(seconds_of(result.audio, "wav_44100") - (4 * one + 0.3)) <= TOLERANCE_S


def test_a_short_mp3_the_ffmpeg_probe_misreads_still_decodes():
    """0.1 s of a 391 Hz tone in mp3_44100_128: FFmpeg's format probe does not recognise these
    bytes (about one short mp3 in a hundred), so the clip is opened with its own demuxer."""
    short = encode_pcm(tone(0.1, 44100, 391.0), 44100, FORMATS["mp3_44100_128"])
    clips = [Clip(line_id="ln-short", page=0, index=0, audio=short, format="mp3_44100_128")]
    result = assemble(clips, output_format="wav_44100", pause_line_ms=0, pause_page_ms=0)
    assert result.duration_s == pytest.approx(seconds_of(short, "mp3_44100_128"), abs=0.001)
    assert result.duration_s >= 0.1


def test_unknown_output_format():
    with pytest.raises(UnsupportedFormat):
        assemble([], output_format="mp3_1_1", pause_line_ms=0, pause_page_ms=0)


def test_the_bench_measurement_assembles_the_book_it_says():
    timing = measure_assembly(
        12,
        lines_per_page=5,
        clip_s=0.1,
        clip_format="wav_16000",
        output_format="wav_16000",
        distinct=True,
    )
    # 12 lines of 0.1 s, 9 line pauses within pages (5 + 5 + 2 lines) and 2 page pauses
    assert timing.audio_s == pytest.approx(12 * 0.1 + 9 * 0.4 + 2 * 1.2, abs=0.001)
    assert (timing.lines, timing.distinct_clips, timing.output_format) == (12, 12, "wav_16000")
    assert timing.seconds > 0
    assert parse_format(timing.output_format).name == "wav_16000"
