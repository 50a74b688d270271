"""Storybooks: a whole story as one durable batch of dialogue lines (frozen msgspec Structs).

A book is pages of lines; each line is spoken by a speaker of the book's cast (or names its own
voice) and becomes one ordinary job when the StorybookRunner releases it into the batch lane
(``actors/storybooks/runner.py``). Postgres keeps the book, its lines and its retry rounds
(``protocols/postgres/storybooks_sql.py``); the job rows stay the truth of each generation.

Line life: ``pending`` (waiting for the runner) -> ``queued`` (its job exists) -> ``running``
-> ``succeeded | failed``; ``cancelled`` if the book was cancelled before the line ran. A retry
round puts failed lines back to ``pending`` with the round number, and a new job (idempotency
key per book, line and round) is made for each.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated

import msgspec

from protocols.messages import DictionaryRef, Metadata, VoiceSettings

# --- limits (also in the README) ----------------------------------------------------------------

MAX_PAGES = 500
MAX_LINES_PER_PAGE = 500
MAX_CAST = 64
MAX_PAUSE_MS = 10_000
DEFAULT_LINE_PAUSE_MS = 400
DEFAULT_PAGE_PAUSE_MS = 1_200

SpeakerName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
VoiceId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
PauseMs = Annotated[int, msgspec.Meta(ge=0, le=MAX_PAUSE_MS)]


class BookStatus(StrEnum):
    queued = "queued"  # accepted, no line started yet
    running = "running"
    succeeded = "succeeded"  # every line succeeded
    partial = "partial"  # every line ended, some failed
    failed = "failed"  # every line ended, none succeeded
    cancelled = "cancelled"

    @property
    def terminal(self) -> bool:
        return self not in (BookStatus.queued, BookStatus.running)


class LineStatus(StrEnum):
    pending = "pending"  # not yet released into the queue (no job for this round yet)
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"  # the book was cancelled before the line's job ran

    @property
    def terminal(self) -> bool:
        return self in (LineStatus.succeeded, LineStatus.failed, LineStatus.cancelled)


# --- what a client sends (POST /v1/storybooks) --------------------------------------------------


class CastMember(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    voice_id: VoiceId
    voice_settings: VoiceSettings | None = None


class LineRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    text: str
    speaker: SpeakerName | None = None  # a key of the cast
    voice_id: VoiceId | None = None  # overrides the speaker's voice (or speaks without one)


class PageRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    lines: Annotated[list[LineRequest], msgspec.Meta(max_length=MAX_LINES_PER_PAGE)]
    title: Annotated[str, msgspec.Meta(max_length=200)] | None = None


class Pauses(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    line: PauseMs = DEFAULT_LINE_PAUSE_MS  # silence after each line (within a page)
    page: PauseMs = DEFAULT_PAGE_PAUSE_MS  # silence between pages


class StorybookRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    title: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    pages: Annotated[list[PageRequest], msgspec.Meta(max_length=MAX_PAGES)]
    cast: Annotated[dict[SpeakerName, CastMember], msgspec.Meta(max_length=MAX_CAST)] = (
        msgspec.field(default_factory=dict)
    )
    language: Annotated[str, msgspec.Meta(min_length=1, max_length=35)] | None = None
    output_format: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    pause_ms: Pauses = msgspec.field(default_factory=Pauses)
    metadata: Metadata | None = None
    idempotency_key: Annotated[str, msgspec.Meta(min_length=1, max_length=255)] | None = None
    #: applied to every line (the cast's names); None: the owner's defaults; []: none
    pronunciation_dictionary_locators: (
        Annotated[list[DictionaryRef], msgspec.Meta(max_length=3)] | None
    ) = None


class RetryRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    #: the lines to run again (ids); None: every failed line
    lines: Annotated[list[Annotated[str, msgspec.Meta(max_length=64)]],
                     msgspec.Meta(min_length=1, max_length=MAX_PAGES * 10)] | None = None
    #: also lines whose error is permanent (``provider_rejected``, ``voice_not_found``, ...)
    force: bool = False


# --- accepted: what the store inserts ------------------------------------------------------------


class NewLine(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    page: int  # 0-based page number
    index: int  # 0-based position within the page
    text: str  # normalized
    voice_id: str  # the Chorus voice id as resolved at submit
    speaker: str | None = None
    voice_settings: VoiceSettings | None = None
    #: the characters charged, when not the whole text (its SSML markup is not charged: set
    #: by the plan, ``protocols/domain/storybooks.py``)
    charged: int | None = None

    @property
    def characters(self) -> int:
        return len(self.text) if self.charged is None else self.charged


class NewStorybook(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    owner: str
    title: str
    language: str | None
    output_format: str
    cast: dict[str, CastMember]
    pause_line_ms: int
    pause_page_ms: int
    page_titles: tuple[str | None, ...]  # one per page, in order
    lines: tuple[NewLine, ...]  # in reading order
    metadata: Metadata | None = None
    idempotency_key: str | None = None
    request_hash: str = ""
    #: pronunciation dictionaries of every line, pinned at submit
    dictionaries: tuple[DictionaryRef, ...] = ()

    @property
    def characters(self) -> int:
        return sum(line.characters for line in self.lines)


# --- records --------------------------------------------------------------------------------------


class Line(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    book_id: str
    page: int
    index: int
    speaker: str | None
    text: str
    voice_id: str
    voice_settings: VoiceSettings | None
    status: LineStatus
    job_id: str | None = None  # the job of the line's current round (None while pending)
    attempts: int = 0  # jobs made for this line so far (one per round it took part in)
    round: int = 0  # the retry round the line last took part in (0: the first run)
    error_code: str | None = None
    error_message: str | None = None
    audio_id: str | None = None
    duration_s: float | None = None
    characters: int = 0  # charged for it (its text without SSML markup)


class RetryRound(msgspec.Struct, frozen=True, kw_only=True):
    book_id: str
    number: int  # 1, 2, ... (round 0 is the book's first run and has no row)
    requested_by: str  # user id
    requested_at: dt.datetime
    scope: str  # "failed" (every failed line) | "listed" (the lines asked for)
    forced: bool
    line_ids: tuple[str, ...]
    succeeded: int = 0
    failed: int = 0
    finished_at: dt.datetime | None = None


class Storybook(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    owner: str
    title: str
    language: str | None
    output_format: str
    cast: dict[str, CastMember]
    status: BookStatus
    pause_line_ms: int
    pause_page_ms: int
    page_titles: tuple[str | None, ...]
    lines_total: int
    characters: int
    created_at: dt.datetime
    updated_at: dt.datetime
    metadata: Metadata | None = None
    idempotency_key: str | None = None
    request_hash: str = ""
    round: int = 0  # the latest retry round (0: none yet)
    cancel_requested: bool = False
    finished_at: dt.datetime | None = None
    #: blob path of the assembled book audio, once made (reused until a retry changes a line)
    audio_path: str | None = None
    #: pronunciation dictionaries of every line, pinned at submit
    dictionaries: tuple[DictionaryRef, ...] = ()
