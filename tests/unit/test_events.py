"""Events: encoding, the Redis event bus (real embedded Valkey), the publisher and a durable
subscriber restarted in the middle of a burst."""

from __future__ import annotations

import uuid
from functools import partial

import msgspec
import pytest
import trio

from actors.events.publisher import EventPublisher
from actors.events.subscriber import EventSubscriber
from protocols.events import (
    Event,
    EventKind,
    decode_event,
    encode_event,
    job_event,
    valid_event_id,
)
from protocols.redis.event_bus import open_event_bus
from protocols.redis.keys import Keys

CAP_S = 10.0


def ev(i: int, owner: str = "usr_a", kind: EventKind = EventKind.job_succeeded) -> Event:
    return job_event(kind, f"job_{i}", owner, n=i)


def bus_opener(redis_url: str, keys: Keys, **limits: int):
    return partial(open_event_bus, redis_url, keys, stream_timeout=3.0, **limits)


@pytest.fixture
def keys() -> Keys:
    return Keys(f"t{uuid.uuid4().hex[:10]}")


# --- the model ------------------------------------------------------------------------------


def test_event_round_trip_and_view() -> None:
    event = job_event(EventKind.tts_created, "job_1", "usr_a", audio_id="aud_1", duration_s=1.5)
    back = decode_event(encode_event(event), "17-3")
    assert back == msgspec.structs.replace(event, id="17-3")
    assert back.view() == {
        "id": "17-3", "kind": "tts.created", "subject": "job_1", "at": event.at,
        "data": {"audio_id": "aud_1", "duration_s": 1.5},
    }
    assert "owner" not in back.view()
    with pytest.raises(msgspec.ValidationError):
        decode_event(msgspec.msgpack.encode({"kind": "job.exploded", "owner": "u",
                                             "subject": "s"}), "1-0")


def test_kinds_and_ids() -> None:
    assert EventKind("job.dead").ends_job and not EventKind.job_running.ends_job
    assert {k.value for k in EventKind} >= {"voice.created", "voice.updated", "voice.deleted"}
    assert valid_event_id("1700000000000-0")
    for bad in ("", "abc", "1-", "-1", "1-2-3", "1 -2", "1" * 21 + "-0"):
        assert not valid_event_id(bad), bad


# --- the bus --------------------------------------------------------------------------------


async def test_publish_writes_global_and_owner_streams_with_one_id(redis_url, keys) -> None:
    with trio.fail_after(CAP_S):
        async with bus_opener(redis_url, keys)() as bus:
            assert await bus.tail(keys.events) == "0-0"
            ids = await bus.publish([ev(1, "usr_a"), ev(2, "usr_b"), ev(3, "usr_a")])
            assert len(ids) == 3 and all(valid_event_id(i) for i in ids)
            everything = await bus.read(keys.events, "0")
            assert [e.id for e in everything] == ids
            mine = await bus.read(keys.owner_events("usr_a"), "0")
            assert [(e.id, e.subject) for e in mine] == [(ids[0], "job_1"), (ids[2], "job_3")]
            assert [e.subject for e in await bus.read(keys.owner_events("usr_a"), ids[0])] == [
                "job_3"
            ]
            assert await bus.tail(keys.owner_events("usr_b")) == ids[1]
            assert await bus.read(keys.owner_events("usr_b"), ids[1], block_ms=10) == []


async def test_trimming_is_configured_and_owner_stream_expires(redis_url, keys) -> None:
    with trio.fail_after(CAP_S):
        async with bus_opener(redis_url, keys, maxlen=10, owner_maxlen=5, owner_ttl_s=60)() as bus:
            for start in range(0, 1000, 100):
                await bus.publish([ev(i) for i in range(start, start + 100)])
            r = bus._r
            # MAXLEN ~ trims whole nodes: near the limit, far below what was written
            assert await r.xlen(keys.events) < 300
            assert await r.xlen(keys.owner_events("usr_a")) < 300
            assert 0 < await r.ttl(keys.owner_events("usr_a")) <= 60
            newest = await bus.read(keys.events, "0", count=1000)
            assert newest[-1].subject == "job_999"


# --- the publisher --------------------------------------------------------------------------


