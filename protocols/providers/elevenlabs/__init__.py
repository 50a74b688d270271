"""The ElevenLabs provider: speech, model choice, error classification, voice manager."""
