"""What an ElevenLabs error response means, as documented (reference/elevenlabs.md §2): one
pure function, ``classify``, from status, body and headers to how the request is handled."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from protocols.errors import (
    ChorusError,
    ProviderAuthFailed,
    ProviderBlocked,
    ProviderForbidden,
    ProviderQuotaExhausted,
    ProviderRejected,
    ProviderUnavailable,
    UnknownVoice,
)

RETRY_AFTER_CAP_S = 60.0
_CONCURRENCY_CODES = frozenset({"too_many_concurrent_requests", "concurrent_limit_exceeded"})


class Failure(msgspec.Struct, frozen=True):
    """How one failed request is handled: ``wait`` (account busy: resend once a slot frees),
    ``backoff`` (transient: resend after an exponential, jittered delay) or ``fatal``."""

    kind: str
    error: ChorusError
    retry_after: float | None = None


def _detail(body: Any) -> tuple[str, str]:
    """(code, message) from any of the three documented error bodies."""
    if isinstance(body, Mapping):
        detail = body.get("detail", body)
        if isinstance(detail, Mapping):
            code = str(detail.get("code") or detail.get("status") or detail.get("type") or "")
            return code, str(detail.get("message") or "")
        if isinstance(detail, list) and detail:  # pydantic 422
            first = detail[0] if isinstance(detail[0], Mapping) else {}
            loc = ".".join(str(p) for p in first.get("loc", ()))
            return "validation_error", f"{loc}: {first.get('msg', '')}".strip(": ")
        if isinstance(detail, str):
            return "", detail
    return "", str(body)[:300] if body else ""


def _retry_after(headers: Mapping[str, str]) -> float | None:
    for name in ("retry-after", "Retry-After"):
        value = headers.get(name)
        if value is not None:
            try:
                return min(RETRY_AFTER_CAP_S, max(0.0, float(value)))
            except ValueError:
                return None
    return None


def classify(status: int, body: Any, headers: Mapping[str, str]) -> Failure:
    """The documented meaning of an error response (reference/elevenlabs.md §2)."""
    code, message = _detail(body)
    trace = headers.get("request-id") or headers.get("x-trace-id")
    where = f" (request {trace})" if trace else ""
    text = f"ElevenLabs {status} {code or 'error'}: {message or 'no message'}{where}"
    extra = {"provider_status": status, "provider_code": code}
    if status == 429 and (code in _CONCURRENCY_CODES or "concurren" in message.lower()):
        return Failure("wait", ProviderUnavailable(text, **extra), _retry_after(headers))
    if status == 429 and code == "quota_exceeded":
        return Failure("fatal", ProviderQuotaExhausted(text, **extra))
    if code == "voice_not_ready" or "not ready" in message.lower():
        # a voice still being prepared at the provider (e.g. a clone whose readiness we judged
        # too early): worth trying again later, not a failure of the job
        return Failure("backoff", ProviderUnavailable(text, **extra), _retry_after(headers))
    if status in (408, 409, 425, 429) or status >= 500:
        return Failure("backoff", ProviderUnavailable(text, **extra), _retry_after(headers))
    if code == "quota_exceeded":
        return Failure("fatal", ProviderQuotaExhausted(text, **extra))
    if code == "detected_unusual_activity":
        return Failure("fatal", ProviderBlocked(text, **extra))
    if status == 401:
        return Failure("fatal", ProviderAuthFailed(text, **extra))
    if code == "voice_not_found" or (status == 404 and "voice" in message.lower()):
        return Failure("fatal", UnknownVoice(text, **extra))
    if status == 403:
        return Failure("fatal", ProviderForbidden(text, **extra))
    if status == 404:
        return Failure("fatal", ProviderRejected(text, **extra))
    return Failure("fatal", ProviderRejected(text, **extra))
