"""The ``StorybookStore`` half of PgStore: storybooks, their lines and retry rounds in Postgres
(SQL in ``protocols/postgres/storybooks_sql.py``).

Ownership is enforced in SQL: with an ``owner``, another user's book is None (it does not exist
for them). Every write is a compare-and-set, like the rest of the store, so a redelivered event
or a runner restarted half-way has no second effect.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from protocols.messages import Job
from protocols.postgres import storybooks_sql as sq
from protocols.storybooks import Line, NewStorybook, RetryRound, Storybook


class StorybookStoreMixin:
    _call: Callable[..., Awaitable[Any]]

    async def create_storybook(
        self, book: NewStorybook, *, quota: int | None = None
    ) -> tuple[Storybook, bool]:
        return await self._call(sq.create_storybook, book, quota)

    async def get_storybook(self, book_id: str, owner: str | None = None) -> Storybook | None:
        return await self._call(sq.get_storybook, book_id, owner)

    async def list_storybooks(
        self, owner: str, *, before: str | None = None, limit: int = 50
    ) -> list[Storybook]:
        return await self._call(sq.list_storybooks, owner, before, limit)

    async def storybook_lines(self, book_id: str) -> list[Line]:
        return await self._call(sq.storybook_lines, book_id)

    async def retry_rounds(self, book_id: str) -> list[RetryRound]:
        return await self._call(sq.retry_rounds, book_id)

    # the runner

    async def active_storybooks(self, limit: int = 100) -> list[Storybook]:
        return await self._call(sq.active_storybooks, limit)

    async def pending_lines(self, book_id: str, limit: int) -> list[Line]:
        return await self._call(sq.pending_lines, book_id, limit)

    async def line_counts(self, book_id: str) -> dict[str, int]:
        return await self._call(sq.line_counts, book_id)

    async def line_submitted(self, line_id: str, round: int, job: Job) -> Line | None:
        """The line follows the job's row as it is in the database (``job`` names it), so a
        job that ended before this call is seen ended."""
        return await self._call(sq.line_submitted, line_id, round, job.id)

    async def fail_line(
        self, line_id: str, round: int, code: str, message: str
    ) -> Line | None:
        return await self._call(sq.fail_line, line_id, round, code, message)

    async def sync_lines(
        self, *, book_id: str | None = None, job_ids: Sequence[str] = ()
    ) -> list[Line]:
        return await self._call(sq.sync_lines, book_id, list(job_ids))

    async def finish_storybook(self, book_id: str) -> Storybook | None:
        return await self._call(sq.finish_storybook, book_id)

    async def mark_running(self, book_id: str) -> None:
        await self._call(sq.mark_running, book_id)

    async def start_round(
        self, book_id: str, owner: str, *, line_ids: Sequence[str] | None, force: bool,
        permanent: frozenset[str], quota: int | None = None,
    ) -> RetryRound:
        return await self._call(
            sq.start_round, book_id, owner, None if line_ids is None else list(line_ids),
            force, permanent, quota,
        )

    async def cancel_storybook(self, book_id: str, owner: str) -> Storybook | None:
        return await self._call(sq.cancel_storybook, book_id, owner)

    async def set_storybook_audio(self, book_id: str, path: str) -> None:
        await self._call(sq.set_storybook_audio, book_id, path)
