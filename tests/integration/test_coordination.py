"""Single-flight locks and the provider semaphore on the real embedded Valkey."""

from __future__ import annotations

import uuid

import pytest
import trio

from protocols.errors import ProviderUnavailable
from protocols.messages import SpeechJob
from protocols.redis.coordination import Coordinator
from protocols.redis.keys import Keys
from protocols.redis.queue import lane_streams, open_queue

LIMIT_S = 10


def coordinator(client, keys: Keys, *, holder: str = "w1", lease_s: float = 5.0,
                limit: int = 2) -> Coordinator:
    return Coordinator(client, keys, account="acct", limit=limit, lease_s=lease_s,
                       timeout_s=2.0, holder=holder)


async def test_lock_is_exclusive_taken_back_by_the_same_job_and_compare_and_deleted(redis_url):
    keys = Keys(f"t{uuid.uuid4().hex[:8]}")
    with trio.fail_after(LIMIT_S):
        async with open_queue(redis_url, keys, stream_timeout=5) as q:
            c = coordinator(q.client, keys)
            first = c.lock("k", "job-1")
            assert await first.acquire() and not first.recently_done
            assert not await c.lock("k", "job-2").acquire()  # another job waits
            again = c.lock("k", "job-1")  # a redelivery of job-1 (its first attempt died)
            assert await again.acquire()
            await first.release()  # the stale holder cannot delete the new holder's lock
            assert not await c.lock("k", "job-2").acquire()
            await again.release()
            late = c.lock("k", "job-2")
            assert await late.acquire() and late.recently_done  # look in the cache again
            await late.release()


async def test_semaphore_limits_waits_and_frees_a_dead_holders_slot(redis_url):
    keys = Keys(f"t{uuid.uuid4().hex[:8]}")
    with trio.fail_after(LIMIT_S):
        async with open_queue(redis_url, keys, stream_timeout=5) as q:
            c = coordinator(q.client, keys, limit=2)
            peak = active = 0

            async def use() -> None:
                nonlocal peak, active
                async with c.slot(wait_s=5):
                    active += 1
                    peak = max(peak, active)
                    await trio.sleep(0.05)  # a provider call in flight
                    active -= 1

            async with c.keeping(), trio.open_nursery() as nursery:
                for _ in range(6):
                    nursery.start_soon(use)
            assert peak == 2 and await c.slots_in_use() == 0

            # a worker killed while holding both slots (taken, never renewed nor released)
            dead = coordinator(q.client, keys, holder="w-dead", limit=2, lease_s=0.5)
            key = keys.semaphore("acct")
            for n in range(2):
                assert await dead._sem_acquire(keys=[key], args=[f"w-dead|{n}", 2, 500])
            other = coordinator(q.client, keys, holder="w2", limit=2)
            async with other.keeping():
                with pytest.raises(ProviderUnavailable):
                    async with other.slot(wait_s=0.05):
                        pass
                start = trio.current_time()
                # comes back once the dead holder's lease ends
                async with other.slot(wait_s=3):
                    waited = trio.current_time() - start
            assert 0.3 < waited < 2.0

            # and a restarted worker takes back its own slots at once, without the lease
            for n in range(2):
                assert await dead._sem_acquire(keys=[key], args=[f"w-dead|{n}", 2, 60_000])
            assert await coordinator(q.client, keys, holder="w-dead").reclaim_own_slots() == 2
            assert await c.slots_in_use() == 0


async def test_a_starting_job_takes_lock_and_slot_in_one_call_never_a_slot_without_the_lock(
    redis_url,
):
    keys = Keys(f"t{uuid.uuid4().hex[:8]}")
    with trio.fail_after(LIMIT_S):
        async with open_queue(redis_url, keys, stream_timeout=5) as q:
            c = coordinator(q.client, keys, limit=1)
            first = c.lock("k", "job-1")
            token = c.slot_token()
            assert await first.acquire_with_slot(token) and first.held
            assert await c.slots_in_use() == 1
            waiter = c.lock("k", "job-2")  # an identical job: no lock, so no slot either
            assert not await waiter.acquire_with_slot(c.slot_token()) and not waiter.held
            other = c.lock("k2", "job-3")  # another text: lock yes, slot no (limit 1)
            assert not await other.acquire_with_slot(c.slot_token()) and other.held
            assert await c.slots_in_use() == 1
            await c.release_slot(token)
            for lock in (first, other):
                await lock.release()
            assert await c.slots_in_use() == 0


async def test_locking_read_takes_each_new_entrys_lock_and_a_slot_in_one_call(redis_url):
    keys = Keys(f"t{uuid.uuid4().hex[:8]}")
    with trio.fail_after(LIMIT_S):
        async with open_queue(redis_url, keys, stream_timeout=5) as q:
            await q.ensure_group()
            c = coordinator(q.client, keys, limit=2)
            busy = c.lock("kb", "job-other")  # another worker generates kb
            assert await busy.acquire()
            await q.enqueue([
                SpeechJob(job_id="j1", owner="u", text="a", voice_id="v", cache_key="ka"),
                SpeechJob(job_id="j2", owner="u", text="b", voice_id="v", cache_key="kb"),
                SpeechJob(job_id="j3", owner="u", text="c", voice_id="v"),  # no key carried
            ])
            streams = [(lane.stream, lane.prefix) for lane in lane_streams(keys)]
            rows = await c.read_and_try(streams, keys.group, "w1", 5, shared_account=True)
            assert [fields[b"j"] for _, fields, *_ in rows] == [b"j1", b"j2", b"j3"]
            (_, _, l1, s1, _), (_, _, l2, s2, _), (_, _, l3, s3, _) = rows
            assert l1 is not None and l1.held and l1.key == keys.flight("ka") and s1
            assert l2 is not None and not l2.held and s2 is None  # no slot without the lock
            assert l3 is None and s3 is None  # the actor tries for it itself
            assert await c.slots_in_use() == 1
            deliveries = await q.decode([(e, f) for e, f, *_ in rows])
            assert [d.job.job_id for d in deliveries] == ["j1", "j2", "j3"]
            # the slot given back rides on the next locking read (before the keeper's
            # linger is over); nothing new: nothing read
            async with c.keeping():
                c.release_slot_soon(s1)
                assert await c.read_and_try(streams, keys.group, "w1", 5,
                                            shared_account=True) == []
                assert await c.slots_in_use() == 0
                await c.release_locks([l1, busy])


async def test_one_keeper_renews_every_held_lock_and_slot_until_released(redis_url):
    keys = Keys(f"t{uuid.uuid4().hex[:8]}")
    with trio.fail_after(LIMIT_S):
        async with open_queue(redis_url, keys, stream_timeout=5) as q:
            c = coordinator(q.client, keys, lease_s=0.3)
            locks = [c.lock(f"k{i}", f"job-{i}") for i in range(3)]
            with pytest.raises(RuntimeError):  # outside its keeping() block nothing would renew
                c.keep(slot=c.slot_token())
            async with c.keeping():
                for lock in locks:
                    assert await lock.acquire()
                    lock.keep_alive()
                async with c.slot(wait_s=1):
                    await trio.sleep(1.0)  # three leases long
                    assert await c.slots_in_use() == 1  # renewed, not expired
                assert all([await q.client.exists([lock.key]) for lock in locks])
                await c.release_locks(locks)
                await trio.sleep(0.05)  # past the release linger: the keeper gave it back
                assert await c.slots_in_use() == 0
            assert not await q.client.exists([lock.key for lock in locks])
