"""ElevenLabs' text to speech on Chorus: ``POST /v1/text-to-speech/<voice_id>``, ``/stream``,
``/with-timestamps`` and ``/stream/with-timestamps``, in ElevenLabs' request and response
shapes (errors ``{"detail": {"status", "message"}}``; headers ``request-id``,
``history-item-id``, ``character-cost``). The body is decoded by ``ElevenLabsSpeech``
(``web/compat/requests.py``), the Struct ``/openapi.json`` shows.

Each call is an ordinary job (``Intake.submit``: cache, quota, durable queue): a cache hit
answers at once; otherwise the route waits for the job (``web/compat/jobs.py``) and sends the
stored clip. ``/stream`` relays the clip as it is made when the process can
(``WebContext.follow_audio``), else the stored clip in chunks. Timestamps are the clip's
recorded alignment, or an even spread of its characters (approximate; ``web/compat/timings.py``).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import msgspec
from quart import Blueprint, Response, request

from protocols.domain.voices import not_found
from protocols.errors import InvalidInput
from protocols.messages import Alignment, Job, JobRequest
from web.auth import current_user
from web.compat import errors, timings
from web.compat.jobs import Waiter, chunks, headers, stored_clip
from web.compat.requests import ElevenLabsSpeech, job_request, model_for, settings_of
from web.inputs import decode_as, json_object, stored_id
from web.routes.jobs import idempotency_key
from web.routes.live import relay

if TYPE_CHECKING:
    from web.context import WebContext

NDJSON = "application/x-ndjson"
#: audio bytes per line of ``/stream/with-timestamps``
LINE_BYTES = 32 * 1024


def parse(voice_id: str, body: bytes, *, stream: bool) -> JobRequest:
    """The body decoded by ``ElevenLabsSpeech`` (the Struct ``/openapi.json`` shows) and the
    query, as a ``JobRequest``."""
    asked = decode_as(json_object(body), ElevenLabsSpeech)
    latency = request.args.get("optimize_streaming_latency")
    if latency is not None and latency not in ("0", "1", "2", "3", "4"):
        raise InvalidInput("optimize_streaming_latency must be 0 to 4.",
                           field="optimize_streaming_latency")
    return job_request({
        "text": asked.text,
        "voice_id": stored_id(voice_id, "voice", not_found),
        "language": asked.language_code,
        "output_format": request.args.get("output_format") or None,
        "model_id": asked.model_id,
        # asked for low latency and no model named: the provider's fastest model
        "preference": "latency" if latency not in (None, "0") else None,
        "voice_settings": settings_of(asked.voice_settings),
        "seed": asked.seed,
        "pronunciation_dictionary_locators": asked.pronunciation_dictionary_locators,
        "idempotency_key": idempotency_key(None),
        "stream": stream,
    })


def blueprint(ctx: WebContext) -> Blueprint:
    bp = Blueprint("el_speech", __name__)
    errors.install(bp, errors.elevenlabs_error)
    waiter = Waiter(ctx)

    async def submit(voice_id: str, *, stream: bool = False) -> Job:
        user = await current_user(ctx.store, ctx.known_keys)
        req = parse(voice_id, await request.get_data(cache=False), stream=stream)
        model = model_for(ctx.provider, req.model_id)
        if model != req.model_id:
            req = msgspec.structs.replace(req, model_id=model)
        job, _ = await ctx.intake.submit(req, user, with_audio=True)
        return job

    async def timed(job: Job) -> tuple[bytes, Alignment]:
        audio, data = await stored_clip(ctx, await waiter.finished(job))
        found = await ctx.alignment_of(audio)
        if found is None or not found.characters:
            found = timings.even_spread(job.text, audio.duration_s)
        return data, found

    @bp.post("/v1/text-to-speech/<voice_id>")
    async def convert(voice_id: str) -> Response:
        job = await waiter.finished(await submit(voice_id))
        audio, data = await stored_clip(ctx, job)
        return Response(data, 200, headers(job), content_type=audio.content_type)

    @bp.post("/v1/text-to-speech/<voice_id>/stream")
    async def stream(voice_id: str) -> Response:
        job = await submit(voice_id, stream=True)
        if not job.status.terminal and ctx.follow_audio is not None:
            return await relay(ctx, job, headers(job))
        job = await waiter.finished(job)
        audio, data = await stored_clip(ctx, job)
        response = Response(chunks(data), 200, headers(job), content_type=audio.content_type)
        response.timeout = None  # as long as the clip takes (the job is bounded itself)
        return response

    @bp.post("/v1/text-to-speech/<voice_id>/with-timestamps")
    async def with_timestamps(voice_id: str) -> Response:
        job = await waiter.finished(await submit(voice_id))
        data, alignment = await timed(job)
        shown = timings.view(alignment)
        body = {"audio_base64": base64.b64encode(data).decode(), "alignment": shown,
                "normalized_alignment": shown}
        return Response(msgspec.json.encode(body), 200, headers(job),
                        content_type="application/json")

    @bp.post("/v1/text-to-speech/<voice_id>/stream/with-timestamps")
    async def stream_with_timestamps(voice_id: str) -> Response:
        # made whole, then sent as lines: nothing follows it live, so nothing is published
        job = await waiter.finished(await submit(voice_id))
        data, alignment = await timed(job)
        response = Response(_lines(data, alignment), 200, headers(job), content_type=NDJSON)
        response.timeout = None
        return response

    return bp



async def _lines(data: bytes, alignment: Alignment) -> AsyncIterator[bytes]:
    """One JSON object per line: a piece of the clip and the characters that start in it
    (times from the clip's start; the piece's time span is taken in proportion to its bytes)."""
    pieces = [data[i:i + LINE_BYTES] for i in range(0, len(data), LINE_BYTES)] or [b""]
    end = alignment.character_end_times_seconds[-1] if alignment.characters else 0.0
    bounds, seen = [], 0
    for piece in pieces:
        seen += len(piece)
        bounds.append(end * seen / max(1, len(data)))
    for piece, part in zip(pieces, timings.split(alignment, bounds), strict=True):
        shown: dict[str, Any] | None = timings.view(part) if part.characters else None
        line = {"audio_base64": base64.b64encode(piece).decode(), "alignment": shown,
                "normalized_alignment": shown}
        yield msgspec.json.encode(line) + b"\n"
