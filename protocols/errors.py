"""Typed errors. Every error a user can see is a ChorusError with a stable ``code``.

Adapters translate client-library exceptions into these (``raise ... from exc``); actors and the
web front never import a client library's exceptions. The web front renders them as RFC 9457
``application/problem+json`` with ``code`` as an extension member.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ChorusError(Exception):
    """Base of every typed error. ``status`` is the HTTP status the edge answers with."""

    code: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"
    #: a failed job with this error may succeed if tried again later
    retryable: ClassVar[bool] = False

    def __init__(self, detail: str = "", **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra


# --- input (4xx) -------------------------------------------------------------------------------


class InvalidInput(ChorusError):
    code = "invalid_input"
    status = 422
    title = "Invalid input"


class MalformedJSON(InvalidInput):
    code = "malformed_json"
    status = 400
    title = "Malformed JSON"


class TextEmpty(InvalidInput):
    code = "text_empty"
    title = "Text is empty"


class TextTooLong(InvalidInput):
    code = "text_too_long"
    status = 413
    title = "Text is too long"


class UnsupportedFormat(InvalidInput):
    code = "unsupported_output_format"
    title = "Unsupported output format"


class InvalidAudio(InvalidInput):
    """An uploaded file's bytes are not audio a decoder can read (checked before they are sent
    anywhere or stored)."""

    code = "invalid_audio"
    title = "Not a readable audio file"


class UnknownVoice(ChorusError):
    code = "voice_not_found"
    status = 404
    title = "Voice not found"


class Unauthorized(ChorusError):
    code = "unauthorized"
    status = 401
    title = "Missing or invalid API key"


class Forbidden(ChorusError):
    code = "forbidden"
    status = 403
    title = "Not allowed"


class NotFound(ChorusError):
    code = "not_found"
    status = 404
    title = "Not found"


class AlreadyExists(ChorusError):
    code = "already_exists"
    status = 409
    title = "Already exists"


class IdempotencyConflict(ChorusError):
    code = "idempotency_key_reused"
    status = 409
    title = "Idempotency key reused with a different request"


class RoundRunning(ChorusError):
    """A storybook retry asked for while the book's lines are still being made."""

    code = "retry_round_running"
    status = 409
    title = "The storybook is still running"


class NotCancellable(ChorusError):
    """A job or storybook that has already ended."""

    code = "already_finished"
    status = 409
    title = "Already finished"


class NotReady(ChorusError):
    """An output asked for before it can exist (a storybook whose lines are still running)."""

    code = "not_ready"
    status = 409
    title = "Not ready yet"


class QuotaExceeded(ChorusError):
    """The user's monthly character quota cannot hold this job (nothing was queued)."""

    code = "quota_exceeded"
    status = 429
    title = "Monthly character quota exceeded"


class InvalidCursor(InvalidInput):
    code = "invalid_cursor"
    status = 400
    title = "Invalid cursor"


# --- service availability (5xx) ------------------------------------------------------------------


class QueueFull(ChorusError):
    code = "queue_full"
    status = 503
    title = "Job queue is full, retry later"
    retryable = True


class QueueUnavailable(ChorusError):
    """Redis could not be reached or did not answer in time."""

    code = "queue_unavailable"
    status = 503
    title = "Job queue unavailable"
    retryable = True


class StoreUnavailable(ChorusError):
    """Postgres could not be reached or did not answer in time."""

    code = "store_unavailable"
    status = 503
    title = "Database unavailable"
    retryable = True


# --- provider (recorded on jobs) -----------------------------------------------------------------


class ProviderError(ChorusError):
    """The speech provider failed for good (the job fails with this error)."""

    code = "provider_error"
    status = 502
    title = "Speech provider error"


class ProviderUnavailable(ProviderError):
    """Transient provider failure: the job is retried with backoff."""

    code = "provider_unavailable"
    title = "Speech provider temporarily unavailable"
    retryable = True


