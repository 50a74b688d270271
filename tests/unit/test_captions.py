"""protocols/domain/captions.py: the WebVTT and SRT of a really assembled book parse back with
their libraries (and WebVTT with FFmpeg's own reader) as one cue per line, in order, timed from
the timeline, with the right voice tags; text with ``& < >``, ``-->``, blank lines and Korean
survives; chapters are JSON with what a partial book lacks."""

from __future__ import annotations

import io
import json

import av
import pytest
import srt
import webvtt

from protocols.domain.assembly import Assembled, Clip, Skipped, assemble
from protocols.domain.audio import FORMATS, encode_pcm
from protocols.domain.captions import chapters, chapters_document, to_srt, to_vtt
from tests.support.clips import tone

# (page, index, speaker, text, seconds)
LINES = (
    (0, 0, "Wolf", "Little pig, little pig, let me come in!", 0.6),
    (0, 1, "Little Pig", "Not by the hair of my chinny chin chin.", 0.5),
    (0, 2, None, "So the wolf huffed & puffed.", 0.4),
    (1, 0, "Narrator", "옛날 옛적에 깊은 산속에\n여우가 살았어요.", 0.7),
    (1, 1, "Tom & <Jerry>", "Cats < dogs > mice --> cheese", 0.3),
    (2, 0, None, "<v Mallory>not a voice</v> <b>not bold</b> &amp; not an entity", 0.5),
    (2, 1, "Wolf", "one\n\n\ntwo\r\n  three  ", 0.45),
)


def spoken_text(text: str) -> str:
    """What a caption shows of a line: its non-blank lines, stripped."""
    return "\n".join(part.strip() for part in text.splitlines() if part.strip())


def book(skipped: tuple[Skipped, ...] = ()) -> Assembled:
    clips = [
        Clip(
            line_id=f"ln-{page}-{index}",
            page=page,
            index=index,
            speaker=speaker,
            text=text,
            format="wav_16000",
            audio=encode_pcm(tone(seconds, 16000, 330.0), 16000, FORMATS["wav_16000"]),
        )
        for page, index, speaker, text, seconds in LINES
        if not any(s.line_id == f"ln-{page}-{index}" for s in skipped)
    ]
    return assemble(
        clips,
        output_format="mp3_44100_128",
        pause_line_ms=400,
        pause_page_ms=1200,
        skipped=skipped,
        page_titles=("The wolf", "숲속", None),
    )


@pytest.fixture(scope="module")
def assembled() -> Assembled:
    return book()


def ms(seconds: float) -> int:
    return round(seconds * 1000)


def test_vtt_has_one_cue_per_line_in_order_with_voices(assembled):
    parsed = webvtt.from_string(to_vtt(assembled))

    assert len(parsed.captions) == len(LINES)
    assert [c.identifier for c in parsed.captions] == [s.line_id for s in assembled.lines]
    for cue, span, (_, _, speaker, _, _) in zip(
        parsed.captions, assembled.lines, LINES, strict=True
    ):
        assert cue.start_time.in_milliseconds() == ms(span.start_s)
        assert cue.end_time.in_milliseconds() == ms(span.end_s)
        if speaker is None:
            assert cue.voice is None
            assert not cue.raw_text.startswith("<v")
        else:  # the voice annotation is escaped like the text
            assert cue.voice == speaker.replace("&", "&amp;").replace("<", "&lt;").replace(
                ">", "&gt;"
            )
    starts = [c.start_time.in_milliseconds() for c in parsed.captions]
    assert starts == sorted(starts)


def test_vtt_text_reads_back_as_written_in_ffmpeg(assembled):
    """FFmpeg's WebVTT reader (what players built on it show): entities decoded, no tag taken
    from the text (a real ``<b>`` would become ``{\\b1}``), a ``-->`` in the text no new cue,
    Korean intact."""
    data = to_vtt(assembled).encode("utf-8")
    shown = []
    with av.open(io.BytesIO(data), format="webvtt") as source:
        stream = source.streams.subtitles[0]
        for packet in source.demux(stream):
            for subtitle in packet.decode():
                shown.append(subtitle.dialogue.decode("utf-8"))
    assert shown == [spoken_text(text) for _, _, _, text, _ in LINES]


