"""FaultPlan: the seam through which tests inject faults at named points.

Each point holds a queue of exceptions or delays (seconds), each consumed once. Production
code calls ``await plan.hit("tts.before_synth")``; with an empty plan it is one dict lookup.

Named points: ``tts.before_synth``, ``tts.after_synth``, ``tts.after_store_before_ack``,
``reader.after_read``, ``reader.before_ack``, ``producer.before_xadd``.
"""

from __future__ import annotations

import collections
import random

import trio

Fault = BaseException | float


class FaultPlan:
    def __init__(self, seed: int = 0) -> None:
        self.random = random.Random(seed)
        self._points: dict[str, collections.deque[Fault]] = {}
        self.fired: list[str] = []

    def add(self, point: str, *faults: Fault) -> FaultPlan:
        self._points.setdefault(point, collections.deque()).extend(faults)
        return self

    def pending(self, point: str) -> int:
        return len(self._points.get(point, ()))

    async def hit(self, point: str) -> None:
        queue = self._points.get(point)
        if not queue:
            return
        fault = queue.popleft()
        self.fired.append(point)
        if isinstance(fault, BaseException):
            raise fault
        await trio.sleep(fault)
