"""A clip's timings in Postgres (``audio_alignments``, JSON text): stored with the audio row by
``finish_job`` / ``finish_jobs`` and read back whole, short and long (out of line)."""

from __future__ import annotations

import msgspec
import trio

from protocols.messages import Audio
from protocols.postgres.store import PgStore
from protocols.providers.fake import _alignment
from tests.integration.test_store import new_audio, new_job

CAP_S = 30
SHORT = "Hello there"
LONG = " ".join(f"word{i}, and more" for i in range(80))  # ~10 kB of JSON: past a page's share


def _audio(owner: str, cache_key: str) -> Audio:
    """Only its cache key matters to ``alignment_of``."""
    return msgspec.convert(
        {**msgspec.to_builtins(new_audio(owner, cache_key)), "id": "aud_x",
         "created_at": "2026-12-06T00:00:00Z"}, Audio,
    )


async def test_timings_are_stored_with_the_clip_and_read_back_whole(store: PgStore) -> None:
    with trio.fail_after(CAP_S):
        user, _ = await store.create_user("timed")
        for i in range(2):
            await store.create_job(new_job(user.id, f"j{i}"))
            await store.start_job(f"j{i}")
        short, long = _alignment(SHORT), _alignment(LONG)
        await store.finish_job("j0", msgspec.structs.replace(new_audio(user.id, "k0"),
                                                             alignment=short))
        await store.finish_jobs([("j1", msgspec.structs.replace(new_audio(user.id, "k1"),
                                                                alignment=long))])
        assert await store.alignment_of(_audio(user.id, "k0")) == short
        assert await store.alignment_of(_audio(user.id, "k1")) == long
        assert await store.alignment_of(_audio(user.id, "nothing")) is None
