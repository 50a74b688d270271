"""Moved to ``protocols.providers.elevenlabs.stand_in.http`` (``run.py soak`` uses it too)."""

from protocols.providers.elevenlabs.stand_in.http import *  # noqa: F403
