"""The HTTP front: a quart-trio app per incarnation (app.py), thin routes by resource (routes/),
auth and RFC 9457 problems; and the `run.py say` client (client.py). The map:
docs/ARCHITECTURE.md."""
