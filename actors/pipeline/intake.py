"""Intake: submitting a job, the same for every front (HTTP, the bench, storybooks next).

From a transport-neutral ``JobRequest`` and the user to an accepted job: the text normalized and
within limits, the format offered, the language admitted (``CHORUS_SUPPORTED_LANGUAGES``), the
voice resolved (``VoiceCatalog``; its default settings under the request's), its pronunciation
dictionaries pinned to a version (``DictionaryCatalog``), the provider's parameters settled and
the cache key known. A job is accepted only once it is durable twice:
its row in Postgres (``store.create_job``, where the quota is checked) and its entry in the Redis
stream (``enqueue``, the Producer's mailbox). If the stream cannot take it, the row is discarded
and the error propagates (HTTP answers 503 with ``Retry-After``): nothing half-accepted remains.
A request whose audio already exists is answered from the cache: the job is created succeeded,
the provider is not touched and nothing is charged. ``submit_in_order`` accepts several jobs at
once and enqueues them in their order (the StorybookRunner's lines).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence

import msgspec
import trio

from protocols import tracing
from protocols.dictionaries import is_chorus_dictionary
from protocols.domain.cachekey import scoped_cache_key
from protocols.domain.dictionaries import DictionaryCatalog
from protocols.domain.dictionaries import not_found as dictionary_not_found
from protocols.domain.jobs import new_job_id, request_hash
from protocols.domain.languages import check_language
from protocols.domain.ssml import charged_characters, spoken_text
from protocols.domain.text import normalize_text, speakable
from protocols.domain.voices import VoiceCatalog, job_settings
from protocols.errors import (
    ChorusError,
    EnqueueFailed,
    InvalidInput,
    ProviderQuotaExhausted,
    QueueFull,
    QueueUnavailable,
    StoreUnavailable,
    TextEmpty,
    TextTooLong,
    UnsupportedFormat,
)
from protocols.events import NO_EVENTS, EventKind, job_event
from protocols.messages import (
    DEFAULT_FORMAT,
    Audio,
    DictionaryRef,
    Job,
    JobRequest,
    JobStatus,
    Lane,
    NewJob,
    SpeechJob,
    SpeechParams,
    User,
    VoiceInfo,
)
from protocols.metrics import instruments as metrics
from protocols.ports import BlobStore, EventSink, JobStore, SpeechProvider
from protocols.settings import Settings

log = logging.getLogger("chorus.intake")

#: ``VoiceCatalog.for_job``: (voice id, language, viewer) -> the voice a job speaks with
VoiceLookup = Callable[[str | None, str | None, str], Awaitable[VoiceInfo]]

#: a clip found for a cache key (its row, its file) is trusted this long (``_find_clip``)
HIT_TTL_S = 10.0
HIT_CACHE_MAX = 10_000

#: a submit that failed with one of these may be accepted if tried again (the queue or the
#: database is away): ``submit_in_order`` enqueues nothing after it
NOT_NOW = (QueueFull, QueueUnavailable, StoreUnavailable)


def _no_count(name: str) -> None:
    return None


class Intake:
    """One per process (the Service builds it): every job enters through ``submit``."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: JobStore,
        blobs: BlobStore,
        provider: SpeechProvider,
        voices: VoiceCatalog,
        enqueue: Callable[[SpeechJob], Awaitable[None]],
        events: EventSink = NO_EVENTS,
        count: Callable[[str], None] = _no_count,
        dictionaries: DictionaryCatalog | None = None,
    ) -> None:
        self.settings = settings
        self.store, self.blobs, self.provider, self.voices = store, blobs, provider, voices
        #: pronunciation dictionaries (visibility, pinning, the owner's defaults)
        self.dictionaries = dictionaries
        #: hand the job to the Producer; returns once it is durable in Redis. Raises
        #: ``QueueFull`` (channel full past the deadline) or ``QueueUnavailable``.
        self._enqueue = enqueue
        self._events = events
        #: add one to a shared counter (cache hits and misses); best effort, no waiting
        self._count = count
        # create_job + enqueue, each with its own deadline inside; this bounds the whole
        s = settings
        self._bound = 2 * s.db_timeout_s + s.submit_timeout_s + s.redis_timeout_s
        #: (owner, cache key) -> (until when, on trio's clock; the clip): see ``_find_clip``
        self._clips: dict[tuple[str, str], tuple[float, Audio]] = {}

    async def submit(
        self, request: JobRequest, user: User, *, lane: Lane = Lane.interactive,
        quota: bool = True, book_id: str = "", with_audio: bool = False,
    ) -> tuple[Job, bool]:
        """The accepted job, and whether this call created it (False: an idempotent repeat
        of ``request.idempotency_key``, answered with the job as it is now). Raises the typed
        error of a request that cannot be accepted (nothing is then left behind).
        ``lane``: the stream it waits in; ``quota`` False: the characters were already
        reserved (a storybook line, checked with its whole book); ``book_id``: the storybook
        it is a line of (its stream entry names it: ``SpeechJob.book_id``); ``with_audio``: the
        caller answers with the clip itself (a compatible convert), so a cache hit's job row is
        a history record, committed without waiting for the log flush (``create_job``'s
        ``durable``; docs/ARCHITECTURE.md). A job answered by its id is always durable."""
        return await self._submit(request, user, lane=lane, quota=quota, book_id=book_id,
                                  with_audio=with_audio)

    async def submit_in_order(
        self, requests: Sequence[JobRequest], user: User, *, lane: Lane = Lane.interactive,
        quota: bool = True, book_id: str = "",
    ) -> list[tuple[Job, bool] | ChorusError]:
        """``submit`` for several requests of one user at once, each job enqueued after the
        one before it, so the stream holds them in the given order (a storybook's lines, in
        reading order) while their checks, cache look-ups and rows go together (the store
        coalesces concurrent ones). A job after one that could not be accepted now
        (``NOT_NOW``) is not enqueued either (``QueueUnavailable``): none gets ahead of an
        earlier one. Returns, per request, its job and whether this call created it, or the
        typed error it met."""
        results: list[tuple[Job, bool] | ChorusError | None] = [None] * len(requests)
        #: ended[i]: request i and every one before it have ended (enqueued or not)
        ended = [trio.Event() for _ in requests]
        voice_for = _SharedLookups(self.voices.for_job)  # a book's lines share a few voices

        async def one(i: int) -> None:
            async def turn() -> None:  # just before the enqueue
                if i == 0:
                    return
                await ended[i - 1].wait()
                if any(isinstance(before, NOT_NOW) for before in results[:i]):
                    raise QueueUnavailable("an earlier job of the batch was not enqueued")

            try:
                results[i] = await self._submit(
                    requests[i], user, lane=lane, quota=quota, book_id=book_id, turn=turn,
                    voice_for=voice_for,
                )
            except ChorusError as exc:
                results[i] = exc
            if i:
                await ended[i - 1].wait()
            ended[i].set()

        async with trio.open_nursery() as nursery:
            for i in range(len(requests)):
                nursery.start_soon(one, i)
        done: list[tuple[Job, bool] | ChorusError] = []
        for result in results:
            assert result is not None  # each one ended with its job or its error
            done.append(result)
        return done

    async def _submit(
        self, request: JobRequest, user: User, *, lane: Lane, quota: bool, book_id: str,
        turn: Callable[[], Awaitable[None]] | None = None, voice_for: VoiceLookup | None = None,
        with_audio: bool = False,
    ) -> tuple[Job, bool]:
        new = await self._settle(
            request, user.id, lane=lane, defaults=user.dictionaries,
            voice_for=voice_for or self.voices.for_job,
        )
        job, created = await self._accept(user, new, quota=quota, book_id=book_id, turn=turn,
                                          stream=request.stream, with_audio=with_audio)
        if created:  # the seed's TTS_CREATION: a job was accepted
            self._events.publish(job_event(
                EventKind.tts_creation, job.id, job.owner, voice_id=job.voice_id,
                characters=job.characters, lane=job.lane.value,
            ))
        if created and job.status is JobStatus.queued:  # durable in the stream: announce it
            metrics.job_transition("queued")
            self._events.publish(job_event(EventKind.job_queued, job.id, job.owner))
        elif created and job.cached:  # answered from the cache: already final
            metrics.job_transition("succeeded")
            self._events.publish(job_event(
                EventKind.job_succeeded, job.id, job.owner, audio_id=job.audio_id, cached=True
            ))
        if not created:
            log.debug("idempotent repeat of %s (%s)", job.id, job.status)
        return job, created

    async def settle(
        self, request: JobRequest, owner: str, *, lane: Lane = Lane.interactive,
        defaults: Sequence[DictionaryRef] = (),
    ) -> NewJob:
        """The request as a job of ``owner``, with its parameters settled and its cache key
        known; ``defaults``: the owner's pronunciation dictionaries, applied when the request
        names none. Raises ``TextEmpty``, ``TextTooLong``, ``UnsupportedFormat``,
        ``UnknownVoice``, ``VoiceNotReady``, ``DictionaryNotFound``, ``InvalidInput`` or
        ``UnsupportedLanguage`` (also for a language outside ``CHORUS_SUPPORTED_LANGUAGES``)."""
        return await self._settle(
            request, owner, lane=lane, defaults=defaults, voice_for=self.voices.for_job
        )

    async def _settle(
        self, request: JobRequest, owner: str, *, lane: Lane, defaults: Sequence[DictionaryRef],
        voice_for: VoiceLookup,
    ) -> NewJob:
        check_metadata(request.metadata, self.settings.max_metadata_bytes)
        limit = self.settings.max_text_chars
        text = normalize_text(request.text)
        # its SSML breaks and phoneme hints must parse (InvalidMarkup); markup is not speech
        if not speakable(spoken_text(text)):  # empty, or only zero-width / format characters
            raise TextEmpty("text must contain something to say.")
        if len(text) > limit:
            raise TextTooLong(
                f"text has {len(text)} characters; the limit is {limit}.",
                limit=limit, characters=len(text),
            )
        fmt = request.output_format or DEFAULT_FORMAT
        formats = self.provider.formats()
        if fmt not in formats:
            raise UnsupportedFormat(
                f"output_format {fmt!r} is not supported.", supported=sorted(formats)
            )
        language = (request.language or "").strip() or None
        check_language(language, self.settings.supported_languages)
        voice = await voice_for(request.voice_id, language, owner)  # visibility
        asked = SpeechParams(
            model_id=request.model_id or "",
            # the voice's defaults under what the request gives: part of the cache key
            voice_settings=job_settings(request.voice_settings, voice.voice_settings),
            seed=request.seed,
            dictionaries=await self.pronunciation(
                request.pronunciation_dictionary_locators, owner, defaults
            ),
        )
        params = await self.provider.prepare(text, voice, language, asked, request.preference)
        return NewJob(
            id=new_job_id(),
            owner=owner,
            text=text,
            voice_id=voice.voice_id,
            language=language,
            output_format=fmt,
            idempotency_key=request.idempotency_key,
            request_hash=request_hash(text, request.voice_id, language, fmt, request),
            params=params,
            cache_key=scoped_cache_key(
                owner=owner, scope=self.settings.cache_scope, provider=self.provider.name,
                text=text, voice_id=voice.voice_id, language=language, output_format=fmt,
                params=params,
            ),
            lane=lane,
            metadata=request.metadata,
            request_id=tracing.request_id() or None,  # the X-Request-ID being served
            charged=charged_characters(text),
        )

    async def pronunciation(
        self, asked: Sequence[DictionaryRef] | None, owner: str,
        defaults: Sequence[DictionaryRef] = (),
    ) -> tuple[DictionaryRef, ...]:
        """The dictionaries a job applies: Chorus's pinned to a version here, so the cache key
        holds it; the provider's own passed to ``prepare``."""
        return await pin_dictionaries(self.dictionaries, asked, owner, defaults)

    async def _accept(
        self, user: User, new: NewJob, *, quota: bool, book_id: str = "",
        turn: Callable[[], Awaitable[None]] | None = None, stream: bool = False,
        with_audio: bool = False,
    ) -> tuple[Job, bool]:
        """create_job + enqueue, shielded: a submit cancelled half-way (client gone, server
        stopping) never leaves a job that is in the database but not in the stream. ``turn``:
        awaited just before the enqueue (``submit_in_order``); what it raises fails the
        submit as an enqueue would."""
        if (hit := await self._from_cache(new, durable=not with_audio)) is not None:
            return hit
        await self._check_account(new)
        store = self.store
        with trio.CancelScope(shield=True, deadline=trio.current_time() + self._bound):
            job, created = await store.create_job(
                new, quota=user.monthly_quota if quota else None
            )
            if job.error_code == EnqueueFailed.code and job.status is JobStatus.failed:
                # an idempotent retry of a submit that never reached the queue: this time it may
                job = await store.requeue_job(job.id) or job
            if job.status.terminal:
                return job, created
            try:
                if turn is not None:
                    await turn()
                await self._enqueue(job.to_stream(time.time(), book_id, stream))
            except Exception:  # QueueFull / QueueUnavailable -> 503; anything else -> 500
                if created and not await self._discard(job.id):
                    started = await store.get_job(job.id)
                    if started is not None:
                        return started, created  # it is running: accepted, not a 503
                raise
            return job, created
        # only reached when the bound expired: outcome unknown, undo what may have been done
        if not await self._discard(new.id) and (started := await store.get_job(new.id)):
            return started, True
        raise QueueUnavailable("Submitting the job did not finish in time.")

    async def _from_cache(self, new: NewJob, *, durable: bool = True
                          ) -> tuple[Job, bool] | None:
        """Existing audio with the job's cache key: the job is created succeeded, pointing at
        it; the provider is not touched and nothing is charged."""
        found = await self._find_clip(new.owner, new.cache_key)
        self._count("api_cache_hits" if found is not None else "api_cache_misses")
        metrics.cache_lookup("submit", found is not None)
        if found is None:
            return None
        return await self.store.create_job(new, cached=found, durable=durable)

    async def _find_clip(self, owner: str, cache_key: str) -> Audio | None:
        """The audio a hit links to, if its file exists. A clip found is remembered for
        ``HIT_TTL_S`` (audio rows never change and are never deleted; blobs are
        content-addressed and Chorus never deletes one), so a clip asked for again and again,
        the point of a cache, costs no look-up in Postgres and none on disk or in S3. A file
        removed by hand is noticed within the TTL."""
        now = trio.current_time()
        key = (owner, cache_key)
        if (known := self._clips.get(key)) is not None and known[0] > now:
            return known[1]
        found = await self.store.find_audio(owner, cache_key)
        if found is not None and not await self.blobs.exists(found.path):
            log.warning("audio %s has no file; generating again", found.id)
            found = None
        if found is None:
            self._clips.pop(key, None)
            return None
        if found.owner == owner:  # another owner's row (a shared cache): the hit links it to
            if len(self._clips) >= HIT_CACHE_MAX:  # one of this owner's, found next time
                self._clips.clear()
            self._clips[key] = (now + HIT_TTL_S, found)
        return found

    async def _check_account(self, new: NewJob) -> None:
        remaining = await self.provider.remaining_characters()
        if remaining is not None and remaining < new.characters:
            raise ProviderQuotaExhausted(
                f"The provider account has {remaining} characters left; this job needs"
                f" {new.characters}. Nothing was queued."
            )

    async def _discard(self, job_id: str) -> bool:
        """Undo a job whose enqueue failed. False: a worker already started it (the XADD did
        land), so it is accepted after all; an undo that fails is logged and counts as done."""
        with trio.move_on_after(self.settings.db_timeout_s, shield=True) as scope:
            try:
                return await self.store.discard_job(job_id)
            except Exception:
                log.exception("could not discard job %s after a failed submit", job_id)
        if scope.cancelled_caught:
            log.error("discarding job %s timed out after a failed submit", job_id)
        return True


