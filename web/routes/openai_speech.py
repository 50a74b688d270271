"""OpenAI's ``POST /v1/audio/speech`` on Chorus (also at ``/openai/v1/audio/speech``), with
OpenAI's errors (``{"error": {"message", "type", "param", "code"}}``). The body is decoded by
``OpenAISpeech`` (``web/compat/requests.py``), the Struct ``/openapi.json`` shows; an error
names its field in ``param``.

- ``model``: ``tts-1`` -> preference ``latency``, ``tts-1-hd`` -> ``quality``,
  ``gpt-4o-mini-tts*`` -> ``expressive`` (the provider picks its model for it); any other
  string -> the provider's balanced choice.
- ``voice``: an OpenAI name (``alloy`` ... ``verse``) -> one of the provider's English default
  voices (the same one every time), or any Chorus voice id; ``{"id": ...}`` too.
- ``response_format``: ``mp3`` -> ``mp3_44100_128``, ``opus`` -> ``opus_48000_64`` (Ogg),
  ``wav`` -> ``wav_24000``, ``pcm`` -> ``pcm_24000`` (raw s16le, 24 kHz, as OpenAI's);
  ``aac`` (ADTS) and ``flac``: made as ``pcm_24000`` and encoded at the edge
  (``web/compat/transcode.py``).
- ``speed`` 0.25-4 is checked, then held to the 0.7-1.2 the voice settings allow.
- ``instructions`` is accepted and not used. ``stream_format``: ``audio`` (the clip; relayed as
  it is made when the process can) or ``sse`` (``speech.audio.delta`` events, then
  ``speech.audio.done``).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

import msgspec
from quart import Blueprint, Response, request

from protocols.errors import InvalidInput
from protocols.messages import JobRequest, VoiceInfo
from web.auth import current_user
from web.compat import errors
from web.compat.jobs import Waiter, chunks, headers, stored_clip
from web.compat.requests import OpenAISpeech, VoiceRef, job_request
from web.compat.transcode import EDGE_FORMATS, SOURCE, encode
from web.inputs import decode_as, json_object
from web.routes.compat_models import OPENAI_MODELS
from web.routes.jobs import idempotency_key
from web.routes.live import relay

if TYPE_CHECKING:
    from web.context import WebContext

VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer",
          "verse", "marin", "cedar")
FORMATS = {"mp3": "mp3_44100_128", "opus": "opus_48000_64", "wav": "wav_24000",
           "pcm": "pcm_24000", "aac": SOURCE, "flac": SOURCE}
SSE_BYTES = 16 * 1024


class UnsupportedResponseFormat(InvalidInput):
    code = "unsupported_response_format"
    status = 400
    title = "This response_format is not offered"


def decode(raw: dict[str, Any]) -> OpenAISpeech:
    """The body decoded by ``OpenAISpeech`` (the Struct ``/openapi.json`` shows); a
    ``response_format`` it does not list is ``UnsupportedResponseFormat`` (400)."""
    return decode_as(raw, OpenAISpeech, {"response_format": UnsupportedResponseFormat})


def preference(model: str) -> str:
    if model.startswith("gpt-4o-mini-tts"):
        return "expressive"
    return OPENAI_MODELS.get(model, "balanced")


def speed(value: float | None) -> dict[str, float] | None:
    """``speed`` (0.25-4, checked by ``OpenAISpeech``) held to the 0.7-1.2 the voice settings
    allow; 1 (or none) -> no settings."""
    if value is None or value == 1:
        return None
    return {"speed": min(1.2, max(0.7, value))}


def voice_name(voice: str | VoiceRef) -> str:
    return voice.id if isinstance(voice, VoiceRef) else voice


def pick_voice(value: str, defaults: Sequence[VoiceInfo]) -> str | None:
    """An OpenAI voice name -> a default voice id (None: the provider's default); else the id
    as given."""
    if value.lower() in VOICES:
        return defaults[VOICES.index(value.lower()) % len(defaults)].voice_id if defaults else None
    return value


def parse(body: OpenAISpeech, voice_id: str | None) -> JobRequest:
    return job_request({
        "text": body.input, "voice_id": voice_id,
        "output_format": FORMATS[body.response_format], "preference": preference(body.model),
        "voice_settings": speed(body.speed), "idempotency_key": idempotency_key(None),
        "stream": body.stream_format == "audio" and body.response_format not in EDGE_FORMATS,
    })


async def sse(data: bytes, characters: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), SSE_BYTES):
        delta = {"type": "speech.audio.delta",
                 "audio": base64.b64encode(data[start:start + SSE_BYTES]).decode()}
        yield b"data: " + msgspec.json.encode(delta) + b"\n\n"
    done = {"type": "speech.audio.done", "usage": {
        "input_tokens": characters, "output_tokens": 0, "total_tokens": characters}}
    yield b"data: " + msgspec.json.encode(done) + b"\n\n"


def blueprint(ctx: WebContext) -> Blueprint:
    bp = Blueprint("openai_speech", __name__)
    errors.install(bp, errors.openai_error)
    waiter = Waiter(ctx)
    defaults: list[VoiceInfo] = []

    async def english_voices() -> list[VoiceInfo]:
        if not defaults:
            voices = list(await ctx.provider.voices())
            defaults.extend([v for v in voices if v.language == "en"] or voices)
        return defaults

    @bp.post("/v1/audio/speech")
    @bp.post("/openai/v1/audio/speech")
    async def speech() -> Response:
        user = await current_user(ctx.store, ctx.known_keys)
        body = decode(json_object(await request.get_data(cache=False)))
        voice = voice_name(body.voice)
        named = voice.lower() in VOICES
        req = parse(body, pick_voice(voice, await english_voices() if named else []))
        edge = EDGE_FORMATS.get(body.response_format)
        job, _ = await ctx.intake.submit(req, user, with_audio=True)
        if req.stream and not job.status.terminal and ctx.follow_audio is not None:
            return await relay(ctx, job, headers(job))
        job = await waiter.finished(job)
        audio, data = await stored_clip(ctx, job)
        content_type = audio.content_type
        if edge is not None:
            data, content_type = await encode(data, edge), edge.content_type
        answer: AsyncIterator[bytes]
        if body.stream_format == "sse":
            answer, content_type = sse(data, job.characters), "text/event-stream"
        else:
            answer = chunks(data)
        response = Response(answer, 200, headers(job), content_type=content_type)
        response.timeout = None
        return response

    return bp
