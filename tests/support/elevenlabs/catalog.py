"""Moved to ``protocols.providers.elevenlabs.stand_in.catalog`` (``run.py soak`` uses it too)."""

from protocols.providers.elevenlabs.stand_in.catalog import *  # noqa: F403
