"""A stand-in for the ElevenLabs HTTP API on 127.0.0.1 (``server.FakeElevenLabs``): the tests'
fake provider account, and the one ``run.py soak`` points a real ``run.py serve`` at. Standard
library HTTP server plus werkzeug's form parser; nothing here is used when Chorus serves."""
