"""Compatible request bodies -> ``JobRequest``: the fields Chorus acts on, checked as
``POST /v1/jobs`` checks them; the fields ElevenLabs documents that Chorus has no use for are
accepted and ignored (README, "Use it from the ElevenLabs / OpenAI SDK")."""

from __future__ import annotations

from typing import Any

import msgspec

from protocols.errors import InvalidInput
from protocols.messages import JobRequest, VoiceSettings
from protocols.ports import SpeechProvider

SETTINGS_FIELDS = frozenset(VoiceSettings.__struct_fields__)
MAX_REQUEST_IDS = 3


def job_request(fields: dict[str, Any]) -> JobRequest:
    """``fields`` (None values left out) as a ``JobRequest``; ``InvalidInput`` (422) naming
    what does not fit."""
    try:
        return msgspec.convert({k: v for k, v in fields.items() if v is not None}, JobRequest)
    except msgspec.ValidationError as exc:
        raise InvalidInput(str(exc)) from exc


def text_of(raw: dict[str, Any], name: str) -> str:
    text = raw.get(name)
    if not isinstance(text, str):
        raise InvalidInput(f"{name} is required and must be a string.", field=name)
    return text


def voice_settings(value: Any) -> dict[str, Any] | None:
    """ElevenLabs ``voice_settings``: the fields Chorus knows (``clone_strength`` and other
    newer ones are ignored); null -> none."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidInput("voice_settings must be an object.", field="voice_settings")
    return {k: v for k, v in value.items() if k in SETTINGS_FIELDS and v is not None}


def request_ids(raw: dict[str, Any], name: str) -> None:
    """``previous_request_ids`` / ``next_request_ids``: checked (at most 3 strings), unused."""
    value = raw.get(name)
    if value is None:
        return
    if (not isinstance(value, list) or len(value) > MAX_REQUEST_IDS
            or not all(isinstance(v, str) for v in value)):
        raise InvalidInput(f"{name} must be a list of at most 3 request ids.", field=name)


def model_for(provider: SpeechProvider, model_id: Any) -> str | None:
    """An ElevenLabs ``model_id`` for this provider: as given to a provider with a model
    catalogue (ElevenLabs); an ``eleven_*`` id given to a local engine means "its own model"
    (so an app's hard-coded model keeps working offline); anything else as given (the
    provider refuses what it does not offer, 422)."""
    if model_id is None:
        return None
    if not isinstance(model_id, str):
        raise InvalidInput("model_id must be a string.", field="model_id")
    if getattr(provider, "models", None) is None and model_id.startswith("eleven_"):
        return None
    return model_id