class SynthesisFailed(ProviderError):
    code = "synthesis_failed"
    title = "Speech synthesis failed"


class ProviderAuthFailed(ProviderError):
    """The provider rejected the service's API key (the operator must fix it)."""

    code = "provider_auth_failed"
    title = "The speech provider rejected the service's API key"


class ProviderQuotaExhausted(ProviderError):
    """The provider account has no characters left for this text."""

    code = "provider_quota_exhausted"
    status = 503
    title = "The speech provider account is out of characters"


class ProviderBlocked(ProviderError):
    """ElevenLabs' ``detected_unusual_activity``: free tier blocked (e.g. from cloud IPs)."""

    code = "provider_blocked"
    title = "The speech provider blocked the account (unusual activity); a paid plan is needed"


class ProviderForbidden(ProviderError):
    code = "provider_forbidden"
    title = "The provider account's plan does not allow this"


class ProviderRejected(ProviderError):
    """The provider refused the request as invalid (parameters, text too long for the model)."""

    code = "provider_rejected"
    title = "The speech provider rejected the request"


class UnsupportedLanguage(InvalidInput):
    code = "unsupported_language"
    title = "No model of this provider speaks that language"


class NotSupported(ChorusError):
    code = "not_supported"
    status = 501
    title = "Not supported by this provider"


class EnqueueFailed(ChorusError):
    """Recorded on a job whose submit never reached the stream (answered 503 at the time)."""

    code = "enqueue_failed"
    status = 503
    title = "The job never reached the queue"


class DeliveriesExhausted(ChorusError):
    code = "max_deliveries_exceeded"
    status = 500
    title = "Job failed on every delivery and was dead-lettered"


class ConfigError(ChorusError):
    code = "config_error"
    title = "Invalid configuration"


# --- voices ------------------------------------------------------------------------------------


class VoiceNotReady(ChorusError):
    """A cloned voice that is still processing (or failed) cannot speak yet."""

    code = "voice_not_ready"
    status = 409
    title = "Voice is not ready"


class CloningNotAllowed(ChorusError):
    """The provider account's plan does not include instant voice cloning."""

    code = "cloning_not_allowed"
    status = 403
    title = "The provider account cannot clone voices"


class VoiceLimitReached(ChorusError):
    """Every voice slot of the provider account is in use."""

    code = "voice_limit_reached"
    status = 409
    title = "The provider account has no free voice slot"


# --- pronunciation dictionaries ------------------------------------------------------------------


class DictionaryNotFound(NotFound):
    """No such dictionary or version, a deleted one, or another user's private one (all the
    same answer)."""

    code = "pronunciation_dictionary_not_found"
    title = "Pronunciation dictionary not found"


class InvalidRules(InvalidInput):
    code = "invalid_pronunciation_rules"
    title = "Invalid pronunciation rules"


class InvalidPLS(InvalidInput):
    """An ``add-from-file`` upload that is not a PLS lexicon this service can read."""

    code = "invalid_pls"
    title = "Invalid PLS lexicon"


class DictionaryLimitReached(ChorusError):
    code = "dictionary_limit_reached"
    status = 409
    title = "Too many pronunciation dictionaries"


# --- following a job's audio (``actors/pipeline/live.py``) --------------------------------------


class JobNotSucceeded(ChorusError):
    """The followed job ended without audio (failed, dead or cancelled)."""

    code = "job_not_succeeded"
    status = 409
    title = "The job ended without audio"


class LiveAudioChanged(ChorusError):
    """A new attempt of a job made other bytes than the ones already streamed to this client:
    the response is cut short (the job's stored clip is whole; fetch it again)."""

    code = "live_audio_changed"
    status = 502
    title = "The audio changed while it was streamed"


class FollowTimeout(ChorusError):
    """The followed job did not end within ``CHORUS_LIVE_WAIT_S``."""

    code = "follow_timeout"
    status = 504
    title = "The job did not finish in time"
    retryable = True
