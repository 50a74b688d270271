"""Streaming for the offline engines: a job's text (its SSML breaks and phoneme hints, as
``synthesize`` reads it: ``protocols/domain/timing.py`` ``plan``) made one part at a time, each
part's PCM encoded as it comes (``protocols.domain.audio.StreamEncoder``, in a worker thread) and
handed to the sink, so the first sentence is heard while the rest is being made
(``protocols/live.py``). A break is silence; each part's word times (the engine's own, relative
to the part) are shifted by the audio already made, and the whole clip's alignment is built
from them at the end, as ``synthesize`` builds it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import NamedTuple

import av
import trio

from protocols.domain.audio import AudioFormat, StreamEncoder, pcm_duration, silence
from protocols.domain.ssml import Pause
from protocols.domain.text import split_text
from protocols.domain.timing import Run, alignment, shifted
from protocols.errors import SynthesisFailed
from protocols.live import ChunkSink
from protocols.messages import SynthesisResult, WordTiming

#: a streamed job is synthesized in parts of at most this many characters (whole sentences
#: packed greedily, ``split_text``), the first part shorter (a clause or a short sentence), so
#: its audio comes out soon
STREAM_PART_CHARS = 160
FIRST_PART_CHARS = 48
#: the first part's audio is encoded (and handed out) this many seconds at a time
ENCODE_SLICE_S = 0.5


class Part(NamedTuple):
    """One engine call of a streamed job: ``run.sent[offset:offset + len(text)]``."""

    run: Run
    offset: int
    text: str
    end_pause: bool  # the engine's own pause after it (False: a break follows: that is the pause)


#: one part to PCM and its words' times (seconds from the part's start)
PartSynth = Callable[[Part], Awaitable[tuple[bytes, list[WordTiming]]]]


def stream_split(text: str, limit: int = STREAM_PART_CHARS) -> list[str]:
    """``text`` in the parts a streamed job is made in: a short first part, then parts of at
    most ``limit`` characters."""
    first = split_text(text, min(limit, FIRST_PART_CHARS))[:1]
    if not first:
        return []
    rest = text[text.index(first[0]) + len(first[0]):]
    return first + split_text(rest, limit)


def stream_plan(steps: Sequence[Run | Pause], limit: int = STREAM_PART_CHARS) -> list[Part | Pause]:
    """A job's plan (runs and pauses) as the parts a streamed job is made in: the first run
    split with a short first part (``stream_split``), the others in parts of at most ``limit``
    characters (a part that would end inside one word's engine input, such as phoneme markup
    with spaces in it, runs on to the next one's end); the pauses kept where they are."""
    out: list[Part | Pause] = []
    first = True
    for i, step in enumerate(steps):
        if isinstance(step, Pause):
            out.append(step)
            continue
        chunks = stream_split(step.sent, limit) if first else split_text(step.sent, limit)
        first = first and not chunks
        before_pause = i + 1 < len(steps) and isinstance(steps[i + 1], Pause)
        spans: list[tuple[int, int]] = []  # each chunk's place in ``sent``
        at = 0
        for chunk in chunks:
            at = step.sent.find(chunk, at)
            if spans and any(g.start < spans[-1][1] < g.end for g in step.groups):
                spans[-1] = (spans[-1][0], at + len(chunk))  # never split a word's markup
            else:
                spans.append((at, at + len(chunk)))
            at += len(chunk)
        for j, (start, end) in enumerate(spans):
            out.append(Part(step, start, step.sent[start:end],
                            j + 1 < len(spans) or not before_pause))
    return out


async def stream_parts(
    parts: Sequence[Part | Pause],
    synth: PartSynth,
    sample_rate: int,
    fmt: AudioFormat,
    sink: ChunkSink,
    *,
    spoken: str,
    characters: int,
    engine: str,
) -> SynthesisResult:
    """``synth`` each part in order (a pause: silence), encode and hand out the audio as it is
    made; the result's audio is every byte handed out, joined, and its alignment that of
    ``spoken`` (what is heard) from the parts' word times. Raises ``SynthesisFailed`` (no
    audio, or the encoder failed)."""
    try:
        encoder = StreamEncoder(sample_rate, fmt)
    except (av.FFmpegError, ValueError) as exc:
        raise SynthesisFailed(f"encoding to {fmt.name} failed: {exc}") from exc
    out = bytearray()
    words: list[WordTiming] = []
    made = 0  # PCM bytes made so far (the next part starts there)
    finished = False
    try:
        for part in parts:
            if isinstance(part, Pause):
                pcm = silence(part.seconds, sample_rate)
            else:
                pcm, said = await synth(part)
                words += shifted(said, pcm_duration(made, sample_rate))
            if not pcm:
                continue
            made += len(pcm)
            # the first audio in slices (its first bytes out soon), the rest part by part
            step = int(sample_rate * ENCODE_SLICE_S) * 2 if not out else len(pcm)
            for start in range(0, len(pcm), step):
                try:
                    data = await trio.to_thread.run_sync(encoder.feed, pcm[start:start + step])
                except (av.FFmpegError, ValueError) as exc:
                    raise SynthesisFailed(f"encoding to {fmt.name} failed: {exc}") from exc
                if data:
                    out += data
                    await sink(data)
        if not encoder.samples:
            raise SynthesisFailed(f"{engine} produced no audio")
        try:
            data = await trio.to_thread.run_sync(encoder.finish)
        except (av.FFmpegError, ValueError) as exc:
            raise SynthesisFailed(f"encoding to {fmt.name} failed: {exc}") from exc
        finished = True
        if data:
            out += data
            await sink(data)
    finally:
        if not finished:
            encoder.close()
    duration = pcm_duration(encoder.samples * 2, sample_rate)
    return SynthesisResult(
        audio=bytes(out), content_type=fmt.content_type, duration_s=duration,
        characters=characters, alignment=alignment(spoken, words, duration),
    )
