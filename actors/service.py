"""The supervision tree of one Chorus process, by role, from the adapters it is given.

serve = everything; api = HTTP + Producer + StorybookRunner; worker = VoiceSync + TTS pool +
StreamReader;
every role runs the ProcessReporter (its entry in the shared process list, with the restarts of
both supervisors) and the EventPublisher (first to start, last to stop: everything else
publishes). Start order: reporter -> events -> VoiceSync -> TTS pool -> StreamReader ->
Producer -> StorybookRunner -> HTTP; stop in reverse. The runner lives where the Producer is:
it submits lines as jobs.
The Service owns the channels, the Ledger and Pacing; every child incarnation gets clones.
The process is composed in ``run.py`` (``build_service``): the provider, store, blobs, voice
catalog and Redis openers come in, and the HTTP front door as a callable (``web.app.front_door``),
so nothing here imports the web stack.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from enum import StrEnum
from functools import partial
from typing import Any

import trio

from actors.events.publisher import EventPublisher
from actors.ops.reporter import ProcessReporter
from actors.pipeline.attempt import Attempt
from actors.pipeline.intake import Intake
from actors.pipeline.ledger import Ledger
from actors.pipeline.pacing import Pacing
from actors.pipeline.prestart import Prestarter
from actors.pipeline.producer import CHANNEL_CAPACITY, Producer, Submitter, Ticket
from actors.pipeline.storer import QUEUE as STORE_QUEUE
from actors.pipeline.storer import Produced, Storer
from actors.pipeline.stream_reader import StreamReader
from actors.pipeline.sweeper import OrphanSweeper
from actors.pipeline.tts_actor import TTSActor
from actors.storybooks.intake import StorybookIntake
from actors.storybooks.outputs import BookOutputs
from actors.storybooks.runner import StorybookRunner
from actors.supervision.supervisor import (
    ChildSpec,
    Restart,
    Strategy,
    Supervisor,
    SupervisorEvent,
    SupervisorPolicy,
    supervisor_child,
)
from actors.voices.voice_sync import VoiceSync
from protocols.domain.dictionaries import DictionaryCatalog
from protocols.domain.voices import VoiceCatalog
from protocols.errors import ChorusError, QueueUnavailable, StoreUnavailable
from protocols.messages import SpeechJob, Voice, VoiceStatus
from protocols.metrics import instruments as metrics
from protocols.ports import AccountStore, BlobStore, BookStore, JobStore, SpeechProvider
from protocols.processes import ProcessInfo
from protocols.redis.coordination import Coordinator
from protocols.redis.openers import RedisOpeners
from protocols.redis.voice_queue import RedisVoiceSyncQueue
from protocols.settings import Settings

log = logging.getLogger("chorus.service")


class Role(StrEnum):
    serve = "serve"
    api = "api"
    worker = "worker"


#: The HTTP front door: a child of the tree started once per incarnation as
#: ``front(service, stop, task_status=...)``; it serves until ``stop`` is set and reports its bound
#: addresses (``['http://127.0.0.1:8000']``) through ``task_status.started``.
Front = Callable[..., Awaitable[Any]]


class Service:
    """Everything one process runs, wired from settings and the adapters it is given."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: JobStore,
        provider: SpeechProvider,
        blobs: BlobStore,
        voices: VoiceCatalog,
        redis: RedisOpeners,
        books: BookStore | None = None,
        accounts: AccountStore | None = None,
        dictionaries: DictionaryCatalog | None = None,
        role: Role = Role.serve,
        front: Front | None = None,
        on_event: Callable[[SupervisorEvent], None] | None = None,
        on_http_ready: Callable[[list[str]], Awaitable[None] | None] | None = None,
    ) -> None:
        self.settings = settings
        self.role = role
        self.redis = redis
        self.redis_url, self.keys = redis.url, redis.keys
        self.store = store
        self.provider = provider
        self.blobs = blobs
        self.voices = voices
        #: pronunciation dictionaries (None: jobs can name only the provider's own)
        self.dictionaries = dictionaries
        self.consumer = settings.consumer_name() if role != Role.api else ""
        self.ledger = Ledger(settings.concurrency)
        self.pacing = Pacing()
        self._deliveries_send, self._deliveries_recv = trio.open_memory_channel[Attempt](0)
        self._produced_send, self._produced_recv = trio.open_memory_channel[Produced](
            STORE_QUEUE
        )
        self._tickets_send, self._tickets_recv = trio.open_memory_channel[Ticket](
            CHANNEL_CAPACITY
        )
        self.submitter = Submitter(self._tickets_send, settings.submit_timeout_s)
        self.actors: list[TTSActor] = []
        self.storer: Storer | None = None
        self.reader: StreamReader | None = None
        self.sweeper: OrphanSweeper | None = None
        self.producer: Producer | None = None
        self.http_binds: list[str] = []
        self.voice_sync: VoiceSync | None = None
        #: the TTS pool's own supervisor (worker roles), for its restart counts
        self.tts_pool: Supervisor | None = None
        self._shared_coordinator: Coordinator | None = None
        self.events = EventPublisher(
            redis.event_bus, timeout_s=settings.redis_timeout_s,
            quiet=self.pacing.wait_quiet,
        )
        #: every job enters here (HTTP, the bench): through the Producer's mailbox
        self.intake = Intake(
            settings, store=store, blobs=self.blobs, provider=provider, voices=self.voices,
            enqueue=self.submitter.submit, events=self.events, count=self.count,
            dictionaries=dictionaries,
        )
        #: storybooks (the same Postgres store, seen as that port); None: no storybooks here
        self.books = books
        #: users, API keys and server secrets (None: no admin routes, audio URLs unsigned
        #: unless CHORUS_SIGNING_KEY is set)
        self.accounts = accounts
        self.runner: StorybookRunner | None = None
        self.storybooks = (
            StorybookIntake(settings, store=self.books, provider=provider, voices=self.voices,
                            kick=self.kick_runner, dictionaries=dictionaries,
                            mark_cancelled=self.mark_book_cancelled)
            if self.books is not None else None
        )
        self.book_outputs = (
            BookOutputs(self.books, self.blobs) if self.books is not None else None
        )
        self._front = front
        self._on_http_ready = on_http_ready
        #: this process in the deployment's process list, with its supervisors' restarts
        host = socket.gethostname()
        self.reporter = ProcessReporter(
            redis.processes,
            ProcessInfo(id=f"{host}:{os.getpid()}:{uuid.uuid4().hex[:8]}", role=role.value,
                        consumer=self.consumer, host=host, pid=os.getpid(),
                        started_at=time.time()),
            heartbeat_s=settings.process_heartbeat_s, timeout_s=settings.redis_timeout_s,
        )
        # both supervisors report here
        self._on_event = partial(_counted, self.reporter.note, on_event or _log_event)
        self._policy = SupervisorPolicy(
            strategy=Strategy.one_for_one,
            intensity=settings.restart_intensity,
            period=settings.restart_period_s,
            # a dependency away is waited out (restarts with backoff, not counted), never fatal
            outages=(QueueUnavailable, StoreUnavailable),
            outage_backoff_max=settings.outage_backoff_s,
        )
        self.supervisor = Supervisor(
            self._children(),
            self._policy,
            name="root",
            on_event=self._on_event,
        )

    def kick_runner(self) -> None:
        """Wake this process' StorybookRunner (a book was accepted, retried or cancelled)."""
        if self.runner is not None:
            self.runner.kick()

    async def mark_book_cancelled(self, book_id: str) -> None:
        """Set a storybook's cancel marker in Redis (``StorybookIntake.cancel``)."""
        async with self.open_coordinator() as coord:
            await coord.mark_book_cancelled(book_id)

    async def mark_job_cancelled(self, job_id: str) -> None:
        """Set a single job's cancel marker in Redis (``actors.pipeline.cancel``)."""
        async with self.open_coordinator() as coord:
            await coord.mark_job_cancelled(job_id)

    def count(self, name: str) -> None:
        """Add one to a shared counter in Redis (a figure, best effort: batched by the shared
        coordinator's keeper, so only while ``coordination()`` is open; within
        ``COUNT_LINGER_S``: counted per request, it must not cost a round trip each)."""
        if self._shared_coordinator is not None:
            self._shared_coordinator.count_soon(name, linger=True)

    def coordinator(self, client) -> Coordinator:
        s = self.settings
        return Coordinator(
            client, self.keys, account=self.provider.account, limit=s.provider_concurrency,
            lease_s=s.provider_lease, timeout_s=s.redis_timeout_s, holder=self.consumer,
        )

    @asynccontextmanager
    async def coordination(self) -> AsyncIterator[None]:
        """One Redis client for coordination, outside the supervision tree: a TTSActor cancelled
        at shutdown still releases its lock and provider slot through it (a client inside the
        actor would be cancelled with it). Its keeper task, which renews every lock and slot
        held in this process, is owned by this block and so outlives every actor."""
        async with self.redis.queue() as queue, self.coordinator(queue.client).keeping() as coord:
            self._shared_coordinator = coord
            try:
                with trio.move_on_after(self.settings.redis_timeout_s):
                    try:
                        await self._shared_coordinator.reclaim_own_slots()
                    except ChorusError as exc:  # Redis away: the slots expire anyway
                        log.warning("could not take back provider slots: %s", exc)
                yield
            finally:
                self._shared_coordinator = None

    @asynccontextmanager
    async def open_coordinator(self) -> AsyncIterator[Coordinator]:
        if self._shared_coordinator is not None:
            yield self._shared_coordinator
            return
        async with self.redis.queue() as queue, self.coordinator(queue.client).keeping() as coord:
            yield coord

    async def _submit_preview(self, job: SpeechJob) -> None:
        """Preview jobs take the HTTP front's path (the Producer) when this process runs one;
        a worker enqueues itself (the same idempotent XADD)."""
        if self.role is Role.serve:
            await self.submitter.submit(job)
            return
        async with self.redis.queue() as queue:
            await queue.enqueue([job])

    async def track_voice(self, queue, voice: Voice) -> None:  # type: ignore[no-untyped-def]
        """Schedule a new clone (or a voice's new preview job) with VoiceSync at once, on
        ``queue``'s client (the front door's own)."""
        now, window = time.time(), self.settings.voice_ready_timeout_s
        voices = RedisVoiceSyncQueue(queue.client, self.keys)
        if voice.status is VoiceStatus.processing:
            await voices.track(voice.id, now, voice.created_at.timestamp() + window)
        else:
            await voices.track(voice.id, now, now + window, state="preview")

    # -- the tree -------------------------------------------------------------------------

    def _children(self) -> list[ChildSpec]:
        s = self.settings
        children: list[ChildSpec] = [
            # first to start, last to stop: the process is listed for its whole life
            ChildSpec(id="reporter", start=self.reporter.run, restart=Restart.permanent,
                      shutdown=2 * s.redis_timeout_s + 1),
            ChildSpec(id="events", start=self.events.run, restart=Restart.permanent,
                      shutdown=2 * s.redis_timeout_s + 1),
        ]
        if self.role in (Role.serve, Role.worker):
            self.voice_sync = VoiceSync(
                settings=s, catalog=self.voices, jobs=self.store,
                open_queue=self.redis.voice_queue, submit=self._submit_preview,
                events=self.events, tick_s=min(1.0, s.voice_poll_s),
            )
            children.append(
                ChildSpec(id="voice-sync", start=self.voice_sync.run, restart=Restart.permanent,
                          shutdown=5.0)
            )
            self.actors = [
                TTSActor(
                    name=f"tts-{i}", settings=s, deliveries=self._deliveries_recv,
                    pacing=self.pacing, store=self.store, blobs=self.blobs,
                    provider=self.provider, produced=self._produced_send,
                    open_coordinator=self.open_coordinator, events=self.events,
                    open_live=self.redis.live,
                )
                for i in range(s.concurrency)
            ]
            self.storer = Storer(
                settings=s, produced=self._produced_recv, pacing=self.pacing,
                store=self.store, blobs=self.blobs, events=self.events,
            )
            # the Storer starts before the actors and stops after them (it stores all they
            # produced); one_for_one: a crashed Storer does not cut a provider call short
            pool = Supervisor(
                [
                    ChildSpec(id="tts-storer", start=self.storer.run, restart=Restart.permanent,
                              shutdown=2 * s.db_timeout_s + 1),
                    *(ChildSpec(id=a.name, start=a.run, restart=Restart.permanent, shutdown=5.0)
                      for a in self.actors),
                ],
                self._policy,
                name="tts-pool",
                on_event=self._on_event,
            )
            self.tts_pool = pool
            children.append(
                supervisor_child("tts-pool", pool, shutdown=5.0 + 2 * s.db_timeout_s + 2)
            )
            self.reader = StreamReader(
                settings=s, consumer=self.consumer,
                open_queue=partial(self.redis.queue, block_ms=s.read_block_ms),
                store=self.store, ledger=self.ledger, pacing=self.pacing,
                deliveries=self._deliveries_send, provider_name=self.provider.name,
                events=self.events,
                prestarter=Prestarter(
                    settings=s, store=self.store,
                    shared_account=self.provider.shared_account,
                    open_coordinator=self.open_coordinator,
                ),
            )
            children.append(
                ChildSpec(
                    id="stream-reader", start=self.reader.run, restart=Restart.permanent,
                    shutdown=s.shutdown_grace_s + 2 * s.redis_timeout_s + s.read_block_ms / 1000,
                )
            )
            self.sweeper = OrphanSweeper(
                settings=s, store=self.store, open_queue=self.redis.queue, events=self.events,
            )
            children.append(
                ChildSpec(id="sweeper", start=self.sweeper.run, restart=Restart.permanent,
                          shutdown=5.0)
            )
        if self.role in (Role.serve, Role.api):
            self.producer = Producer(self.redis.queue, self._tickets_recv, s.faults)
            children.append(
                ChildSpec(id="producer", start=self.producer.run, restart=Restart.permanent,
                          shutdown=5.0)
            )
            if self.books is not None:
                self.runner = StorybookRunner(
                    s, store=self.books, intake=self.intake, open_bus=self.redis.event_bus,
                    consumer=self.consumer or f"api-{socket.gethostname()}", events=self.events,
                )
                children.append(
                    ChildSpec(id="storybook-runner", start=self.runner.run,
                              restart=Restart.permanent, shutdown=5.0)
                )
            if self._front is not None:
                children.append(
                    ChildSpec(id="http", start=self._http, restart=Restart.permanent,
                              shutdown=s.shutdown_grace_s + 1)
                )
        return children

    async def _http(self, stop: trio.Event, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        assert self._front is not None
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(self._front, self, stop)
            self.http_binds = list(binds or [])
            if self._on_http_ready is not None:
                maybe = self._on_http_ready(self.http_binds)
                if maybe is not None:
                    await maybe
            task_status.started(self.http_binds)

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with self.coordination():
            await self.supervisor.run(task_status=task_status)

    @asynccontextmanager
    async def running(self, stop_limit_s: float = 30.0) -> AsyncIterator[Service]:
        """Run in the background for the body of the block (embedding, tests, benchmarks);
        on exit an ordered shutdown, cut short after ``stop_limit_s``."""
        done = trio.Event()

        async def run(*, task_status=trio.TASK_STATUS_IGNORED) -> None:
            try:
                await self.run(task_status=task_status)
            finally:
                done.set()

        async with trio.open_nursery() as nursery:
            await nursery.start(run)
            try:
                yield self
            finally:
                self.request_shutdown()
                with trio.move_on_after(stop_limit_s, shield=True):
                    await done.wait()
                nursery.cancel_scope.cancel()

    def request_shutdown(self) -> None:
        self.supervisor.request_shutdown()

    def finished(self) -> int:
        """Jobs the TTS pool settled as succeeded or failed (retries not counted)."""
        failed = sum(a.statistics().failed for a in self.actors)
        if self.storer is None:
            return failed
        stored = self.storer.statistics()
        return failed + stored.succeeded + stored.failed

    def succeeded(self) -> int:
        return self.storer.statistics().succeeded if self.storer is not None else 0

    def statistics(self) -> dict[str, object]:
        return {
            "ledger": self.ledger.statistics(),
            "pacing": self.pacing.statistics(),
            "storer": self.storer.statistics() if self.storer is not None else None,
            "reader": self.reader.statistics() if self.reader else None,
            "producer": self.producer.statistics() if self.producer else None,
            "events": self.events.statistics(),
            "voice_sync": self.voice_sync.statistics() if self.voice_sync else None,
            "storybooks": self.runner.statistics() if self.runner else None,
            "actors": [a.statistics() for a in self.actors],
            "supervisor": self.supervisor.statistics(),
            "reporter": self.reporter.statistics(),
        }


def _counted(
    note: Callable[[SupervisorEvent], None], report: Callable[[SupervisorEvent], None],
    event: SupervisorEvent,
) -> None:
    """Count restarts (``chorus_supervisor_restarts_total``, and the process list's through
    ``note``), then report the event."""
    if event.kind == "restart":
        metrics.supervisor_restart(event.child_id or "")
    note(event)
    report(event)


def _log_event(event: SupervisorEvent) -> None:
    level = (logging.WARNING if event.kind in ("crash", "outage", "restart", "give_up")
             else logging.INFO)
    log.log(level, "supervisor %s %s%s", event.kind, event.child_id or "",
            f": {event.error}" if event.error else "")


__all__ = ["Role", "Service"]
