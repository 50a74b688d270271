"""``LiveFollower`` on in-memory fakes of the live stream and the store: attempts spliced byte
for byte, a changed redelivery cut short, a gap filled from the stored clip, a failed job."""

from __future__ import annotations

import datetime as dt

import msgspec
import pytest
import trio

from actors.pipeline.live import AttemptPublisher, LiveFollower
from protocols.errors import JobNotSucceeded, LiveAudioChanged, QueueUnavailable
from protocols.live import LiveEvent, LiveKind
from protocols.messages import Audio, Job, JobStatus
from protocols.settings import Settings

JOB = Job(
    id="job_1", owner="u1", status=JobStatus.running, text="hi", voice_id="v",
    language=None, output_format="mp3_44100_128", idempotency_key=None, request_hash="h",
    attempts=1, characters=2, created_at=dt.datetime.now(dt.UTC),
)
STORED = b"0123456789"


class Live:
    """A job's live stream in memory (a ``LiveReader`` and a ``LiveWriter``)."""

    def __init__(self) -> None:
        self.events: list[LiveEvent] = []
        self.added = trio.Event()
        self.fail = False

    def add(self, attempt: str, kind: LiveKind, offset: int = 0, data: bytes = b"") -> None:
        self.events.append(LiveEvent(id=str(len(self.events) + 1), attempt=attempt, kind=kind,
                                     offset=offset, data=data))

    async def chunk(self, job_id: str, attempt: str, offset: int, data: bytes) -> None:
        if self.fail:
            raise QueueUnavailable("down")
        self.add(attempt, LiveKind.chunk, offset, data)

    async def end(self, job_id: str, attempt: str, size: int) -> None:
        self.add(attempt, LiveKind.end, size)

    async def abort(self, job_id: str, attempt: str) -> None:
        self.add(attempt, LiveKind.abort)

    async def read(self, job_id: str, after: str, block_ms: int) -> list[LiveEvent]:
        found = [e for e in self.events if int(e.id) > int(after)]
        if not found and block_ms:
            await trio.sleep(block_ms / 1000)
        return found


class Store:
    def __init__(self, status: JobStatus = JobStatus.running) -> None:
        self.status = status

    async def get_job(self, job_id: str, owner: str | None = None) -> Job | None:
        return msgspec.structs.replace(JOB, status=self.status, audio_id="aud_1")

    async def get_audio(self, audio_id: str, owner: str | None = None) -> Audio:
        return Audio(id=audio_id, owner="u1", cache_key="k", format="mp3_44100_128",
                     content_type="audio/mpeg", duration_s=1.0, size=len(STORED), path="p",
                     created_at=dt.datetime.now(dt.UTC))

    async def get(self, path: str) -> bytes:
        return STORED


async def collect(live: Live, store: Store) -> list[bytes]:
    follower = LiveFollower(Settings(live_wait_s=30), store=store, blobs=store,  # type: ignore[arg-type]
                            reader=live)
    got = []
    async for chunk in follower.follow(JOB):
        got.append(chunk)
    return got


async def test_a_redelivery_with_the_same_bytes_goes_on_where_the_first_stopped(autojump_clock):
    live = Live()
    live.add("a", LiveKind.chunk, 0, b"012")
    live.add("a", LiveKind.chunk, 3, b"34")
    live.add("a", LiveKind.abort)
    live.add("b", LiveKind.chunk, 0, b"0123")
    live.add("b", LiveKind.chunk, 4, b"4567")
    live.add("b", LiveKind.chunk, 4, b"4567")  # a chunk written twice
    live.add("b", LiveKind.end, 8)
    got = await collect(live, Store())
    assert b"".join(got) == b"01234567"
    assert got == [b"012", b"34", b"567"]


async def test_a_redelivery_with_other_bytes_ends_the_stream_with_an_error(autojump_clock):
    live = Live()
    live.add("a", LiveKind.chunk, 0, b"012")
    live.add("b", LiveKind.chunk, 0, b"xyz9")  # the first attempt died without a word
    follower = LiveFollower(Settings(live_wait_s=30), store=Store(),  # type: ignore[arg-type]
                            blobs=Store(), reader=live)  # type: ignore[arg-type]
    got = []
    with pytest.raises(LiveAudioChanged):
        async for chunk in follower.follow(JOB):
            got.append(chunk)
    assert got == [b"012"]


async def test_a_gap_is_filled_from_the_stored_clip(autojump_clock):
    live = Live()
    live.add("a", LiveKind.chunk, 0, b"0123")
    live.add("a", LiveKind.chunk, 6, b"6789")  # entries trimmed in between
    store = Store()

    async def finish_later() -> None:
        await trio.sleep(3)
        store.status = JobStatus.succeeded

    async with trio.open_nursery() as nursery:
        nursery.start_soon(finish_later)
        got = await collect(live, store)
    assert b"".join(got) == STORED and got[0] == b"0123"


async def test_a_job_without_a_live_stream_gives_its_stored_clip(autojump_clock):
    assert await collect(Live(), Store(JobStatus.succeeded)) == [STORED]


async def test_a_failed_job_is_an_error(autojump_clock):
    with pytest.raises(JobNotSucceeded):
        await collect(Live(), Store(JobStatus.failed))


async def test_the_publisher_stops_on_redis_errors_and_never_fails_the_job(autojump_clock):
    live = Live()
    publisher = AttemptPublisher(live, "job_1", timeout_s=1)
    await publisher.sink(b"01")
    live.fail = True
    await publisher.sink(b"23")  # logged, not raised
    live.fail = False
    await publisher.sink(b"45")
    await publisher.end(6)
    assert publisher.broken
    assert [e.data for e in live.events] == [b"01"]  # no end: followers use the stored clip


async def test_a_finished_job_is_answered_without_waiting(autojump_clock):
    follower = LiveFollower(Settings(live_wait_s=30), store=Store(JobStatus.succeeded),  # type: ignore[arg-type]
                            blobs=Store(), reader=Live())  # type: ignore[arg-type]
    t0 = trio.current_time()
    done = msgspec.structs.replace(JOB, status=JobStatus.succeeded, audio_id="aud_1")
    assert [chunk async for chunk in follower.follow(done)] == [STORED]
    assert trio.current_time() == t0  # no blocking read of a stream that will never come
