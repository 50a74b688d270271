"""The JSON answers of the API as msgspec Structs, for the OpenAPI document only.

The views (``web/views.py``, the routes' own ``*_view`` functions) build plain dicts for speed;
these Structs describe them. ``tests/unit/test_openapi.py`` renders every view of a fully
populated record and checks it against its Struct both ways (no key the Struct lacks, every
type right), and the schemathesis run checks live answers against the document, so the two
cannot drift apart silently. A field added to a view is added here too.

Fields a view leaves out when empty have a default here (not ``required``).
"""

from __future__ import annotations

from typing import Literal

import msgspec

from protocols.dictionaries import DictionaryRef, Rule
from protocols.messages import (
    JobStatus,
    Lane,
    Metadata,
    Visibility,
    VoiceSettings,
    VoiceStatus,
    WordTiming,
)
from protocols.storybooks import BookStatus, CastMember, LineStatus

Timestamp = str  # ISO 8601, UTC, milliseconds, "Z"


class Problem(msgspec.Struct, kw_only=True):
    """An RFC 9457 problem (``application/problem+json``), every error answer
    (``web/problems.py``). ``code`` is stable and machine-readable; other members may follow
    (``field``, ``fields``, ``limit``, ``incident`` for 5xx answers, ...)."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    instance: str | None = None


class ErrorInfo(msgspec.Struct, kw_only=True):
    code: str
    message: str


class JobView(msgspec.Struct, kw_only=True):
    """A job (``web.views.job_view``): never the owner, the text or the request hash."""

    id: str
    status: JobStatus
    attempts: int
    characters: int
    voice_id: str
    model_id: str | None
    output_format: str
    language: str | None
    cached: bool
    created_at: Timestamp | None
    voice_settings: VoiceSettings | None = None
    seed: int | None = None
    pronunciation_dictionary_locators: list[DictionaryRef] | None = None
    request_ids: list[str] | None = None
    character_cost: int | None = None
    started_at: Timestamp | None = None
    finished_at: Timestamp | None = None
    error: ErrorInfo | None = None
    audio_id: str | None = None
    audio_url: str | None = None
    idempotency_key: str | None = None
    metadata: Metadata | None = None
    lane: Lane | None = None


class VoiceView(msgspec.Struct, kw_only=True):
    """A voice (``web.routes.voices.voice_view``)."""

    id: str
    voice_id: str
    name: str
    description: str | None
    labels: dict[str, str]
    language: str | None
    languages: list[str]
    provider: str
    category: str | None
    status: VoiceStatus
    visibility: Visibility
    mine: bool
    voice_settings: VoiceSettings
    created_at: Timestamp | None
    updated_at: Timestamp | None
    status_reason: str | None = None
    preview_audio_id: str | None = None
    preview_url: str | None = None
    preview_job_id: str | None = None


class VoiceList(msgspec.Struct, kw_only=True):
    voices: list[VoiceView]
    next_cursor: str | None


class PreviewRemade(msgspec.Struct, kw_only=True):
    job: JobView
    voice: VoiceView


class StorybookSummary(msgspec.Struct, kw_only=True):
    """A book in lists and in the answer to a submit (``web.views.storybook_summary``)."""

    id: str
    title: str
    status: BookStatus
    lines_total: int
    characters: int
    pages: int
    language: str | None
    output_format: str
    round: int
    created_at: Timestamp | None
    updated_at: Timestamp | None
    finished_at: Timestamp | None = None
    pronunciation_dictionary_locators: list[DictionaryRef] | None = None
    cancel_requested: bool | None = None
    metadata: Metadata | None = None
    idempotency_key: str | None = None


class StorybookList(msgspec.Struct, kw_only=True):
    storybooks: list[StorybookSummary]
    next_cursor: str | None


class LineView(msgspec.Struct, kw_only=True):
    id: str
    index: int
    speaker: str | None
    voice_id: str
    characters: int
    status: LineStatus
    job_id: str | None
    attempts: int
    round: int
    audio_id: str | None = None
    audio_url: str | None = None
    duration_s: float | None = None
    error: ErrorInfo | None = None


class PageView(msgspec.Struct, kw_only=True):
    index: int
    title: str | None
    lines: list[LineView]


class RoundView(msgspec.Struct, kw_only=True):
    round: int
    requested_by: str | None
    requested_at: Timestamp | None
    scope: str
    forced: bool
    lines: list[str]
    succeeded: int | None
    failed: int | None
    finished_at: Timestamp | None


class PauseView(msgspec.Struct, kw_only=True):
    line: int
    page: int


class BookOutputs(msgspec.Struct, kw_only=True):
    audio: str
    captions_vtt: str
    captions_srt: str
    chapters: str


class StorybookView(StorybookSummary, kw_only=True):
    """A book whole (``web.views.storybook_view``)."""

    counts: dict[str, int]
    cast: dict[str, CastMember]
    pause_ms: PauseView
    pages: list[PageView]  # type: ignore[assignment]  # the summary's count, here the pages
    retry_rounds: list[RoundView]
    outputs: BookOutputs | None = None


class RetryStarted(msgspec.Struct, kw_only=True):
    storybook_id: str
    round: int
    scope: str
    forced: bool
    lines: list[str]


class DictionaryView(msgspec.Struct, kw_only=True):
    """A pronunciation dictionary (``web.routes.dictionaries.dictionary_view``)."""

    id: str
    name: str
    description: str | None
    version_id: str
    version_rules_num: int
    latest_version_id: str
    latest_version_rules_num: int
    visibility: Visibility
    mine: bool
    created_by: str | None
    permission_on_resource: Literal["admin", "viewer"]
    creation_time_unix: int
    archived_time_unix: int | None
    created_at: Timestamp | None
    updated_at: Timestamp | None
    rules: list[Rule] | None = None


class DictionaryList(msgspec.Struct, kw_only=True):
    pronunciation_dictionaries: list[DictionaryView]
    next_cursor: str | None
    has_more: bool


class DictionaryChanged(msgspec.Struct, kw_only=True):
    id: str
    version_id: str
    version_rules_num: int


class Locators(msgspec.Struct, kw_only=True):
    locators: list[DictionaryRef]


class UsageView(msgspec.Struct, kw_only=True):
    """``GET /v1/usage``: this month's (UTC) characters; ``limit`` null is unlimited."""

    period_start: str
    resets_at: str
    limit: int | None
    used: int
    reserved: int
    remaining: int | None
    jobs_charged: int


