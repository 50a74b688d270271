"""TTSActor: turns one delivered job into stored audio, exactly once in effect.

cache -> provider -> blob store -> Postgres -> settle. The job row is the truth: starting is a
compare-and-set (a terminal job is only acked), the audio file is content-addressed by the cache
key, and finishing is a compare-and-set too, so a redelivered job never doubles its effect.

Failures: a permanent typed error fails the job (the entry is acked); a retryable one is noted on
the job and the entry released for redelivery after a backoff; anything else is recorded on the
job, the entry released, and the actor crashes (its supervisor restarts it).
"""

from __future__ import annotations

import hashlib
import logging

import msgspec
import trio

from actors.inflight import InFlight
from protocols.audio import parse_format
from protocols.errors import ChorusError
from protocols.faults import FaultPlan
from protocols.messages import Ack, Delivery, Job, NewAudio, Release, Settlement, SynthesisRequest
from protocols.ports import BlobStore, JobStore, SpeechProvider
from protocols.settings import Settings
from protocols.text import normalize_text

log = logging.getLogger("chorus.tts")

BACKOFF_MAX_S = 30.0


def cache_key(job: Job, provider: str) -> str:
    """Identical requests share audio: hash of everything that shapes the bytes."""
    text = normalize_text(job.text)
    parts = [provider, job.voice_id, job.language or "", job.output_format, text]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


class ActorStatistics(msgspec.Struct, frozen=True):
    name: str
    succeeded: int
    failed: int
    retried: int
    busy: bool


class TTSActor:
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
    ) -> None:
        self.name = name
        self.settings = settings
        self._deliveries = deliveries
        self._inflight = inflight
        self._store = store
        self._blobs = blobs
        self._provider = provider
        self._faults = settings.faults or FaultPlan()
        self._succeeded = self._failed = self._retried = 0
        self._busy = False

    def statistics(self) -> ActorStatistics:
        return ActorStatistics(self.name, self._succeeded, self._failed, self._retried, self._busy)

    async def run(self, stop: trio.Event, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with self._deliveries.clone() as deliveries, trio.open_nursery() as nursery:
            idle = trio.CancelScope()

            async def stop_when_idle() -> None:
                await stop.wait()
                if not self._busy:
                    idle.cancel()

            nursery.start_soon(stop_when_idle)
            task_status.started()
            while not stop.is_set():
                with idle:
                    delivery = await deliveries.receive()
                if idle.cancelled_caught:
                    break
                idle = trio.CancelScope()
                await self._work(delivery)
            nursery.cancel_scope.cancel()

    async def _work(self, delivery: Delivery) -> None:
        self._busy = True
        entry_id = delivery.entry_id
        try:
            settlement = await self._handle(delivery)
        except BaseException as exc:
            # crashing, or cancelled at shutdown: give the entry back before anything else
            delay = self._backoff(delivery) if isinstance(exc, Exception) else 0.0
            self._inflight.release(entry_id, delay)
            if isinstance(exc, Exception):
                await self._note(delivery, "crash", f"{type(exc).__name__}: {exc}")
            raise
        finally:
            self._busy = False
        self._inflight.settle(entry_id, settlement)

    async def _handle(self, delivery: Delivery) -> Settlement:
        job_id = delivery.job.job_id
        try:
            job = await self._store.start_job(job_id)
            if job is None:
                log.warning("entry %s names unknown job %s: dropped", delivery.entry_id, job_id)
                return Ack(delivery.entry_id)
            if job.status.terminal:
                return Ack(delivery.entry_id)  # a redelivery of a finished job
            await self._faults.hit("tts.before_synth")  # mid-job: started, nothing produced
            await self._produce(job)
        except ChorusError as exc:
            if exc.retryable:
                self._retried += 1
                await self._note(delivery, exc.code, exc.detail)
                return Release(delivery.entry_id, self._backoff(delivery))
            self._failed += 1
            await self._store.fail_job(job_id, exc.code, exc.detail)
            return Ack(delivery.entry_id)
        await self._faults.hit("tts.after_store_before_ack")
        self._succeeded += 1
        return Ack(delivery.entry_id)

    async def _produce(self, job: Job) -> None:
        fmt = parse_format(job.output_format)
        key = cache_key(job, self._provider.name)
        audio = await self._store.find_audio(job.owner, key)
        if audio is not None and await self._blobs.exists(audio.path):
            new = NewAudio(
                owner=job.owner, cache_key=key, format=audio.format,
                content_type=audio.content_type, duration_s=audio.duration_s, size=audio.size,
                path=audio.path,
            )
        else:
            result = await self._provider.synthesize(
                SynthesisRequest(
                    text=job.text, voice_id=job.voice_id, language=job.language,
                    output_format=job.output_format,
                )
            )
            await self._faults.hit("tts.after_synth")
            path = await self._blobs.put(key, fmt.extension, result.audio)
            new = NewAudio(
                owner=job.owner, cache_key=key, format=fmt.name,
                content_type=result.content_type, duration_s=result.duration_s,
                size=len(result.audio), path=path,
            )
        await self._store.finish_job(job.id, new)

    async def _note(self, delivery: Delivery, code: str, message: str) -> None:
        """Record a failure on the job; best effort (the store may be what failed)."""
        with trio.move_on_after(self.settings.db_timeout_s, shield=True):
            try:
                await self._store.note_error(delivery.job.job_id, code, message[:1000])
            except ChorusError as exc:
                log.warning("could not record error on job %s: %s", delivery.job.job_id, exc)

    def _backoff(self, delivery: Delivery) -> float:
        base = min(BACKOFF_MAX_S, 0.5 * 2 ** max(0, delivery.deliveries - 1))
        rand = (self.settings.faults or FaultPlan()).random
        return base * (0.5 + rand.random() / 2)
