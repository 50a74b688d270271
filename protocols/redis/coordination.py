"""Coordination between worker processes, on Redis: single-flight locks, the provider
account's global semaphore, and shared counters.

- ``Coordinator.lock(key)``: at most one worker generates a given cache key at a time. SET NX PX
  with a random token; renewed while held; released by a compare-and-delete script, so a holder
  whose lease ran out can never delete a newer holder's lock. A holder that dies releases by
  expiry (its job is redelivered by the stream's own lease).
- ``Coordinator.mark_book_cancelled(book)``: a storybook's cancel marker, set before the cancel
  reaches Postgres, so the locking read can tell whether a line's book may have been cancelled
  (a line of a live book may call the provider before its start is known).
- ``Coordinator.slot()``: one of ``provider_concurrency`` slots of the provider account, across
  every process. A sorted set of tokens scored by their expiry (Redis' own clock, read in the
  scripts, so hosts' clocks do not matter); expired members are swept on every acquire, so a
  crashed holder's slot comes back within the lease.

Every call has a deadline (``Coordinator.call``); Redis trouble raises ``QueueUnavailable``
(retryable: the job is released and redelivered). A ``Lock`` is a handle with state (``held``,
``recently_done``): its Redis calls are made by its coordinator (``try_lock``,
``try_lock_with_slot``, ``release_lock``, ``keep`` / ``stop_keeping``). The Lua scripts, with
their KEYS and ARGV, are in ``protocols.redis.scripts``.

What is held is renewed, and slots are given back in batches, by one keeper task per
coordinator. Its owner is the ``Coordinator.keeping()`` block: the Service opens it around its
whole supervision tree (``actors/service.py``), so the keeper outlives every actor that holds a
lock or a slot, and whatever is still to be given back when the block ends is given back then.
"""

from __future__ import annotations

import collections
import logging
import math
import random
import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, NamedTuple

import coredis
import trio

from protocols.errors import ProviderUnavailable, QueueUnavailable
from protocols.redis import scripts
from protocols.redis.client import REDIS_ERRORS, as_str, redis_errors
from protocols.redis.keys import Keys

__all__ = [
    "CLOCK_MARGIN_S", "DONE_MARKER_S", "Coordinator", "Lock", "LockingRead", "read_counters",
]

log = logging.getLogger("chorus.coordination")

POLL_MIN_S = 0.01
POLL_MAX_S = 0.1
RELEASE_LINGER_S = 0.005
#: counts of ``count_soon(..., linger=True)`` wait at most this long for a round trip that goes
#: anyway (a slot's release), else go on their own: one request's count is not one round trip
COUNT_LINGER_S = 0.5
#: a released lock's "done" marker lives this long: a job submitted less than
#: ``DONE_MARKER_S - CLOCK_MARGIN_S`` ago whose lock try finds no marker cannot have cached
#: audio that its submit did not already see (``actors.pipeline.tts_actor``, the early call)
DONE_MARKER_S = 120.0
CLOCK_MARGIN_S = 30.0


class LockingRead(NamedTuple):
    """One entry taken by the locking read (``Coordinator.read_and_try``)."""

    #: its stream's delivery id prefix + its entry id
    entry_id: str
    fields: dict[bytes, bytes]
    #: its lock (``held`` says whether it was taken); None: the entry names no key, not tried
    lock: Lock | None
    #: the provider slot taken with the lock
    slot: str | None
    #: the entry's storybook (``SpeechJob.book_id``) had no cancel marker
    #: (``mark_book_cancelled``) when the entry was read, or, for a job of no book, the job
    #: had none (``mark_job_cancelled``): the job was not cancelled before this read (a cancel
    #: sets its marker first)
    book_live: bool = False


