"""The Protocols actors and the web front depend on (docs/ARCHITECTURE.md, "The layers").
The composition root in ``run.py`` gives them the real adapters (``protocols/redis/``,
``protocols/postgres/``, ``protocols/blobs/``, ``protocols/providers/``); unit tests use the
in-memory fakes in ``tests/support/fakes.py``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from protocols.dictionaries import (
    Dictionary,
    DictionaryVersion,
    NewDictionary,
    NewVersion,
    Rule,
)
from protocols.errors import ChorusError
from protocols.events import Event
from protocols.messages import (
    Alignment,
    ApiKey,
    Audio,
    CloneFile,
    DeadLetter,
    Delivery,
    DictionaryRef,
    Job,
    JobStatus,
    Lane,
    NewAudio,
    NewJob,
    NewVoice,
    ProviderVoiceState,
    SpeechJob,
    SpeechParams,
    SynthesisRequest,
    SynthesisResult,
    TrackedVoice,
    Usage,
    User,
    Voice,
    VoiceInfo,
    VoiceStatus,
)
from protocols.redis.keys import Keys
from protocols.storybooks import Line, NewStorybook, RetryRound, Storybook


class JobStore(Protocol):
    """Postgres: users, jobs, audio. Raises ``StoreUnavailable`` when the database is away."""

    async def ping(self) -> None: ...

    # users
    async def count_users(self) -> int: ...
    async def create_user(self, name: str, *, admin: bool = False) -> tuple[User, str]:
        """Create a user; returns it with its new API key (only the hash is stored)."""
        ...
    async def authenticate(self, api_key: str) -> User | None: ...
    async def list_users(self) -> list[User]: ...
    async def set_quota(self, name: str, quota: int | None) -> User: ...
    async def usage(self, owner: str) -> Usage: ...

    # jobs
    async def create_job(
        self, job: NewJob, *, quota: int | None = None, cached: Audio | None = None,
        durable: bool = True,
    ) -> tuple[Job, bool]:
        """Insert, or return the owner's existing job with the same idempotency key
        (``created`` False). Raises ``IdempotencyConflict`` if that job's request differs.
        ``cached``: existing audio with the job's cache key; the job is created succeeded
        pointing at it (nothing charged). Else with a ``quota`` (characters a month) the job
        must fit: used + reserved by unfinished jobs + its own, or ``QuotaExceeded``.
        ``durable`` False, for a hit on the owner's own audio only: the row may be committed
        without waiting for the database's log flush (a history record of an answer that
        carries the audio itself; docs/ARCHITECTURE.md, "What a request costs")."""
        ...
    async def discard_job(self, job_id: str) -> bool:
        """Delete a job whose enqueue failed, unless a worker already started it (its XADD did
        land after all): True if it is gone, False if it exists and will run."""
        ...
    async def get_job(self, job_id: str, owner: str | None = None) -> Job | None:
        """``owner`` given: another user's job is None (never leaks existence)."""
        ...
    async def list_jobs(
        self, owner: str, *, status: JobStatus | None = None,
        created_after: dt.datetime | None = None,
        before: tuple[dt.datetime, str] | None = None, limit: int = 50,
    ) -> list[Job]:
        """The owner's jobs, newest first; ``before``: the (created_at, id) of the previous
        page's last job (a keyset cursor)."""
        ...

    async def start_job(self, job_id: str) -> Job | None:
        """Compare-and-set queued|running -> running, attempts + 1, started_at set once.
        Returns the job as it now is (a terminal job is returned unchanged), None if unknown."""
        ...
    async def start_job_cached(
        self, job_id: str, cache_key: str
    ) -> tuple[Job | None, Audio | None]:
        """``start_job`` and, in the same round trip, the owner's audio with ``cache_key``
        (only looked up when the job was started)."""
        ...
    async def start_jobs_cached(
        self, items: Sequence[tuple[str, str]]
    ) -> list[tuple[Job | None, Audio | None]]:
        """``start_job_cached`` for each (job id, cache key), in one round trip and one
        transaction; results in order."""
        ...
    async def finish_job(self, job_id: str, audio: NewAudio) -> Job:
        """In one transaction: upsert the audio row (unique per owner and cache key) and
        compare-and-set the job running -> succeeded pointing at it. Idempotent."""
        ...
    async def finish_jobs(
        self, items: Sequence[tuple[str, NewAudio]]
    ) -> list[Job | ChorusError]:
        """``finish_job`` for each (job id, audio), in one transaction when all succeed;
        the result (or the typed error) of each, in order. Never raises a ``ChorusError``."""
        ...
    async def fail_job(
        self, job_id: str, code: str, message: str, *, status: JobStatus = JobStatus.failed
    ) -> Job | None:
        """Compare-and-set a non-terminal job to failed (or dead) with the typed error."""
        ...
    async def note_error(self, job_id: str, code: str, message: str) -> None:
        """Record the last error of a job that will be retried (status unchanged)."""
        ...
    async def requeue_job(self, job_id: str) -> Job | None:
        """dead|failed -> queued (dead-letter redrive)."""
        ...
    async def orphan_candidates(
        self, min_age_s: float, max_age_s: float, limit: int = 500
    ) -> list[str]:
        """Ids of never-started jobs queued for between ``min_age_s`` and ``max_age_s``."""
        ...

    # audio
    async def find_audio(self, owner: str, cache_key: str) -> Audio | None:
        """Audio with this cache key: the owner's own row first, else another owner's (the
        file is shared; each owner gets a row of their own when a job links to it)."""
        ...
    async def get_audio(self, audio_id: str, owner: str | None = None) -> Audio | None: ...
    async def get_audios(self, audio_ids: Sequence[str], owner: str) -> list[Audio]:
        """The owner's audio rows among ``audio_ids``, in one round trip (order not kept)."""
        ...
    async def alignment_of(self, audio: Audio) -> Alignment | None:
        """The character and word timings stored with ``audio`` (None: none were)."""
        ...


