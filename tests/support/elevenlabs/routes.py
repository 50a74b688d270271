"""Moved to ``protocols.providers.elevenlabs.stand_in.routes`` (``run.py soak`` uses it too)."""

from protocols.providers.elevenlabs.stand_in.routes import *  # noqa: F403