class Health(msgspec.Struct, kw_only=True):
    status: Literal["ok"]


class Ready(msgspec.Struct, kw_only=True):
    status: Literal["ready"]
    checks: dict[str, bool]


# -- the job list and a job's timings (web/routes/job_control.py, timings.py) -------------------


class JobList(msgspec.Struct, kw_only=True):
    jobs: list[JobView]
    next_cursor: str | None


class AlignmentView(msgspec.Struct, kw_only=True):
    """``GET /v1/jobs/{job_id}/alignment``: parallel arrays over the characters, plus words."""

    job_id: str
    audio_id: str
    duration_s: float
    source: Literal["engine", "estimated"]
    characters: list[str]
    character_start_times_seconds: list[float]
    character_end_times_seconds: list[float]
    words: list[WordTiming]


# -- admin (web/routes/admin_users.py, admin_queue.py) --------------------------------------------


class UserView(msgspec.Struct, kw_only=True):
    """A user (``web.routes.admin_users.user_view``); ``monthly_quota`` null is unlimited."""

    id: str
    name: str
    role: Literal["user", "admin"]
    monthly_quota: int | None
    created_at: Timestamp | None


class KeyView(msgspec.Struct, kw_only=True):
    """An API key (``key_view``): ``key``, the secret, only in the answer that made it."""

    id: str
    user_id: str
    label: str | None
    created_at: Timestamp | None
    revoked_at: Timestamp | None
    key: str | None = None


class UserList(msgspec.Struct, kw_only=True):
    users: list[UserView]


class UserCreated(msgspec.Struct, kw_only=True):
    user: UserView
    api_key: KeyView


class UserWithKeys(UserView, kw_only=True):
    api_keys: list[KeyView]


class KeyRotated(msgspec.Struct, kw_only=True):
    revoked: KeyView
    api_key: KeyView


class Redriven(msgspec.Struct, kw_only=True):
    redriven: list[str]
