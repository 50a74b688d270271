"""The compatible request bodies as the Structs the routes decode them with (``decode_as``) and
``/openapi.json`` shows (``web/openapi/compat_catalog.py``), then -> ``JobRequest``, checked as
``POST /v1/jobs`` checks it. The fields Chorus acts on are typed and bounded as ``JobRequest``
bounds them; the fields ElevenLabs documents that Chorus has no use for are accepted and
ignored (README, "Use it from the ElevenLabs / OpenAI SDK")."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from protocols.dictionaries import DictionaryRef
from protocols.messages import JobRequest, VoiceSettings
from protocols.ports import SpeechProvider
from web.inputs import decode_as

RequestIds = Annotated[list[str], msgspec.Meta(max_length=3)]
VoiceId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
#: OpenAI's formats (``web.routes.openai_speech.FORMATS`` says what each is made as)
ResponseFormat = Literal["mp3", "opus", "wav", "pcm", "aac", "flac"]


class ElevenLabsVoiceSettings(VoiceSettings, forbid_unknown_fields=False):
    """ElevenLabs' ``voice_settings``: the fields Chorus knows, in their ranges; newer ones
    (``clone_strength``, ...) are ignored."""


class ElevenLabsSpeech(msgspec.Struct, kw_only=True):
    """``POST /v1/text-to-speech/{voice_id}`` (and ``/stream``, ``/with-timestamps``): the
    fields Chorus reads (``web.routes.el_speech.parse``); other fields ElevenLabs documents
    are accepted and ignored. ``previous_request_ids`` / ``next_request_ids`` are checked,
    unused."""

    text: str
    model_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    language_code: Annotated[str, msgspec.Meta(min_length=1, max_length=35)] | None = None
    voice_settings: ElevenLabsVoiceSettings | None = None
    seed: Annotated[int, msgspec.Meta(ge=0, le=4294967295)] | None = None
    pronunciation_dictionary_locators: (
        Annotated[list[DictionaryRef], msgspec.Meta(max_length=3)] | None
    ) = None
    previous_request_ids: RequestIds | None = None
    next_request_ids: RequestIds | None = None


class VoiceRef(msgspec.Struct, kw_only=True):
    """OpenAI's custom voice, ``{"id": ...}``."""

    id: VoiceId


class OpenAISpeech(msgspec.Struct, kw_only=True):
    """``POST /v1/audio/speech``: OpenAI's request (``web.routes.openai_speech``); a
    ``response_format`` outside the list is ``400 unsupported_response_format``."""

    model: Annotated[str, msgspec.Meta(min_length=1)]
    input: str
    voice: VoiceId | VoiceRef
    response_format: ResponseFormat = "mp3"
    speed: Annotated[float, msgspec.Meta(ge=0.25, le=4)] | None = None
    instructions: Annotated[str, msgspec.Meta(max_length=4096)] | None = None
    stream_format: Literal["audio", "sse"] = "audio"


def job_request(fields: dict[str, Any]) -> JobRequest:
    """``fields`` (None values left out) as a ``JobRequest``; ``InvalidInput`` (422) naming
    what does not fit."""
    return decode_as({k: v for k, v in fields.items() if v is not None}, JobRequest)


def settings_of(given: VoiceSettings | None) -> dict[str, Any] | None:
    """Decoded voice settings as ``JobRequest`` fields (unset ones left out); none -> None."""
    return None if given is None else msgspec.to_builtins(given)


def model_for(provider: SpeechProvider, model_id: str | None) -> str | None:
    """An ElevenLabs ``model_id`` for this provider: as given to a provider with a model
    catalogue (ElevenLabs); an ``eleven_*`` id given to a local engine means "its own model"
    (so an app's hard-coded model keeps working offline); anything else as given (the
    provider refuses what it does not offer, 422)."""
    if model_id is None:
        return None
    if getattr(provider, "models", None) is None and model_id.startswith("eleven_"):
        return None
    return model_id
