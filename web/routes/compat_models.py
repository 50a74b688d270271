"""``GET /v1/models``, read by both SDKs in different shapes, told apart by the auth header:
``xi-api-key`` (the ``elevenlabs`` SDK) -> ElevenLabs' list of models; otherwise (the ``openai``
SDK sends ``Authorization: Bearer``) -> OpenAI's ``{"object": "list", "data": [...]}``.
``GET /openai/v1/models`` is always the OpenAI shape (the ``/openai/v1`` base URL)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quart import Blueprint, Response, request

from protocols.ports import SpeechProvider
from web.auth import current_user
from web.compat import errors
from web.problems import json_response

if TYPE_CHECKING:
    from web.context import WebContext

#: the OpenAI speech models Chorus answers to, and the preference each maps onto
OPENAI_MODELS = {"tts-1": "latency", "tts-1-hd": "quality", "gpt-4o-mini-tts": "expressive"}


def elevenlabs_shaped() -> bool:
    return "xi-api-key" in request.headers and not request.path.startswith("/openai/")


async def el_models(provider: SpeechProvider, max_chars: int) -> list[dict[str, Any]]:
    """The provider's models (ElevenLabs: its catalogue), else its one local model."""
    catalogue = getattr(provider, "models", None)
    found: list[tuple[str, int, list[str]]] = []
    if catalogue is not None:
        for info in (await catalogue()).values():
            found.append((info.model_id, info.max_chars, sorted(getattr(info, "languages", ()))))
    else:
        found.append((getattr(provider, "model_id", provider.name), max_chars, []))
    return [{
        "model_id": model_id, "name": model_id, "can_do_text_to_speech": True,
        "can_do_voice_conversion": False, "can_be_finetuned": False,
        "can_use_style": True, "can_use_speaker_boost": True, "serves_pro_voices": False,
        "requires_alpha_access": False, "token_cost_factor": 1.0,
        "description": f"{model_id} through Chorus ({provider.name})",
        "maximum_text_length_per_request": limit,
        "max_characters_request_free_user": limit,
        "max_characters_request_subscribed_user": limit,
        "languages": [{"language_id": lang, "name": lang} for lang in langs],
    } for model_id, limit, langs in found]


def openai_models() -> dict[str, Any]:
    return {"object": "list", "data": [
        {"id": name, "object": "model", "created": 0, "owned_by": "chorus"}
        for name in OPENAI_MODELS
    ]}


def blueprint(ctx: WebContext) -> Blueprint:
    bp = Blueprint("compat_models", __name__)

    async def render(exc: BaseException) -> Response:
        return (errors.elevenlabs_error if elevenlabs_shaped() else errors.openai_error)(exc)

    bp.register_error_handler(Exception, render)

    @bp.get("/v1/models")
    @bp.get("/openai/v1/models")
    async def list_models() -> Response:
        await current_user(ctx.store, ctx.known_keys)
        if elevenlabs_shaped():
            body: Any = await el_models(ctx.provider, ctx.settings.max_text_chars)
        else:
            body = openai_models()
        return json_response(body, 200, {"Cache-Control": "no-store"})

    return bp
