"""TTSActor: turns one delivered job into stored audio, exactly once in effect.

cache -> single-flight lock -> global provider slot -> provider -> (second stage) blob store ->
Postgres -> release the lock -> settle. The job row is the truth:
starting is a compare-and-set (a terminal job is only acked), the audio file is content-addressed
by the cache key, and finishing is a compare-and-set too, so a redelivered job never doubles its
effect.

Failures: a permanent typed error fails the job (the entry is acked); a retryable one is noted on
the job and the entry released for redelivery after a backoff; anything else is recorded on the
job, the entry released, and the actor crashes (its supervisor restarts it).

Single flight: before generating, the actor takes the cache key's Redis lock. Another worker
holding it is generating the same audio: this actor waits for the lock to go, then finds the
audio in the cache. The lock is released only once the audio row is committed, so a waiter never
misses it; a holder that dies releases by expiry, and its job comes back through the stream.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext

import msgspec
import trio

from actors.flight import Flight
from actors.inflight import InFlight
from protocols.audio import parse_format
from protocols.cachekey import cache_key as make_cache_key
from protocols.coordination import Coordinator
from protocols.errors import ChorusError
from protocols.events import NO_EVENTS, EventKind, job_event
from protocols.faults import FaultPlan
from protocols.messages import (
    Ack,
    Audio,
    Delivery,
    Job,
    JobStatus,
    NewAudio,
    Release,
    Settlement,
    SpeechJob,
    SynthesisRequest,
)
from protocols.ports import BlobStore, EventSink, JobStore, SpeechProvider
from protocols.settings import Settings

log = logging.getLogger("chorus.tts")

BACKOFF_MAX_S = 30.0
#: the storing stage first waits (at most this long) for the actor to have started its next job,
#: so that its writes do not compete with the slot's refill for the event loop
STORE_DEFER_S = 0.01


def cache_key(job: Job | SpeechJob, provider: str, scope: str = "global") -> str:
    """The job's cache key: the one settled at submit, else (entries from before it was
    carried) computed the same way."""
    if job.cache_key:
        return job.cache_key
    return make_cache_key(
        provider=provider, text=job.text, voice_id=job.voice_id, language=job.language,
        output_format=job.output_format, params=job.params,
        owner=job.owner if scope == "owner" else None,
    )


OpenCoordinator = Callable[[], AbstractAsyncContextManager[Coordinator]]


class ActorStatistics(msgspec.Struct, frozen=True):
    name: str
    succeeded: int
    failed: int
    retried: int
    busy: bool


class _Produced(msgspec.Struct, frozen=True):
    """Audio ready to be stored: new bytes to write, or an existing file to point at."""

    job: Job
    audio: NewAudio
    data: bytes | None = None
    extension: str = ""
    flight: Flight | None = None  # lock (and slot) of the job, released once it is stored


class TTSActor:
    """One provider slot. Two stages per job: the actor itself starts the job and synthesizes;
    storing (blob + Postgres) runs in a task of the actor's own nursery while it already waits
    for its next job, so the provider slot is not left idle during the writes. At most one job
    per actor is in the storing stage."""

    def __init__(
        self,
        *,
        name: str,
        settings: Settings,
        deliveries: trio.MemoryReceiveChannel[Delivery],
        inflight: InFlight,
        store: JobStore,
        blobs: BlobStore,
        provider: SpeechProvider,
        open_coordinator: OpenCoordinator | None = None,
        events: EventSink = NO_EVENTS,
    ) -> None:
        self.name = name
        self.settings = settings
        self._deliveries = deliveries
        self._inflight = inflight
        self._store = store
        self._blobs = blobs
        self._provider = provider
        self._open_coordinator = open_coordinator
        self._coord: Coordinator | None = None
        self._flight: Flight | None = None  # what the job in the first stage holds in Redis
        self._nursery: trio.Nursery | None = None
        self._events = events
        self._faults = settings.faults or FaultPlan()
        self._succeeded = self._failed = self._retried = 0
        self._busy = False
        self._next_started = trio.Event()
        self._idle = trio.CancelScope()
        self._crash: Exception | None = None

    def statistics(self) -> ActorStatistics:
        return ActorStatistics(self.name, self._succeeded, self._failed, self._retried, self._busy)

    async def run(self, stop: trio.Event, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
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
        storing = trio.Semaphore(1)  # released by the storing task
        self._crash = None
        async with self._deliveries.clone() as deliveries, trio.open_nursery() as nursery:
            self._nursery = nursery

            async def stop_when_idle() -> None:
                await stop.wait()
                self._interrupt()

            nursery.start_soon(stop_when_idle)
            task_status.started()
            try:
                while not stop.is_set() and self._crash is None:
                    self._inflight.actor_waiting()
                    self._idle = trio.CancelScope()
                    try:
                        with self._idle:
                            delivery = await deliveries.receive()
                    except BaseException:
                        self._inflight.actor_not_waiting()
                        raise
                    if self._idle.cancelled_caught:
                        self._inflight.actor_not_waiting()
                        break
                    await self._work(delivery, nursery, storing)
            except Exception:
                # the first stage crashed: the job in the storing stage is paid for, so it is
                # stored (bounded) before the crash cancels it
                with trio.move_on_after(2 * self.settings.db_timeout_s, shield=True):
                    await storing.acquire()
                raise
            await storing.acquire()  # the last job is stored before the actor stops
            nursery.cancel_scope.cancel()
        if self._crash is not None:
            raise self._crash  # the storing stage crashed; raised here so no synthesis was cut

    def _interrupt(self) -> None:
        """End an idle wait for a delivery (stop requested, or the storing stage crashed)."""
        if not self._busy:
            self._idle.cancel()

    async def _work(
        self, delivery: Delivery, nursery: trio.Nursery, storing: trio.Semaphore
    ) -> None:
        self._busy = True
        self._flight = None
        try:
            outcome = await self._handle(delivery)
            if isinstance(outcome, _Produced):
                await storing.acquire()
                self._next_started = trio.Event()
                outcome = msgspec.structs.replace(outcome, flight=self._flight)
                self._flight = None  # the storing stage releases it
                nursery.start_soon(
                    self._store_stage, delivery, outcome, storing, self._next_started
                )
                return
        except BaseException as exc:
            await self._give_back(delivery, exc)
            raise
        finally:
            self._busy = False
            if self._flight is not None:  # cached, finished, failed: give back what it took
                await self._flight.release()
                self._flight = None
        self._inflight.settle(delivery.entry_id, outcome)

    async def _store_stage(
        self,
        delivery: Delivery,
        produced: _Produced,
        storing: trio.Semaphore,
        next_started: trio.Event,
    ) -> None:
        """A crash here does not cancel the first stage (a provider call may be in flight and
        paid for): it is handed to the actor's main task, which raises it between jobs."""
        try:
            with trio.move_on_after(STORE_DEFER_S):
                await next_started.wait()
            settlement = await self._persist(delivery, produced)
        except Exception as exc:
            await self._give_back(delivery, exc)
            self._crash = exc
            self._interrupt()
            return
        except BaseException as exc:
            await self._give_back(delivery, exc)
            raise
        finally:
            if produced.flight is not None:
                await produced.flight.release()  # after the audio row is committed (or not)
            storing.release()
        self._inflight.settle(delivery.entry_id, settlement)

    async def _give_back(self, delivery: Delivery, exc: BaseException) -> None:
        """Crashing, or cancelled at shutdown: release the entry before anything else."""
        delay = self._backoff(delivery) if isinstance(exc, Exception) else 0.0
        self._inflight.release(delivery.entry_id, delay)
        if isinstance(exc, Exception):
            await self._note(delivery, "crash", f"{type(exc).__name__}: {exc}")

    async def _handle(self, delivery: Delivery) -> Settlement | _Produced:
        job_id = delivery.job.job_id
        key = cache_key(delivery.job, self._provider.name, self.settings.cache_scope)
        try:
            job, cached = await self._start(job_id, key)
            self._next_started.set()
            if job is None:
                log.warning("entry %s names unknown job %s: dropped", delivery.entry_id, job_id)
                return Ack(delivery.entry_id)
            if job.status.terminal:  # a redelivery of a finished job
                self._publish_final(job)  # its event may have died with the last delivery
                return Ack(delivery.entry_id)
            self._publish_running(job)
            await self._faults.hit("tts.before_synth")  # mid-job: started, nothing produced
            return await self._produce(job, key, cached)
        except ChorusError as exc:
            return await self._job_error(delivery, exc)

    async def _persist(self, delivery: Delivery, produced: _Produced) -> Settlement:
        audio = produced.audio
        try:
            if produced.data is not None:
                path = await self._blobs.put(audio.cache_key, produced.extension, produced.data)
                audio = msgspec.structs.replace(audio, path=path)
            done = await self._store.finish_job(produced.job.id, audio)
        except ChorusError as exc:
            return await self._job_error(delivery, exc)
        self._publish_succeeded(done, audio)
        await self._faults.hit("tts.after_store_before_ack")
        self._succeeded += 1
        return Ack(delivery.entry_id)

    async def _job_error(self, delivery: Delivery, exc: ChorusError) -> Settlement:
        if exc.retryable:
            self._retried += 1
            await self._note(delivery, exc.code, exc.detail)
            return Release(delivery.entry_id, self._backoff(delivery))
        self._failed += 1
        failed = await self._store.fail_job(delivery.job.job_id, exc.code, exc.detail)
        self._publish_failed(failed, exc)
        return Ack(delivery.entry_id)

    async def _reuse(self, job: Job, key: str, audio: Audio | None) -> _Produced | None:
        """Point the job at existing audio with its key, if its file is there."""
        if audio is None or not await self._blobs.exists(audio.path):
            return None
        return _Produced(
            job=job,
            audio=NewAudio(
                owner=job.owner, cache_key=key, format=audio.format,
                content_type=audio.content_type, duration_s=audio.duration_s,
                size=audio.size, path=audio.path,
            ),
        )

    async def _start(self, job_id: str, key: str) -> tuple[Job | None, Audio | None]:
        """``start_job_cached``, and meanwhile the job's first try at its single-flight lock
        and a provider slot (one Redis round trip, in parallel with Postgres)."""
        if self._coord is None or self._nursery is None:
            return await self._store.start_job_cached(job_id, key)
        self._flight = Flight(
            self._coord, self._nursery, key=key, job_id=job_id,
            shared_account=self._provider.shared_account,
            wait_s=self.settings.provider_wait_s,
        )
        failed: ChorusError | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._flight.begin)
            try:
                started = await self._store.start_job_cached(job_id, key)
            except ChorusError as exc:  # raised after the nursery: never as an exception group
                failed = exc
        if failed is not None:
            raise failed
        return started

    async def _produce(self, job: Job, key: str, audio: Audio | None) -> _Produced:
        fmt = parse_format(job.output_format)
        if (reused := await self._reuse(job, key, audio)) is not None:
            return reused
        flight = self._flight

        async def look_again() -> _Produced | None:
            return await self._reuse(job, key, await self._store.find_audio(job.owner, key))

        if flight is not None and (reused := await flight.own(look_again)) is not None:
            return reused
        request = SynthesisRequest(
            text=job.text, voice_id=job.voice_id, language=job.language,
            output_format=job.output_format, params=job.params,
        )
        async with flight.provider_slot() if flight is not None else nullcontext():
            result = await self._provider.synthesize(request)
        await self._faults.hit("tts.after_synth")
        return _Produced(
            job=job,
            audio=NewAudio(
                owner=job.owner, cache_key=key, format=fmt.name,
                content_type=result.content_type, duration_s=result.duration_s,
                size=len(result.audio), path="", request_ids=result.request_ids,
                character_cost=result.character_cost, charge=job.characters,
            ),
            data=result.audio,
            extension=fmt.extension,
        )

    async def _note(self, delivery: Delivery, code: str, message: str) -> None:
        """Record a failure on the job; best effort (the store may be what failed)."""
        with trio.move_on_after(self.settings.db_timeout_s, shield=True):
            try:
                await self._store.note_error(delivery.job.job_id, code, message[:1000])
            except ChorusError as exc:
                log.warning("could not record error on job %s: %s", delivery.job.job_id, exc)

    def _backoff(self, delivery: Delivery) -> float:
        base = min(BACKOFF_MAX_S, 0.5 * 2 ** max(0, delivery.deliveries - 1))
        return base * (0.5 + self._faults.random.random() / 2)

    # -- events (published after the state change is durable; never blocks, never raises) --------

    def _publish_running(self, job: Job) -> None:
        if job.status is JobStatus.running:  # the queued|running -> running start we just made
            self._events.publish(
                job_event(EventKind.job_running, job.id, job.owner, attempts=job.attempts)
            )

    def _publish_succeeded(self, job: Job, audio: NewAudio) -> None:
        if job.status is not JobStatus.succeeded or job.audio_id is None:
            return  # the compare-and-set did not apply (the job was failed or dead meanwhile)
        self._events.publish(
            job_event(EventKind.job_succeeded, job.id, job.owner, audio_id=job.audio_id)
        )
        self._events.publish(
            job_event(
                EventKind.tts_created, job.id, job.owner, audio_id=job.audio_id,
                duration_s=audio.duration_s, format=audio.format,
                content_type=audio.content_type, characters=job.characters,
            )
        )

    def _publish_final(self, job: Job) -> None:
        """The final event again (events are at-least-once: a repeat is harmless)."""
        if job.status is JobStatus.succeeded:
            event = job_event(EventKind.job_succeeded, job.id, job.owner, audio_id=job.audio_id)
        else:
            kind = EventKind.job_dead if job.status is JobStatus.dead else EventKind.job_failed
            error = {"code": job.error_code or "", "message": job.error_message or ""}
            event = job_event(kind, job.id, job.owner, error=error)
        self._events.publish(event)

    def _publish_failed(self, job: Job | None, exc: ChorusError) -> None:
        if job is None or job.status is not JobStatus.failed or job.error_code != exc.code:
            return  # unknown, or already terminal before this failure
        error = {"code": exc.code, "message": exc.detail[:1000]}
        self._events.publish(job_event(EventKind.job_failed, job.id, job.owner, error=error))
        self._events.publish(job_event(EventKind.tts_failed, job.id, job.owner, **error))
