"""What each operation of the API takes and answers: the one table the OpenAPI document is
enriched from (``web/openapi/document.py`` walks the app's routes and looks each one up here).

A route missing from this table still appears in the document, with its path parameters, its
methods and its view's docstring, answering anything (``default``), but
``tests/unit/test_openapi.py`` fails for it: add it here to describe it.
Request bodies name the msgspec Structs the routes validate with; answers name the Structs of
``web/openapi/shapes.py``; errors name the ``ChorusError`` classes a route raises (grouped by
their ``status``, listed by their ``code``), or ``(status, code)`` for errors raised by the
HTTP stack itself (routing, body limits). The table's words (``Op``, ``Answer``, ``Param``, the
shared errors) are in ``terms.py``; the ElevenLabs- and OpenAI-shaped routes' rows, whose
errors come in those APIs' own shapes, in ``compat_catalog.py``.
"""

from __future__ import annotations

from actors.ops.overview import Overview
from actors.pipeline.cancel import JobRunning
from protocols.dictionaries import (
    AddRulesRequest,
    DefaultsRequest,
    FromRulesRequest,
    RemoveRulesRequest,
)
from protocols.domain.ssml import InvalidMarkup
from protocols.domain.storybooks import StorybookTooLarge, UnknownSpeaker
from protocols.errors import (
    AlreadyExists,
    CloningNotAllowed,
    DictionaryLimitReached,
    DictionaryNotFound,
    EnqueueFailed,
    FollowTimeout,
    Forbidden,
    IdempotencyConflict,
    InvalidAudio,
    InvalidCursor,
    InvalidInput,
    InvalidPLS,
    InvalidRules,
    JobNotSucceeded,
    NotCancellable,
    NotFound,
    NotReady,
    QueueFull,
    QueueUnavailable,
    QuotaExceeded,
    RoundRunning,
    StoreUnavailable,
    TextEmpty,
    TextTooLong,
    UnknownVoice,
    UnsupportedFormat,
    UnsupportedLanguage,
    VoiceLimitReached,
    VoiceNotReady,
)
from protocols.messages import JobRequest, JobStatus
from protocols.storybooks import RetryRequest, StorybookRequest
from web.openapi import compat_catalog, shapes
from web.openapi.terms import (
    AUDIO,
    BAD_CHARACTER,
    CURSOR,
    FORM_BODY,
    IDEMPOTENCY,
    JSON_BODY,
    LAST_EVENT,
    LOCATION,
    NO_BODY,
    PROVIDER,
    SSE,
    STREAMS,
    STRING,
    Answer,
    Error,
    Op,
    Param,
    integer,
)
from web.problems import (
    IdempotencyKeyMismatch,
)
from web.problems import NotReady as ServiceNotReady
from web.routes.admin_users import NewKey, NewUser, Quota
from web.routes.job_control import UnknownParameter
from web.routes.timings import NoAudio
from web.routes.voice_bodies import PreviewRequest, VoicePatch
from web.routes.voice_uploads import (
    FileTooLarge,
    InvalidLabels,
    InvalidName,
    NoSamples,
    TooManyFiles,
    UnsupportedAudioType,
    UploadTooLarge,
)

JOB_SUBMIT_ERRORS: tuple[Error, ...] = (
    *JSON_BODY, IdempotencyKeyMismatch, TextEmpty, TextTooLong, InvalidMarkup,
    UnsupportedFormat, UnsupportedLanguage, UnknownVoice, VoiceNotReady, IdempotencyConflict,
    DictionaryNotFound, QuotaExceeded, QueueFull, QueueUnavailable, EnqueueFailed, *PROVIDER,
)
ADMIN: tuple[Error, ...] = (Forbidden, StoreUnavailable)
BOOK = "/v1/storybooks/<book_id>"
DICT = "/v1/pronunciation-dictionaries"

