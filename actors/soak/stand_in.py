"""The soak's ElevenLabs: the project's stand-in (``protocols.providers.elevenlabs.stand_in``)
answering a share of text-to-speech requests with 429 ``system_busy`` and 500, at random.

The faults come before auth and charge nothing, like the stand-in's ``inject``; the draw is
seeded so a run can be repeated. Figures read back: successful TTS calls (``calls`` with status
200), the distinct texts among them, and history audio downloads (a redelivered job's earlier
generation found again instead of paid for).
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from typing import Any

from protocols.providers.elevenlabs.stand_in.http import ApiFailure, Request, error_reply
from protocols.providers.elevenlabs.stand_in.server import TTS_PREFIX, FakeElevenLabs

__all__ = ["NoisyElevenLabs"]

HISTORY_AUDIO = "GET /v1/history/{history_item_id}/audio"


class NoisyElevenLabs(FakeElevenLabs):
    """``FakeElevenLabs`` whose TTS routes fail ``busy`` (429) and ``broken`` (500) of the time."""

    def __init__(self, *, busy: float, broken: float, seed: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.busy, self.broken = busy, broken
        self._random = random.Random(seed)
        self._noise_lock = threading.Lock()
        self.noise: Counter[int] = Counter()  # status -> injected answers

    def _gate(self, request: Request) -> None:
        if request.path.startswith(TTS_PREFIX):
            with self._noise_lock:
                draw = self._random.random()
                status = 429 if draw < self.busy else 500 if draw < self.busy + self.broken else 0
                if status:
                    self.noise[status] += 1
            if status == 429:
                raise ApiFailure(error_reply(429, "system_busy", "The system is busy (soak)"))
            if status == 500:
                raise ApiFailure(error_reply(500, "internal_server_error", "Injected (soak)"))
        super()._gate(request)

    def figures(self) -> dict[str, int]:
        """Paid TTS calls, distinct texts paid for, and history audio downloads."""
        paid = [c for c in self.calls if c.status == 200]
        return {
            "provider_calls": len(paid),
            "distinct_texts": len({c.text for c in paid}),
            "history_downloads": self.endpoint_counts.get(HISTORY_AUDIO, 0),
            "injected_429": self.noise[429],
            "injected_500": self.noise[500],
        }
