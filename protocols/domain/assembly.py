"""Storybook assembly: a book's (or one page's) line clips stitched into one audio file, with a
timeline that says where each line and page sits in it.

``assemble`` decodes every clip with PyAV to s16 mono PCM at the output format's rate, puts
``pause_line_ms`` of silence between the lines of a page and ``pause_page_ms`` between pages
(nothing after the last line), and encodes the result once in the book's format: concatenating
encoded mp3/opus files would leave glitches at the seams. The timeline is counted in decoded
samples at the output rate, not taken from metadata, so captions and chapters
(``protocols/domain/captions.py``) match what a player plays.

Lines that did not succeed are not clips: the caller passes them as ``skipped`` and the result
names them (a partial book says what it lacks). A page with no clip at all is left out of the
audio (one page pause, not two, around it) and listed in ``missing_pages``. With no clip at all
there is no audio to make: ``NotFound``.

Memory stays bounded by one clip: PCM is encoded as it is produced, and a decoded clip is kept
only while another line still has the very same bytes (identical lines share one generation).

Synchronous and CPU-bound, the caller runs it in ``trio.to_thread.run_sync``. The time goes to
the encoder and grows with the length of the audio, not the number of lines: on the 2-core dev
machine LAME makes ~100 s of mp3 per second (300 lines of 0.1 s with the default pauses: ~1.8 s),
opus ~250 s, wav and pcm are nearly free (``measure_assembly``). A clip whose bytes do not
decode raises ``InvalidAudio`` naming the line (``line_id``, ``page``, ``index`` in ``extra``).
"""

from __future__ import annotations

import io
import math
import struct
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence

import av
import msgspec

from protocols.domain.audio import (
    SAMPLE_WIDTH,
    AudioFormat,
    encode_pcm,
    encode_pieces,
    parse_format,
)
from protocols.errors import ChorusError, InvalidAudio, NotFound
from protocols.messages import DEFAULT_FORMAT


class Clip(msgspec.Struct, frozen=True, kw_only=True):
    """One succeeded line's audio: ``audio`` is encoded in ``format`` (an ElevenLabs name)."""

    line_id: str
    page: int  # 0-based
    index: int  # 0-based position within the page
    audio: bytes
    format: str
    speaker: str | None = None
    text: str = ""


class Skipped(msgspec.Struct, frozen=True, kw_only=True):
    """A line left out of the audio (it failed or was cancelled)."""

    line_id: str
    page: int
    index: int
    status: str = "failed"
    error_code: str | None = None


class LineSpan(msgspec.Struct, frozen=True, kw_only=True):
    """Where one line sits in the assembled audio, in seconds from its start."""

    line_id: str
    page: int
    index: int
    speaker: str | None
    text: str
    start_s: float
    end_s: float


class PageSpan(msgspec.Struct, frozen=True, kw_only=True):
    """One page's stretch of the audio: from its first line's start to its last line's end."""

    page: int
    title: str | None
    start_s: float
    end_s: float
    line_ids: tuple[str, ...]  # the lines in the audio, in order
    skipped_line_ids: tuple[str, ...] = ()

    @property
    def first_line_id(self) -> str:
        return self.line_ids[0]

    @property
    def last_line_id(self) -> str:
        return self.line_ids[-1]


class Assembled(msgspec.Struct, frozen=True, kw_only=True):
    """The stitched audio and its timeline."""

    audio: bytes
    format: str  # ElevenLabs name
    content_type: str
    sample_rate: int
    duration_s: float  # from the samples encoded (== the last line's end)
    lines: tuple[LineSpan, ...]
    pages: tuple[PageSpan, ...]  # pages with at least one line in the audio
    skipped: tuple[Skipped, ...] = ()  # in reading order
    missing_pages: tuple[int, ...] = ()  # pages with no line in the audio

    @property
    def partial(self) -> bool:
        return bool(self.skipped or self.missing_pages)