class StorybookStore(Protocol):
    """Storybooks, their lines and retry rounds in Postgres (``protocols/postgres/storybooks.py``).
    With an ``owner``, another user's book is None: it does not exist for them. Every write is a
    compare-and-set, so a repeated call (a redelivered event, a runner restarted half-way) has
    no second effect."""

    async def create_storybook(
        self, book: NewStorybook, *, quota: int | None = None
    ) -> tuple[Storybook, bool]:
        """Insert the book and its lines (all ``pending``, round 0), or return the owner's book
        with the same idempotency key (``created`` False; ``IdempotencyConflict`` if its request
        hash differs). With a ``quota``: used + reserved (unfinished jobs, and pending lines of
        unfinished books) + the whole book must fit, else ``QuotaExceeded`` (all or nothing)."""
        ...
    async def get_storybook(self, book_id: str, owner: str | None = None) -> Storybook | None: ...
    async def list_storybooks(
        self, owner: str, *, before: str | None = None, limit: int = 50
    ) -> list[Storybook]:
        """The owner's books, newest first, with ids below ``before`` (cursor pagination)."""
        ...
    async def storybook_lines(self, book_id: str) -> list[Line]:
        """Every line in reading order, with ``audio_id`` / ``duration_s`` of succeeded ones."""
        ...
    async def retry_rounds(self, book_id: str) -> list[RetryRound]: ...

    # the runner
    async def active_storybooks(self, limit: int = 100) -> list[Storybook]:
        """Books not ended (queued or running), oldest first."""
        ...
    async def pending_lines(self, book_id: str, limit: int) -> list[Line]:
        """The book's next ``pending`` lines in reading order."""
        ...
    async def line_counts(self, book_id: str) -> dict[str, int]:
        """Lines by status (every ``LineStatus`` present, zeros included)."""
        ...
    async def line_submitted(self, line_id: str, round: int, job: Job) -> Line | None:
        """A pending line of ``round`` now has ``job``: status follows the job (queued, or
        already ended when answered from the cache), ``attempts`` + 1. None if the line is no
        longer pending in that round (a repeat)."""
        ...
    async def fail_line(
        self, line_id: str, round: int, code: str, message: str
    ) -> Line | None:
        """A pending line of ``round`` that cannot become a job (its voice was deleted since
        the book was accepted, ...): failed with the typed error, its reserved characters
        freed. None if the line is no longer pending in that round."""
        ...
    async def sync_lines(
        self, *, book_id: str | None = None, job_ids: Sequence[str] = ()
    ) -> list[Line]:
        """Bring queued/running lines (of ``book_id``, or whose job is in ``job_ids``) up to
        their job: running, succeeded (audio id, duration), failed (the job's error), cancelled.
        One statement; returns the lines that changed."""
        ...
    async def finish_storybook(self, book_id: str) -> Storybook | None:
        """If every line has ended and the book has not: its final status (``cancelled`` when
        cancel was asked, else succeeded / partial / failed), ``finished_at``, and the open
        retry round's outcome counts. Returns the book if this call ended it, else None."""
        ...
    async def mark_running(self, book_id: str) -> None:
        """queued -> running (the first line started)."""
        ...
    async def start_round(
        self, book_id: str, owner: str, *, line_ids: Sequence[str] | None, force: bool,
        permanent: frozenset[str], quota: int | None = None,
    ) -> RetryRound:
        """A new retry round: the chosen lines (``line_ids``, else every failed one) go back to
        ``pending`` in round n+1, skipping lines whose error code is in ``permanent`` unless
        ``force``. The book is running again and its assembled audio forgotten. With a
        ``quota``, the round's characters must fit as a job's would (``QuotaExceeded``). Raises
        ``NotFound``, ``RoundRunning`` (book not ended), ``InvalidInput`` (unknown or succeeded
        line ids, or nothing to retry)."""
        ...
    async def cancel_storybook(self, book_id: str, owner: str) -> Storybook | None:
        """Ask the book to stop: pending lines and lines whose job is still queued are cancelled
        (those jobs too, so they are never generated nor charged); running lines finish. None if
        not the owner's; ``NotCancellable`` if the book has ended."""
        ...
    async def set_storybook_audio(self, book_id: str, path: str) -> None: ...
    async def cancel_job(self, job_id: str, owner: str | None = None) -> Job | None:
        """Compare-and-set queued -> cancelled (its quota reservation is freed). Returns the job
        as it now is (unchanged if it had started or ended), None if unknown or not the owner's."""
        ...


