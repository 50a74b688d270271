"""Storer (the TTS pool's second stage) on in-memory fakes: batches, per-job failures, starts
still on their way when the provider was called first, and a crash giving the batch back."""

from __future__ import annotations

import msgspec
import trio

from actors.pipeline.attempt import Attempt, PendingStart
from actors.pipeline.ledger import Ledger
from actors.pipeline.pacing import Pacing
from actors.pipeline.storer import Produced, Storer
from protocols.blobs.files import FileBlobStore
from protocols.errors import ChorusError, InvalidInput, StoreUnavailable
from protocols.events import EventKind
from protocols.faults import FaultPlan
from protocols.messages import Ack, Delivery, Job, JobStatus, NewAudio, NewJob, Release
from protocols.settings import Settings
from tests.support.fakes import FakeBlobStore, FakeJobStore, RecordingEvents

LIMIT_S = 5


class FailingKeys(FakeBlobStore):
    """A blob store whose writes fail for keys starting with "bad"."""

    async def put_many(self, items):  # type: ignore[no-untyped-def]
        return [InvalidInput(f"cannot write {key}") if key.startswith("bad")
                else await self.put(key, ext, data) for key, ext, data in items]


async def jobs(store: FakeJobStore, n: int) -> list[Job]:
    user, _ = await store.create_user("u")
    out = []
    for i in range(n):
        job, _ = await store.create_job(NewJob(
            id=f"j{i}", owner=user.id, text=f"Line {i}.", voice_id="en-1", language="en",
            output_format="mp3_44100_128", idempotency_key=None, request_hash=f"h{i}",
        ))
        out.append(job)
    return out


def produced(job: Job, key: str, *, start: PendingStart | None = None,
             running: Job | None = None) -> Produced:
    delivery = Delivery(entry_id=f"{job.id}-e", job=job.to_stream(), deliveries=1)
    attempt = Attempt(delivery, key, Ledger(1))  # store_all gives it the ledger it reads
    attempt.start = start
    return Produced(
        attempt=attempt, job=None if start is not None else running,
        audio=NewAudio(owner=job.owner, cache_key=key, format="mp3_44100_128",
                       content_type="audio/mpeg", duration_s=1.0, size=3, path="",
                       charge=0 if start is not None else job.characters),
        data=b"mp3", extension="mp3",
    )


async def store_all(store: FakeJobStore, blobs: FakeBlobStore, items: list[Produced],
                    events: RecordingEvents | None = None,
                    faults: FaultPlan | None = None) -> tuple[Ledger, Exception | None]:
    """Hand ``items`` to a Storer at once (one batch), stop it, return what was settled."""
    ledger = Ledger(3)
    send, recv = trio.open_memory_channel[Produced](len(items))
    for p in items:
        attempt = Attempt(p.delivery, p.attempt.key, ledger)
        attempt.start = p.attempt.start
        ledger.add(p.delivery)
        send.send_nowait(msgspec.structs.replace(p, attempt=attempt))
    storer = Storer(settings=Settings(faults=faults), produced=recv, pacing=Pacing(),
                    store=store, blobs=blobs, events=events or RecordingEvents())
    stop, crash = trio.Event(), None
    stop.set()  # stops once the channel is drained
    with trio.fail_after(LIMIT_S):
        try:
            await storer.run(stop)
        except RuntimeError as exc:
            crash = exc
    return ledger, crash


async def test_a_batch_is_finished_in_one_call_and_a_bad_file_fails_only_its_job():
    store, blobs = FakeJobStore(), FailingKeys()
    started = [await store.start_job(j.id) for j in await jobs(store, 4)]
    items = [produced(j, key, running=j)  # type: ignore[arg-type]
             for j, key in zip(started, ["k0", "k1", "bad2", "k3"], strict=True)]
    events = RecordingEvents()
    ledger, crash = await store_all(store, blobs, items, events)

    assert crash is None
    assert store.calls["finish_jobs"] == 1  # the three good ones together
    settled = ledger.settled()
    assert [settled[f"j{i}-e"] for i in range(4)] == [Ack(f"j{i}-e") for i in range(4)]
    states = {i: (await store.get_job(f"j{i}")).status for i in range(4)}  # type: ignore[union-attr]
    assert states == {0: JobStatus.succeeded, 1: JobStatus.succeeded, 2: JobStatus.failed,
                      3: JobStatus.succeeded}
    assert (await store.get_job("j2")).error_code == "invalid_input"  # type: ignore[union-attr]
    assert sorted(blobs.files) == ["k0/k0.mp3", "k1/k1.mp3", "k3/k3.mp3"]
    assert events.kinds("j0") == [EventKind.job_succeeded, EventKind.tts_created]
    assert events.kinds("j2") == [EventKind.job_failed, EventKind.tts_failed]


