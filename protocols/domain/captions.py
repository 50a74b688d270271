"""What a reader sees beside an assembled storybook: WebVTT and SRT captions, one cue per line
timed from the assembly's timeline, and the chapters (one per page).

The files are written by libraries (``webvtt-py`` for WebVTT, ``srt`` for SubRip), not by hand;
what they leave to us is the cue text:

- WebVTT: the speaker is the cue's voice span (``<v Wolf>text``); a line without a speaker has
  none. ``&``, ``<`` and ``>`` become ``&amp;``, ``&lt;`` and ``&gt;`` in the text and in the
  speaker's name (so a ``-->`` in the text cannot start a cue either). A partial book gets a
  ``NOTE`` naming the lines that have no audio.
- SRT: ``Speaker: text``. SubRip has no escapes (players show ``&lt;`` as it is written), so the
  text is written as it is.
- Both: a line break in the text stays a line break in the cue, but blank lines (which would
  end the cue) and the spaces around each line are dropped; a speaker's name is one line.

The times are the assembly's, rounded to the millisecond once, so the two files agree.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Sequence

import msgspec
import srt
import webvtt
from webvtt.models import Timestamp

from protocols.domain.assembly import Assembled, LineSpan
from protocols.messages import WordTiming

VTT_CONTENT_TYPE = "text/vtt; charset=utf-8"
SRT_CONTENT_TYPE = "application/x-subrip; charset=utf-8"

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_SPACES = re.compile(r"\s+")
_VTT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def to_vtt(assembled: Assembled) -> str:
    """The WebVTT file: one cue per line in reading order, the line id as the cue id."""
    captions = [
        webvtt.Caption(
            start=_vtt_time(line.start_s),
            end=_vtt_time(line.end_s),
            text=_vtt_text(line),
            identifier=line.line_id,
        )
        for line in assembled.lines
    ]
    notes = []
    if assembled.skipped:
        ids = ", ".join(line.line_id for line in assembled.skipped)
        notes.append(f"Partial: {len(assembled.skipped)} line(s) have no audio: {ids}")
    return webvtt.WebVTT(captions=captions, header_comments=notes).content


def to_srt(assembled: Assembled) -> str:
    """The SubRip file: one numbered cue per line in reading order."""
    subtitles = [
        srt.Subtitle(
            index=number,
            start=dt.timedelta(milliseconds=_ms(line.start_s)),
            end=dt.timedelta(milliseconds=_ms(line.end_s)),
            content=_srt_text(line),
        )
        for number, line in enumerate(assembled.lines, start=1)
    ]
    return srt.compose(subtitles, reindex=False)


class Chapter(msgspec.Struct, frozen=True, kw_only=True):
    """One page of the assembled audio (times in seconds, to the millisecond)."""

    index: int  # the page number, 0-based
    title: str | None
    start_s: float
    end_s: float
    first_line_id: str
    last_line_id: str
    lines: int  # lines in the audio
    skipped_line_ids: tuple[str, ...] = ()  # lines of this page with no audio


def chapters(assembled: Assembled) -> list[Chapter]:
    """The pages that have audio, in order (a page with none is in ``missing_pages``)."""
    return [
        Chapter(
            index=page.page,
            title=page.title,
            start_s=_ms(page.start_s) / 1000,
            end_s=_ms(page.end_s) / 1000,
            first_line_id=page.first_line_id,
            last_line_id=page.last_line_id,
            lines=len(page.line_ids),
            skipped_line_ids=page.skipped_line_ids,
        )
        for page in assembled.pages
    ]


def chapters_document(assembled: Assembled) -> dict[str, object]:
    """The chapters as JSON-able builtins, with what a partial book lacks."""
    return {
        "duration_s": _ms(assembled.duration_s) / 1000,
        "partial": assembled.partial,
        "chapters": msgspec.to_builtins(chapters(assembled)),
        "skipped_line_ids": [line.line_id for line in assembled.skipped],
        "missing_pages": list(assembled.missing_pages),
    }


def _ms(seconds: float) -> int:
    """Whole milliseconds, halves up (one rounding for every output)."""
    return math.floor(seconds * 1000 + 0.5)


def _vtt_time(seconds: float) -> str:
    return str(Timestamp.from_seconds(_ms(seconds) / 1000))


def _lines(text: str) -> list[str]:
    """The text's non-blank lines, each stripped."""
    return [part.strip() for part in _LINE_BREAK.split(text) if part.strip()]


def _one_line(name: str) -> str:
    return _SPACES.sub(" ", name).strip()


def _vtt_text(line: LineSpan) -> str:
    body = "\n".join(part.translate(_VTT_ESCAPES) for part in _lines(line.text))
    speaker = _one_line(line.speaker or "")
    if not speaker:
        return body
    return f"<v {speaker.translate(_VTT_ESCAPES)}>{body}"


def _srt_text(line: LineSpan) -> str:
    body = "\n".join(_lines(line.text))
    speaker = _one_line(line.speaker or "")
    return f"{speaker}: {body}" if speaker else body


# --- one clip's captions, from its word timings (GET /v1/jobs/{id}/captions.vtt|.srt) ----------

#: a cue holds at most this many characters and seconds, and ends at a sentence's end or a
#: silence this long between two words (a ``<break>``)
CUE_MAX_CHARS = 42
CUE_MAX_S = 5.0
CUE_GAP_S = 0.6
_SENTENCE_END = re.compile(r"[.!?…。！？]['\"”’»)\]]*$")


class Cue(msgspec.Struct, frozen=True):
    start_s: float
    end_s: float
    text: str


def word_cues(words: Sequence[WordTiming]) -> list[Cue]:
    """The words grouped into readable cues, in order."""
    cues: list[Cue] = []
    group: list[WordTiming] = []

    def close() -> None:
        if group:
            cues.append(Cue(group[0].start_s, max(group[-1].end_s, group[0].start_s),
                            " ".join(w.text for w in group)))
            group.clear()

    for word in words:
        if group:
            length = sum(len(w.text) + 1 for w in group) + len(word.text)
            if (length > CUE_MAX_CHARS or word.end_s - group[0].start_s > CUE_MAX_S
                    or word.start_s - group[-1].end_s > CUE_GAP_S):
                close()
        group.append(word)
        if _SENTENCE_END.search(word.text):
            close()
    close()
    return cues


def cues_vtt(cues: Sequence[Cue]) -> str:
    """The WebVTT file of a clip's cues (text escaped as in ``to_vtt``)."""
    return webvtt.WebVTT(captions=[
        webvtt.Caption(start=_vtt_time(c.start_s), end=_vtt_time(c.end_s),
                       text=c.text.translate(_VTT_ESCAPES))
        for c in cues
    ]).content


def cues_srt(cues: Sequence[Cue]) -> str:
    """The SubRip file of a clip's cues, numbered from 1."""
    return srt.compose([
        srt.Subtitle(index=number, start=dt.timedelta(milliseconds=_ms(c.start_s)),
                     end=dt.timedelta(milliseconds=_ms(c.end_s)), content=c.text)
        for number, c in enumerate(cues, start=1)
    ], reindex=False)