class BookStore(JobStore, StorybookStore, Protocol):
    """The one Postgres store seen as both ports: what the storybook actors need (a book's
    lines and their jobs' audio)."""


class BlobStore(Protocol):
    """Content-addressed audio files under the data dir, written atomically."""

    async def put(self, key: str, ext: str, data: bytes) -> str:
        """Store ``data`` under ``key`` (idempotent); returns the relative path."""
        ...
    async def put_many(
        self, items: Sequence[tuple[str, str, bytes]]
    ) -> list[str | ChorusError]:
        """``put`` for each (key, ext, data), sharing one worker thread and the disk flushes;
        the path (or the typed error) of each, in order."""
        ...
    async def get(self, path: str) -> bytes: ...
    async def exists(self, path: str) -> bool: ...


class SpeechProvider(Protocol):
    name: str
    #: calls draw on one metered account shared by every worker process: they go through the
    #: global Redis semaphore (``CHORUS_PROVIDER_CONCURRENCY``)
    shared_account: bool

    def formats(self) -> frozenset[str]:
        """Output formats (ElevenLabs names) this provider can produce."""
        ...
    async def voices(self) -> Sequence[VoiceInfo]: ...
    async def resolve_voice(self, voice_id: str | None, language: str | None) -> VoiceInfo:
        """The voice a job will use: ``voice_id`` if this provider has it, else the default
        voice for ``language`` (or the provider default). Raises ``UnknownVoice``."""
        ...
    async def prepare(
        self,
        text: str,
        voice: VoiceInfo,
        language: str | None,
        params: SpeechParams,
        preference: str | None = None,
    ) -> SpeechParams:
        """Settle a job's parameters at submit, so its cache key is known: the model (an
        explicit ``model_id`` wins, else chosen by language, length and preference) and
        dictionaries pinned to a version. Raises ``InvalidInput`` / ``UnsupportedLanguage``."""
        ...
    async def remaining_characters(self) -> int | None:
        """Characters the provider account has left (cached); None: unlimited or unknown."""
        ...
    async def synthesize(self, request: SynthesisRequest) -> SynthesisResult:
        """Raises ``UnknownVoice``, ``ProviderUnavailable`` (retryable) or ``ProviderError``.
        With ``request.previous_attempt_since`` (a redelivery) a provider that keeps a history
        of its generations returns an earlier attempt's audio from there when it finds it
        (``from_history``) instead of paying again; the others generate as always."""
        ...
    @property
    def account(self) -> str:
        """Names the account calls draw on (the global semaphore's key): the provider and a
        hash of its credential, never the credential itself."""
        ...
    def voice_manager(self) -> VoiceManager:
        """Voice management at this provider (cloning, readiness, its default voices)."""
        ...
    def dictionary_mirror(self) -> DictionaryMirror | None:
        """Where Chorus's pronunciation dictionaries are also kept at this provider, so its own
        locators can be sent (ElevenLabs); None: the rules are applied here, to the text."""
        ...
    def use_lexicon(self, lexicon: Lexicon) -> None:
        """Where ``synthesize`` reads the rules of the Chorus dictionary versions a job is
        pinned to (the composition root gives it; without one such a job fails)."""
        ...


