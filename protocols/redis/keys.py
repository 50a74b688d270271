"""Every Redis key and stream name Chorus uses, in one place."""

from __future__ import annotations

import msgspec

from protocols.messages import Lane

__all__ = ["Keys"]


class Keys(msgspec.Struct, frozen=True):
    prefix: str = "chorus"

    @property
    def jobs(self) -> str:
        """The job stream of the interactive lane (every job before lanes existed, too)."""
        return f"{self.prefix}:jobs"

    @property
    def jobs_batch(self) -> str:
        """The job stream of the batch lane (storybook lines), read when no interactive entry
        waits (``protocols.redis.queue``)."""
        return f"{self.prefix}:jobs:batch"

    def lane(self, lane: Lane) -> str:
        """The job stream of ``lane``."""
        return self.jobs_batch if lane is Lane.batch else self.jobs

    @property
    def group(self) -> str:
        """The workers' consumer group (the same name on both job streams)."""
        return f"{self.prefix}:workers"

    @property
    def dead(self) -> str:
        """The dead-letter stream."""
        return f"{self.prefix}:jobs:dead"

    def enqueued(self, job_id: str) -> str:
        """Marker making XADD idempotent by job id."""
        return f"{self.prefix}:enq:{job_id}"

    def book_cancel(self, book_id: str) -> str:
        """A storybook's cancel marker, set before its cancel reaches Postgres: while it lives,
        the book's lines wait for their start before calling the provider
        (``protocols.redis.coordination``, the locking read)."""
        return f"{self.prefix}:book-cancel:{book_id}"

    def job_cancel(self, job_id: str) -> str:
        """A single job's cancel marker (``DELETE /v1/jobs/{id}``), set before its cancel
        reaches Postgres; under the book markers' prefix so the locking read finds it with the
        same argument: while it lives, the job waits for its start before calling the
        provider."""
        return f"{self.book_cancel('')}job:{job_id}"

    def flight(self, cache_key: str) -> str:
        """Single-flight lock: one worker generates this cache key at a time."""
        return f"{self.prefix}:flight:{cache_key}"

    def semaphore(self, account: str) -> str:
        """The provider account's slots (a sorted set of tokens scored by expiry)."""
        return f"{self.prefix}:sem:{account}"

    @property
    def stats(self) -> str:
        """Shared counters (cache hits and misses, provider calls, single-flight waits)."""
        return f"{self.prefix}:stats"

    @property
    def events(self) -> str:
        """The global event stream (durable subscribers read it through consumer groups)."""
        return f"{self.prefix}:events"

    def owner_events(self, owner: str) -> str:
        """One user's events (SSE reads only these)."""
        return f"{self.prefix}:events:{owner}"

    @property
    def voice_sync(self) -> str:
        """VoiceSync's schedule: voice ids scored by the unix time of their next poll."""
        return f"{self.prefix}:voices:sync"

    def voice_status(self, voice_id: str) -> str:
        """VoiceSync's status of one tracked voice (deadline, polls so far, state): a string
        that expires a margin after the voice's deadline (``protocols.redis.voice_queue``)."""
        return f"{self.prefix}:voices:status:{voice_id}"

    def live(self, job_id: str) -> str:
        """A ``stream`` job's audio chunks while it is made (bounded, expiring;
        ``protocols.redis.live``)."""
        return f"{self.prefix}:live:{job_id}"

    @property
    def processes(self) -> str:
        """The set of live processes' ids (``protocols.redis.processes``); an id whose hash has
        expired is dropped when the set is read."""
        return f"{self.prefix}:procs"

    def process(self, process_id: str) -> str:
        """One process's hash (role, consumer, host, pid, started_at, last_seen, its
        supervisors' restarts per child), expiring unless its heartbeat refreshes it."""
        return f"{self.process_prefix}{process_id}"

    @property
    def process_prefix(self) -> str:
        """What every process hash's key starts with (the listing script builds keys)."""
        return f"{self.prefix}:proc:"
