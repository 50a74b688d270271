"""Pure domain rules: cache keys, text, audio formats, the voice catalog. No I/O clients."""
