"""Errors in the shapes the SDKs parse: ElevenLabs' ``{"detail": {"status", "message"}}`` and
OpenAI's ``{"error": {"message", "type", "param", "code"}}``, with the HTTP status of the typed
error (``protocols/errors.py``). As in ``web/problems.py``, a 5xx never shows the exception's
own text (it is logged with an incident id instead)."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import Any

from quart import Blueprint, Response
from werkzeug.exceptions import HTTPException

from protocols.errors import ChorusError, QuotaExceeded, Unauthorized
from web.problems import DEFAULT_RETRY_AFTER, HTTP_CODES, RETRY_AFTER, json_response

log = logging.getLogger("chorus.web.compat")

#: ElevenLabs answers an exhausted quota with 401 ``quota_exceeded`` (reference/elevenlabs.md)
EL_STATUS = {QuotaExceeded.code: 401}
OPENAI_TYPES = {
    400: "invalid_request_error", 404: "invalid_request_error", 409: "invalid_request_error",
    413: "invalid_request_error", 415: "invalid_request_error", 422: "invalid_request_error",
    401: "authentication_error", 403: "permission_error", 429: "rate_limit_error",
}


class Failure:
    """What an error says, whatever its shape: status, stable code, message, headers."""

    def __init__(self, status: int, code: str, message: str, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self.status, self.code, self.message, self.param = status, code, message, param
        self.headers = headers or {}


def failure(exc: BaseException) -> Failure:
    if isinstance(exc, ChorusError):
        headers: dict[str, str] = {}
        if exc.status == 503:
            headers["Retry-After"] = str(RETRY_AFTER.get(exc.code, DEFAULT_RETRY_AFTER))
        if isinstance(exc.extra.get("retry_after"), int):
            headers["Retry-After"] = str(exc.extra["retry_after"])
        if isinstance(exc, Unauthorized):
            headers["WWW-Authenticate"] = 'Bearer realm="chorus"'
        param = exc.extra.get("field")
        if exc.status >= 500 and not getattr(exc, "public", False):
            incident = secrets.token_hex(6)
            level = logging.INFO if exc.retryable else logging.WARNING
            log.log(level, "%s incident=%s: %s", exc.code, incident, exc.detail)
            return Failure(exc.status, exc.code, f"{exc.title} (incident {incident})",
                           headers=headers)
        return Failure(exc.status, exc.code, exc.detail,
                       param if isinstance(param, str) else None, headers)
    if isinstance(exc, HTTPException):
        status = exc.code or 500
        return Failure(status, HTTP_CODES.get(status, f"http_{status}"),
                       exc.description or exc.name)
    incident = secrets.token_hex(6)
    log.error("unhandled error incident=%s", incident, exc_info=exc)
    return Failure(500, "internal_error", f"An unexpected error occurred (incident {incident}).")


def elevenlabs_error(exc: BaseException) -> Response:
    f = failure(exc)
    status = EL_STATUS.get(f.code, f.status)
    body: dict[str, Any] = {"detail": {"status": f.code, "message": f.message}}
    return json_response(body, status, {**f.headers, "Cache-Control": "no-store"})


def openai_error(exc: BaseException) -> Response:
    f = failure(exc)
    fallback = "server_error" if f.status >= 500 else "invalid_request_error"
    kind = OPENAI_TYPES.get(f.status, fallback)
    headers = {**f.headers, "Cache-Control": "no-store"}
    code = f.code
    if isinstance(exc, QuotaExceeded):
        kind = code = "insufficient_quota"
        headers["x-should-retry"] = "false"  # the openai client would retry a 429 otherwise
    body = {"error": {"message": f.message, "type": kind, "param": f.param, "code": code}}
    return json_response(body, f.status, headers)


def install(bp: Blueprint, render: Callable[[BaseException], Response]) -> None:
    """Errors raised in ``bp``'s views are answered in ``render``'s shape."""

    async def handle(exc: Exception) -> Response | HTTPException:
        if isinstance(exc, HTTPException) and (exc.code is None or exc.code < 400):
            return exc
        return render(exc)

    bp.register_error_handler(Exception, handle)