class JobQueue(Protocol):
    """The Redis Streams side of the job queue (``protocols/redis/queue.py``).

    Every write is idempotent: a cancelled call has an unknown outcome and may be repeated.
    """

    keys: Keys

    async def ensure_group(self) -> None: ...
    async def enqueue(self, jobs: Sequence[SpeechJob]) -> None:
        """XADD each job once (idempotent by job id)."""
        ...
    async def read_new(
        self, consumer: str, count: int, block_ms: int, *, lanes: Sequence[Lane] | None = None
    ) -> list[Delivery]:
        """Up to ``count`` new entries of ``lanes`` (default: both), interactive first."""
        ...
    async def decode(self, entries: Sequence[tuple[str, dict[bytes, bytes]]]) -> list[Delivery]:
        """Deliveries from (entry id, fields) read by a locking read (first deliveries);
        undecodable entries are dead-lettered."""
        ...
    async def own_pending(self, consumer: str, count: int) -> list[tuple[str, int]]:
        """(entry id, deliveries) pending for this consumer, oldest first."""
        ...
    async def claim(self, consumer: str, entry_ids: Sequence[str]) -> list[Delivery]:
        """Take entries (counts a delivery); deleted entries are dropped from the PEL."""
        ...
    async def autoclaim(
        self, consumer: str, min_idle_ms: int, cursor: str, count: int
    ) -> tuple[str, list[Delivery]]: ...
    async def renew(self, consumer: str, entry_ids: Sequence[str]) -> None:
        """Reset idle time of running entries (XCLAIM 0 JUSTID, no delivery counted)."""
        ...
    async def release(
        self, consumer: str, entry_ids: Sequence[str], idle_ms: int,
        retry_count: int | None = None,
    ) -> None:
        """Make entries claimable by anyone after (lease - idle) (XCLAIM IDLE); with
        ``retry_count``, their delivery count is set to it (XCLAIM RETRYCOUNT)."""
        ...
    async def ack(self, entry_ids: Sequence[str]) -> None:
        """XACK + XDEL in one MULTI."""
        ...
    async def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """XADD to the dead-letter stream, then XACK + XDEL."""
        ...
    async def enqueued(self, job_ids: Sequence[str]) -> set[str]:
        """The jobs among ``job_ids`` whose XADD happened (enqueue marker present)."""
        ...
    async def dead_letters(self, count: int = 100) -> list[DeadLetter]: ...
    async def remove_dead_letter(self, dead_id: str) -> None: ...
    async def pending_count(self) -> int: ...
    async def ping(self) -> None: ...


QueueFactory = Callable[[], AbstractAsyncContextManager[JobQueue]]


class EventSink(Protocol):
    """Where actors and the web front publish events (``actors/events/publisher.py``).

    ``publish`` never blocks and never raises: the job path must not depend on the event bus."""

    def publish(self, event: Event) -> None: ...


class EventLog(Protocol):
    """Reading a stream of events (``protocols/redis/event_bus.py``): what SSE streams are
    made of."""

    def owner_stream(self, owner: str) -> str: ...
    async def tail(self, stream: str) -> str: ...
    async def read(
        self, stream: str, after: str, *, count: int = 100, block_ms: int | None = None
    ) -> list[Event]: ...