class Lock:
    """One single-flight lock on a cache key: a handle whose Redis calls its coordinator makes.
    ``acquire`` once; then ``keep_alive`` in a task until ``release``."""

    def __init__(
        self, coordinator: Coordinator, key: str, holder: str, token: str | None = None
    ) -> None:
        self._c = coordinator
        self.key = key
        #: "<holder>|": a token starting with it is this holder's (an earlier delivery's)
        self.prefix = f"{holder}|"
        self.token = token or self.prefix + secrets.token_hex(16)
        self.held = False
        #: a holder released this key within the last lease: its audio may just have been
        #: stored, so the cache must be looked at again before generating
        self.recently_done = False
        #: a counter to add one to when the lock is released (e.g. "provider_calls")
        self.count_on_release = ""

    @property
    def done_key(self) -> str:
        """The lock's "done" marker, set when a holder releases it (``recently_done``)."""
        return self.key + ":done"

    async def acquire(self) -> bool:
        """Take the lock if it is free, or held by an earlier delivery of the same holder
        (a redelivered job need not wait for its own dead attempt's lease)."""
        reply = await self._c.try_lock(self)
        self.held = bool(reply)
        self.recently_done = reply == 2
        return self.held

    async def acquire_with_slot(self, slot_token: str | None) -> bool:
        """``acquire``, and when the lock is taken, one try at a provider slot for
        ``slot_token``, in one round trip. True when the slot was taken too."""
        lock, slot = await self._c.try_lock_with_slot(self, slot_token)
        self.held = lock > 0
        self.recently_done = lock == 2
        return bool(slot)

    def keep_alive(self) -> None:
        """Renewed every third of the lease until released (``Coordinator.keep``); a lost
        lock is logged (the work goes on: finishing is a compare-and-set, so a double
        generation doubles nothing)."""
        if self.held:
            self._c.keep(lock=self)

    def stop_renewing(self) -> None:
        """No more renewals by ``keep_alive`` (the lock is being released)."""
        self._c.stop_keeping(self)

    async def release(self) -> None:
        """Compare-and-delete; best effort and bounded (the lock expires anyway)."""
        self.stop_renewing()
        if not self.held:
            if self.count_on_release:
                await self._c.count(self.count_on_release)
            return
        self.held = False
        await self._c.release_lock(self)

    async def wait_released(self, limit_s: float) -> None:
        """Until no one holds the lock (or ``limit_s`` passes): polled with backoff."""
        delay = POLL_MIN_S
        with trio.move_on_after(limit_s):
            while await self._c.call(self._c.client.exists([self.key])):
                await trio.sleep(delay * (0.5 + random.random()))
                delay = min(POLL_MAX_S * 2, delay * 2)


