"""StorybookRunner: a supervised actor that turns accepted books into jobs and follows them.

What it does, each pass (woken by a new book, a job event, or every ``storybook_reconcile_s``):
- brings the lines whose jobs moved on up to date (``store.sync_lines``: one statement, for the
  jobs named by the events since the last pass; on a full pass, for every active book);
- releases each book's next pending lines into the batch lane, submitted together and
  enqueued in reading order (``Intake.submit_in_order``), keeping at most
  ``Settings.book_window`` lines of a book queued or running. That window is the fairness:
  every active book has a few lines in the batch lane, so books interleave (round robin by
  arrival) and each book's first page starts at once; interactive jobs have a lane of their own
  that the StreamReader reads first (docs/ARCHITECTURE.md, "Lanes and fairness");
- ends a book once every line has ended (``store.finish_storybook``), and publishes the
  ``storybook.*`` events (progress throttled to one per ``storybook_progress_s``).

Nothing lost, nothing doubled: a line's job is submitted through the ``Intake`` with the
idempotency key (book, line, round), so a runner that dies between submitting and recording it
finds the same job next time; lines are settled by compare-and-set from the job rows, which stay
the truth; events only make the runner prompt. They come through a durable ``EventSubscriber``
(a consumer group on the global event stream); events lost while Redis was away are made up by
the full pass, which reads Postgres. Several processes may run a runner: every write is
idempotent, so two runners feeding one book only widen its window.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import msgspec
import trio

from actors.events.subscriber import EventSubscriber
from actors.pipeline.intake import NOT_NOW, Intake
from protocols.domain.storybooks import line_job_key
from protocols.errors import ChorusError
from protocols.events import NO_EVENTS, TERMINAL_JOB_KINDS, Event, EventKind
from protocols.messages import Job, JobRequest, Lane, User
from protocols.ports import BookStore, EventSink
from protocols.redis.event_bus import RedisEventBus
from protocols.settings import Settings
from protocols.storybooks import BookStatus, Line, LineStatus, RetryRound, Storybook

log = logging.getLogger("chorus.storybooks")

#: errors that mean "not now" rather than "this line cannot be made": the line stays pending
_LATER = NOT_NOW
#: a line's job ending is what frees room in its book's window (a running line is seen on the
#: next full pass; ``job.running`` events would double the passes for a figure nobody waits on)
_FOLLOWED = TERMINAL_JOB_KINDS
#: after a wake, events that arrive this soon are handled in the same pass (the slots of one
#: provider account tend to finish together); well inside the window's slack of a whole call
COALESCE_S = 0.005
_FINAL_KIND = {
    BookStatus.succeeded: EventKind.storybook_succeeded,
    BookStatus.partial: EventKind.storybook_partial,
    BookStatus.failed: EventKind.storybook_failed,
    BookStatus.cancelled: EventKind.storybook_cancelled,
}
ACTIVE_LIMIT = 1000


class RunnerStatistics(msgspec.Struct, frozen=True):
    passes: int
    released: int
    lines_settled: int
    books_finished: int
    events_seen: int


def book_event(kind: EventKind, book: Storybook, **data: Any) -> Event:
    return Event(kind=kind, owner=book.owner, subject=book.id, data=data, at=time.time())


def line_data(line: Line) -> dict[str, Any]:
    data: dict[str, Any] = {"line_id": line.id, "page": line.page, "index": line.index,
                            "status": line.status.value, "round": line.round}
    if line.job_id is not None:
        data["job_id"] = line.job_id
    if line.audio_id is not None:
        data["audio_id"] = line.audio_id
    if line.duration_s is not None:
        data["duration_s"] = line.duration_s
    if line.error_code is not None:
        data["error"] = {"code": line.error_code, "message": line.error_message or ""}
    return data


class StorybookRunner:
    def __init__(
        self,
        settings: Settings,
        *,
        store: BookStore,
        intake: Intake,
        open_bus: Callable[[], AbstractAsyncContextManager[RedisEventBus]],
        consumer: str,
        events: EventSink = NO_EVENTS,
    ) -> None:
        self.settings = settings
        self._store = store
        self._intake = intake
        self._open_bus = open_bus
        self._consumer = consumer
        self._events = events
        self._wake = trio.Event()
        self._kicked = False  # woken by ``kick``: no events to wait for
        self._dirty_jobs: set[str] = set()
        self._progress: dict[str, tuple[float, tuple[int, ...]]] = {}
        self._counts = dict.fromkeys(RunnerStatistics.__struct_fields__, 0)

    def statistics(self) -> RunnerStatistics:
        return RunnerStatistics(**self._counts)

    def kick(self) -> None:
        """A book was accepted, retried or cancelled here: look at once."""
        self._kicked = True
        self._wake.set()

    # -- the actor ---------------------------------------------------------------------------------

    async def run(self, stop: trio.Event, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._follow_events, stop)
            task_status.started()
            await self._loop(stop)
            nursery.cancel_scope.cancel()

    async def _follow_events(self, stop: trio.Event) -> None:
        """The job events, through a durable consumer group. Redis away: the full passes
        (Postgres) keep books going; the subscriber tries again a second later."""
        subscriber = EventSubscriber(
            self._open_bus, group=f"{self.settings.redis_prefix}:storybook-runner",
            consumer=self._consumer, handler=self._on_event, kinds=_FOLLOWED,
            block_ms=min(self.settings.read_block_ms, 1000),
        )
        while not stop.is_set():
            try:
                await subscriber.run(stop)
            except ChorusError as exc:
                log.warning("storybook runner: job events unavailable (%s); retrying", exc)
                await trio.sleep(1.0)

    async def _on_event(self, event: Event) -> None:
        if event.data.get("lane") != Lane.batch.value:
            return  # another job's end (``protocols.events.lane_data``): nothing of a book's
        self._counts["events_seen"] += 1
        self._dirty_jobs.add(event.subject)
        self._wake.set()

    async def _loop(self, stop: trio.Event) -> None:
        full_every = self.settings.storybook_reconcile_s
        next_full = trio.current_time()  # a full pass first: resume whatever was left
        while not stop.is_set():
            full = trio.current_time() >= next_full
            try:
                await self._pass(full=full)
            except _LATER as exc:  # Postgres or Redis away: try again on the next tick
                log.warning("storybook runner pass failed: %s", exc)
                await trio.sleep(1.0)
            if full:
                next_full = trio.current_time() + full_every
            with trio.move_on_at(min(next_full, trio.current_time() + 1.0)):
                await self._wake.wait()
                if not self._kicked:  # job events: let the slots' others arrive too
                    await trio.sleep(COALESCE_S)
            self._wake, self._kicked = trio.Event(), False

    # -- one pass ----------------------------------------------------------------------------------

    async def _pass(self, *, full: bool) -> None:
        self._counts["passes"] += 1
        store = self._store
        jobs, self._dirty_jobs = self._dirty_jobs, set()
        try:
            changed = await store.sync_lines(job_ids=sorted(jobs)) if jobs else []
        except BaseException:
            self._dirty_jobs |= jobs  # not synced: keep them for the next pass
            raise
        books = await store.active_storybooks(ACTIVE_LIMIT)
        by_id = {b.id: b for b in books}
        if full:
            for book in books:
                changed += await store.sync_lines(book_id=book.id)
        for line in changed:
            self._counts["lines_settled"] += 1
            book = by_id.get(line.book_id) or await store.get_storybook(line.book_id)
            if book is not None:
                self._publish_line(book, line)
        for book in books:
            await self._tend(book)

    def _publish_line(self, book: Storybook, line: Line) -> None:
        kind = {
            LineStatus.succeeded: EventKind.storybook_line_succeeded,
            LineStatus.failed: EventKind.storybook_line_failed,
        }.get(line.status)
        if kind is not None:
            self._events.publish(book_event(kind, book, **line_data(line)))

    async def _tend(self, book: Storybook) -> None:
        store = self._store
        counts = await store.line_counts(book.id)
        in_flight = counts[LineStatus.queued] + counts[LineStatus.running]
        pending = counts[LineStatus.pending]
        if not book.cancel_requested and pending:
            room = self.settings.book_window - in_flight
            if room > 0:
                for status in await self._release(book, await store.pending_lines(book.id, room)):
                    counts[LineStatus.pending] -= 1
                    counts[status] += 1
        if book.status is BookStatus.queued and any(
            counts[s] for s in LineStatus if s is not LineStatus.pending
        ):
            await store.mark_running(book.id)
        self._maybe_progress(book, counts)
        if not any(counts[s] for s in (LineStatus.pending, LineStatus.queued, LineStatus.running)):
            finished = await store.finish_storybook(book.id)
            if finished is not None:
                rounds = await store.retry_rounds(book.id) if finished.round else []
                self._finished(finished, counts, rounds[-1] if rounds else None)

    async def _release(self, book: Storybook, lines: list[Line]) -> list[LineStatus]:
        """Submit the lines' jobs at once (batch lane, quota already reserved with the book),
        enqueued in reading order (``Intake.submit_in_order``): the status now of each line
        released, in order. The first line that cannot be released now (the queue or the
        database is away) stays pending, and so do the lines after it."""
        owner = User(id=book.owner, name="", role="user", created_at=book.created_at)
        results = await self._intake.submit_in_order(
            [self._request(book, line) for line in lines], owner, lane=Lane.batch,
            quota=False, book_id=book.id,
        )
        statuses: list[LineStatus] = []
        for line, result in zip(lines, results, strict=True):
            if isinstance(result, _LATER):
                log.info("storybook %s: line %s not released yet: %s", book.id, line.id, result)
                break
            if isinstance(result, ChorusError):  # this line cannot be made as it is
                failed = await self._store.fail_line(
                    line.id, line.round, result.code, result.detail
                )
                if failed is not None:
                    self._publish_line(book, failed)
                statuses.append(LineStatus.failed)
                continue
            self._counts["released"] += 1
            statuses.append(await self._record(book, line, result[0]))
        return statuses

    @staticmethod
    def _request(book: Storybook, line: Line) -> JobRequest:
        return JobRequest(
            text=line.text, voice_id=line.voice_id, language=book.language,
            output_format=book.output_format, voice_settings=line.voice_settings,
            idempotency_key=line_job_key(book.id, line.id, line.round),
            pronunciation_dictionary_locators=list(book.dictionaries),
            metadata={"storybook_id": book.id, "line_id": line.id, "page": line.page,
                      "index": line.index, "round": line.round},
        )

    async def _record(self, book: Storybook, line: Line, job: Job) -> LineStatus:
        """The line's job id recorded on the line (compare-and-set): the line's status now."""
        recorded = await self._store.line_submitted(line.id, line.round, job)
        if recorded is None:  # recorded by another runner, or the book was cancelled meanwhile
            now = await self._store.get_storybook(book.id)
            if now is not None and now.cancel_requested:
                await self._store.cancel_job(job.id)  # still queued: never made, never charged
            return LineStatus.queued
        if recorded.status.terminal:  # answered from the cache
            self._publish_line(book, recorded)
        return recorded.status

    def _maybe_progress(self, book: Storybook, counts: dict[str, int]) -> None:
        now = trio.current_time()
        figures = tuple(counts[s] for s in LineStatus)
        last = self._progress.get(book.id)
        if last is not None and (last[1] == figures or now - last[0] < self._progress_s):
            return
        self._progress[book.id] = (now, figures)
        self._events.publish(book_event(
            EventKind.storybook_progress, book, lines_total=book.lines_total,
            counts={s.value: counts[s] for s in LineStatus}, round=book.round,
        ))

    @property
    def _progress_s(self) -> float:
        return self.settings.storybook_progress_s

    def _finished(
        self, book: Storybook, counts: dict[str, int], last: RetryRound | None
    ) -> None:
        self._counts["books_finished"] += 1
        self._progress.pop(book.id, None)
        figures = {s.value: counts[s] for s in LineStatus}
        if last is not None:  # the round's own lines: how many it fixed
            self._events.publish(book_event(
                EventKind.storybook_retry_finished, book, round=last.number,
                succeeded=last.succeeded, failed=last.failed,
            ))
        self._events.publish(book_event(
            _FINAL_KIND[book.status], book, status=book.status.value, counts=figures,
            lines_total=book.lines_total,
        ))
        log.info("storybook %s %s: %s", book.id, book.status.value, figures)
