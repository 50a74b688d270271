"""Coalescer: concurrent calls of one operation become one batched call (group commit).

The first caller runs the batch of everything queued, shielded from its own cancellation (the
others depend on it; the batch function bounds itself); callers arriving meanwhile wait and go
together in the next batch. Under load a batch holds whatever piled up during the previous
one; alone, a call runs at once, with no added wait.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import outcome
import trio

A = TypeVar("A")
R = TypeVar("R")


class _Call(Generic[A, R]):
    __slots__ = ("arg", "result")

    def __init__(self, arg: A) -> None:
        self.arg = arg
        self.result: outcome.Outcome[R] | None = None


class Coalescer(Generic[A, R]):
    def __init__(self, batch: Callable[[list[A]], Awaitable[list[outcome.Outcome[R]]]],
                 max_batch: int = 256) -> None:
        """``batch(args)`` returns one outcome per argument, in order; if it raises, every
        call of the batch raises that."""
        self._batch = batch
        self._max = max_batch
        self._queue: list[_Call[A, R]] = []
        self._busy = False
        self._done = trio.Event()

    async def __call__(self, arg: A) -> R:
        call: _Call[A, R] = _Call(arg)
        self._queue.append(call)
        while call.result is None:
            if self._busy:
                await self._done.wait()
                continue
            await self._run_batch()
        return call.result.unwrap()

    async def _run_batch(self) -> None:
        self._busy = True
        batch, self._queue = self._queue[: self._max], self._queue[self._max :]
        try:
            with trio.CancelScope(shield=True):
                results = await outcome.acapture(self._batch, [c.arg for c in batch])
            if isinstance(results, outcome.Error):
                for c in batch:  # an outcome unwraps once: one each
                    c.result = outcome.Error(results.error)
            else:
                for c, r in zip(batch, results.unwrap(), strict=True):
                    c.result = r
        finally:
            self._busy = False
            done, self._done = self._done, trio.Event()
            done.set()
        await trio.lowlevel.checkpoint()  # a cancellation of the leader lands here