def assemble(
    clips: Iterable[Clip],
    *,
    output_format: str | None,
    pause_line_ms: int,
    pause_page_ms: int,
    skipped: Iterable[Skipped] = (),
    page_titles: Sequence[str | None] = (),
    page: int | None = None,
) -> Assembled:
    """Stitch ``clips`` (a book's succeeded lines; sorted here by page and index) into one file in
    ``output_format``; with ``page``, only that page's lines (times from the page's start).

    ``skipped`` lines and pages named by ``page_titles`` that have no clip are reported, not
    played. Raises ``UnsupportedFormat`` for an unknown ``output_format``, ``NotFound`` when no
    clip is left to play, ``InvalidAudio`` naming the line for a clip that does not decode,
    ``ValueError`` for two clips at one place.
    """
    if pause_line_ms < 0 or pause_page_ms < 0:
        raise ValueError("pauses must not be negative")
    fmt = parse_format(output_format)
    chosen = sorted(
        (clip for clip in clips if page is None or clip.page == page),
        key=lambda clip: (clip.page, clip.index),
    )
    if not chosen:
        where = "the storybook" if page is None else f"page {page + 1}"
        raise NotFound(f"no line of {where} has audio.", page=page)
    for before, after in zip(chosen, chosen[1:], strict=False):
        if (before.page, before.index) == (after.page, after.index):
            raise ValueError(f"two clips for page {after.page} line {after.index}")
    left_out = sorted(
        (line for line in skipped if page is None or line.page == page),
        key=lambda line: (line.page, line.index),
    )
    timeline = _Timeline(fmt.sample_rate, pause_line_ms, pause_page_ms)
    audio = _encode(timeline.pieces(chosen), fmt)
    pages = _pages(timeline.lines, left_out, page_titles)
    known = set(range(len(page_titles))) if page is None else {page}
    known |= {line.page for line in left_out}
    missing = tuple(sorted(known - {span.page for span in pages}))
    return Assembled(
        audio=audio,
        format=fmt.name,
        content_type=fmt.content_type,
        sample_rate=fmt.sample_rate,
        duration_s=timeline.samples / fmt.sample_rate,
        lines=tuple(timeline.lines),
        pages=pages,
        skipped=tuple(left_out),
        missing_pages=missing,
    )


def assemble_page(
    clips: Iterable[Clip],
    page: int,
    *,
    output_format: str | None,
    pause_line_ms: int,
    skipped: Iterable[Skipped] = (),
    page_titles: Sequence[str | None] = (),
) -> Assembled:
    """One page's audio, times from the page's start (``assemble`` with ``page``): the first
    page is playable before the book is done."""
    return assemble(
        clips,
        output_format=output_format,
        pause_line_ms=pause_line_ms,
        pause_page_ms=0,
        skipped=skipped,
        page_titles=page_titles,
        page=page,
    )


class _Timeline:
    """Yields the PCM pieces in order (clips at the output rate, silences) and records each
    line's span from the samples it yielded."""

    def __init__(self, rate: int, pause_line_ms: int, pause_page_ms: int) -> None:
        self.rate = rate
        self.pause_line = round(pause_line_ms * rate / 1000)
        self.pause_page = round(pause_page_ms * rate / 1000)
        self.samples = 0
        self.lines: list[LineSpan] = []

    def pieces(self, clips: Sequence[Clip]) -> Iterator[bytes]:
        uses = Counter((clip.format, clip.audio) for clip in clips)
        decoded: dict[tuple[str, bytes], bytes] = {}
        previous: Clip | None = None
        for clip in clips:
            if previous is not None:
                gap = self.pause_line if previous.page == clip.page else self.pause_page
                if gap:
                    yield bytes(gap * SAMPLE_WIDTH)
                    self.samples += gap
            key = (clip.format, clip.audio)
            pcm = decoded.get(key)
            if pcm is None:
                pcm = _decode(clip, self.rate)
            uses[key] -= 1
            if uses[key]:
                decoded[key] = pcm  # another line has these very bytes
            else:
                decoded.pop(key, None)
            start = self.samples
            yield pcm
            self.samples += len(pcm) // SAMPLE_WIDTH
            self.lines.append(
                LineSpan(
                    line_id=clip.line_id,
                    page=clip.page,
                    index=clip.index,
                    speaker=clip.speaker,
                    text=clip.text,
                    start_s=start / self.rate,
                    end_s=self.samples / self.rate,
                )
            )
            previous = clip


def _decode(clip: Clip, rate: int) -> bytes:
    """The clip as s16 mono PCM at ``rate``; ``InvalidAudio`` naming the line if it is not
    audio in its format.

    The demuxer is the clip format's own, not a guess: FFmpeg's probe misreads about one short
    (0.1 s) mp3 in a hundred as something else."""
    where = f"page {clip.page + 1} line {clip.index + 1} ({clip.line_id})"
    try:
        fmt = parse_format(clip.format)
        if fmt.family == "pcm" and fmt.sample_rate == rate:
            if len(clip.audio) % SAMPLE_WIDTH:
                raise ValueError("PCM has an odd number of bytes")
            pcm = clip.audio
        else:
            pcm = _decode_to(clip.audio, fmt, rate)
    except (ChorusError, ValueError, IndexError, EOFError, av.error.FFmpegError) as exc:
        raise InvalidAudio(
            f"the audio of {where} is not readable {clip.format} audio.",
            line_id=clip.line_id,
            page=clip.page,
            index=clip.index,
        ) from exc
    if not pcm:
        raise InvalidAudio(
            f"the audio of {where} holds no sound.",
            line_id=clip.line_id,
            page=clip.page,
            index=clip.index,
        )
    return pcm


