"""RFC 9457 problem details: every error the HTTP front answers is ``application/problem+json``.

Body: ``{type, title, status, detail, code, instance, ...extra}``. ``code`` is the stable,
machine-readable ``ChorusError.code``. 5xx answers never carry the exception's own text (it may
hold internals); they are logged instead, with an ``incident`` id that is also in the answer.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

import msgspec
from quart import Quart, Response, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from protocols import tracing
from protocols.errors import (
    ChorusError,
    InvalidInput,
    MalformedJSON,
    QueueFull,
    Unauthorized,
)
from protocols.metrics import instruments as metrics

log = logging.getLogger("chorus.web")

PROBLEM_JSON = "application/problem+json"
JSON = "application/json"
TYPE_PREFIX = "urn:chorus:problem:"
RESERVED = frozenset({"type", "title", "status", "detail", "code", "instance"})

#: seconds a client should wait before retrying a 503, by code
RETRY_AFTER = {QueueFull.code: 2, "too_many_streams": 10}
DEFAULT_RETRY_AFTER = 5

#: codes for HTTP errors raised by Quart/werkzeug itself (routing, body limits)
HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
    416: "range_not_satisfiable",
}


# --- errors only the HTTP edge raises (subclasses keep the protocol's hierarchy) -----------------


class UnknownField(InvalidInput):
    code = "unknown_field"
    title = "Unknown field in request body"


class IdempotencyKeyMismatch(InvalidInput):
    code = "idempotency_key_mismatch"
    status = 400
    title = "Idempotency-Key header and body field differ"


class JSONTooDeep(MalformedJSON):
    code = "json_too_deep"
    title = "JSON nested too deeply"


class InvalidCharacter(InvalidInput):
    """A value holds U+0000, which no stored text can (Postgres refuses it)."""

    code = "invalid_character"
    title = "A value contains a character that cannot be stored"


class UnsupportedMediaType(InvalidInput):
    code = "unsupported_media_type"
    status = 415
    title = "Request body must be JSON"


class AudioMissing(ChorusError):
    """The audio row exists but its file does not (data loss; logged)."""

    code = "audio_missing"
    status = 500
    title = "Audio file is missing"


class InvalidLastEventId(InvalidInput):
    code = "invalid_last_event_id"
    status = 400
    title = "Last-Event-ID is not an event id"


class TooManyStreams(ChorusError):
    code = "too_many_streams"
    status = 503
    title = "Too many event streams open, retry later"
    retryable = True


class NotReady(ChorusError):
    code = "not_ready"
    status = 503
    title = "Service not ready"
    retryable = True


# --- rendering -----------------------------------------------------------------------------------


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(msgspec.json.encode(body), status=status, headers=headers, content_type=JSON)


def problem(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    try:
        body["instance"] = request.path
    except RuntimeError:  # outside a request context
        pass
    for key, value in (extra or {}).items():
        if key not in RESERVED:
            body[key] = value
    if rid := tracing.request_id():  # also in the X-Request-ID header (web/observe.py)
        body["request_id"] = rid
    metrics.error("http", code)
    encoded = msgspec.json.encode(body, enc_hook=str)
    response = Response(encoded, status=status, headers=headers, content_type=PROBLEM_JSON)
    response.headers["Cache-Control"] = "no-store"
    return response


def from_error(exc: ChorusError) -> Response:
    headers: dict[str, str] = {}
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer realm="chorus"'
    if exc.status == 503:
        headers["Retry-After"] = str(RETRY_AFTER.get(exc.code, DEFAULT_RETRY_AFTER))
    if isinstance(exc.extra.get("retry_after"), int):  # e.g. a quota: when it resets
        headers["Retry-After"] = str(exc.extra["retry_after"])
    if exc.status >= 500:
        # the detail of a server-side error may carry internals: log it, answer the fixed title
        incident = secrets.token_hex(6)
        level = logging.INFO if exc.retryable else logging.WARNING  # 503s can be frequent
        log.log(level, "%s incident=%s: %s", exc.code, incident, exc.detail)
        extra: dict[str, Any] = {"incident": incident}
        if isinstance(exc, NotReady):
            extra.update(exc.extra)  # only the per-dependency booleans
        return problem(exc.status, exc.code, exc.title, exc.title, extra=extra, headers=headers)
    return problem(exc.status, exc.code, exc.title, exc.detail, extra=exc.extra, headers=headers)


def from_http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    headers: dict[str, str] = {}
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        headers["Allow"] = ", ".join(sorted(exc.valid_methods))
    code = HTTP_CODES.get(status, f"http_{status}")
    title = exc.name
    detail = exc.description or title
    if status == 404:
        detail = "No such resource."
    return problem(status, code, title, detail, headers=headers)


def unexpected(exc: BaseException) -> Response:
    incident = secrets.token_hex(6)
    log.error("unhandled error incident=%s", incident, exc_info=exc)
    return problem(
        500,
        ChorusError.code,
        ChorusError.title,
        "An unexpected error occurred.",
        extra={"incident": incident},
    )


def install(app: Quart) -> None:
    """Register the problem+json error handlers on ``app``."""

    async def on_chorus_error(exc: ChorusError) -> Response:
        return from_error(exc)

    async def on_http_exception(exc: HTTPException) -> Response | HTTPException:
        if exc.code is None or exc.code < 400:  # redirects from routing
            return exc
        return from_http_exception(exc)

    async def on_exception(exc: Exception) -> Response:
        return unexpected(exc)

    app.register_error_handler(ChorusError, on_chorus_error)
    app.register_error_handler(HTTPException, on_http_exception)
    app.register_error_handler(Exception, on_exception)
