"""Actors: supervisor, producer, stream reader, TTS actors."""
