"""The ElevenLabs- and OpenAI-shaped routes in the operations table (``catalog.py`` takes them
in): their own request bodies (the Structs the routes decode with, ``web/compat/requests.py``)
and answers (``compat_shapes.py``), and their errors in their own shapes (``errors_as``), as
``web/compat/errors.py`` renders them."""

from __future__ import annotations

from typing import Any

from protocols.errors import (
    DictionaryNotFound,
    EnqueueFailed,
    IdempotencyConflict,
    InvalidCursor,
    InvalidInput,
    NotFound,
    QueueFull,
    QueueUnavailable,
    QuotaExceeded,
    TextEmpty,
    TextTooLong,
    UnknownVoice,
    UnsupportedFormat,
    UnsupportedLanguage,
    VoiceNotReady,
)
from web.compat.jobs import JobFailed, SyncWaitTimeout
from web.compat.requests import ElevenLabsSpeech, OpenAISpeech
from web.openapi import compat_shapes as shapes
from web.openapi.terms import (
    AUDIO,
    BAD_CHARACTER,
    CURSOR,
    IDEMPOTENCY,
    MALFORMED,
    PROVIDER,
    STRING,
    TOO_DEEP,
    TOO_LARGE,
    Answer,
    Error,
    Op,
    Param,
    integer,
)
from web.problems import IdempotencyKeyMismatch
from web.routes.openai_speech import UnsupportedResponseFormat

EL_TTS = "/v1/text-to-speech/<voice_id>"
#: the headers of ElevenLabs' speech answers: the job's id and what it charged (0: cached)
EL_HEADERS = ("request-id", "history-item-id", "character-cost")
EL_AUDIO = Answer("the audio bytes (Content-Type: the clip's format)", "audio/*",
                  headers=EL_HEADERS)
#: a compatible speech call: a job like POST /v1/jobs, waited for (CHORUS_SYNC_WAIT_S)
SPEECH_ERRORS: tuple[Error, ...] = (
    MALFORMED, TOO_DEEP, TOO_LARGE, BAD_CHARACTER, InvalidInput, IdempotencyKeyMismatch,
    TextEmpty, TextTooLong, UnsupportedFormat, UnsupportedLanguage, UnknownVoice, VoiceNotReady,
    IdempotencyConflict, DictionaryNotFound, QuotaExceeded, QueueFull, QueueUnavailable,
    EnqueueFailed, *PROVIDER, JobFailed, SyncWaitTimeout,
)
EL_SPEECH: dict[str, Any] = dict(
    errors_as="elevenlabs", body=ElevenLabsSpeech, errors=SPEECH_ERRORS,
    params=(
        Param("output_format", STRING, "e.g. mp3_44100_128, pcm_24000"),
        Param("optimize_streaming_latency", {"type": "string", "enum": ["0", "1", "2", "3", "4"]},
              "1-4: the provider's fastest model when none is named"),
        IDEMPOTENCY,
    ),
)
OPENAI_SPEECH: dict[str, Any] = dict(
    errors_as="openai", body=OpenAISpeech, params=(IDEMPOTENCY,),
    answers={200: Answer("the audio bytes (Content-Type: the format's), or server-sent events"
                         " (stream_format sse)", "audio/*", headers=EL_HEADERS,
                         also=("text/event-stream",))},
    errors=(*SPEECH_ERRORS, UnsupportedResponseFormat),
)

OPERATIONS: dict[tuple[str, str], Op] = {
    # -- ElevenLabs' shapes (el_speech.py, el_account.py): errors {"detail": {...}} --------------
    ("POST", f"{EL_TTS}"): Op(
        "ElevenLabs' convert: the clip, once made", "elevenlabs", **EL_SPEECH,
        answers={200: EL_AUDIO},
    ),
    ("POST", f"{EL_TTS}/stream"): Op(
        "ElevenLabs' stream: the clip as it is made", "elevenlabs", **EL_SPEECH,
        answers={200: EL_AUDIO},
    ),
    ("POST", f"{EL_TTS}/with-timestamps"): Op(
        "ElevenLabs' convert with character timings", "elevenlabs", **EL_SPEECH,
        answers={200: Answer("the clip (base64) and its timings", shape=shapes.WithTimestamps,
                             headers=EL_HEADERS)},
    ),
    ("POST", f"{EL_TTS}/stream/with-timestamps"): Op(
        "ElevenLabs' stream with timings: one JSON object per line", "elevenlabs", **EL_SPEECH,
        answers={200: Answer("newline-delimited JSON: audio_base64, alignment (null when no"
                             " character starts in the piece), normalized_alignment",
                             "application/x-ndjson", headers=EL_HEADERS)},
    ),
    ("GET", "/v2/voices"): Op(
        "ElevenLabs' voice search", "elevenlabs", errors_as="elevenlabs",
        params=(Param("page_size", integer(1, 100, 10)), Param("search", STRING),
                Param("next_page_token", CURSOR.schema, "next_page_token of the previous page")),
        answers={200: Answer("one page of voices", shape=shapes.ElevenLabsVoices)},
        errors=(InvalidInput, InvalidCursor, BAD_CHARACTER, *PROVIDER),
    ),
    ("GET", "/v1/user"): Op(
        "ElevenLabs' user: you and your quota", "elevenlabs", errors_as="elevenlabs",
        answers={200: Answer("you", shape=shapes.ElevenLabsUser)},
    ),
    ("GET", "/v1/user/subscription"): Op(
        "ElevenLabs' subscription: your quota this month", "elevenlabs", errors_as="elevenlabs",
        answers={200: Answer("the quota", shape=shapes.Subscription)},
    ),
    ("GET", "/v1/history"): Op(
        "ElevenLabs' history: your succeeded jobs, newest first", "elevenlabs",
        errors_as="elevenlabs",
        params=(Param("page_size", integer(1, 100, 100)),
                Param("start_after_history_item_id", STRING, "the last item of the previous"
                      " page")),
        answers={200: Answer("one page", shape=shapes.History)},
        errors=(InvalidInput, NotFound),
    ),
    ("GET", "/v1/history/<item_id>"): Op(
        "ElevenLabs' history item (a succeeded job of yours)", "elevenlabs",
        errors_as="elevenlabs", answers={200: Answer("the item", shape=shapes.HistoryItem)},
        errors=(NotFound,),
    ),
    ("GET", "/v1/history/<item_id>/audio"): Op(
        "ElevenLabs' history item's audio", "elevenlabs", errors_as="elevenlabs",
        answers={200: AUDIO}, errors=(NotFound,),
    ),
    ("GET", "/v1/models"): Op(
        "The models: ElevenLabs' list with xi-api-key, else OpenAI's", "elevenlabs",
        errors_as="compat",
        answers={200: Answer("ElevenLabs' models (xi-api-key) or OpenAI's list (bearer)",
                             shape=(list[shapes.ElevenLabsModel], shapes.OpenAIModels))},
        errors=PROVIDER,
    ),
    # -- OpenAI's shapes (openai_speech.py, compat_models.py): errors {"error": {...}} -----------
    ("POST", "/v1/audio/speech"): Op("OpenAI's speech", "openai", **OPENAI_SPEECH),
    ("POST", "/openai/v1/audio/speech"): Op(
        "OpenAI's speech (base URL /openai/v1)", "openai", **OPENAI_SPEECH),
    ("GET", "/openai/v1/models"): Op(
        "OpenAI's models (base URL /openai/v1)", "openai", errors_as="openai",
        answers={200: Answer("the models", shape=shapes.OpenAIModels)},
    ),
}