class VoiceStore(Protocol):
    """Voices in Postgres (``protocols/postgres/voices.py``). With a ``viewer``, another user's
    private voice is None: it does not exist for them."""

    async def upsert_default_voices(self, provider: str, voices: Sequence[VoiceInfo]) -> int: ...
    async def count_default_voices(self, provider: str) -> int: ...
    async def create_voice(self, voice: NewVoice) -> Voice: ...
    async def get_voice(self, voice_id: str, viewer: str | None = None) -> Voice | None: ...
    async def voice_by_provider_id(
        self, provider: str, provider_voice_id: str
    ) -> Voice | None: ...
    async def list_voices(
        self, viewer: str, provider: str, *, visibility: str | None = None,
        language: str | None = None, status: str | None = None, search: str | None = None,
        after: str | None = None, limit: int = 100,
    ) -> list[Voice]:
        """Visible voices ordered by id, after the id ``after`` (cursor pagination)."""
        ...
    async def update_voice(self, voice_id: str, owner: str, **changes: object) -> Voice | None:
        """name, description, labels, visibility, voice_settings of the owner's voice (None:
        not theirs). ``voice_settings=VoiceSettings()`` clears the voice's defaults."""
        ...
    async def delete_voice(self, voice_id: str, owner: str) -> Voice | None: ...
    async def settle_voice(
        self, voice_id: str, status: VoiceStatus, reason: str | None = None, *,
        preview_job_id: str | None = None,
    ) -> Voice | None:
        """Compare-and-set processing -> completed | failed; returns the voice as it is."""
        ...
    async def set_voice_preview(
        self, voice_id: str, audio_id: str, *, job_id: str | None = None
    ) -> Voice | None:
        """Link the audio of preview job ``job_id`` (None: the latest asked for) unless a newer
        preview job was asked for since; returns the voice as it is."""
        ...
    async def set_preview_job(self, voice_id: str, job_id: str) -> Voice | None:
        """A preview was asked for again: ``job_id`` is now the latest (the preview the voice
        has stays until that job's audio is linked)."""
        ...
    async def drop_preview_job(self, voice_id: str, job_id: str) -> Voice | None:
        """Preview job ``job_id`` ended without audio: forgotten if still the latest."""
        ...
    async def tracked_voices(self, provider: str) -> list[Voice]:
        """Clones processing, and voices whose latest preview job has not been linked."""
        ...


class VoiceManager(Protocol):
    """Voice management at the provider (``protocols/providers/*_voices.py``)."""

    provider: str

    async def check_can_clone(self) -> None:
        """Raises ``NotSupported``, ``CloningNotAllowed`` or ``VoiceLimitReached``."""
        ...
    async def clone(
        self, name: str, description: str, labels: dict[str, str], files: Sequence[CloneFile]
    ) -> tuple[str, bool]:
        """Instant voice cloning: (provider voice id, requires verification)."""
        ...
    async def voice_state(self, provider_voice_id: str) -> ProviderVoiceState:
        """ready | processing | failed (with the reason). Raises ``UnknownVoice`` if gone."""
        ...
    async def delete(self, provider_voice_id: str) -> None:
        """Remove the voice at the provider (already gone is fine)."""
        ...
    async def edit(
        self, provider_voice_id: str, *, name: str, description: str, labels: dict[str, str]
    ) -> None:
        """Set a clone's name, description and labels at the provider (all three, as they are
        to be). Raises a ``ProviderError`` when the provider did not take them."""
        ...
    async def default_voices(self) -> Sequence[VoiceInfo]:
        """The provider's own voices (every page)."""
        ...


class VoiceSyncQueue(Protocol):
    """VoiceSync's schedule (``protocols/redis/voice_queue.py``): voice ids by next poll time, each
    with its status (deadline, poll count, state), which expires a margin after the deadline.
    Postgres stays the truth; this is rebuilt from it."""

    async def track(
        self, voice_id: str, due: float, deadline: float, state: str = "processing"
    ) -> None:
        """Schedule a voice (kept as it is if already tracked)."""
        ...
    async def due(self, now: float, count: int) -> list[TrackedVoice]:
        """Voices due by ``now`` (an entry whose status expired is dropped, not returned)."""
        ...
    async def status(self, voice_id: str) -> TrackedVoice | None: ...
    async def reschedule(
        self, voice_id: str, due: float, attempts: int, state: str | None = None
    ) -> None:
        """Next poll at ``due``; the deadline is kept, ``state`` too unless given."""
        ...
    async def done(self, voice_id: str) -> None: ...
    async def tracked(self) -> list[TrackedVoice]: ...


