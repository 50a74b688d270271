"""ElevenLabs' audio relayed as it arrives: ``POST /v1/text-to-speech/{voice}/stream``, each
chunk handed to the sink as the HTTP body streams in (``protocols/live.py``).

- Retries keep the provider's policy (``ElevenLabsProvider.call``: 429 waits, backoff on 5xx and
  timeouts) only until the first byte has been handed out. A stream that breaks after that is
  ``ProviderUnavailable`` (the job is released and tried again as a new attempt, which a
  follower can tell apart), never a second stream spliced onto the first.
- A text longer than the model takes in one request (several parts, joined by re-encoding) and a
  redelivery (which looks for the earlier attempt's audio in the history first) go through
  ``synthesize`` and are handed out whole, as one chunk.
"""

from __future__ import annotations

from typing import Any

import httpx
import trio

from protocols.domain.audio import audio_duration, parse_format
from protocols.domain.text import split_text
from protocols.errors import ProviderQuotaExhausted, ProviderUnavailable
from protocols.live import ChunkSink
from protocols.messages import SynthesisRequest, SynthesisResult
from protocols.providers.elevenlabs.models import STATIC_MODELS, pick_model


def _duration(data: bytes, fmt: Any) -> float:
    try:
        return audio_duration(data, fmt)
    except ValueError:  # kept as it came (it was paid for); its length unknown
        return 0.0


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

    async def once(**kw: Any) -> tuple[bytes, dict[str, str]]:
        nonlocal relayed
        if relayed:  # a retry after bytes went out: they cannot be taken back
            raise ProviderUnavailable(
                f"the ElevenLabs stream broke after {relayed} bytes were relayed"
            )
        options = {**kw.pop("request_options"), "chunk_size": None}  # as the bytes arrive
        raw = provider.sdk.text_to_speech.with_raw_response
        body = bytearray()
        async with raw.stream(sent.voice_id, **kw, request_options=options) as response:
            headers = {k.lower(): v for k, v in dict(response.headers).items()}
            try:
                async for chunk in response.data:
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
        characters=len(request.text), request_ids=(rid,) if rid else (),
        character_cost=cost,
    )
