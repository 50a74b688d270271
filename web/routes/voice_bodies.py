"""The JSON bodies of ``PATCH /v1/voices/<id>`` and ``POST /v1/voices/<id>/preview`` as the
Structs the routes (``web/routes/voices.py``) decode them with (``decode_as``) and
``/openapi.json`` shows (``web/openapi/catalog.py``). Unknown fields are refused (422
``unknown_field``); a bad ``name`` is ``invalid_name``, bad ``labels`` ``invalid_labels``,
anything else ``invalid_input``, each naming its field. What a Struct cannot say (a name of
spaces, labels given as JSON text) is checked after, by ``web/routes/voice_uploads.py``."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, UnsetType

from protocols.messages import VoiceSettings
from web.inputs import decode_as, json_object
from web.routes.voice_uploads import (
    MAX_DESCRIPTION,
    MAX_LABEL_KEY,
    MAX_LABEL_VALUE,
    MAX_LABELS,
    MAX_NAME,
    InvalidLabels,
    InvalidName,
)

LabelKey = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_LABEL_KEY)]
LabelValue = Annotated[str, msgspec.Meta(max_length=MAX_LABEL_VALUE)]
Labels = Annotated[dict[LabelKey, LabelValue], msgspec.Meta(max_length=MAX_LABELS)]


class VoicePatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``PATCH /v1/voices/{voice_id}``: the fields to change, each only if given. ``labels``
    may also be given as JSON text; null clears ``description``, ``labels`` and
    ``voice_settings`` and makes ``visibility`` private."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME)] | UnsetType = UNSET
    description: (
        Annotated[str, msgspec.Meta(max_length=MAX_DESCRIPTION)] | None | UnsetType
    ) = UNSET
    labels: Labels | str | None | UnsetType = UNSET
    visibility: Literal["private", "public"] | None | UnsetType = UNSET
    voice_settings: VoiceSettings | None | UnsetType = UNSET


class PreviewRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/voices/{voice_id}/preview``: optional; an empty body uses the language's
    sample text."""

    text: str | None = None
    idempotency_key: Annotated[str, msgspec.Meta(min_length=1, max_length=255)] | None = None


def voice_patch(body: bytes) -> VoicePatch:
    return decode_as(json_object(body), VoicePatch,
                     {"name": InvalidName, "labels": InvalidLabels})


def preview_request(body: bytes) -> PreviewRequest:
    return decode_as(json_object(body) if body.strip() else {}, PreviewRequest)
