"""ElevenLabs' audio relayed as it arrives:
``POST /v1/text-to-speech/{voice}/stream/with-timestamps``, one JSON line per piece of audio
(``audio_base64`` and the alignment of the characters heard in it), each piece's audio handed to
the sink as its line arrives (``protocols/live.py``) and the pieces' character times joined into
the clip's alignment (``_Timings``), as ``synthesize`` makes it from ``/with-timestamps``.

- Retries keep the provider's policy (``ElevenLabsProvider.call``: 429 waits, backoff on 5xx and
  timeouts) only until the first byte has been handed out. A stream that breaks after that is
  ``ProviderUnavailable`` (the job is released and tried again as a new attempt, which a
  follower can tell apart), never a second stream spliced onto the first.
- A text longer than the model takes in one request (several parts, joined by re-encoding) and a
  redelivery (which looks for the earlier attempt's audio in the history first) go through
  ``synthesize`` and are handed out whole, as one chunk.
- The SDK reads the lines (``stream_with_timestamps``) and skips one it cannot parse; the joined
  alignment then does not spell the text sent, which is logged.
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Any

import httpx
import trio

from protocols.domain.audio import audio_duration, parse_format
from protocols.domain.ssml import InvalidMarkup, charged_characters, spoken_text
from protocols.domain.text import split_text
from protocols.domain.timing import from_characters
from protocols.errors import ProviderError, ProviderQuotaExhausted, ProviderUnavailable
from protocols.live import ChunkSink
from protocols.messages import Alignment, SynthesisRequest, SynthesisResult
from protocols.providers.elevenlabs.models import STATIC_MODELS, pick_model

log = logging.getLogger(__name__)


def _duration(data: bytes, fmt: Any) -> float:
    try:
        return audio_duration(data, fmt)
    except ValueError:  # kept as it came (it was paid for); its length unknown
        return 0.0


class _Timings:
    """The character times of a stream's pieces, joined. Times are from the start of the clip;
    a piece whose times start before the previous piece's end (times from its own start) is
    shifted to follow it. A piece without an alignment adds nothing; one that is malformed
    leaves the clip without one (logged; the routes then estimate), never fails the job."""

    def __init__(self) -> None:
        self.chars: list[str] = []
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.pieces = 0  # pieces with an alignment
        self.broken = False

    def add(self, aligned: Any) -> None:
        if aligned is None or self.broken:
            return
        try:
            chars = [str(c) for c in aligned.characters]
            starts = [float(t) for t in aligned.character_start_times_seconds]
            ends = [float(t) for t in aligned.character_end_times_seconds]
            if not len(chars) == len(starts) == len(ends):
                raise ValueError("its lists differ in length")
        except (AttributeError, TypeError, ValueError) as exc:
            log.warning("ElevenLabs streamed an unusable alignment (%s): the clip has none", exc)
            self.broken = True
            return
        last = self.ends[-1] if self.ends else 0.0
        shift = last if starts and starts[0] < last - 0.001 else 0.0
        self.chars += chars
        self.starts += [t + shift for t in starts]
        self.ends += [t + shift for t in ends]
        self.pieces += 1

    def alignment(self, text: str, sent: str, duration: float) -> Alignment | None:
        """The clip's alignment of ``text`` (the user's; ``sent``: as ElevenLabs got it)."""
        if not self.pieces or self.broken or duration <= 0:
            return None
        if "".join(self.chars) != sent:
            log.warning("the ElevenLabs stream's alignment does not spell the text sent"
                        " (%d of %d characters): words without times get none",
                        len(self.chars), len(sent))
        try:
            said = spoken_text(text)
        except InvalidMarkup:
            said = text
        return from_characters(said, self.chars, self.starts, self.ends, duration)


async def synthesize_streaming(
    provider: Any, request: SynthesisRequest, sink: ChunkSink
) -> SynthesisResult:
    """``provider``: the ``ElevenLabsProvider`` (its models, dictionaries, retry policy and
    SDK; not imported here, which would make a circle)."""
    fmt = parse_format(request.output_format)
    catalogue = await provider.models()
    model = catalogue.get(request.params.model_id) or STATIC_MODELS.get(request.params.model_id)
    if model is None:
        model = pick_model(catalogue, language=request.language,
                           characters=len(request.text), text=request.text)
    sent = await provider._sent(request)
    parts = split_text(sent.text, model.max_chars) or [sent.text]
    if len(parts) > 1 or request.previous_attempt_since is not None:
        result = await provider.synthesize(request)
        await sink(result.audio)
        return result
    remaining = await provider.remaining_characters()
    if remaining is not None and remaining < len(request.text):
        raise ProviderQuotaExhausted(
            f"the ElevenLabs account has {remaining} characters left this period and this"
            f" job needs {len(request.text)}; it was not sent",
            remaining=remaining,
        )
    relayed = 0
    timings = _Timings()

    async def once(**kw: Any) -> tuple[bytes, dict[str, str]]:
        nonlocal relayed, timings
        if relayed:  # a retry after bytes went out: they cannot be taken back
            raise ProviderUnavailable(
                f"the ElevenLabs stream broke after {relayed} bytes were relayed"
            )
        timings = _Timings()  # a retry starts over
        raw = provider.sdk.text_to_speech.with_raw_response
        body = bytearray()
        async with raw.stream_with_timestamps(sent.voice_id, **kw) as response:
            headers = {k.lower(): v for k, v in dict(response.headers).items()}
            try:
                async for piece in response.data:
                    try:
                        chunk = base64.b64decode(piece.audio_base_64 or "", validate=True)
                    except (binascii.Error, ValueError) as exc:
                        raise ProviderError("ElevenLabs streamed audio that is not base64"
                                            ) from exc
                    timings.add(piece.alignment)
                    if chunk:
                        body += chunk
                        relayed += len(chunk)
                        await sink(chunk)
            except httpx.HTTPError as exc:
                if relayed:
                    raise ProviderUnavailable(
                        f"the ElevenLabs stream broke after {relayed} bytes:"
                        f" {type(exc).__name__}"
                    ) from exc
                raise
        return bytes(body), headers

    audio, headers = await provider.call(
        "text-to-speech stream", once, **provider._body(sent, model, sent.text)
    )
    if not audio:
        raise ProviderUnavailable("ElevenLabs streamed no audio")
    try:
        cost: int | None = int(headers.get("character-cost", ""))
    except ValueError:
        cost = None
    provider.count_characters(cost or 0)
    duration = await trio.to_thread.run_sync(_duration, audio, fmt)
    rid = headers.get("request-id")
    return SynthesisResult(
        audio=audio, content_type=fmt.content_type, duration_s=duration,
        characters=charged_characters(request.text), request_ids=(rid,) if rid else (),
        character_cost=cost, alignment=timings.alignment(request.text, sent.text, duration),
    )
