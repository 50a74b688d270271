"""Redis adapters: the job stream (``queue``), coordination (locks, the provider semaphore),
the event bus, the voice-sync schedule, key names (``keys``), every Lua script (``scripts``),
and the client they share with its error mapping (``client``)."""

__all__ = ["client", "coordination", "event_bus", "keys", "queue", "scripts", "voice_queue"]