def _decode_to(data: bytes, fmt: AudioFormat, rate: int) -> bytes:
    """Decode ``data`` (in ``fmt``, opened with its own demuxer) to s16 mono PCM at ``rate``."""
    options = {"sample_rate": str(fmt.sample_rate), "ch_layout": "mono"} if fmt.raw else {}
    out = bytearray()
    with av.open(
        io.BytesIO(data), mode="r", format=fmt.container, options=options, metadata_errors="ignore"
    ) as source:
        stream = source.streams.audio[0]
        resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        for frame in source.decode(stream):
            for part in resampler.resample(frame):
                out += bytes(part.planes[0])[: part.samples * SAMPLE_WIDTH]
        for part in resampler.resample(None):
            out += bytes(part.planes[0])[: part.samples * SAMPLE_WIDTH]
    return bytes(out)


def _encode(pieces: Iterable[bytes], fmt: AudioFormat) -> bytes:
    """Encode s16 mono PCM pieces at ``fmt.sample_rate`` into ``fmt`` as they come. Raw PCM is
    its own encoding."""
    if fmt.family == "pcm":
        return b"".join(pieces)
    return encode_pieces(pieces, fmt.sample_rate, fmt)


def _pages(
    lines: Sequence[LineSpan], skipped: Sequence[Skipped], titles: Sequence[str | None]
) -> tuple[PageSpan, ...]:
    by_page: dict[int, list[LineSpan]] = {}
    for line in lines:
        by_page.setdefault(line.page, []).append(line)
    left_out: dict[int, list[str]] = {}
    for line in skipped:
        left_out.setdefault(line.page, []).append(line.line_id)
    return tuple(
        PageSpan(
            page=number,
            title=titles[number] if 0 <= number < len(titles) else None,
            start_s=spans[0].start_s,
            end_s=spans[-1].end_s,
            line_ids=tuple(span.line_id for span in spans),
            skipped_line_ids=tuple(left_out.get(number, ())),
        )
        for number, spans in by_page.items()
    )


# --- a measurement the bench can run ----------------------------------------------------------


class AssemblyTiming(msgspec.Struct, frozen=True, kw_only=True):
    lines: int
    distinct_clips: int
    output_format: str
    audio_s: float  # length of the assembled audio
    seconds: float  # wall time of ``assemble`` alone


def measure_assembly(
    lines: int = 300,
    *,
    lines_per_page: int = 10,
    clip_s: float = 0.1,
    clip_format: str = DEFAULT_FORMAT,
    output_format: str = DEFAULT_FORMAT,
    distinct: bool = False,
    pause_line_ms: int = 400,
    pause_page_ms: int = 1200,
) -> AssemblyTiming:
    """Time ``assemble`` on ``lines`` clips of ``clip_s`` of a tone, encoded in ``clip_format``
    (made before the clock starts). ``distinct=False`` gives every line the same bytes, as the
    fake provider does; ``distinct=True`` gives each line its own pitch (every clip decoded).
    Synchronous: a thread."""
    fmt = parse_format(clip_format)
    count = lines if distinct else 1
    encoded = [
        encode_pcm(_tone(clip_s, fmt.sample_rate, 220.0 + n), fmt.sample_rate, fmt)
        for n in range(count)
    ]
    clips = [
        Clip(
            line_id=f"bench-{n}",
            page=n // lines_per_page,
            index=n % lines_per_page,
            audio=encoded[n % count],
            format=fmt.name,
        )
        for n in range(lines)
    ]
    started = time.perf_counter()
    result = assemble(
        clips, output_format=output_format, pause_line_ms=pause_line_ms, pause_page_ms=pause_page_ms
    )
    seconds = time.perf_counter() - started
    return AssemblyTiming(
        lines=lines,
        distinct_clips=count,
        output_format=result.format,
        audio_s=result.duration_s,
        seconds=seconds,
    )


def _tone(seconds: float, rate: int, freq: float) -> bytes:
    n = round(seconds * rate)
    step = 2 * math.pi * freq / rate
    return struct.pack(f"<{n}h", *(int(8000 * math.sin(step * i)) for i in range(n)))
