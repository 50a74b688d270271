"""``GET /v1/voices[?language=xx]`` and ``GET /v1/voices/<id>``: the provider's voices."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
from quart import Blueprint, Response, request

from protocols.errors import UnknownVoice
from protocols.messages import VoiceInfo
from web.auth import current_user
from web.problems import json_response

if TYPE_CHECKING:
    from web.app import WebContext


def primary(language: str) -> str:
    """``en-US`` -> ``en`` (BCP-47 primary subtag, lower case)."""
    return language.strip().replace("_", "-").split("-", 1)[0].lower()


def speaks(voice: VoiceInfo, language: str) -> bool:
    wanted = primary(language)
    return any(primary(lang) == wanted for lang in (voice.language, *voice.languages))


def voice_view(voice: VoiceInfo) -> dict[str, Any]:
    return msgspec.to_builtins(voice)


def blueprint(ctx: WebContext) -> Blueprint:
    bp = Blueprint("voices", __name__)

    @bp.get("/v1/voices")
    async def list_voices() -> Response:
        await current_user(ctx.store)
        voices = list(await ctx.provider.voices())
        language = request.args.get("language", "").strip()
        if language:
            voices = [voice for voice in voices if speaks(voice, language)]
        return json_response({"voices": [voice_view(voice) for voice in voices]})

    @bp.get("/v1/voices/<voice_id>")
    async def get_voice(voice_id: str) -> Response:
        await current_user(ctx.store)
        for voice in await ctx.provider.voices():
            if voice.voice_id == voice_id:
                return json_response(voice_view(voice))
        raise UnknownVoice(f"No voice {voice_id!r}.", voice_id=voice_id)

    return bp