def test_vtt_escapes_markup_in_the_text(assembled):
    cues = webvtt.from_string(to_vtt(assembled)).captions
    assert cues[4].raw_text == "<v Tom &amp; &lt;Jerry&gt;>Cats &lt; dogs &gt; mice --&gt; cheese"
    assert cues[5].voice is None  # "<v Mallory>" in a narrator's text is text
    assert cues[5].raw_text.startswith("&lt;v Mallory&gt;not a voice&lt;/v&gt; &lt;b&gt;")
    assert "&amp;amp;" in cues[5].raw_text
    assert cues[6].lines == ["<v Wolf>one", "two", "three"]  # blank lines would end the cue


def test_srt_has_one_numbered_cue_per_line_with_speaker_prefix(assembled):
    subtitles = list(srt.parse(to_srt(assembled)))

    assert [s.index for s in subtitles] == list(range(1, len(LINES) + 1))
    for sub, span, (_, _, speaker, text, _) in zip(subtitles, assembled.lines, LINES, strict=True):
        assert ms(sub.start.total_seconds()) == ms(span.start_s)
        assert ms(sub.end.total_seconds()) == ms(span.end_s)
        expected = spoken_text(text)
        assert sub.content == (f"{speaker}: {expected}" if speaker else expected)
    assert subtitles[3].content == "Narrator: 옛날 옛적에 깊은 산속에\n여우가 살았어요."


def test_vtt_and_srt_agree_on_every_time(assembled):
    vtt = webvtt.from_string(to_vtt(assembled)).captions
    subs = list(srt.parse(to_srt(assembled)))
    assert [(c.start_time.in_milliseconds(), c.end_time.in_milliseconds()) for c in vtt] == [
        (ms(s.start.total_seconds()), ms(s.end.total_seconds())) for s in subs
    ]


def test_chapters_are_pages_with_their_first_and_last_lines(assembled):
    found = chapters(assembled)
    assert [(c.index, c.title, c.first_line_id, c.last_line_id, c.lines) for c in found] == [
        (0, "The wolf", "ln-0-0", "ln-0-2", 3),
        (1, "숲속", "ln-1-0", "ln-1-1", 2),
        (2, None, "ln-2-0", "ln-2-1", 2),
    ]
    for chapter, page in zip(found, assembled.pages, strict=True):
        assert chapter.start_s == ms(page.start_s) / 1000
        assert chapter.end_s == ms(page.end_s) / 1000
    # the page pause sits between chapters; the last one ends with the audio
    assert found[1].start_s - found[0].end_s == pytest.approx(1.2, abs=0.002)
    assert found[-1].end_s == ms(assembled.duration_s) / 1000


def test_a_partial_book_says_what_it_lacks():
    skipped = (
        Skipped(line_id="ln-1-0", page=1, index=0, error_code="provider_rejected"),
        Skipped(line_id="ln-1-1", page=1, index=1),
        Skipped(line_id="ln-0-1", page=0, index=1),
    )
    partial = book(skipped)

    vtt_text = to_vtt(partial)
    assert "NOTE Partial: 3 line(s) have no audio: ln-0-1, ln-1-0, ln-1-1" in vtt_text
    cues = webvtt.from_string(vtt_text).captions
    assert [c.identifier for c in cues] == ["ln-0-0", "ln-0-2", "ln-2-0", "ln-2-1"]
    assert len(list(srt.parse(to_srt(partial)))) == 4

    document = json.loads(json.dumps(chapters_document(partial)))
    assert document["partial"] is True
    assert document["skipped_line_ids"] == ["ln-0-1", "ln-1-0", "ln-1-1"]
    assert document["missing_pages"] == [1]
    assert [(c["index"], c["skipped_line_ids"]) for c in document["chapters"]] == [
        (0, ["ln-0-1"]),
        (2, []),
    ]
    assert document["duration_s"] == ms(partial.duration_s) / 1000


def test_a_whole_book_has_no_note(assembled):
    assert "NOTE" not in to_vtt(assembled)
    assert chapters_document(assembled)["partial"] is False
