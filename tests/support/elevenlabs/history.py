"""Moved to ``protocols.providers.elevenlabs.stand_in.history`` (``run.py soak`` uses it too)."""

from protocols.providers.elevenlabs.stand_in.history import *  # noqa: F403
