"""The job queue's two lanes on the real embedded Valkey (``protocols/redis/queue.py``): the
interactive lane is read first, batch entries carry ``b:`` delivery ids through every later
call, and recovery, reclaim, dead letters and the figures cover both streams."""

from __future__ import annotations

import uuid

import trio
import trio.testing

from protocols.messages import Lane, SpeechJob
from protocols.redis.coordination import Coordinator
from protocols.redis.keys import Keys
from protocols.redis.queue import RedisQueue, encode_job, lane_streams, open_queue

LIMIT_S = 10


def job(job_id: str, lane: Lane = Lane.interactive, key: str = "") -> SpeechJob:
    return SpeechJob(job_id=job_id, owner="u", text=job_id, voice_id="v", lane=lane,
                     cache_key=key)


def ids(deliveries) -> list[str]:
    return [d.job.job_id for d in deliveries]


def fresh_keys() -> Keys:
    return Keys(f"t{uuid.uuid4().hex[:8]}")


async def figures(q: RedisQueue) -> dict[Lane, tuple[int, int]]:
    return await q.lane_figures()


async def test_an_interactive_job_enqueued_behind_a_batch_backlog_is_read_first(redis_url):
    keys = fresh_keys()
    with trio.fail_after(LIMIT_S):
        async with open_queue(redis_url, keys, stream_timeout=5) as q:
            await q.ensure_group()
            await q.enqueue([job(f"b{i}", Lane.batch) for i in range(5)])
            await q.enqueue([job("i1")])
            assert await figures(q) == {Lane.interactive: (1, 0), Lane.batch: (5, 0)}
            # three free actors: the interactive job, then the batch lane fills the rest
            first = await q.read_new("w1", 3, 0)
            assert ids(first) == ["i1", "b0", "b1"]
            assert not first[0].entry_id.startswith("b:")
            assert all(d.entry_id.startswith("b:") for d in first[1:])
            await q.enqueue([job("i2")])
            assert ids(await q.read_new("w1", 1, 0)) == ["i2"]
            assert ids(await q.read_new("w1", 10, 0)) == ["b2", "b3", "b4"]
            assert await q.read_new("w1", 10, 0) == []
            assert await q.pending_count() == 7 and await q.backlog() == 7


async def test_the_locking_read_takes_interactive_first_and_tries_their_locks(redis_url):
    keys = fresh_keys()
    with trio.fail_after(LIMIT_S):
        async with open_queue(redis_url, keys, stream_timeout=5) as q:
            await q.ensure_group()
            c = Coordinator(q.client, keys, account="acct", limit=3, lease_s=5.0,
                            timeout_s=2.0, holder="w1")
            await q.enqueue([job(f"b{i}", Lane.batch, key=f"kb{i}") for i in range(3)])
            await q.enqueue([job("i1", key="ki1")])
            streams = [(lane.stream, lane.prefix) for lane in lane_streams(keys)]
            rows = await c.read_and_try(streams, keys.group, "w1", 2, shared_account=True)
            deliveries = await q.decode([(e, f) for e, f, *_ in rows])
            assert ids(deliveries) == ["i1", "b0"]
            assert not deliveries[0].entry_id.startswith("b:")
            assert deliveries[1].entry_id.startswith("b:")
            (_, _, lock_i, slot_i, _), (_, _, lock_b, slot_b, _) = rows
            assert lock_i is not None and lock_i.held and lock_i.key == keys.flight("ki1")
            assert lock_b is not None and lock_b.held and lock_b.key == keys.flight("kb0")
            assert slot_i and slot_b and await c.slots_in_use() == 2
            await q.ack([d.entry_id for d in deliveries])
            assert await figures(q) == {Lane.interactive: (0, 0), Lane.batch: (2, 0)}


