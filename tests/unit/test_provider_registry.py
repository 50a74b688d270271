"""The provider registry: which provider the settings choose, and what each provider brings
itself (its voice manager, its account name)."""

from __future__ import annotations

import pytest

from protocols.errors import ConfigError
from protocols.providers import choose, open_provider
from protocols.providers.elevenlabs.provider import ElevenLabsProvider
from protocols.providers.elevenlabs.voices import ElevenLabsVoices
from protocols.providers.fake import FakeProvider
from protocols.providers.local_voices import LocalVoices
from protocols.settings import Secret, Settings


def test_the_default_is_embedded_and_elevenlabs_with_a_key() -> None:
    assert choose(Settings())[0].name == "embedded"
    assert choose(Settings(elevenlabs_api_key=Secret("k")))[0].name == "elevenlabs"


def test_chorus_provider_wins_and_an_unknown_name_is_a_config_error() -> None:
    env = {"CHORUS_PROVIDER": "fake", "CHORUS_FAKE_LATENCY_S": "0.25", "ELEVENLABS_API_KEY": "k"}
    settings = Settings.from_env(env)
    assert (settings.provider, settings.fake_latency_s) == ("fake", 0.25)
    registration, why = choose(settings)
    assert registration.name == "fake" and "CHORUS_PROVIDER" in why
    with pytest.raises(ConfigError, match="elevenlabs, embedded, espeak, fake"):
        choose(Settings(provider="nope"))
    with pytest.raises(ConfigError):
        Settings.from_env({"CHORUS_FAKE_LATENCY_S": "-1"})


async def test_opening_the_fake_applies_its_latency() -> None:
    async with open_provider(Settings(provider="fake", fake_latency_s=0.5)) as provider:
        assert isinstance(provider, FakeProvider) and provider.latency_s == 0.5


def test_each_provider_brings_its_voice_manager_and_account() -> None:
    fake = FakeProvider()
    assert isinstance(fake.voice_manager(), LocalVoices)
    assert fake.account.startswith("fake-")

    def eleven(key: str | None) -> ElevenLabsProvider:
        return ElevenLabsProvider(None, Settings(elevenlabs_api_key=key and Secret(key)))

    assert isinstance(eleven("k1").voice_manager(), ElevenLabsVoices)
    one, two = eleven("k1").account, eleven("k2").account
    assert one.startswith("elevenlabs-") and one != two  # one account per key
    assert "k1" not in one  # a hash of the key, never the key