class _SharedLookups:
    """``VoiceCatalog.for_job`` shared by the requests of one ``submit_in_order``: the first
    request naming a voice looks it up, the others with the same voice wait for its answer
    (or its typed error) instead of asking the store again."""

    def __init__(self, lookup: VoiceLookup) -> None:
        self._lookup = lookup
        self._answers: dict[tuple[str | None, str | None, str], _Answer] = {}

    async def __call__(self, voice_id: str | None, language: str | None, viewer: str
                       ) -> VoiceInfo:
        key = (voice_id, language, viewer)
        if (answer := self._answers.get(key)) is not None:
            await answer.done.wait()
            if answer.error is not None:
                raise answer.error
            if answer.voice is not None:
                return answer.voice
            return await self._lookup(voice_id, language, viewer)  # the first one crashed
        self._answers[key] = answer = _Answer()
        try:
            answer.voice = await self._lookup(voice_id, language, viewer)
            return answer.voice
        except ChorusError as exc:
            answer.error = exc
            raise
        finally:
            answer.done.set()


class _Answer:
    __slots__ = ("done", "error", "voice")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.voice: VoiceInfo | None = None
        self.error: ChorusError | None = None


def check_metadata(metadata: object, limit: int) -> None:
    """A caller's metadata must be a JSON object of at most ``limit`` bytes encoded."""
    if metadata is None:
        return
    size = len(msgspec.json.encode(metadata))
    if size > limit:
        raise InvalidInput(
            f"metadata is {size} bytes as JSON; the limit is {limit}.", field="metadata",
            limit=limit,
        )


async def pin_dictionaries(
    catalog: DictionaryCatalog | None, asked: Sequence[DictionaryRef] | None, owner: str,
    defaults: Sequence[DictionaryRef] = (),
) -> tuple[DictionaryRef, ...]:
    """What a job or a book of ``owner`` applies (``DictionaryCatalog.resolve``: ``asked``,
    else ``defaults``). Without a catalog only the provider's own dictionaries can be named."""
    if catalog is not None:
        return await catalog.resolve(asked, owner, defaults)
    for ref in asked or ():
        if is_chorus_dictionary(ref.pronunciation_dictionary_id):
            raise dictionary_not_found(ref.pronunciation_dictionary_id)
    return tuple(asked or ())