async def test_the_locking_read_says_which_lines_belong_to_a_book_not_cancelled(redis_url):
    """A line's worker may call the provider before the line's start is known only while its
    book has no cancel marker (``TTSActor._may_call_early``): the locking read tells, in the
    same round trip, and the marker set by a cancel turns it off for the book's lines still
    queued (not for another book's)."""
    keys = fresh_keys()
    with trio.fail_after(LIMIT_S):
        async with open_queue(redis_url, keys, stream_timeout=5) as q:
            await q.ensure_group()
            c = Coordinator(q.client, keys, account="acct", limit=10, lease_s=5.0,
                            timeout_s=2.0, holder="w1")

            def line(job_id: str, book: str) -> SpeechJob:
                return SpeechJob(job_id=job_id, owner="u", text=job_id, voice_id="v",
                                 lane=Lane.batch, cache_key=f"k{job_id}", book_id=book)

            await q.enqueue([line("a1", "book-a"), line("b1", "book-b"), line("a2", "book-a"),
                             line("a3", "book-a"), job("x1", Lane.batch, key="kx1"),
                             job("i1", key="ki1")])
            streams = [(lane.stream, lane.prefix) for lane in lane_streams(keys)]

            async def live() -> dict[str, tuple[str, bool]]:
                """job id -> (its book, as decoded; whether the read says the book is live)"""
                rows = await c.read_and_try(streams, keys.group, "w1", 2, shared_account=True)
                decoded = await q.decode([(row.entry_id, row.fields) for row in rows])
                return {d.job.job_id: (d.job.book_id, row.book_live)
                        for d, row in zip(decoded, rows, strict=True)}

            # a single job and a line of a live book; then a line of each live book
            assert await live() == {"i1": ("", True), "a1": ("book-a", True)}
            assert await live() == {"b1": ("book-b", True), "a2": ("book-a", True)}
            await c.mark_book_cancelled("book-a")  # the cancel's first step
            # book a's line still queued is not live now; a batch job of no book never is
            assert await live() == {"a3": ("book-a", False), "x1": ("", False)}
            # a single job cancelled while queued is not live either (its own marker)
            await q.enqueue([job("i2", key="ki2"), job("i3", key="ki3")])
            await c.mark_job_cancelled("i2")
            assert await live() == {"i2": ("", False), "i3": ("", True)}


async def test_a_blocked_read_wakes_for_a_batch_entry(redis_url):
    keys = fresh_keys()
    with trio.fail_after(LIMIT_S):
        async with (
            open_queue(redis_url, keys, stream_timeout=15) as reader,
            open_queue(redis_url, keys, stream_timeout=5) as producer,
        ):
            await reader.ensure_group()
            got: list = []

            async def read() -> None:
                got.extend(await reader.read_new("w1", 3, 8000))

            with trio.fail_after(4):  # far less than the 8 s block: it woke for the entry
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(read)
                    await trio.testing.wait_all_tasks_blocked(0.05)
                    await producer.enqueue([job("b0", Lane.batch)])
            assert ids(got) == ["b0"] and got[0].entry_id.startswith("b:")


async def test_equal_entry_ids_in_both_lanes_are_acked_released_and_claimed_apart(redis_url):
    keys = fresh_keys()
    with trio.fail_after(LIMIT_S):
        async with open_queue(redis_url, keys, stream_timeout=5) as q:
            await q.ensure_group()
            # the same entry id in both streams (as two XADDs within one millisecond give)
            for lane, name in ((Lane.interactive, "i1"), (Lane.batch, "b1")):
                j = job(name, lane)
                await q.client.xadd(keys.lane(lane), {"m": encode_job(j), "j": name, "k": ""},
                                    identifier="5-1")
            read = await q.read_new("w1", 5, 0)
            assert [(d.entry_id, d.job.job_id) for d in read] == [("5-1", "i1"), ("b:5-1", "b1")]
            await q.ack(["b:5-1"])  # only the batch entry goes
            assert await figures(q) == {Lane.interactive: (1, 1), Lane.batch: (0, 0)}
            await q.release("w1", ["5-1"], 0)  # claimable by anyone at once
            _, claimed = await q.autoclaim("w2", 0, "0-0", 10)
            assert [(d.entry_id, d.job.job_id, d.deliveries) for d in claimed] == [
                ("5-1", "i1", 2)
            ]


