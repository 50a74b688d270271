"""TTSActor: one provider slot; the first stage of a job, exactly once in effect.

cache -> single-flight lock -> global provider slot -> provider -> hand the audio to the Storer
(``actors.pipeline.storer``: blob store -> Postgres -> settle -> release the lock), and on
to the next job.
The job row is the truth: starting is a compare-and-set (a terminal job is only acked), the
audio file is content-addressed by the cache key, and finishing is a compare-and-set too, so a
redelivered job never doubles its effect.

Failures: a permanent typed error fails the job (the entry is acked); a retryable one is noted on
the job and the entry released for redelivery after a backoff; anything else is recorded on the
job, the entry released, and the actor crashes (its supervisor restarts it). Audio already handed
to the Storer is stored whatever happens to the actor.

Single flight: before generating, the actor takes the cache key's Redis lock. Another worker
holding it is generating the same audio: this actor waits for the lock to go, then finds the
audio in the cache. The lock is released only once the audio row is committed, so a waiter never
misses it; a holder that dies releases by expiry, and its job comes back through the stream.

Live audio: for a job submitted with ``stream`` the provider hands out chunks as it makes them
(``StreamingSynthesis``; a provider without it hands out its whole clip at the end), published
to the job's live stream under this attempt's token (``actors/pipeline/live.py``); an attempt
that fails writes an abort entry. The stored clip is the same bytes.

Paid once: a redelivered job (or one started before) tells the provider since when an earlier
attempt may have generated its audio (``SynthesisRequest.previous_attempt_since``); a provider
that keeps a history (ElevenLabs) looks there before paying again, and such a reuse is counted
as ``history_reuses``, not ``provider_calls``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext

import msgspec
import trio

from actors.pipeline.attempt import Attempt, PendingStart
from actors.pipeline.flight import FirstTry, Flight
from actors.pipeline.live import AttemptPublisher
from actors.pipeline.outcomes import Outcomes, is_outage
from actors.pipeline.pacing import Pacing
from actors.pipeline.storer import Produced
from protocols import tracing
from protocols.domain.audio import parse_format
from protocols.errors import ChorusError
from protocols.events import NO_EVENTS
from protocols.faults import FaultPlan
from protocols.live import LiveWriter, StreamingSynthesis
from protocols.messages import (
    Audio,
    Job,
    NewAudio,
    Settlement,
    SpeechJob,
    SynthesisRequest,
    SynthesisResult,
)
from protocols.metrics import instruments as metrics
from protocols.ports import BlobStore, EventSink, JobStore, SpeechProvider
from protocols.redis.coordination import CLOCK_MARGIN_S, DONE_MARKER_S, Coordinator
from protocols.settings import Settings

log = logging.getLogger("chorus.tts")


OpenCoordinator = Callable[[], AbstractAsyncContextManager[Coordinator]]
OpenLive = Callable[[], AbstractAsyncContextManager[LiveWriter]]


class ActorStatistics(msgspec.Struct, frozen=True):
    """Jobs the actor settled itself (the ones it produced audio for are the Storer's)."""

    name: str
    failed: int
    retried: int
    busy: bool


class TTSActor:
    """One provider slot: starts a delivered job and synthesizes it, hands the audio to the
    Storer over ``produced`` and is free for its next job at once."""

    def __init__(
        self,
        *,
        name: str,
        settings: Settings,
        deliveries: trio.MemoryReceiveChannel[Attempt],
        pacing: Pacing,
        store: JobStore,
        blobs: BlobStore,
        provider: SpeechProvider,
        produced: trio.MemorySendChannel[Produced],
        open_coordinator: OpenCoordinator | None = None,
        events: EventSink = NO_EVENTS,
        open_live: OpenLive | None = None,
    ) -> None:
        self.name = name
        #: where a ``stream`` job's chunks go (None: nowhere; followers get the stored clip)
        self._open_live = open_live
        self._live: LiveWriter | None = None
        self.settings = settings
        self._deliveries = deliveries
        self._pacing = pacing
        self._store = store
        self._blobs = blobs
        self._provider = provider
        self._produced = produced
        self._open_coordinator = open_coordinator
        self._coord: Coordinator | None = None
        self._faults = settings.faults or FaultPlan()
        self._outcomes = Outcomes(settings, store, events, self._faults)
        self._busy = False
        self._refilling = False  # between a provider call and the next (Pacing.refilling)
        self._finishing = False  # its provider call ended, not waiting yet (Pacing.soon_free)
        self._idle = trio.CancelScope()

    def statistics(self) -> ActorStatistics:
        o = self._outcomes
        return ActorStatistics(self.name, o.failed, o.retried, self._busy)

    async def run(self, stop: trio.Event, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        try:
            if self._open_live is None:
                await self._run_with_coordinator(stop, task_status)
            else:
                async with self._open_live() as live:
                    self._live = live
                    try:
                        await self._run_with_coordinator(stop, task_status)
                    finally:
                        self._live = None
        finally:
            self._set_refilling(False)
            self._set_finishing(False)

    async def _run_with_coordinator(
        self, stop: trio.Event, task_status: trio.TaskStatus[None]
    ) -> None:
        if self._open_coordinator is None:
            await self._run(stop, task_status)
            return
        async with self._open_coordinator() as coord:
            self._coord = coord
            try:
                await self._run(stop, task_status)
            finally:
                self._coord = None

    async def _run(self, stop: trio.Event, task_status: trio.TaskStatus[None]) -> None:
        async with (
            self._deliveries.clone() as deliveries,
            self._produced.clone() as produced,
            trio.open_nursery() as nursery,  # the stop watcher
        ):

            async def stop_when_idle() -> None:
                await stop.wait()
                self._interrupt()

            nursery.start_soon(stop_when_idle)
            task_status.started()
            while not stop.is_set():
                self._set_finishing(False)
                self._pacing.actor_waiting()
                self._idle = trio.CancelScope()
                try:
                    with self._idle:
                        attempt = await deliveries.receive()
                except BaseException:
                    self._pacing.actor_not_waiting()
                    raise
                if self._idle.cancelled_caught:
                    self._pacing.actor_not_waiting()
                    break
                await self._work(attempt, produced)
            nursery.cancel_scope.cancel()

    def _set_finishing(self, finishing: bool) -> None:
        if finishing != self._finishing:
            self._finishing = finishing
            self._pacing.actor_finishing(1 if finishing else -1)

    def _set_refilling(self, refilling: bool) -> None:
        if refilling != self._refilling:
            self._refilling = refilling
            self._pacing.refilling(refilling)

    def _interrupt(self) -> None:
        """End an idle wait for a delivery (stop requested)."""
        if not self._busy:
            self._idle.cancel()

    async def _work(
        self, attempt: Attempt, produced: trio.MemorySendChannel[Produced]
    ) -> None:
        self._busy = True
        self._pacing.actor_busy(id(self), True)
        handed_over = False
        rid = tracing.current.set(attempt.job.request_id)  # its log lines and events carry it
        try:
            outcome = await self._handle(attempt)
            if isinstance(outcome, Produced):
                # the Storer releases the flight once the audio row is committed
                await produced.send(outcome)
                handed_over = True
                return
        except BaseException as exc:
            await self._give_back(attempt, exc)
            raise
        finally:
            tracing.current.reset(rid)
            self._busy = False
            self._pacing.actor_busy(id(self), False)
            if not handed_over:  # cached, finished, failed: give back what it took
                await attempt.release_flight()
        attempt.settle(outcome)

    async def _give_back(self, attempt: Attempt, exc: BaseException) -> None:
        """Crashing, or cancelled at shutdown: release the entry before anything else."""
        if isinstance(exc, Exception) and is_outage(exc):  # not the job's fault: not counted
            attempt.settle(self._outcomes.outage_release(attempt.delivery))
            return
        delay = self._outcomes.backoff(attempt.delivery) if isinstance(exc, Exception) else 0.0
        attempt.settle(attempt.release_later(delay))
        if isinstance(exc, Exception):
            await self._outcomes.note(attempt.delivery, "crash", f"{type(exc).__name__}: {exc}")

    async def _handle(self, attempt: Attempt) -> Settlement | Produced:
        try:
            started = await self._start(attempt)
            if isinstance(started, PendingStart):  # the provider call goes first
                started.then(self._announce_running)
                await self._faults.hit("tts.before_synth")
                return await self._produce_early(attempt, started)
            job, cached = started
            if job is None:
                log.warning("entry %s names unknown job %s: dropped", attempt.entry_id,
                            attempt.job.job_id)
                return attempt.ack()
            if job.status.terminal:  # a redelivery of a finished job
                self._outcomes.publish_final(job)  # its event may have died with the last one
                return attempt.ack()
            self._outcomes.publish_running(job)
            await self._faults.hit("tts.before_synth")  # mid-job: started, nothing produced
            return await self._produce(attempt, job, cached)
        except ChorusError as exc:
            return await self._outcomes.job_error(attempt.delivery, exc)

    async def _reuse(self, attempt: Attempt, job: Job, audio: Audio | None) -> Produced | None:
        """Point the job at existing audio with its key, if its file is there."""
        if audio is None or not await self._blobs.exists(audio.path):
            return None
        metrics.cache_lookup("worker", hit=True)
        return Produced(
            attempt=attempt,
            job=job,
            audio=NewAudio(
                owner=job.owner, cache_key=attempt.key, format=audio.format,
                content_type=audio.content_type, duration_s=audio.duration_s,
                size=audio.size, path=audio.path,
            ),
        )

    async def _start(
        self, attempt: Attempt
    ) -> tuple[Job | None, Audio | None] | PendingStart:
        """``start_job_cached``, and meanwhile the job's first try at its single-flight lock
        and a provider slot (one Redis round trip, in parallel with Postgres); or what the
        StreamReader did of both for the batch it read (``attempt.start``,
        ``attempt.first_try``). A start still on its way is returned as it is when the
        provider may be called first."""
        job_id, key = attempt.job.job_id, attempt.key
        if attempt.start is not None:
            if self._coord is not None:
                attempt.flight = self._new_flight(key, job_id, attempt.first_try)
                if self._may_call_early(attempt, attempt.start):
                    return attempt.start
            return await attempt.start.get(2 * self.settings.db_timeout_s)
        if self._coord is None:
            return await self._store.start_job_cached(job_id, key)
        attempt.flight = flight = self._new_flight(key, job_id, None)
        failed: ChorusError | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(flight.begin)
            try:
                started = await self._store.start_job_cached(job_id, key)
            except ChorusError as exc:  # raised after the nursery: never as an exception group
                failed = exc
        if failed is not None:
            raise failed
        return started

    @staticmethod
    def _may_call_early(attempt: Attempt, start: PendingStart) -> bool:
        """Whether the provider may be called before the job's start is known, its cost
        (one Postgres round trip) then off the slot's critical path. Only when the start can
        only say "running, nothing cached": a first delivery (a new entry's job is queued, never
        finished), its lock taken with no "done" marker (no identical job finished since the
        job was submitted, as the job is younger than the marker's life; so the cache miss its
        submit saw still holds), and not cancelled: its book (a storybook line) or else the
        job itself had no cancel marker when it was read (a cancel marks the book or the job in
        Redis before Postgres; the marker outlives the age limit below). Otherwise, or when
        Redis lost a marker, the start decides first (at worst, after a Redis failure or a
        cancel made while the entry was being read, one provider call too many; never an
        effect)."""
        first_try, delivery = attempt.first_try, attempt.delivery
        age = time.time() - delivery.job.submitted_at
        return (
            not start.ready
            and first_try is not None
            and first_try.book_live
            and delivery.deliveries == 1
            and first_try.lock.held
            and not first_try.lock.recently_done
            and delivery.job.submitted_at > 0
            and age < DONE_MARKER_S - CLOCK_MARGIN_S
        )

    def _announce_running(self, job: Job | None) -> None:
        """``job.running`` as soon as the start made early is known."""
        if job is not None:
            self._outcomes.publish_running(job)

    def _new_flight(self, key: str, job_id: str, first_try: FirstTry | None) -> Flight:
        assert self._coord is not None
        return Flight(
            self._coord, key=key, job_id=job_id,
            shared_account=self._provider.shared_account,
            wait_s=self.settings.provider_wait_s, first_try=first_try,
        )

    async def _produce(self, attempt: Attempt, job: Job, audio: Audio | None) -> Produced:
        if (reused := await self._reuse(attempt, job, audio)) is not None:
            return reused
        flight = attempt.flight

        async def look_again() -> Produced | None:
            found = await self._store.find_audio(job.owner, attempt.key)
            return await self._reuse(attempt, job, found)

        if flight is not None and (reused := await flight.own(look_again)) is not None:
            return reused
        metrics.cache_lookup("worker", hit=False)
        result = await self._call_provider(flight, job, since=self._earlier_attempt(attempt, job),
                                           live=self._publisher(attempt))
        return self._as_produced(attempt, job, result)

    @staticmethod
    def _earlier_attempt(attempt: Attempt, job: Job) -> float | None:
        """Since when an earlier attempt of this job may have had the provider generate its
        audio (the provider may find it in its history instead of paying again), or None on a
        first attempt. A redelivered entry, or a job started before (``attempts`` counts this
        start): the window opens at the job's creation, as an early call (``_may_call_early``)
        goes before its start is recorded."""
        if attempt.delivery.deliveries <= 1 and job.attempts <= 1:
            return None
        return job.created_at.timestamp()

    async def _produce_early(
        self, attempt: Attempt, start: PendingStart
    ) -> Settlement | Produced:
        """The provider call first, the job's start meanwhile (``_may_call_early``)."""
        flight = attempt.flight
        assert flight is not None

        async def look_again() -> Produced | None:  # not reached: no marker, lock held
            job, _ = await start.get()
            if job is None:
                return None
            found = await self._store.find_audio(job.owner, attempt.key)
            return await self._reuse(attempt, job, found)

        if (reused := await flight.own(look_again)) is not None:
            return reused
        metrics.cache_lookup("worker", hit=False)
        result = await self._call_provider(flight, attempt.job, live=self._publisher(attempt))
        if start.ready:
            try:
                job, _ = await start.get()
            except ChorusError as exc:
                if not is_outage(exc):
                    raise
                # Postgres away: the audio is paid for, so it is kept; the Storer starts the
                # job again once the store is back (``Storer._check_starts``)
                return self._as_produced(attempt, None, result)
            if job is None:
                log.warning("entry %s names unknown job %s: dropped", attempt.entry_id,
                            attempt.job.job_id)
                return attempt.ack()
            if job.status.terminal:
                self._outcomes.publish_final(job)
                return attempt.ack()
            return self._as_produced(attempt, job, result)
        # the Storer checks the start when it is known (no wait here for the next job)
        return self._as_produced(attempt, None, result)

    def _publisher(self, attempt: Attempt) -> AttemptPublisher | None:
        """This attempt's live publisher, for a job whose audio is followed."""
        if not attempt.job.stream or self._live is None:
            return None
        return AttemptPublisher(self._live, attempt.job.job_id, self.settings.redis_timeout_s)

    async def _synthesize(
        self, request: SynthesisRequest, live: AttemptPublisher | None
    ) -> SynthesisResult:
        """The provider call; with ``live``, its chunks published as they come."""
        if live is None:
            return await self._provider.synthesize(request)
        try:
            if isinstance(self._provider, StreamingSynthesis):
                result = await self._provider.synthesize_streaming(request, live.sink)
            else:
                result = await self._provider.synthesize(request)
                await live.sink(result.audio)
        except BaseException:
            await live.abort()
            raise
        await live.end(len(result.audio))
        return result

    async def _call_provider(self, flight: Flight | None, job: Job | SpeechJob, *,
                             since: float | None = None,
                             live: AttemptPublisher | None = None) -> SynthesisResult:
        request = SynthesisRequest(
            text=job.text, voice_id=job.voice_id, language=job.language,
            output_format=job.output_format, params=job.params, previous_attempt_since=since,
        )
        async with flight.provider_slot() if flight is not None else nullcontext():
            self._set_refilling(False)
            try:
                result = await self._synthesize(request, live)
            except Exception:
                metrics.provider_call(self._provider.name, ok=False)
                raise
            else:
                metrics.provider_call(self._provider.name, ok=True)
            finally:
                self._set_refilling(True)
                self._set_finishing(True)
            if result.from_history:
                log.info("job %s: an earlier attempt's audio was found at the provider (%s);"
                         " not generated again", job.id if isinstance(job, Job) else job.job_id,
                         ", ".join(result.request_ids) or "no request ids")
                if flight is not None:
                    flight.from_history = True
        await self._faults.hit("tts.after_synth")
        return result

    def _as_produced(self, attempt: Attempt, job: Job | None, result: SynthesisResult
                     ) -> Produced:
        """The audio for the Storer; ``job`` None: its start is still on its way
        (``attempt.start``), for the Storer to check."""
        fmt = parse_format(attempt.job.output_format)
        return Produced(
            attempt=attempt,
            job=job,
            audio=NewAudio(
                owner=attempt.job.owner, cache_key=attempt.key, format=fmt.name,
                content_type=result.content_type, duration_s=result.duration_s,
                size=len(result.audio), path="", request_ids=result.request_ids,
                character_cost=result.character_cost,
                charge=job.characters if job is not None else 0,  # the Storer sets it then
                alignment=result.alignment,
            ),
            data=result.audio,
            extension=fmt.extension,
        )