async def test_starts_made_during_the_provider_call_are_checked_before_finishing():
    store, blobs = FakeJobStore(), FakeBlobStore()
    fresh, finished, failing = await jobs(store, 3)
    # j1 was finished already (its start finds it succeeded): acked, not stored again
    await store.start_job(finished.id)
    await store.finish_job(finished.id, produced(finished, "old").audio)
    starts = [PendingStart() for _ in range(3)]
    starts[0].set(await store.start_job_cached(fresh.id, "k0"))
    starts[1].set(await store.start_job_cached(finished.id, "k1"))
    starts[2].fail(StoreUnavailable("database away"))
    items = [produced(j, f"k{i}", start=s)
             for i, (j, s) in enumerate(zip([fresh, finished, failing], starts, strict=True))]
    ledger, crash = await store_all(store, blobs, items)

    assert crash is None
    settled = ledger.settled()
    assert settled["j0-e"] == Ack("j0-e") and settled["j1-e"] == Ack("j1-e")
    assert isinstance(settled["j2-e"], Release)  # retried later: its start failed
    done = await store.get_job(fresh.id)
    assert done is not None and done.status is JobStatus.succeeded
    assert store.charged[(fresh.owner, fresh.id)] == fresh.characters  # charged from the start
    assert sorted(blobs.files) == ["k0/k0.mp3"]  # the finished job's new audio was dropped
    assert (await store.get_job(failing.id)).status is JobStatus.queued  # type: ignore[union-attr]


async def test_a_crash_gives_the_whole_batch_back_for_redelivery():
    store, blobs = FakeJobStore(), FakeBlobStore()
    started = [await store.start_job(j.id) for j in await jobs(store, 2)]
    items = [produced(j, f"k{i}", running=j) for i, j in enumerate(started)]  # type: ignore[arg-type]
    plan = FaultPlan(3).add("tts.after_store_before_ack", RuntimeError("injected"))
    ledger, crash = await store_all(store, blobs, items, faults=plan)

    assert isinstance(crash, RuntimeError) and str(crash) == "injected"
    settled = ledger.settled()
    assert all(isinstance(settled[f"j{i}-e"], Release) for i in range(2))
    # stored already: a redelivery finds them finished and only acks (nothing doubles)
    for i in range(2):
        job = await store.get_job(f"j{i}")
        assert job is not None and job.status is JobStatus.succeeded


def test_pending_start_runs_callbacks_once_it_succeeds():
    seen: list[Job | None] = []
    start = PendingStart()
    start.then(seen.append)
    assert seen == [] and not start.ready
    start.set((None, None))
    start.then(seen.append)  # already known: at once
    assert seen == [None, None]
    failed = PendingStart()
    failed.then(seen.append)
    failed.fail(ChorusError("nope"))
    assert len(seen) == 2  # a failed start calls nothing


async def test_audio_that_cannot_be_written_is_retried_later_not_failed(tmp_path):
    """The provider was paid for this audio: a failed blob write (here a real file store on a
    path that is not a directory) releases the entry for a retry; the job is not failed."""
    store = FakeJobStore()
    (tmp_path / "audio").write_text("not a directory")
    blobs = FileBlobStore(tmp_path / "audio")
    (job,) = [await store.start_job(j.id) for j in await jobs(store, 1)]
    events = RecordingEvents()
    ledger, crash = await store_all(store, blobs, [produced(job, "k0", running=job)], events)  # type: ignore[arg-type]

    assert crash is None
    settled = ledger.settled()["j0-e"]
    assert isinstance(settled, Release) and settled.delay > 0
    again = await store.get_job("j0")
    assert again is not None and again.status is JobStatus.running  # still to be finished
    assert again.error_code == "blob_store_error"  # noted, for the operator
    assert events.kinds("j0") == []