async def test_own_pending_entries_of_both_lanes_are_recovered_after_a_crash(redis_url):
    keys = fresh_keys()
    with trio.fail_after(LIMIT_S):
        async with open_queue(redis_url, keys, stream_timeout=5) as q:
            await q.ensure_group()
            await q.enqueue([job("b0", Lane.batch), job("i0"), job("b1", Lane.batch)])
            assert len(await q.read_new("w1", 10, 0)) == 3  # then the worker dies
        async with open_queue(redis_url, keys, stream_timeout=5) as q:  # restarted, same name
            pending = await q.own_pending("w1", 100)
            assert [d for _, d in pending] == [1, 1, 1]
            recovered = await q.claim("w1", [entry_id for entry_id, _ in pending])
            assert ids(recovered) == ["i0", "b0", "b1"]
            assert [d.deliveries for d in recovered] == [2, 2, 2]
            assert [d.entry_id for d in recovered] == [e for e, _ in pending]
            await q.renew("w1", [d.entry_id for d in recovered])
            await q.ack([d.entry_id for d in recovered])
            assert await q.own_pending("w1", 100) == []
            assert await q.pending_count() == 0 and await q.backlog() == 0


async def test_another_worker_reclaims_both_lanes_interactive_first(redis_url):
    keys = fresh_keys()
    with trio.fail_after(LIMIT_S):
        async with open_queue(redis_url, keys, stream_timeout=5) as q:
            await q.ensure_group()
            await q.enqueue([job(f"b{i}", Lane.batch) for i in range(3)] + [job("i0"), job("i1")])
            taken = await q.read_new("dead-worker", 10, 0)
            assert len(taken) == 5
            # its lease ran out (released with no idle time left: claimable at once)
            await q.release("dead-worker", [d.entry_id for d in taken], 10_000)
            got, cursor, calls = [], "0-0", 0
            while True:  # the StreamReader's loop: two at a time until the cursor is done
                cursor, claimed = await q.autoclaim("w2", 1000, cursor, 2)
                got += claimed
                calls += 1
                if cursor in ("0-0", "0"):
                    break
            assert ids(got) == ["i0", "i1", "b0", "b1", "b2"]
            assert all(d.deliveries == 2 for d in got) and calls >= 3
            assert {e for e, _ in await q.own_pending("w2", 100)} == {d.entry_id for d in got}
            assert await q.own_pending("dead-worker", 100) == []
            await q.ack([d.entry_id for d in got])
            assert await q.pending_count() == 0 and await q.backlog() == 0


async def test_enqueue_is_idempotent_by_job_id_across_lanes(redis_url):
    keys = fresh_keys()
    with trio.fail_after(LIMIT_S):
        async with open_queue(redis_url, keys, stream_timeout=5) as q:
            await q.ensure_group()
            await q.enqueue([job("j1", Lane.batch), job("j2")])
            await q.enqueue([job("j1", Lane.batch), job("j1"), job("j2", Lane.batch)])
            assert await figures(q) == {Lane.interactive: (1, 0), Lane.batch: (1, 0)}
            assert await q.enqueued(["j1", "j2", "j3"]) == {"j1", "j2"}
            read = await q.read_new("w1", 10, 0)
            assert [(d.job.job_id, d.job.lane) for d in read] == [
                ("j2", Lane.interactive), ("j1", Lane.batch)
            ]


