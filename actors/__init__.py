"""What runs: the supervision tree of one process (service.py), the supervisor (supervision/),
the job pipeline (pipeline/), the event bus's actors (events/) and voice tracking (voices/).
Actors depend on the Protocols in protocols/ and never import web/. The map:
docs/ARCHITECTURE.md."""
