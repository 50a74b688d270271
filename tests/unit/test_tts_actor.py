"""TTSActor and Storer (the TTS pool's two stages) on in-memory fakes: what they settle and
publish for deliveries."""

from __future__ import annotations

import trio

from actors.inflight import InFlight
from actors.storer import Produced, Storer
from actors.tts_actor import TTSActor
from protocols.events import EventKind
from protocols.messages import Ack, Delivery, NewJob
from protocols.settings import Settings
from tests.fakes import FakeBlobStore, FakeJobStore, FakeSpeechProvider, RecordingEvents


async def run_one(store: FakeJobStore, provider: FakeSpeechProvider, events: RecordingEvents,
                  delivery: Delivery) -> InFlight:
    inflight = InFlight(1)
    send, recv = trio.open_memory_channel[Delivery](0)
    produced_send, produced_recv = trio.open_memory_channel[Produced](8)
    blobs = FakeBlobStore()
    storer = Storer(settings=Settings(), produced=produced_recv, inflight=inflight, store=store,
                    blobs=blobs, events=events)
    actor = TTSActor(
        name="tts-0", settings=Settings(), deliveries=recv, inflight=inflight, store=store,
        blobs=blobs, provider=provider, produced=produced_send, events=events,
    )
    stop_storer, stop = trio.Event(), trio.Event()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(storer.run, stop_storer)
            await nursery.start(actor.run, stop)
            inflight.add(delivery)
            await send.send(delivery)
            while delivery.entry_id not in inflight.settled():
                await inflight.wait_changed()
            stop.set()
            stop_storer.set()
    return inflight


async def test_a_redelivered_finished_job_is_acked_and_its_final_event_published_again():
    store, provider, events = FakeJobStore(), FakeSpeechProvider(), RecordingEvents()
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
