"""Redis adapters: the job stream (``queue``), coordination (locks, the provider semaphore),
the event bus, the voice-sync schedule, key names (``keys``), every Lua script (``scripts``),
the client they share with its error mapping (``client``), and the openers one process uses
(``openers``)."""

__all__ = [
    "client", "coordination", "event_bus", "keys", "openers", "queue", "scripts", "voice_queue",
]
