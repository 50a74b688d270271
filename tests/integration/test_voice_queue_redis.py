"""``RedisVoiceSyncQueue`` itself on the real embedded Valkey: a status per voice (deadline,
polls, state) next to the schedule, each status expiring a margin after its voice's window
(Redis TTL, relative to the queue's clock), the schedule outliving its statuses, entries whose
status expired leaving the schedule when read, and tracking that keeps what is already there."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from protocols.redis.client import open_client
from protocols.redis.keys import Keys
from protocols.redis.voice_queue import TTL_MARGIN_S, RedisVoiceSyncQueue

LIMIT_S = 10
NOW = 1_800_000_000.0  # the queue's clock (unix seconds), fixed
WINDOW = 1800.0  # a clone's 30 minutes to become ready


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Any]:
    async with open_client(redis_url, stream_timeout=5) as opened:
        yield opened


@pytest.fixture
def keys() -> Keys:
    return Keys(f"t{uuid.uuid4().hex[:10]}")


def queue(client: Any, keys: Keys, now: float = NOW) -> RedisVoiceSyncQueue:
    return RedisVoiceSyncQueue(client, keys, clock=lambda: now)


async def test_each_voice_has_a_status_that_expires_after_its_window_plus_a_margin(
    client: Any, keys: Keys
) -> None:
    with trio.fail_after(LIMIT_S):
        q = queue(client, keys)
        await q.track("voice_a", NOW, NOW + WINDOW)
        status = await q.status("voice_a")
        assert status is not None
        assert (status.due, status.deadline, status.attempts, status.state) == (
            NOW, NOW + WINDOW, 0, "processing")
        ttl_ms = await client.pttl(keys.voice_status("voice_a"))
        expected_ms = (WINDOW + TTL_MARGIN_S) * 1000
        assert expected_ms - 5000 < ttl_ms <= expected_ms
        # the schedule lives at least as long as its longest status (read a moment later)
        assert ttl_ms - 1000 < await client.pttl(keys.voice_sync) <= expected_ms
        assert await q.status("voice_never_tracked") is None


async def test_tracking_again_keeps_the_entry_as_it_is(client: Any, keys: Keys) -> None:
    with trio.fail_after(LIMIT_S):
        q = queue(client, keys)
        await q.track("voice_a", NOW, NOW + WINDOW)
        await q.reschedule("voice_a", NOW + 8, 3, state="preview")
        await q.track("voice_a", NOW + 60, NOW + 2 * WINDOW)  # a rescan: nothing changes
        status = await q.status("voice_a")
        assert status is not None
        assert (status.due, status.deadline, status.attempts, status.state) == (
            NOW + 8, NOW + WINDOW, 3, "preview")


async def test_rescheduling_keeps_deadline_and_state_and_outlives_a_late_poll(
    client: Any, keys: Keys
) -> None:
    with trio.fail_after(LIMIT_S):
        q = queue(client, keys)
        await q.track("voice_a", NOW - 2000, NOW - 200, state="preview")  # window over
        assert (await client.pttl(keys.voice_status("voice_a"))) <= (TTL_MARGIN_S - 199) * 1000
        await q.reschedule("voice_a", NOW + 60, 1)
        status = await q.status("voice_a")
        assert status is not None
        assert (status.deadline, status.attempts, status.state) == (NOW - 200, 1, "preview")
        # the entry lives until a margin after its next poll, not after its (past) deadline
        ttl_ms = await client.pttl(keys.voice_status("voice_a"))
        expected_ms = (60 + TTL_MARGIN_S) * 1000
        assert expected_ms - 5000 < ttl_ms <= expected_ms
        assert await client.pttl(keys.voice_sync) > ttl_ms - 1000


async def test_due_gives_due_voices_in_order_and_drops_those_whose_status_expired(
    client: Any, keys: Keys
) -> None:
    with trio.fail_after(LIMIT_S):
        q = queue(client, keys)
        for i, name in enumerate(("a", "b", "c", "later")):
            due = NOW + (1000 if name == "later" else i)
            await q.track(f"voice_{name}", due, NOW + WINDOW)
        await client.delete([keys.voice_status("voice_b")])  # as when its TTL passes
        due = await q.due(NOW + 10, 10)
        assert [t.voice_id for t in due] == ["voice_a", "voice_c"]
        assert await client.zscore(keys.voice_sync, "voice_b") is None  # gone from the schedule
        assert await q.status("voice_b") is None
        assert {t.voice_id for t in await q.tracked()} == {"voice_a", "voice_c", "voice_later"}
        assert [t.voice_id for t in await q.due(NOW + 10, 1)] == ["voice_a"]


async def test_done_removes_the_voice_and_its_status(client: Any, keys: Keys) -> None:
    with trio.fail_after(LIMIT_S):
        q = queue(client, keys)
        await q.track("voice_a", NOW, NOW + WINDOW)
        await q.track("voice_b", NOW, NOW + WINDOW)
        await q.done("voice_a")
        assert await q.status("voice_a") is None
        assert await client.exists([keys.voice_status("voice_a")]) == 0
        assert [t.voice_id for t in await q.tracked()] == ["voice_b"]
        await q.done("voice_a")  # again: nothing to do, no error
        await q.done("voice_b")
        assert await client.exists([keys.voice_sync]) == 0  # an empty schedule is no key


async def test_a_voice_tracked_after_its_status_expired_is_scheduled_afresh(
    client: Any, keys: Keys
) -> None:
    """The rebuild from Postgres after an entry expired: a new status, and the voice back in
    the schedule at the new due time."""
    with trio.fail_after(LIMIT_S):
        q = queue(client, keys)
        await q.track("voice_a", NOW, NOW + WINDOW)
        await q.reschedule("voice_a", NOW + 5, 4)
        await client.delete([keys.voice_status("voice_a")])
        await q.track("voice_a", NOW + 100, NOW + 100 + WINDOW, state="preview")
        status = await q.status("voice_a")
        assert status is not None
        assert (status.due, status.attempts, status.state) == (NOW + 100, 0, "preview")
