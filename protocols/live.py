"""Live audio: a job's encoded audio handed out while it is made (contracts only).

A provider that can stream implements ``StreamingSynthesis`` beside ``SpeechProvider``: it
awaits ``sink(chunk)`` for each encoded chunk as it is produced and still returns the whole
``SynthesisResult`` at the end, whose ``audio`` is exactly the chunks joined. A provider without
it is called as always and its whole clip is handed out as one chunk.

Between processes the chunks travel on a per-job Redis stream (``protocols/redis/live.py``,
``Keys.live``): a ``LiveWriter`` (the TTS actor's side) and a ``LiveReader`` (the follower's,
``actors/pipeline/live.py``). Each entry is one ``LiveEvent``; every attempt of a job (a
redelivery) writes under its own ``attempt`` token, so a follower can tell attempts apart.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, runtime_checkable

import msgspec

from protocols.messages import SynthesisRequest, SynthesisResult

__all__ = [
    "ChunkSink",
    "LiveEvent",
    "LiveKind",
    "LiveReader",
    "LiveWriter",
    "StreamingSynthesis",
]

#: awaited by a streaming provider for each encoded chunk, in order
ChunkSink = Callable[[bytes], Awaitable[None]]


@runtime_checkable
class StreamingSynthesis(Protocol):
    async def synthesize_streaming(
        self, request: SynthesisRequest, sink: ChunkSink
    ) -> SynthesisResult:
        """``synthesize``, handing each encoded chunk to ``sink`` as it is made; the result's
        ``audio`` is the chunks joined, byte for byte. Raises as ``synthesize`` does."""
        ...


class LiveKind(enum.Enum):
    chunk = "c"  # ``data`` at byte ``offset`` of the attempt's clip
    end = "e"  # the attempt's clip is complete: ``offset`` is its size
    abort = "x"  # the attempt gave up (its job will be tried again, or has failed)


class LiveEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of a job's live stream."""

    id: str  # the stream entry id (read from here on)
    attempt: str
    kind: LiveKind
    offset: int = 0
    data: bytes = b""


class LiveWriter(Protocol):
    """Where the TTS actor publishes a ``stream`` job's chunks. Every call is bounded; Redis
    errors raise ``QueueUnavailable`` (the caller stops publishing, never fails the job)."""

    async def chunk(self, job_id: str, attempt: str, offset: int, data: bytes) -> None: ...
    async def end(self, job_id: str, attempt: str, size: int) -> None: ...
    async def abort(self, job_id: str, attempt: str) -> None: ...


class LiveReader(Protocol):
    """What a follower reads: the entries after ``after`` ("0": from the start), blocking up
    to ``block_ms`` when there are none (0: no wait). Raises ``QueueUnavailable``."""

    async def read(self, job_id: str, after: str, block_ms: int) -> Sequence[LiveEvent]: ...
