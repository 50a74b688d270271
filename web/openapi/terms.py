"""The words the operations table (``web/openapi/catalog.py``) is written in: a parameter, an
answer, an operation, and the errors and answers many operations share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from protocols.errors import InvalidInput, ProviderError, ProviderUnavailable, QueueUnavailable
from web.problems import InvalidLastEventId, TooManyStreams
from web.routes.voice_uploads import NotMultipart

#: an error a route may answer: a ChorusError class, or (status, code) from the HTTP stack
Error = type | tuple[int, str]

MALFORMED = (400, "malformed_json")
TOO_DEEP = (400, "json_too_deep")
TOO_LARGE = (413, "payload_too_large")
NOT_JSON = (415, "unsupported_media_type")
UNKNOWN_FIELD = (422, "unknown_field")
BAD_CHARACTER = (422, "invalid_character")
#: every JSON body: not JSON, too deep, too large, not JSON media type, unknown or bad fields
JSON_BODY: tuple[Error, ...] = (
    MALFORMED, TOO_DEEP, TOO_LARGE, NOT_JSON, UNKNOWN_FIELD, BAD_CHARACTER, InvalidInput,
)
FORM_BODY: tuple[Error, ...] = (TOO_LARGE, NotMultipart, BAD_CHARACTER, InvalidInput)
PROVIDER: tuple[Error, ...] = (ProviderError, ProviderUnavailable)
STREAMS: tuple[Error, ...] = (InvalidLastEventId, TooManyStreams, QueueUnavailable)


@dataclass(frozen=True)
class Param:
    """A query parameter or a request header."""

    name: str
    schema: dict[str, Any]
    description: str = ""
    where: str = "query"


@dataclass(frozen=True)
class Answer:
    """A successful answer: its media type and shape (a Struct, a JSON Schema, or None for
    bytes or no body), with the headers it carries."""

    description: str
    media: str | None = "application/json"
    shape: Any = None
    headers: tuple[str, ...] = ()
    also: tuple[str, ...] = ()  # other media types it may come as (no schema)


@dataclass(frozen=True)
class Op:
    summary: str
    tag: str
    answers: dict[int, Answer]
    body: type | None = None  # the Struct the route validates a JSON body with
    form: dict[str, Any] | None = None  # a multipart/form-data body's JSON Schema
    body_optional: bool = False
    params: tuple[Param, ...] = ()
    errors: tuple[Error, ...] = ()
    auth: bool = True
    #: the errors' shape: "problem" (RFC 9457), "elevenlabs", "openai", or "compat" (either,
    #: by the key header: ``GET /v1/models``), as ``web/compat/errors.py`` renders them
    errors_as: str = "problem"


def integer(lo: int, hi: int, default: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": lo, "maximum": hi, "default": default}


STRING = {"type": "string"}
CURSOR = Param("cursor", {"type": "string", "pattern": "^[A-Za-z0-9_-]*$"},
               "next_cursor from the previous page")
IDEMPOTENCY = Param(
    "Idempotency-Key", {"type": "string", "minLength": 1, "maxLength": 255},
    "the request's idempotency key (equal to the body's idempotency_key if both are given)",
    where="header",
)
#: an event id (``protocols/events.py``, ``valid_event_id``)
EVENT_ID = {"type": "string", "pattern": r"^\s*\d{1,20}-\d{1,20}\s*$"}
LAST_EVENT = (
    Param("Last-Event-ID", EVENT_ID, "resume after this event id", where="header"),
    Param("last_event_id", EVENT_ID, "resume after this event id (for clients that cannot set"
          " headers)"),
)
LOCATION = ("Location",)
AUDIO = Answer("the audio bytes (Content-Type: the clip's format)", "audio/*")
SSE = Answer("server-sent events; each `data:` line is one event as JSON", "text/event-stream")
NO_BODY = Answer("done; no body", None)
