"""TTSActor and Storer (the TTS pool's two stages) on in-memory fakes: what they settle and
publish for deliveries."""

from __future__ import annotations

import msgspec
import trio

from actors.pipeline.attempt import Attempt
from actors.pipeline.ledger import Ledger
from actors.pipeline.pacing import Pacing
from actors.pipeline.storer import Produced, Storer
from actors.pipeline.tts_actor import TTSActor
from protocols.domain.cachekey import job_cache_key
from protocols.events import EventKind
from protocols.messages import Ack, Delivery, JobStatus, Lane, NewJob
from protocols.providers.fake import FakeProvider
from protocols.settings import Settings
from tests.support.fakes import TEST_VOICES, FakeBlobStore, FakeJobStore, RecordingEvents


async def run_one(store: FakeJobStore, provider: FakeProvider, events: RecordingEvents,
                  delivery: Delivery) -> Ledger:
    ledger, pacing = Ledger(1), Pacing()
    send, recv = trio.open_memory_channel[Attempt](0)
    produced_send, produced_recv = trio.open_memory_channel[Produced](8)
    blobs = FakeBlobStore()
    storer = Storer(settings=Settings(), produced=produced_recv, pacing=pacing, store=store,
                    blobs=blobs, events=events)
    actor = TTSActor(
        name="tts-0", settings=Settings(), deliveries=recv, pacing=pacing, store=store,
        blobs=blobs, provider=provider, produced=produced_send, events=events,
    )
    stop_storer, stop = trio.Event(), trio.Event()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(storer.run, stop_storer)
            await nursery.start(actor.run, stop)
            ledger.add(delivery)
            await send.send(Attempt(delivery, job_cache_key(delivery.job, provider.name), ledger))
            while delivery.entry_id not in ledger.settled():
                await ledger.wait_changed()
            stop.set()
            stop_storer.set()
    return ledger


async def test_a_redelivered_finished_job_is_acked_and_its_final_event_published_again():
    store, provider, events = FakeJobStore(), FakeProvider(voices=TEST_VOICES), RecordingEvents()
    user, _ = await store.create_user("u")
    job, _ = await store.create_job(NewJob(
        id="j1", owner=user.id, text="Hello.", voice_id="en-1", language="en",
        output_format="mp3_44100_128", idempotency_key=None, request_hash="h",
    ))
    delivery = Delivery(entry_id="1-0", job=job.to_stream(), deliveries=1)
    first = await run_one(store, provider, events, delivery)
    assert first.settled()["1-0"] == Ack("1-0")
    assert events.kinds("j1") == [EventKind.job_running, EventKind.job_succeeded,
                                  EventKind.tts_created]
    # the process died after finishing but before its events went out: delivered again
    again = Delivery(entry_id="1-0", job=job.to_stream(), deliveries=2)
    events.events.clear()
    second = await run_one(store, provider, events, again)
    assert second.settled()["1-0"] == Ack("1-0")
    assert events.kinds("j1") == [EventKind.job_succeeded]  # no second generation
    assert len(provider.requests) == 1
    assert events.events[0].data["audio_id"] == (await store.get_job("j1")).audio_id


def test_the_provider_is_called_before_the_start_is_known_only_when_nothing_can_be_cached():
    import time

    from actors.pipeline.attempt import PendingStart
    from actors.pipeline.flight import FirstTry
    from protocols.messages import SpeechJob
    from protocols.redis.coordination import Lock

    def case(*, deliveries: int = 1, held: bool = True, recently_done: bool = False,
             age_s: float = 1.0, tried: bool = True, known: bool = False,
             lane: Lane = Lane.interactive, book_live: bool = True) -> bool:
        lock = Lock(None, "flight:k", "j1")  # type: ignore[arg-type]
        lock.held, lock.recently_done = held, recently_done
        start = PendingStart()
        if known:
            start.set((None, None))
        job = SpeechJob(job_id="j1", owner="u", text="Hi.", voice_id="v", cache_key="k",
                        submitted_at=time.time() - age_s, lane=lane)
        delivery = Delivery(entry_id="1-0", job=job, deliveries=deliveries)
        attempt = Attempt(delivery, "k", Ledger(1))
        first_try = FirstTry(lock, None, book_live) if tried else None
        attempt.start, attempt.first_try = start, first_try
        return TTSActor._may_call_early(attempt, start)

    assert case()  # new, lock free, no identical job finished lately, young
    assert not case(deliveries=2)  # a redelivery may be finished already
    assert not case(held=False)  # another worker generates it: wait for its audio
    assert not case(recently_done=True)  # an identical job finished: look in the cache
    assert not case(age_s=100)  # older than the "done" marker's life minus the margin
    assert not case(tried=False)  # no first try (Redis failed)
    assert not case(known=True)  # the start is known already: no need to guess
    # a job cancelled while queued (DELETE /v1/jobs/{id} marks it in Redis first)
    assert not case(book_live=False)
    assert not case(lane=Lane.batch, book_live=False)  # a line of a cancelled book
    # ... unless its book had no cancel marker when it was read (a cancel marks it first)
    assert case(lane=Lane.batch, book_live=True)
    assert not case(lane=Lane.batch, book_live=True, deliveries=2)
    assert not case(lane=Lane.batch, book_live=True, age_s=100)  # the marker may be gone


async def test_a_cancelled_job_is_acked_without_a_provider_call_and_announced_cancelled():
    store, provider, events = FakeJobStore(), FakeProvider(voices=TEST_VOICES), RecordingEvents()
    user, _ = await store.create_user("u")
    job, _ = await store.create_job(NewJob(
        id="j1", owner=user.id, text="Hello.", voice_id="en-1", language="en",
        output_format="mp3_44100_128", idempotency_key=None, request_hash="h", lane=Lane.batch,
    ))
    store.jobs["j1"] = msgspec.structs.replace(job, status=JobStatus.cancelled)  # cancel_job
    delivery = Delivery(entry_id="1-0", job=job.to_stream(), deliveries=1)
    ledger = await run_one(store, provider, events, delivery)
    assert ledger.settled()["1-0"] == Ack("1-0")
    assert len(provider.requests) == 0
    assert events.kinds("j1") == [EventKind.job_cancelled]
    assert store.jobs["j1"].status is JobStatus.cancelled
