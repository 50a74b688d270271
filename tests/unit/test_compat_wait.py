"""The compat routes' wait for a job (``web/compat/jobs.py``) on trio's virtual clock: woken by
the job's terminal event, by polling the store when there is no event stream, a 504 naming the
job when it runs past ``CHORUS_SYNC_WAIT_S``; and the approximate character timings
(``web/compat/timings.py``)."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest
import trio

from protocols.events import Event, EventKind
from protocols.messages import Job, JobStatus
from protocols.settings import Settings
from web.compat.jobs import SyncWaitTimeout, Waiter
from web.compat.timings import even_spread, split

JOB = Job(id="j1", owner="u1", status=JobStatus.queued, text="hi", voice_id="v", language=None,
          output_format="mp3_44100_128", idempotency_key=None, request_hash="h", attempts=0,
          characters=2, created_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))


class Store:
    """A ``JobStore``'s ``get_job`` only: the job as it is now."""

    def __init__(self) -> None:
        self.job = JOB
        self.reads = 0

    async def get_job(self, job_id: str, owner: str | None = None) -> Job | None:
        await trio.lowlevel.checkpoint()
        self.reads += 1
        return self.job if job_id == self.job.id and owner == self.job.owner else None

    def finish(self) -> None:
        self.job = msgspec.structs.replace(self.job, status=JobStatus.succeeded, audio_id="a1")


class Log:
    """An ``EventLog``: events appended by the test; a read blocks up to ``block_ms``."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.changed = trio.Event()

    def owner_stream(self, owner: str) -> str:
        return f"events:{owner}"

    async def tail(self, stream: str) -> str:
        await trio.lowlevel.checkpoint()
        return f"0-{len(self.events)}"

    async def read(self, stream: str, after: str, *, count: int = 100,
                   block_ms: int | None = None) -> list[Event]:
        seen = int(after.split("-")[1])
        if seen >= len(self.events):
            with trio.move_on_after((block_ms or 0) / 1000):
                await self.changed.wait()
        return self.events[seen:]

    def add(self, event: Event) -> None:
        self.events.append(msgspec.structs.replace(event, id=f"0-{len(self.events) + 1}"))
        self.changed.set()
        self.changed = trio.Event()


def context(store: Store, log: Log | None, wait_s: float = 30.0) -> Any:
    return SimpleNamespace(settings=Settings(sync_wait_s=wait_s), store=store, event_log=log)


async def test_the_terminal_event_wakes_the_wait(autojump_clock: Any) -> None:
    store, log = Store(), Log()

    async def finish_later() -> None:
        await trio.sleep(5)
        log.add(Event(kind=EventKind.job_running, owner="u1", subject="j1"))
        log.add(Event(kind=EventKind.job_succeeded, owner="u1", subject="other"))
        store.finish()
        log.add(Event(kind=EventKind.job_succeeded, owner="u1", subject="j1"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(finish_later)
        t0 = trio.current_time()
        done = await Waiter(context(store, log)).finished(JOB)
    assert done.status is JobStatus.succeeded
    assert trio.current_time() - t0 == pytest.approx(5)
    assert store.reads <= 4  # woken by the event, not by reading the store again and again


async def test_without_events_the_store_is_polled_with_backoff(autojump_clock: Any) -> None:
    store = Store()

    async def finish_later() -> None:
        await trio.sleep(2)
        store.finish()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(finish_later)
        t0 = trio.current_time()
        done = await Waiter(context(store, None)).finished(JOB)
    assert done.status is JobStatus.succeeded
    assert 2 <= trio.current_time() - t0 <= 2.11  # at most one poll interval (100 ms) late
    assert store.reads < 40


@pytest.mark.parametrize("with_events", [True, False])
async def test_a_job_past_the_wait_is_a_504_naming_it(autojump_clock: Any, with_events: bool
                                                      ) -> None:
    store = Store()
    t0 = trio.current_time()
    with pytest.raises(SyncWaitTimeout) as timeout:
        await Waiter(context(store, Log() if with_events else None, wait_s=3)).finished(JOB)
    assert timeout.value.status == 504 and "/v1/jobs/j1" in timeout.value.detail
    assert 3 <= trio.current_time() - t0 <= 3.2


async def test_an_ended_job_is_answered_without_waiting() -> None:
    store = Store()
    store.finish()
    assert (await Waiter(context(store, None)).finished(store.job)) is store.job
    assert store.reads == 0


def test_the_even_spread_is_monotonic_and_ends_with_the_clip() -> None:
    timing = even_spread("Hello, world.", 1.3)
    assert "".join(timing.characters) == "Hello, world."
    starts, ends = timing.character_start_times_seconds, timing.character_end_times_seconds
    assert starts[0] == 0 and ends[-1] == 1.3
    assert list(starts) == sorted(starts) and all(s < e for s, e in zip(starts, ends, strict=True))
    parts = split(timing, [0.5, 1.0, 1.3])
    assert "".join(c for p in parts for c in p.characters) == "Hello, world."
    assert all(s < 0.5 for s in parts[0].character_start_times_seconds)
    assert even_spread("", 1.0).characters == ()
