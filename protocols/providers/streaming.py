"""Streaming for the offline engines: text parts synthesized one by one, each part's PCM encoded
as it comes (``protocols.domain.audio.StreamEncoder``, in a worker thread) and handed to the
sink, so the first sentence is heard while the rest is being made (``protocols/live.py``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import av
import trio

from protocols.domain.audio import AudioFormat, StreamEncoder, pcm_duration
from protocols.domain.text import split_text
from protocols.errors import SynthesisFailed
from protocols.live import ChunkSink
from protocols.messages import SynthesisResult

#: a streamed job is synthesized in parts of at most this many characters (whole sentences
#: packed greedily, ``split_text``), the first part shorter (a clause or a short sentence), so
#: its audio comes out soon
STREAM_PART_CHARS = 160
FIRST_PART_CHARS = 48
#: the first part's audio is encoded (and handed out) this many seconds at a time
ENCODE_SLICE_S = 0.5


def stream_split(text: str, limit: int = STREAM_PART_CHARS) -> list[str]:
    """``text`` in the parts a streamed job is made in: a short first part, then parts of at
    most ``limit`` characters."""
    first = split_text(text, min(limit, FIRST_PART_CHARS))[:1]
    if not first:
        return []
    rest = text[text.index(first[0]) + len(first[0]):]
    return first + split_text(rest, limit)


async def stream_parts(
    parts: Sequence[str],
    synth: Callable[[str], Awaitable[bytes]],
    sample_rate: int,
    fmt: AudioFormat,
    sink: ChunkSink,
    *,
    characters: int,
    engine: str,
) -> SynthesisResult:
    """``synth`` each part in order, encode and hand out the audio as it is made; the result's
    audio is every byte handed out, joined. Raises ``SynthesisFailed`` (no audio, or the
    encoder failed)."""
    try:
        encoder = StreamEncoder(sample_rate, fmt)
    except (av.FFmpegError, ValueError) as exc:
        raise SynthesisFailed(f"encoding to {fmt.name} failed: {exc}") from exc
    out = bytearray()
    finished = False
    try:
        for part in parts:
            pcm = await synth(part)
            if not pcm:
                continue
            # the first part in slices (its first bytes out soon), the others whole
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
    return SynthesisResult(
        audio=bytes(out), content_type=fmt.content_type,
        duration_s=pcm_duration(encoder.samples * 2, sample_rate), characters=characters,
    )