class Coordinator:
    """Locks, the global provider semaphore and counters on one coredis client."""

    def __init__(
        self,
        client: coredis.Redis[bytes],
        keys: Keys,
        *,
        account: str,
        limit: int,
        lease_s: float,
        timeout_s: float,
        holder: str = "",
    ) -> None:
        self._r = client
        #: this worker's stable consumer name: its slots carry it, so a restarted worker takes
        #: back the slots its killed incarnation held instead of waiting out their lease
        self.holder = holder
        self.keys = keys
        self.account = account
        self.limit = limit
        self.lease_ms = max(1, int(lease_s * 1000))
        #: how long a released lock's "done" marker says "generated recently: look in the
        #: cache first" (a job's lock try without it may skip ahead, ``DONE_MARKER_S``)
        self.done_ms = max(self.lease_ms, int(DONE_MARKER_S * 1000))
        self.timeout_s = timeout_s
        self._sem_acquire = scripts.SEM_ACQUIRE.register(client)
        self._sem_reclaim = scripts.SEM_RECLAIM.register(client)
        self._lock_acquire = scripts.LOCK_ACQUIRE.register(client)
        self._flight_start = scripts.FLIGHT_START.register(client)
        self._flights_start = scripts.FLIGHTS_START.register(client)
        self._read_and_try = scripts.READ_AND_TRY.register(client)
        self._lock_release = scripts.LOCK_RELEASE.register(client)
        self._locks_release = scripts.LOCKS_RELEASE.register(client)
        self._to_release: list[str] = []  # slot tokens to give back (``release_slot_soon``)
        self._release_wanted = trio.Event()
        self._locks_renew = scripts.LOCKS_RENEW.register(client)
        self._slots_renew = scripts.SLOTS_RENEW.register(client)
        self._locks_kept: set[Lock] = set()  # renewed by the keeper task (``keep``)
        self._slots_kept: set[str] = set()
        self._counts_due: collections.Counter[str] = collections.Counter()  # ``count_soon``
        self._counts_by = math.inf  # when the counts due go at the latest (trio's clock)
        self._waiting = trio.CancelScope()  # the keeper's wait for a release or a renewal
        self._work = trio.Event()  # wakes an idle keeper
        self._keeping = False  # inside ``keeping()``: the keeper task runs

    @property
    def client(self) -> coredis.Redis[bytes]:
        """The coredis client (a call made on it directly goes through ``call``)."""
        return self._r

    async def call(self, awaitable: Any) -> Any:
        """Await one Redis call within ``timeout_s``: Redis trouble, or no answer in time,
        raises ``QueueUnavailable``."""
        with redis_errors("Redis"):
            try:
                with trio.fail_after(self.timeout_s):
                    return await awaitable
            except trio.TooSlowError as exc:
                raise QueueUnavailable("Redis did not answer in time") from exc

    # -- single flight ---------------------------------------------------------------------------

    def lock(self, cache_key: str, holder: str) -> Lock:
        """The single-flight lock of ``cache_key``, for ``holder`` (a job id)."""
        return Lock(self, self.keys.flight(cache_key), holder)

    async def try_lock(self, lock: Lock) -> int:
        """One try at ``lock`` (``Lock.acquire``): 0 = held by another holder, 1 = taken,
        2 = taken, but a holder finished recently (look in the cache again first)."""
        return int(await self.call(self._lock_acquire(
            keys=[lock.key, lock.done_key], args=[lock.token, self.lease_ms, lock.prefix]
        )))

    async def try_lock_with_slot(self, lock: Lock, slot_token: str | None) -> tuple[int, int]:
        """One try at ``lock`` and, when it is taken, at a slot for ``slot_token``
        (``Lock.acquire_with_slot``): (lock as ``try_lock``, 1 = slot taken | 0)."""
        reply = await self.call(self._flight_start(
            keys=[lock.key, lock.done_key, self.keys.semaphore(self.account)],
            args=[lock.token, self.lease_ms, lock.prefix, slot_token or "", self.limit],
        ))
        state, slot = (int(x) for x in reply)
        return state, slot

    async def release_lock(self, lock: Lock) -> None:
        """Compare-and-delete ``lock``, adding one to its ``count_on_release`` counter
        (``Lock.release``); best effort and bounded, shielded (the lock expires anyway)."""
        with trio.move_on_after(self.timeout_s, shield=True):
            try:
                await self._lock_release(
                    keys=[lock.key, lock.done_key, self.keys.stats],
                    args=[lock.token, self.done_ms, lock.count_on_release],
                )
            except REDIS_ERRORS as exc:
                log.warning("could not release lock %s (it expires): %s", lock.key, exc)

    async def acquire_many(self, tries: Sequence[tuple[Lock, str | None]]) -> list[bool]:
        """``Lock.acquire_with_slot`` for many (lock, slot token) pairs in one round trip:
        whether each slot was taken (each lock's ``held`` says whether it was)."""
        if not tries:
            return []
        # slots waiting to be given back go first, in the same call
        releasing, self._to_release = self._to_release, []
        keys = [self.keys.semaphore(self.account)]
        args = [str(self.lease_ms), str(self.limit), " ".join(releasing)]
        for lock, slot in tries:
            keys += [lock.key, lock.done_key]
            args += [lock.token, lock.prefix, slot or ""]
        try:
            reply = [int(x) for x in await self.call(self._flights_start(keys=keys, args=args))]
        except BaseException:
            self._to_release.extend(releasing)  # outcome unknown: ZREM is idempotent
            raise
        taken = []
        for i, (lock, _) in enumerate(tries):
            state, slot_taken = reply[2 * i], reply[2 * i + 1]
            lock.held = state > 0
            lock.recently_done = state == 2
            taken.append(bool(slot_taken))
        return taken

    async def read_and_try(
        self, streams: Sequence[tuple[str, str]], group: str, consumer: str, count: int, *,
        shared_account: bool,
    ) -> list[LockingRead]:
        """Read up to ``count`` new entries (not blocking) from ``streams`` ((stream, entry id
        prefix) pairs, the first stream first: ``protocols.redis.queue.lane_streams``) and make
        each one's first try at its lock and, with it, a provider slot, in one round trip
        (``LockingRead``: the entry, its lock and slot, and whether its book is live)."""
        releasing, self._to_release = self._to_release, []
        suffixes = [secrets.token_hex(16) for _ in range(count)]
        slots = [self.slot_token() if shared_account else "" for _ in range(count)]
        args = [group, consumer, str(count), str(self.lease_ms), str(self.limit),
                self.keys.flight(""), " ".join(releasing), self.keys.book_cancel("")]
        for suffix, slot in zip(suffixes, slots, strict=True):
            args += [suffix, slot]
        try:
            reply = await self.call(self._read_and_try(
                keys=[self.keys.semaphore(self.account), *(s for s, _ in streams)], args=args
            ))
        except BaseException:
            # outcome unknown: the script may have run (its entries then come back through
            # the lease; their locks expire). ZREM is idempotent: give back the slots it may
            # have taken too
            self._to_release.extend(releasing + [slot for slot in slots if slot])
            raise
        out = []
        for i, (stream_no, entry_id, flat, state, taken, live) in enumerate(reply or []):
            fields = dict(zip(flat[::2], flat[1::2], strict=True))
            lock = None
            if int(state) >= 0:
                job_id = fields[b"j"].decode()
                lock = Lock(self, self.keys.flight(fields[b"k"].decode()), job_id,
                            token=f"{job_id}|{suffixes[i]}")
                lock.held = int(state) > 0
                lock.recently_done = int(state) == 2
            slot = slots[i] if int(taken) else None
            prefix = streams[int(stream_no) - 1][1]
            out.append(LockingRead(prefix + as_str(entry_id), fields, lock, slot, bool(int(live))))
        return out

    async def mark_book_cancelled(self, book_id: str) -> None:
        """Set the book's cancel marker, before its cancel is written to Postgres: a locking
        read that finds it says the book's lines are not live (``LockingRead.book_live``), so
        they wait for their start (which knows about the cancel) before calling the provider.
        It lives as long as a "done" marker: a job older than that never calls the provider
        before its start (``actors.pipeline.tts_actor``), so the marker outlives every line
        the cancel can reach."""
        await self.call(self._r.set(self.keys.book_cancel(book_id), b"1", px=self.done_ms))

    async def mark_job_cancelled(self, job_id: str) -> None:
        """A single job's cancel marker (``Keys.job_cancel``), set before its cancel is written
        to Postgres, for as long as a book's (``mark_book_cancelled``): a locking read that
        finds it makes the job wait for its start (which knows about the cancel) before any
        provider call."""
        await self.call(self._r.set(self.keys.job_cancel(job_id), b"1", px=self.done_ms))

    async def release_locks(self, locks: Sequence[Lock]) -> None:
        """``Lock.release`` for many locks in one round trip; best effort and bounded."""
        keys, args = [self.keys.stats], [str(self.done_ms)]
        for lock in locks:
            lock.stop_renewing()
            if lock.held or lock.count_on_release:
                keys += [lock.key, lock.done_key]
                args += [lock.token if lock.held else "", lock.count_on_release]
                lock.held = False
        if len(keys) == 1:
            return
        with trio.move_on_after(self.timeout_s, shield=True):
            try:
                await self._locks_release(keys=keys, args=args)
            except REDIS_ERRORS as exc:
                log.warning("could not release %d lock(s) (they expire): %s", len(locks), exc)

    # -- the provider account's semaphore ----------------------------------------------------------

    def slot_token(self) -> str:
        """A new slot token: this worker's name, then random (see ``reclaim_own_slots``)."""
        return f"{self.holder}|{secrets.token_hex(16)}"

    async def release_slot(self, *tokens: str) -> None:
        """Give slots back; best effort and bounded (they expire anyway)."""
        if tokens:
            await self._release_slot(self.keys.semaphore(self.account), *tokens)

    @asynccontextmanager
    async def slot(self, wait_s: float, *, held: str | None = None) -> AsyncIterator[None]:
        """Hold one of the account's slots for the body (renewed by the keeper while held).
        Waits up to ``wait_s`` for one, then raises ``ProviderUnavailable`` (retryable). The
        slot is given back soon after (``release_slot_soon``). ``held``: the token of a slot
        already taken (``Lock.acquire_with_slot``): no wait."""
        key = self.keys.semaphore(self.account)
        token = held or self.slot_token()
        delay = POLL_MIN_S
        with trio.move_on_after(wait_s) as waiting:
            while held is None and not await self.call(
                self._sem_acquire(keys=[key], args=[token, self.limit, self.lease_ms])
            ):
                await trio.sleep(delay * (0.5 + random.random()))
                delay = min(POLL_MAX_S, delay * 2)
        if waiting.cancelled_caught:
            raise ProviderUnavailable(
                f"all {self.limit} provider slots stayed busy for {wait_s:g} s"
            )
        self.keep(slot=token)
        try:
            yield
        finally:
            self._slots_kept.discard(token)
            self.release_slot_soon(token)

    def release_slot_soon(self, token: str) -> None:
        """Give a slot back within ``RELEASE_LINGER_S``, in one call with the slots released
        meanwhile, or with the next first tries (``acquire_many``), whichever comes first:
        slots that end together (three actors in step) cost one round trip, not three. The
        keeper task does it."""
        self._to_release.append(token)
        self._release_wanted.set()
        self._wake_keeper()

    async def _release_slot(self, key: str, *tokens: str) -> None:
        with trio.move_on_after(self.timeout_s, shield=True):
            try:
                await self._r.zrem(key, list(tokens))
            except REDIS_ERRORS as exc:
                log.warning("could not release a provider slot (it expires): %s", exc)

    def keep(self, *, lock: Lock | None = None, slot: str | None = None) -> None:
        """Renew ``lock`` / ``slot`` every third of the lease until it is released: the keeper
        task renews everything held, in two round trips."""
        if lock is not None:
            self._locks_kept.add(lock)
        if slot is not None:
            self._slots_kept.add(slot)
        self._wake_keeper()

    def _wake_keeper(self) -> None:
        if not self._keeping:
            raise RuntimeError("Coordinator used outside its keeping() block: nothing renews")
        self._work.set()

    def stop_keeping(self, lock: Lock) -> None:
        """No more renewals of ``lock`` (``Lock.stop_renewing``)."""
        self._locks_kept.discard(lock)

    @asynccontextmanager
    async def keeping(self) -> AsyncIterator[Coordinator]:
        """Run the keeper task for the body: it renews what is held and gives back released
        slots and due counts. On exit, what is still to be given back is given back (bounded);
        what is still held then expires with its lease."""
        if self._keeping:
            raise RuntimeError("this Coordinator's keeper is already running")
        try:
            async with trio.open_nursery() as nursery:
                self._keeping = True
                nursery.start_soon(self._keeper)
                try:
                    yield self
                finally:
                    self._keeping = False
                    nursery.cancel_scope.cancel()
                    with trio.move_on_after(self.timeout_s, shield=True):
                        await self._flush()
        except BaseExceptionGroup as group:  # the body's own exception, not wrapped
            if len(group.exceptions) != 1:
                raise
            raise group.exceptions[0] from group.exceptions[0].__cause__

    async def _keeper(self) -> None:
        """Renews what is kept every third of the lease, and gives back the slots released
        (after ``RELEASE_LINGER_S``, unless a locking read took them meanwhile) and the due
        counts; idle while nothing is held or due."""
        period = self.lease_ms / 3000
        next_renewal = trio.current_time() + period
        while True:
            if not (self._locks_kept or self._slots_kept or self._to_release
                    or self._counts_due):
                self._work = trio.Event()
                await self._work.wait()
                next_renewal = trio.current_time() + period
            with trio.move_on_at(min(next_renewal, self._counts_by)) as self._waiting:
                await self._release_wanted.wait()
                await trio.sleep(RELEASE_LINGER_S)
            if self._release_wanted.is_set():
                self._release_wanted = trio.Event()
            await self._flush()
            if trio.current_time() >= next_renewal:
                next_renewal = trio.current_time() + period
                await self._renew_kept()

    async def _flush(self) -> None:
        """Give back the released slots and add the due counts (best effort, bounded)."""
        tokens, self._to_release = self._to_release, []
        if tokens:
            await self._release_slot(self.keys.semaphore(self.account), *tokens)
        counts, self._counts_due = self._counts_due, collections.Counter()
        self._counts_by = math.inf
        for name, by in counts.items():
            await self.count(name, by)

    async def _renew_kept(self) -> None:
        locks, slots = list(self._locks_kept), list(self._slots_kept)
        try:
            if locks:
                renewed = await self.call(self._locks_renew(
                    keys=[lock.key for lock in locks],
                    args=[self.lease_ms, *(lock.token for lock in locks)],
                ))
                for lock, ok in zip(locks, renewed, strict=True):
                    if not int(ok) and lock in self._locks_kept:
                        log.warning("lock %s expired while held", lock.key)
                        self._locks_kept.discard(lock)
            if slots:
                renewed = await self.call(self._slots_renew(
                    keys=[self.keys.semaphore(self.account)], args=[self.lease_ms, *slots],
                ))
                for token, ok in zip(slots, renewed, strict=True):
                    if not int(ok) and token in self._slots_kept:
                        log.warning("a provider slot expired while held (lease too short?)")
                        self._slots_kept.discard(token)
        except QueueUnavailable as exc:
            log.warning("could not renew %d lock(s) and %d slot(s): %s",
                        len(locks), len(slots), exc)

    async def reclaim_own_slots(self) -> int:
        """At start: free the slots an earlier incarnation of this worker held (it is dead:
        consumer names are unique per running worker)."""
        if not self.holder:
            return 0
        key = self.keys.semaphore(self.account)
        freed = int(await self.call(self._sem_reclaim(keys=[key], args=[f"{self.holder}|"])))
        if freed:
            log.info("took back %d provider slot(s) held by this worker before a restart", freed)
        return freed

    async def slots_in_use(self) -> int:
        key = self.keys.semaphore(self.account)
        return int(await self.call(self._r.zcard(key)))

    # -- counters -----------------------------------------------------------------------------

    def count_soon(self, name: str, by: int = 1, *, linger: bool = False) -> None:
        """``count``, by the keeper task with the next slot release (no round trip now).
        ``linger``: a count made per request (the Intake's cache hits and misses) waits up to
        ``COUNT_LINGER_S`` for that release, then goes with the others due."""
        self._counts_due[name] += by
        if not linger:
            self._release_wanted.set()
        elif self._counts_by == math.inf:
            self._counts_by = trio.current_time() + COUNT_LINGER_S
            self._waiting.deadline = min(self._waiting.deadline, self._counts_by)
        self._wake_keeper()

    async def count(self, name: str, by: int = 1) -> None:
        """Add to a shared counter; best effort (a figure, not state)."""
        with trio.move_on_after(self.timeout_s):
            try:
                await self._r.hincrby(self.keys.stats, name, by)
            except REDIS_ERRORS as exc:
                log.debug("counter %s not updated: %s", name, exc)


async def read_counters(client: coredis.Redis[bytes], keys: Keys) -> dict[str, int]:
    raw = await client.hgetall(keys.stats)
    return {as_str(k): int(v) for k, v in raw.items()}
