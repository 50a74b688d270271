"""A fake ElevenLabs HTTP server on 127.0.0.1 that behaves like the documented API."""
