"""The fake ElevenLabs server lives in ``protocols.providers.elevenlabs.stand_in.server`` (``run.py
soak`` uses it too and must not import ``tests/``); this module keeps the tests' names and adds
the pytest fixture."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from protocols.providers.elevenlabs.stand_in.server import *  # noqa: F403
from protocols.providers.elevenlabs.stand_in.server import FakeElevenLabs


@pytest.fixture
def fake_elevenlabs() -> Iterator[FakeElevenLabs]:
    """A running ``FakeElevenLabs(api_key="test-key")``, closed after the test."""
    with FakeElevenLabs(api_key="test-key") as fake:
        yield fake