async def test_publisher_batches_flushes_on_stop_and_never_blocks(redis_url, keys) -> None:
    publisher = EventPublisher(bus_opener(redis_url, keys), timeout_s=2.0, buffer=50)
    with trio.fail_after(CAP_S):
        for i in range(60):  # before it runs: 50 buffered, 10 dropped, nothing blocks
            publisher.publish(ev(i))
        assert publisher.statistics().dropped == 10
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            await nursery.start(publisher.run, stop)
            stop.set()
        stats = publisher.statistics()
        assert (stats.published, stats.buffered) == (50, 0)
        async with bus_opener(redis_url, keys)() as bus:
            assert len(await bus.read(keys.events, "0", count=1000)) == 50


# --- durable subscribers --------------------------------------------------------------------


class Collector:
    """A handler that records every event it is given and can stop or crash on cue."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.stop: trio.Event = trio.Event()
        self.stop_after: int | None = None
        self.crash_on: str | None = None
        self.changed = trio.Event()

    async def __call__(self, event: Event) -> None:
        await trio.lowlevel.checkpoint()
        if event.subject == self.crash_on:
            self.crash_on = None
            raise RuntimeError("handler crashed")
        self.seen.append(event.id)
        if self.stop_after is not None and len(self.seen) >= self.stop_after:
            self.stop.set()
        self.changed.set()
        self.changed = trio.Event()

    async def wait_for(self, count: int) -> None:
        while len(self.seen) < count:
            await self.changed.wait()


async def test_subscriber_restarted_mid_burst_gets_every_event_exactly_once(
    redis_url, keys
) -> None:
    opener = bus_opener(redis_url, keys)
    handler = Collector()

    def subscriber() -> EventSubscriber:
        return EventSubscriber(opener, group="audit", consumer="audit-1", handler=handler,
                               block_ms=100, batch=30)

    with trio.fail_after(CAP_S):
        async with opener() as bus:
            await bus.publish([ev(0, kind=EventKind.job_queued)])  # before the group: unseen
            await bus.ensure_group("audit")  # exists before the burst ("$": new events only)
            await bus.ensure_group("audit", "0")  # an existing group keeps its position
            first = subscriber()
            handler.stop_after = 100
            # 120 events wait before it starts, so its reads are whole batches of 30 and the
            # 100th event falls inside the fourth (events 90-119): whatever the timing, events
            # are read and not handled when it stops. The rest of the burst comes meanwhile.
            for start in range(0, 120, 20):
                await bus.publish([ev(i) for i in range(start, start + 20)])
            async with trio.open_nursery() as nursery:
                await nursery.start(first.run, handler.stop)
                for start in range(120, 200, 20):  # the burst, while it is consuming
                    await bus.publish([ev(i) for i in range(start, start + 20)])
            assert len(handler.seen) == 100
            assert await bus.pending("audit") >= 20  # read in its last batch, not handled
            second, stop = subscriber(), trio.Event()
            async with trio.open_nursery() as nursery:
                await nursery.start(second.run, stop)
                await handler.wait_for(200)
                stop.set()
            assert second.statistics().recovered > 0
            assert len(handler.seen) == len(set(handler.seen)) == 200
            published = await bus.read(keys.events, "0", count=1000)
            assert sorted(handler.seen) == sorted(e.id for e in published[1:])
            assert await bus.pending("audit") == 0


async def test_crash_without_ack_is_redelivered_and_kinds_filter(redis_url, keys) -> None:
    opener = bus_opener(redis_url, keys)
    handler = Collector()
    handler.crash_on = "job_3"

    def subscriber() -> EventSubscriber:
        return EventSubscriber(opener, group="billing", consumer="b-1", handler=handler,
                               kinds={EventKind.job_succeeded}, start="0", block_ms=100)

    with trio.fail_after(CAP_S):
        async with opener() as bus:
            ids = await bus.publish(
                [ev(i, kind=EventKind.job_succeeded if i % 2 else EventKind.job_running)
                 for i in range(10)]
            )
            with pytest.raises(ExceptionGroup) as crashed:
                async with trio.open_nursery() as nursery:
                    await nursery.start(subscriber().run, trio.Event())
            assert crashed.group_contains(RuntimeError, match="handler crashed")
            assert handler.seen == [ids[1]]
            stop = trio.Event()
            again = subscriber()
            async with trio.open_nursery() as nursery:
                await nursery.start(again.run, stop)
                await handler.wait_for(5)
                stop.set()
            assert handler.seen == [ids[i] for i in (1, 3, 5, 7, 9)]
            assert again.statistics().skipped == 3  # job_0 and job_2 were acked before the crash
            assert await bus.pending("billing") == 0
