"""Redis adapters: the job stream, coordination (locks, the provider semaphore),
the event bus, the voice-sync schedule, key names, and every Lua script."""