async def test_a_dead_batch_entry_keeps_its_lane_and_goes_back_into_the_batch_lane(redis_url):
    keys = fresh_keys()
    with trio.fail_after(LIMIT_S):
        async with open_queue(redis_url, keys, stream_timeout=5) as q:
            await q.ensure_group()
            await q.enqueue([job("b0", Lane.batch)])
            (delivery,) = await q.read_new("w1", 1, 0)
            await q.dead_letter(delivery, "delivered too often")
            assert await figures(q) == {Lane.interactive: (0, 0), Lane.batch: (0, 0)}
            (letter,) = await q.dead_letters()
            assert letter.job.lane is Lane.batch
            assert letter.original_entry_id == delivery.entry_id
            assert letter.original_entry_id.startswith("b:")
            raw = await q.client.xrange(keys.dead, "-", "+")
            assert raw[0].field_values[b"lane"] == b"batch"

            entry_id = await q.add_raw(letter.job)  # the redrive
            assert entry_id.startswith("b:")
            assert await figures(q) == {Lane.interactive: (0, 0), Lane.batch: (1, 0)}
            (again,) = await q.read_new("w1", 1, 0)
            assert again.entry_id == entry_id and again.job == letter.job


async def test_an_undecodable_batch_entry_is_dead_lettered_from_its_own_stream(redis_url):
    keys = fresh_keys()
    with trio.fail_after(LIMIT_S):
        async with open_queue(redis_url, keys, stream_timeout=5) as q:
            await q.ensure_group()
            await q.client.xadd(keys.jobs_batch, {"m": b"\xc1 not msgpack", "j": "x", "k": ""})
            await q.enqueue([job("b1", Lane.batch)])
            assert ids(await q.read_new("w1", 5, 0)) == ["b1"]
            assert await figures(q) == {Lane.interactive: (0, 0), Lane.batch: (1, 1)}
            raw = await q.client.xrange(keys.dead, "-", "+")
            assert len(raw) == 1 and raw[0].field_values[b"entry_id"].startswith(b"b:")
            assert raw[0].field_values[b"lane"] == b"batch"


async def test_figures_count_a_lane_without_its_group_as_empty(redis_url):
    """A doctor run against a deployment from before lanes: no batch stream, no group yet."""
    keys = fresh_keys()
    with trio.fail_after(LIMIT_S):
        async with open_queue(redis_url, keys, stream_timeout=5) as q:
            await q.client.xgroup_create(keys.jobs, keys.group, "0", mkstream=True)
            await q.client.xadd(keys.jobs, {"m": encode_job(job("old")), "j": "old", "k": ""})
            assert await figures(q) == {Lane.interactive: (1, 0), Lane.batch: (0, 0)}
            await q.ensure_group()  # a worker starts: both groups, old entries readable
            (old,) = await q.read_new("w1", 5, 0)
            assert old.job.lane is Lane.interactive and not old.entry_id.startswith("b:")


async def test_a_release_for_an_outage_gives_the_delivery_back_uncounted(redis_url):
    # an entry delivered once, released because Postgres was away (retry_count = 0): the
    # next worker sees it as its first delivery again, in both lanes; a plain release counts
    keys = fresh_keys()
    with trio.fail_after(LIMIT_S):
        async with open_queue(redis_url, keys, stream_timeout=5) as q:
            await q.ensure_group()
            await q.enqueue([job("i0"), job("b0", Lane.batch), job("i1")])
            taken = await q.read_new("w1", 10, 0)
            assert [d.deliveries for d in taken] == [1, 1, 1]
            outage = [d.entry_id for d in taken if d.job.job_id != "i1"]
            await q.release("w1", outage, 10_000, retry_count=0)
            counted = [d.entry_id for d in taken if d.job.job_id == "i1"]
            await q.release("w1", counted, 10_000)  # counted, as before
            _, got = await q.autoclaim("w2", 1000, "0-0", 10)
            assert {d.job.job_id: d.deliveries for d in got} == {"i0": 1, "i1": 2, "b0": 1}
            await q.ack([d.entry_id for d in got])
