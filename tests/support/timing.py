"""Bounds for tests: a hang is a failure, never a stuck run."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import trio

Test = Callable[..., Awaitable[None]]


def capped_at(limit_s: float) -> Callable[[Test], Test]:
    """A decorator running the test under ``trio.fail_after(limit_s)``."""

    def capped(test: Test) -> Test:
        @functools.wraps(test)
        async def run(*args: Any, **kwargs: Any) -> None:
            with trio.fail_after(limit_s):
                await test(*args, **kwargs)

        return run

    return capped
