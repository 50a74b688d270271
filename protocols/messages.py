"""Messages and records: frozen msgspec Structs (msgpack on the stream, JSON on HTTP).

Schemas only grow: a new field always has a default, so old stream entries still decode.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated, Any, Literal

import msgspec

DEFAULT_FORMAT = "mp3_44100_128"


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    dead = "dead"
    cancelled = "cancelled"  # withdrawn while queued: never generated, nothing charged

    @property
    def terminal(self) -> bool:
        return self in (
            JobStatus.succeeded, JobStatus.failed, JobStatus.dead, JobStatus.cancelled
        )


class Lane(StrEnum):
    """Which stream a job waits in. The StreamReader takes ``interactive`` entries first and
    reads ``batch`` ones only when no interactive job waits, so a single job never queues
    behind a storybook (docs/ARCHITECTURE.md, "Lanes and fairness")."""

    interactive = "interactive"  # POST /v1/jobs and every other single request
    batch = "batch"  # storybook lines, released into it by the StorybookRunner


#: a job's or a storybook's ``metadata``: the caller's own JSON object, stored and returned
#: as given (its encoded size is bounded by ``Settings.max_metadata_bytes`` at the edge)
Metadata = dict[str, Any]


# --- synthesis parameters ----------------------------------------------------------------------

Unit = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]


class VoiceSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True,
                    omit_defaults=True):
    """Per-request voice settings (ElevenLabs' names and ranges). Unset fields keep the
    voice's own settings."""

    stability: Unit | None = None
    similarity_boost: Unit | None = None
    style: Unit | None = None
    use_speaker_boost: bool | None = None
    speed: Annotated[float, msgspec.Meta(ge=0.7, le=1.2)] | None = None


class DictionaryRef(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True,
                    omit_defaults=True):
    """A pronunciation dictionary, pinned to a version once the job is accepted."""

    pronunciation_dictionary_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    version_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None


class SpeechParams(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Everything besides text, voice, language and format that shapes the audio. Settled at
    submit (model chosen, dictionary versions pinned), so the cache key is known up front."""

    model_id: str = ""
    voice_settings: VoiceSettings | None = None
    seed: int | None = None
    dictionaries: tuple[DictionaryRef, ...] = ()


NO_PARAMS = SpeechParams()


# --- submitting a job --------------------------------------------------------------------------


class JobRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A request for speech, as a client asks for it (the body of ``POST /v1/jobs``); every
    front submits one of these through the ``Intake`` (``actors/pipeline/intake.py``)."""

    text: str
    voice_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None
    language: Annotated[str, msgspec.Meta(min_length=1, max_length=35)] | None = None
    output_format: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    idempotency_key: Annotated[str, msgspec.Meta(min_length=1, max_length=255)] | None = None
    model_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    #: which model to prefer when ``model_id`` is not given
    preference: Literal["balanced", "latency", "quality", "expressive"] | None = None
    voice_settings: VoiceSettings | None = None
    seed: Annotated[int, msgspec.Meta(ge=0, le=4294967295)] | None = None
    pronunciation_dictionary_locators: (
        Annotated[list[DictionaryRef], msgspec.Meta(max_length=3)] | None
    ) = None
    #: the caller's context, stored with the job and returned as given (size-bounded)
    metadata: Metadata | None = None
    #: the caller will follow the audio as it is made (``WebContext.follow_audio``); not part
    #: of the request's identity or cache key
    stream: bool = False


# --- on the job stream -------------------------------------------------------------------------


class SpeechJob(msgspec.Struct, frozen=True, kw_only=True, tag="speech"):
    """What the stream carries for one job (msgpack in the entry's ``m`` field)."""

    job_id: str
    owner: str
    text: str
    voice_id: str
    language: str | None = None
    output_format: str = DEFAULT_FORMAT
    submitted_at: float = 0.0  # unix seconds, for pickup-latency figures
    params: SpeechParams = NO_PARAMS
    cache_key: str = ""  # "" in entries written before it existed: the actor computes it
    lane: Lane = Lane.interactive
    #: the storybook this job is a line of ("": a single job). Its entry names the book, so
    #: the locking read can tell whether the book may have been cancelled (``Keys.book_cancel``)
    book_id: str = ""
    #: the X-Request-ID of the HTTP request that created the job ("": none, or an older entry)
    request_id: str = ""
    #: a client follows the audio as it is made: the TTS actor publishes its chunks
    #: (``actors/pipeline/live.py``); not part of the cache key or the request hash
    stream: bool = False


StreamMessage = SpeechJob  # grows into a tagged union (e.g. ``SpeechJob | PreviewJob``)


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    """One stream entry handed to a TTSActor."""

    entry_id: str
    job: SpeechJob
    deliveries: int  # how many times the group has delivered this entry (1 = first)


# --- TTSActor -> StreamReader settlements --------------------------------------------------------


class Ack(msgspec.Struct, frozen=True, tag="ack"):
    """The job's effect is durable: XACK + XDEL the entry."""

    entry_id: str


class Release(msgspec.Struct, frozen=True, tag="release"):
    """Give the entry back for redelivery after ``delay`` seconds (XCLAIM IDLE)."""

    entry_id: str
    delay: float = 0.0
    #: None: this delivery counts toward the job's attempts; a number: the entry's delivery
    #: count is set back to it (XCLAIM RETRYCOUNT), as for a delivery that failed only
    #: because Redis or Postgres was away
    retry_count: int | None = None


Settlement = Ack | Release


# --- Postgres records ----------------------------------------------------------------------------


class User(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    role: str  # "admin" | "user"
    created_at: dt.datetime
    monthly_quota: int | None = None  # characters per calendar month (UTC); None = unlimited
    #: pronunciation dictionaries applied to the user's jobs and books that name none
    dictionaries: tuple[DictionaryRef, ...] = ()


class Usage(msgspec.Struct, frozen=True, kw_only=True):
    """One user's quota month (UTC): characters charged, and reserved by unfinished jobs."""

    period_start: str  # ISO date of the 1st of the month
    resets_at: str  # ISO timestamp
    limit: int | None  # None: unlimited
    used: int
    reserved: int
    jobs_charged: int

    @property
    def remaining(self) -> int | None:
        if self.limit is None:
            return None
        return max(0, self.limit - self.used - self.reserved)


class NewJob(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    owner: str
    text: str
    voice_id: str
    language: str | None
    output_format: str
    idempotency_key: str | None
    request_hash: str  # detects an idempotency key reused for a different request
    params: SpeechParams = NO_PARAMS
    cache_key: str = ""
    lane: Lane = Lane.interactive
    metadata: Metadata | None = None
    request_id: str | None = None  # the X-Request-ID of the request that created it

    #: the characters charged, when not the whole text (its SSML markup is not charged:
    #: ``protocols/domain/ssml.py``, set by the Intake)
    charged: int | None = None

    @property
    def characters(self) -> int:
        return len(self.text) if self.charged is None else self.charged


class Job(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    owner: str
    status: JobStatus
    text: str
    voice_id: str
    language: str | None
    output_format: str
    idempotency_key: str | None
    request_hash: str
    attempts: int
    characters: int
    error_code: str | None = None
    error_message: str | None = None
    audio_id: str | None = None
    created_at: dt.datetime
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    params: SpeechParams = NO_PARAMS
    cache_key: str = ""
    cached: bool = False  # answered from existing audio at submit, without a provider call
    request_ids: tuple[str, ...] = ()  # the provider's request ids (one per text part)
    character_cost: int | None = None  # what the provider said it charged
    lane: Lane = Lane.interactive
    metadata: Metadata | None = None
    #: the X-Request-ID of the HTTP request that created the job (not the provider's
    #: ``request_ids``)
    request_id: str | None = None

    def to_stream(
        self, submitted_at: float = 0.0, book_id: str = "", stream: bool = False
    ) -> SpeechJob:
        """The job as its stream entry carries it (``book_id``: the storybook it is a line of;
        ``stream``: its audio is followed as it is made)."""
        return SpeechJob(
            job_id=self.id,
            owner=self.owner,
            text=self.text,
            voice_id=self.voice_id,
            language=self.language,
            output_format=self.output_format,
            submitted_at=submitted_at,
            params=self.params,
            cache_key=self.cache_key,
            lane=self.lane,
            book_id=book_id,
            request_id=self.request_id or "",
            stream=stream,
        )


class NewAudio(msgspec.Struct, frozen=True, kw_only=True):
    owner: str
    cache_key: str
    format: str
    content_type: str
    duration_s: float
    size: int  # bytes
    path: str  # relative to the blob root
    request_ids: tuple[str, ...] = ()  # provider request ids, when newly generated
    character_cost: int | None = None
    charge: int = 0  # characters charged to the owner's quota (0: reused audio)
    #: when each character and word is heard (stored beside the audio row, by cache key)
    alignment: Alignment | None = None


class Audio(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    owner: str
    cache_key: str
    format: str
    content_type: str
    duration_s: float
    size: int
    path: str
    created_at: dt.datetime


# --- provider ------------------------------------------------------------------------------------


class VoiceInfo(msgspec.Struct, frozen=True, kw_only=True):
    voice_id: str
    name: str
    language: str  # BCP-47-ish primary language, e.g. "en", "ko"
    languages: tuple[str, ...] = ()
    provider: str = "espeak"
    category: str = "default"
    description: str = ""
    #: the voice's own default settings (a Chorus voice row's), merged under a job's at submit
    voice_settings: VoiceSettings | None = None


class SynthesisRequest(msgspec.Struct, frozen=True, kw_only=True):
    text: str
    voice_id: str
    language: str | None = None
    output_format: str = DEFAULT_FORMAT
    params: SpeechParams = NO_PARAMS
    #: a redelivery whose earlier attempt may have generated the audio since this unix time
    #: (the job's creation): a provider with a generation history looks there before paying
    #: again; the others ignore it
    previous_attempt_since: float | None = None


class WordTiming(msgspec.Struct, frozen=True, kw_only=True):
    """One spoken word of a clip: its text and when it is heard (seconds from the start)."""

    text: str
    start_s: float
    end_s: float


class Alignment(msgspec.Struct, frozen=True, kw_only=True):
    """When each character and word of a clip's text is heard, in ElevenLabs' shape
    (``/with-timestamps``): three parallel arrays over the characters, plus the words.
    Stored with the audio; served by ``GET /v1/jobs/{id}/alignment`` and the captions."""

    characters: tuple[str, ...] = ()
    character_start_times_seconds: tuple[float, ...] = ()
    character_end_times_seconds: tuple[float, ...] = ()
    words: tuple[WordTiming, ...] = ()


class SynthesisResult(msgspec.Struct, frozen=True, kw_only=True):
    audio: bytes
    content_type: str
    duration_s: float
    characters: int
    request_ids: tuple[str, ...] = ()
    character_cost: int | None = None  # credits the provider charged, if it says
    from_history: bool = False  # an earlier attempt's audio, found again: no call paid now
    #: when each character and word is heard (None: the engine did not say)
    alignment: Alignment | None = None


# --- dead letters --------------------------------------------------------------------------------


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of the dead-letter stream."""

    dead_id: str  # the entry id in the dead-letter stream
    job: SpeechJob
    reason: str
    deliveries: int
    original_entry_id: str
    dead_at: float


# --- voices --------------------------------------------------------------------------------------


class VoiceStatus(StrEnum):
    processing = "processing"
    completed = "completed"
    failed = "failed"


class Visibility(StrEnum):
    private = "private"  # the owner alone; to anyone else it does not exist
    public = "public"  # shared by its owner
    default = "default"  # the provider's own voices (no owner)


class NewVoice(msgspec.Struct, frozen=True, kw_only=True):
    """A voice to insert: a clone (``owner`` set) or a provider default (``owner`` None)."""

    id: str
    provider: str
    provider_voice_id: str
    owner: str | None
    name: str
    description: str = ""
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    language: str = ""
    languages: tuple[str, ...] = ()
    category: str = "cloned"
    status: VoiceStatus = VoiceStatus.processing
    status_reason: str | None = None
    visibility: Visibility = Visibility.private


class Voice(msgspec.Struct, frozen=True, kw_only=True):
    """A voice row (``protocols/postgres/migrations/0003_voices.sql``)."""

    id: str
    provider: str
    provider_voice_id: str
    owner: str | None
    name: str
    description: str
    labels: dict[str, str]
    language: str
    languages: tuple[str, ...]
    category: str
    status: VoiceStatus
    status_reason: str | None
    visibility: Visibility
    preview_audio_id: str | None
    preview_job_id: str | None  # the latest preview job asked for
    created_at: dt.datetime
    updated_at: dt.datetime
    #: defaults for jobs with this voice (``0006_voice_defaults.sql``); None: the provider's
    voice_settings: VoiceSettings | None = None
    preview_audio_job_id: str | None = None  # the job whose audio ``preview_audio_id`` is

    @property
    def preview_pending(self) -> bool:
        """A preview job was asked for and its audio is not linked yet (VoiceSync links it)."""
        return self.preview_job_id is not None and self.preview_job_id != self.preview_audio_job_id

    def visible_to(self, user_id: str) -> bool:
        return self.visibility is not Visibility.private or self.owner == user_id

    def info(self) -> VoiceInfo:
        """What a job sends to the provider."""
        return VoiceInfo(
            voice_id=self.provider_voice_id, name=self.name, language=self.language or "en",
            languages=self.languages, provider=self.provider, category=self.category,
            description=self.description, voice_settings=self.voice_settings,
        )


class CloneFile(msgspec.Struct, frozen=True, kw_only=True):
    """One audio sample of a clone upload."""

    filename: str
    content_type: str
    data: bytes


class ProviderVoiceState(msgspec.Struct, frozen=True, kw_only=True):
    """What the provider says about a cloned voice: ``ready | processing | failed``."""

    state: str
    reason: str | None = None


class TrackedVoice(msgspec.Struct, frozen=True, kw_only=True):
    """A voice VoiceSync watches (``protocols/redis/voice_queue.py``): next poll at ``due``,
    given up at ``deadline`` (unix seconds), ``attempts`` polls so far."""

    voice_id: str
    due: float
    deadline: float
    attempts: int = 0
    #: ``processing`` (polling the provider) or ``preview`` (waiting for the preview job)
    state: str = "processing"


class ApiKey(msgspec.Struct, frozen=True, kw_only=True):
    """One of a user's API keys, as listed (the key itself is shown once, when made)."""

    id: str
    owner: str
    label: str | None
    created_at: dt.datetime
    revoked_at: dt.datetime | None = None
