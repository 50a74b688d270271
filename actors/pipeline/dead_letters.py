"""Dead-letter redrive: put dead-lettered jobs back on the queue.

Order per letter: the job row first (dead -> queued), then a fresh stream entry, then the dead
letter is removed. A crash in between leaves the letter to be redriven again (the job's
compare-and-set start makes a second entry for the same job harmless); nothing is lost. The
fresh entry goes into the job's own lane (``SpeechJob.lane``: a storybook line back into the
batch lane, never ahead of interactive jobs).
"""

from __future__ import annotations

from collections.abc import Collection

from protocols.messages import DeadLetter
from protocols.ports import JobStore
from protocols.redis.queue import RedisQueue


async def redrive(
    queue: RedisQueue, store: JobStore, ids: Collection[str] = (), *, everything: bool = False
) -> list[DeadLetter]:
    """Redrive the letters named by dead-letter id or job id (or all); returns those redriven."""
    letters = await queue.dead_letters(count=100_000)
    chosen = [d for d in letters if everything or d.dead_id in ids or d.job.job_id in ids]
    for letter in chosen:
        await store.requeue_job(letter.job.job_id)
        await queue.add_raw(letter.job)
        await queue.remove_dead_letter(letter.dead_id)
    return chosen