class DictionaryStore(Protocol):
    """Pronunciation dictionaries in Postgres (``protocols/postgres/dictionaries.py``). With a
    ``viewer``, another user's private dictionary is None, as is a deleted one."""

    async def create_dictionary(self, new: NewDictionary, *, limit: int) -> Dictionary:
        """Insert it with its first version. ``DictionaryLimitReached`` when the owner already
        has ``limit`` dictionaries."""
        ...
    async def get_dictionary(
        self, dictionary_id: str, viewer: str | None = None, *, rules: bool = False
    ) -> Dictionary | None:
        """The live dictionary (``rules``: with its current version's rules)."""
        ...
    async def list_dictionaries(
        self, viewer: str, *, after: str | None = None, limit: int = 100
    ) -> list[Dictionary]:
        """The viewer's own and the public ones, by id, after the id ``after``."""
        ...
    async def add_dictionary_version(self, new: NewVersion) -> Dictionary | None:
        """Compare-and-set: the new version becomes current if ``new.based_on`` still is
        (and the dictionary is the owner's, not deleted); else None and nothing is written."""
        ...
    async def delete_dictionary(self, dictionary_id: str, owner: str) -> Dictionary | None:
        """Gone for new requests (and out of every user's defaults); versions stay readable."""
        ...
    async def dictionary_version(
        self, dictionary_id: str, version_id: str
    ) -> DictionaryVersion | None:
        """A version, even of a dictionary deleted since (no visibility: for pinned jobs)."""
        ...
    async def resolve_dictionaries(
        self, refs: Sequence[tuple[str, str | None]], viewer: str
    ) -> list[tuple[bool, str | None]]:
        """Per (id, version or None): whether the viewer has the dictionary, and the version
        to pin (the asked one if it is the dictionary's; the current one when none asked)."""
        ...
    async def set_user_dictionaries(self, user_id: str, refs: Sequence[DictionaryRef]) -> None:
        ...


class DictionaryMirror(Protocol):
    """A provider's own pronunciation dictionaries, where Chorus keeps a copy of each of its
    own (``protocols/providers/elevenlabs/dictionaries.py``). Raises the provider's typed
    errors."""

    provider: str

    async def create(
        self, name: str, description: str, rules: Sequence[Rule]
    ) -> tuple[str, str]:
        """A new dictionary there: (its id, its first version id)."""
        ...
    async def add_rules(self, dictionary_id: str, rules: Sequence[Rule]) -> str:
        """Its new version id (rules for a string it has replace the old ones)."""
        ...
    async def remove_rules(self, dictionary_id: str, strings: Sequence[str]) -> str:
        """Its new version id."""
        ...
    async def archive(self, dictionary_id: str) -> None: ...


class Lexicon(Protocol):
    """The rules of pinned dictionary versions, for the providers (``DictionaryCatalog``)."""

    async def version(self, ref: DictionaryRef) -> DictionaryVersion:
        """Raises ``DictionaryNotFound`` for a version that does not exist."""
        ...


class AccountStore(Protocol):
    """Users by id or name, their API keys (several each; shown once, when made; only a hash
    kept) and the server's shared secrets (``protocols/postgres/accounts.py``)."""

    async def get_user(self, user_id: str) -> User | None: ...
    async def user_by_name(self, name: str) -> User | None: ...
    async def list_api_keys(self, owner: str) -> list[ApiKey]: ...
    async def create_api_key(self, owner: str, label: str | None = None) -> tuple[ApiKey, str]:
        """(its row, the key); ``NotFound`` if no such user."""
    async def revoke_api_key(self, key_id: str) -> ApiKey | None: ...
    async def rotate_api_key(self, key_id: str) -> tuple[ApiKey, ApiKey, str] | None:
        """Revoke a live key and make its successor: (old, new, the new key)."""
    async def server_secret(self, name: str) -> bytes:
        """A 32-byte secret shared by every host, made once and kept."""