OPERATIONS: dict[tuple[str, str], Op] = {
    # -- jobs -----------------------------------------------------------------------------------
    ("POST", "/v1/jobs"): Op(
        "Submit a speech job", "jobs", body=JobRequest, params=(IDEMPOTENCY,),
        answers={
            202: Answer("accepted: queued (follow Location or the job's events)",
                        shape=shapes.JobView, headers=LOCATION),
            200: Answer("already final: a cache hit, or a repeat of an idempotent request",
                        shape=shapes.JobView, headers=LOCATION),
        },
        errors=JOB_SUBMIT_ERRORS,
    ),
    ("GET", "/v1/jobs/<job_id>"): Op(
        "A job of yours", "jobs", answers={200: Answer("the job", shape=shapes.JobView)},
        errors=(NotFound,),
    ),
    ("GET", "/v1/jobs/<job_id>/events"): Op(
        "Follow one job's events until it ends", "events", params=LAST_EVENT,
        answers={200: SSE}, errors=(NotFound, *STREAMS),
    ),
    ("GET", "/v1/events"): Op(
        "Your events, live (server-sent events)", "events",
        params=(Param("kinds", STRING, "comma-separated event kinds to keep, e.g."
                      " job.succeeded,job.failed"), *LAST_EVENT),
        answers={200: SSE}, errors=(InvalidInput, *STREAMS),
    ),
    # -- audio ----------------------------------------------------------------------------------
    ("GET", "/v1/audio/<audio_id>"): Op(
        "Audio of yours (Range and If-None-Match honoured)", "audio",
        answers={200: AUDIO, 206: Answer("one byte range", "audio/*"),
                 304: Answer("not modified", None)},
        errors=(NotFound, (416, "range_not_satisfiable")),
    ),
    ("HEAD", "/v1/audio/<audio_id>"): Op(
        "Audio of yours: headers only", "audio",
        answers={200: Answer("headers only", None), 304: Answer("not modified", None)},
        errors=(NotFound,),
    ),
    # -- voices ---------------------------------------------------------------------------------
    ("GET", "/v1/voices"): Op(
        "Voices you can use (yours, public ones, the provider's)", "voices",
        params=(
            Param("limit", integer(1, 100, 100)),
            Param("language", STRING, "a BCP-47 tag; its primary subtag is matched"),
            Param("search", STRING, "words in the name, description or labels"),
            Param("visibility", {"type": "string", "enum": ["private", "public", "default"]}),
            Param("status", {"type": "string", "enum": ["processing", "completed", "failed"]}),
            CURSOR,
        ),
        answers={200: Answer("one page of voices", shape=shapes.VoiceList)},
        errors=(InvalidInput, BAD_CHARACTER, InvalidCursor, *PROVIDER),
    ),
    ("POST", "/v1/voices"): Op(
        "Clone a voice from audio samples", "voices", params=(IDEMPOTENCY,),
        form={
            "type": "object", "required": ["name", "files"],
            "properties": {
                "name": {"type": "string", "maxLength": 100},
                "description": {"type": "string"},
                "labels": {"type": "string", "description": "a JSON object of strings"},
                "language": {"type": "string"},
                "visibility": {"type": "string", "enum": ["private", "public"]},
                "files": {"type": "array", "minItems": 1, "maxItems": 25,
                          "items": {"type": "string", "format": "binary"}},
            },
        },
        answers={202: Answer("being cloned: follow its status", shape=shapes.VoiceView,
                             headers=LOCATION)},
        errors=(*FORM_BODY, InvalidName, InvalidLabels, NoSamples, TooManyFiles, FileTooLarge,
                UploadTooLarge, UnsupportedAudioType, InvalidAudio, CloningNotAllowed,
                VoiceLimitReached, AlreadyExists, *PROVIDER),
    ),
    ("GET", "/v1/voices/<voice_id>"): Op(
        "A voice", "voices", answers={200: Answer("the voice", shape=shapes.VoiceView)},
        errors=(UnknownVoice, *PROVIDER),
    ),
    ("PATCH", "/v1/voices/<voice_id>"): Op(
        "Edit a voice of yours", "voices", body=VoicePatch,
        answers={200: Answer("the voice as edited", shape=shapes.VoiceView)},
        errors=(*JSON_BODY, UnknownVoice, Forbidden, InvalidName, InvalidLabels, *PROVIDER),
    ),
    ("DELETE", "/v1/voices/<voice_id>"): Op(
        "Delete a voice of yours", "voices", answers={204: NO_BODY},
        errors=(UnknownVoice, Forbidden, *PROVIDER),
    ),
    ("GET", "/v1/voices/<voice_id>/preview"): Op(
        "A voice's preview clip", "voices", answers={200: AUDIO},
        errors=(UnknownVoice, NotFound),
    ),
    ("POST", "/v1/voices/<voice_id>/preview"): Op(
        "Make a voice's preview again (a job of yours)", "voices", body=PreviewRequest,
        body_optional=True, params=(IDEMPOTENCY,),
        answers={
            202: Answer("the preview job, queued", shape=shapes.PreviewRemade, headers=LOCATION),
            200: Answer("the preview job, already final", shape=shapes.PreviewRemade,
                        headers=LOCATION),
        },
        errors=(UnknownVoice, Forbidden, *JOB_SUBMIT_ERRORS),
    ),
    # -- storybooks -----------------------------------------------------------------------------
    ("POST", "/v1/storybooks"): Op(
        "Submit a storybook (every line becomes a job)", "storybooks", body=StorybookRequest,
        params=(IDEMPOTENCY,),
        answers={
            202: Answer("accepted", shape=shapes.StorybookSummary, headers=LOCATION),
            200: Answer("a repeat of an idempotent request", shape=shapes.StorybookSummary,
                        headers=LOCATION),
        },
        errors=(*JSON_BODY, IdempotencyKeyMismatch, TextEmpty, TextTooLong, InvalidMarkup,
                UnsupportedFormat, UnsupportedLanguage, UnknownSpeaker, StorybookTooLarge,
                UnknownVoice, VoiceNotReady, IdempotencyConflict, DictionaryNotFound,
                QuotaExceeded, QueueUnavailable, *PROVIDER),
    ),
    ("GET", "/v1/storybooks"): Op(
        "Your storybooks, newest first", "storybooks", params=(Param("limit", integer(1, 50, 50)),
                                                               CURSOR),
        answers={200: Answer("one page", shape=shapes.StorybookList)},
        errors=(InvalidInput, InvalidCursor, QueueUnavailable),
    ),
    ("GET", BOOK): Op(
        "A storybook whole: pages, lines, counts, retry rounds", "storybooks",
        answers={200: Answer("the book", shape=shapes.StorybookView)},
        errors=(NotFound, QueueUnavailable),
    ),
    ("DELETE", BOOK): Op(
        "Cancel a storybook (running lines finish)", "storybooks",
        answers={202: Answer("cancelling", shape=shapes.StorybookSummary)},
        errors=(NotFound, NotCancellable, QueueUnavailable),
    ),
    ("POST", f"{BOOK}/retry"): Op(
        "Retry a book's failed lines (a new round)", "storybooks", body=RetryRequest,
        body_optional=True,
        answers={202: Answer("the round started", shape=shapes.RetryStarted, headers=LOCATION)},
        errors=(*JSON_BODY, NotFound, RoundRunning, NotCancellable, QuotaExceeded,
                QueueUnavailable),
    ),
    ("GET", f"{BOOK}/audio"): Op(
        "A finished book's audio (failed lines skipped: X-Chorus-Skipped-Lines)", "storybooks",
        answers={200: AUDIO, 206: Answer("one byte range", "audio/*")},
        errors=(NotFound, NotReady, QueueUnavailable, (416, "range_not_satisfiable")),
    ),
    ("GET", f"{BOOK}/pages/<int:page>/audio"): Op(
        "One page's audio", "storybooks",
        answers={200: AUDIO, 206: Answer("one byte range", "audio/*")},
        errors=(NotFound, NotReady, QueueUnavailable, (416, "range_not_satisfiable")),
    ),
    ("GET", f"{BOOK}/captions.<kind>"): Op(
        "A finished book's captions (kind: vtt or srt)", "storybooks",
        answers={200: Answer("WebVTT (text/vtt) or SubRip (application/x-subrip)", "text/*",
                             shape={"type": "string"})},
        errors=(NotFound, NotReady, QueueUnavailable),
    ),
    ("GET", f"{BOOK}/chapters"): Op(
        "A finished book's chapters (one per page, with times)", "storybooks",
        answers={200: Answer("the chapters", shape={"type": "object"})},
        errors=(NotFound, NotReady, QueueUnavailable),
    ),
    ("GET", f"{BOOK}/events"): Op(
        "Follow one book's events until it ends", "events", params=LAST_EVENT,
        answers={200: SSE}, errors=(NotFound, *STREAMS),
    ),
    # -- pronunciation dictionaries -------------------------------------------------------------
    ("POST", f"{DICT}/add-from-rules"): Op(
        "Create a pronunciation dictionary from rules", "dictionaries", body=FromRulesRequest,
        answers={201: Answer("created", shape=shapes.DictionaryView, headers=LOCATION)},
        errors=(*JSON_BODY, InvalidRules, DictionaryLimitReached, *PROVIDER),
    ),
    ("POST", f"{DICT}/add-from-file"): Op(
        "Create a pronunciation dictionary from a PLS lexicon", "dictionaries",
        form={
            "type": "object", "required": ["name", "file"],
            "properties": {
                "name": {"type": "string"}, "description": {"type": "string"},
                "visibility": {"type": "string", "enum": ["private", "public"]},
                "file": {"type": "string", "format": "binary"},
            },
        },
        answers={201: Answer("created", shape=shapes.DictionaryView, headers=LOCATION)},
        errors=(*FORM_BODY, InvalidPLS, InvalidRules, DictionaryLimitReached, *PROVIDER),
    ),
    ("GET", DICT): Op(
        "Pronunciation dictionaries you can use", "dictionaries",
        params=(Param("page_size", integer(1, 100, 30)), CURSOR),
        answers={200: Answer("one page", shape=shapes.DictionaryList)},
        errors=(InvalidInput, InvalidCursor),
    ),
    ("GET", f"{DICT}/<dictionary_id>"): Op(
        "A pronunciation dictionary with its rules", "dictionaries",
        answers={200: Answer("the dictionary", shape=shapes.DictionaryView)},
        errors=(DictionaryNotFound,),
    ),
    ("GET", f"{DICT}/<dictionary_id>/<version_id>/download"): Op(
        "One version as a PLS lexicon", "dictionaries",
        answers={200: Answer("the PLS file", "application/pls+xml", shape={"type": "string"})},
        errors=(DictionaryNotFound,),
    ),
    ("POST", f"{DICT}/<dictionary_id>/add-rules"): Op(
        "Add or replace rules (a new version)", "dictionaries", body=AddRulesRequest,
        answers={200: Answer("the new version", shape=shapes.DictionaryChanged)},
        errors=(*JSON_BODY, DictionaryNotFound, Forbidden, InvalidRules, *PROVIDER),
    ),
    ("POST", f"{DICT}/<dictionary_id>/remove-rules"): Op(
        "Remove rules (a new version)", "dictionaries", body=RemoveRulesRequest,
        answers={200: Answer("the new version", shape=shapes.DictionaryChanged)},
        errors=(*JSON_BODY, DictionaryNotFound, Forbidden, InvalidRules, *PROVIDER),
    ),
    ("DELETE", f"{DICT}/<dictionary_id>"): Op(
        "Delete a dictionary of yours", "dictionaries", answers={204: NO_BODY},
        errors=(DictionaryNotFound, Forbidden, *PROVIDER),
    ),
    ("GET", "/v1/user/pronunciation-dictionaries"): Op(
        "Your default dictionaries (applied to every job)", "dictionaries",
        answers={200: Answer("the locators", shape=shapes.Locators)},
    ),
    ("PUT", "/v1/user/pronunciation-dictionaries"): Op(
        "Set your default dictionaries", "dictionaries", body=DefaultsRequest,
        answers={200: Answer("the locators, pinned", shape=shapes.Locators)},
        errors=(*JSON_BODY, DictionaryNotFound),
    ),
    # -- account and service --------------------------------------------------------------------
    ("GET", "/v1/usage"): Op(
        "Your character quota this month (UTC)", "account",
        answers={200: Answer("the month's figures", shape=shapes.UsageView)},
    ),
    ("GET", "/healthz"): Op(
        "Liveness", "service", auth=False, answers={200: Answer("serving", shape=shapes.Health)},
    ),
    ("GET", "/readyz"): Op(
        "Readiness: Redis and Postgres answer", "service", auth=False,
        answers={200: Answer("ready", shape=shapes.Ready)}, errors=(ServiceNotReady,),
    ),
    ("GET", "/openapi.json"): Op(
        "This document (OpenAPI 3.1)", "service", auth=False,
        answers={200: Answer("the document", shape={"type": "object"})},
    ),
    ("GET", "/docs"): Op(
        "The API reference, readable offline (Swagger UI served by Chorus)", "service",
        auth=False, answers={200: Answer("an HTML page", "text/html", shape={"type": "string"})},
    ),
    ("GET", "/docs/static/<name>"): Op(
        "The docs page's assets", "service", auth=False,
        answers={200: Answer("a script, a stylesheet or an image", "*/*")},
        errors=((404, "not_found"),),
    ),
    # -- jobs: list, withdraw, timings (job_control.py, timings.py) ------------------------------
    ("GET", "/v1/jobs"): Op(
        "Your jobs, newest first, a page at a time", "jobs",
        params=(
            Param("status", {"type": "string", "enum": [s.value for s in JobStatus]}),
            Param("created_after", STRING, "an ISO 8601 time (without a zone: UTC)"),
            CURSOR, Param("limit", integer(1, 100, 50)),
        ),
        answers={200: Answer("one page of jobs", shape=shapes.JobList)},
        errors=(UnknownParameter, InvalidInput, InvalidCursor, BAD_CHARACTER),
    ),
    ("DELETE", "/v1/jobs/<job_id>"): Op(
        "Withdraw a queued job of yours (nothing charged)", "jobs",
        answers={200: Answer("the job, cancelled", shape=shapes.JobView)},
        errors=(NotFound, JobRunning, NotCancellable, QueueUnavailable),
    ),
    ("GET", "/v1/jobs/<job_id>/stream"): Op(
        "A job's audio as it is made (chunked; the stored clip once it has ended)", "jobs",
        answers={200: AUDIO},
        errors=(NotFound, JobNotSucceeded, FollowTimeout),
    ),
    ("GET", "/v1/jobs/<job_id>/alignment"): Op(
        "When each character and word of a job's clip is heard", "jobs",
        answers={200: Answer("the timings", shape=shapes.AlignmentView)},
        errors=(NotFound, NotReady, NoAudio),
    ),
    ("GET", "/v1/jobs/<job_id>/captions.vtt"): Op(
        "A job's captions as WebVTT", "jobs",
        answers={200: Answer("WebVTT", "text/vtt", shape={"type": "string"})},
        errors=(NotFound, NotReady, NoAudio),
    ),
    ("GET", "/v1/jobs/<job_id>/captions.srt"): Op(
        "A job's captions as SubRip", "jobs",
        answers={200: Answer("SubRip", "application/x-subrip", shape={"type": "string"})},
        errors=(NotFound, NotReady, NoAudio),
    ),
    # -- admin (admin_users.py, admin_queue.py): an admin's key, 403 for others ------------------
    ("GET", "/v1/admin/users"): Op(
        "Every user", "admin", answers={200: Answer("the users", shape=shapes.UserList)},
        errors=ADMIN,
    ),
    ("POST", "/v1/admin/users"): Op(
        "Create a user with a first API key (shown once)", "admin", body=NewUser,
        answers={201: Answer("created", shape=shapes.UserCreated, headers=LOCATION)},
        errors=(*ADMIN, *JSON_BODY),
    ),
    ("GET", "/v1/admin/users/<user_id>"): Op(
        "A user with their API keys (never the secrets)", "admin",
        answers={200: Answer("the user", shape=shapes.UserWithKeys)}, errors=(*ADMIN, NotFound),
    ),
    ("POST", "/v1/admin/users/<user_id>/keys"): Op(
        "Give a user another API key (shown once)", "admin", body=NewKey, body_optional=True,
        answers={201: Answer("the key, with its secret", shape=shapes.KeyView)},
        errors=(*ADMIN, *JSON_BODY, NotFound),
    ),
    ("POST", "/v1/admin/keys/<key_id>/rotate"): Op(
        "Revoke a key and make its successor (shown once)", "admin",
        answers={201: Answer("the old key, revoked, and the new", shape=shapes.KeyRotated)},
        errors=(*ADMIN, NotFound),
    ),
    ("DELETE", "/v1/admin/keys/<key_id>"): Op(
        "Revoke an API key", "admin",
        answers={200: Answer("the key, revoked", shape=shapes.KeyView)}, errors=(*ADMIN, NotFound),
    ),
    ("PUT", "/v1/admin/users/<user_id>/quota"): Op(
        "Set a user's monthly character quota (null: unlimited)", "admin", body=Quota,
        answers={200: Answer("the user", shape=shapes.UserView)},
        errors=(*ADMIN, *JSON_BODY, NotFound),
    ),
    ("DELETE", "/v1/admin/users/<user_id>/quota"): Op(
        "Clear a user's quota (unlimited)", "admin",
        answers={200: Answer("the user", shape=shapes.UserView)}, errors=(*ADMIN, NotFound),
    ),
    ("GET", "/v1/admin/overview"): Op(
        "The queue, consumers, dead letters, slots, cache and every process's restarts", "admin",
        answers={200: Answer("the figures", shape=Overview)}, errors=(Forbidden, QueueUnavailable),
    ),
    ("POST", "/v1/admin/dead-letters/<letter_id>/redrive"): Op(
        "Put a dead-lettered job back on its lane (by dead-letter or job id)", "admin",
        answers={200: Answer("the job ids put back", shape=shapes.Redriven)},
        errors=(Forbidden, InvalidInput, NotFound, QueueUnavailable),
    ),
    # -- operators and the console (metrics.py, console.py) ---------------------------------------
    ("GET", "/metrics"): Op(
        "Prometheus metrics (an admin's key, or loopback when CHORUS_METRICS=loopback)",
        "service", answers={200: Answer("the text exposition format", "text/plain",
                                        shape={"type": "string"})},
        errors=(Forbidden, (404, "not_found")),
    ),
    ("GET", "/"): Op(
        "The console (a web page; it asks for your key)", "service", auth=False,
        answers={200: Answer("an HTML page", "text/html", shape={"type": "string"}),
                 304: Answer("not modified (If-None-Match)", None)},
    ),
    ("GET", "/console/<name>"): Op(
        "The console's scripts and styles", "service", auth=False,
        answers={200: Answer("a script or a stylesheet", "*/*"),
                 304: Answer("not modified (If-None-Match)", None)},
    ),
    **compat_catalog.OPERATIONS,
}

#: documented for every operation that needs an API key
AUTH_ERRORS: tuple[Error, ...] = ((401, "unauthorized"), (503, "store_unavailable"))
TAGS = {
    "jobs": "Speech jobs: submit, look",
    "audio": "The audio your jobs made",
    "events": "Server-sent events",
    "voices": "Voices: list, clone, edit, delete, preview",
    "storybooks": "Storybooks: many lines as one batch, with outputs",
    "dictionaries": "Pronunciation dictionaries (ElevenLabs' shapes)",
    "account": "Your account",
    "service": "Health, metrics, the console and this reference",
    "admin": "Users, keys, quotas and the queue (an admin's key)",
    "elevenlabs": "ElevenLabs' own routes and shapes (its SDK works as is)",
    "openai": "OpenAI's speech route and shapes (its SDK works as is)",
}
