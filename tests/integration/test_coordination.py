"""Single-flight locks and the provider semaphore on the real embedded Valkey."""

from __future__ import annotations

import uuid

import pytest
import trio

from protocols.coordination import Coordinator
from protocols.errors import ProviderUnavailable
from protocols.keys import Keys
from protocols.streams import open_queue

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

            async with trio.open_nursery() as nursery:
                for _ in range(6):
                    nursery.start_soon(use)
            assert peak == 2 and await c.slots_in_use() == 0

            # a worker killed while holding both slots (taken, never renewed nor released)
            dead = coordinator(q.client, keys, holder="w-dead", limit=2, lease_s=0.5)
            key = keys.semaphore("acct")
            for n in range(2):
                assert await dead._sem_acquire(keys=[key], args=[f"w-dead|{n}", 2, 500])
            other = coordinator(q.client, keys, holder="w2", limit=2)
            with pytest.raises(ProviderUnavailable):
                async with other.slot(wait_s=0.05):
                    pass
            start = trio.current_time()
            async with other.slot(wait_s=3):  # comes back once the dead holder's lease ends
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
