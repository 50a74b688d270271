"""The cache key: identical requests share one generation (and one audio file).

sha256 over everything that shapes the bytes: provider, model, voice, language, voice settings,
seed, pronunciation dictionaries with their pinned versions, output format and the normalized
text. With the per-owner cache scope (``CHORUS_CACHE_SCOPE=owner``) the owner is part of it too,
so users never share audio.
"""

from __future__ import annotations

import hashlib

import msgspec

from protocols.messages import SpeechParams
from protocols.text import normalize_text

_VERSION = "k2"  # bump when the recipe changes (old keys then simply miss)


def cache_key(
    *,
    provider: str,
    text: str,
    voice_id: str,
    language: str | None,
    output_format: str,
    params: SpeechParams,
    owner: str | None = None,
) -> str:
    canonical = msgspec.json.encode(
        [
            _VERSION,
            provider,
            params.model_id,
            voice_id,
            language or "",
            msgspec.to_builtins(params.voice_settings) if params.voice_settings else None,
            params.seed,
            [[d.pronunciation_dictionary_id, d.version_id] for d in params.dictionaries],
            output_format,
            owner or "",
            normalize_text(text),
        ]
    )
    return hashlib.sha256(canonical).hexdigest()
