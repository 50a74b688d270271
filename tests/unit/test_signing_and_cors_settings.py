"""The settings of signed audio URLs and CORS, and the signer itself (no server)."""

from __future__ import annotations

import pytest

from protocols.errors import ConfigError
from protocols.settings import Settings
from web.signing import AudioSigner, BadSignature, UrlExpired


def test_settings_read_and_checked_from_the_environment() -> None:
    s = Settings.from_env({
        "CHORUS_CORS_ORIGINS": "https://a.example, http://localhost:5173",
        "CHORUS_SIGNING_KEY": "k" * 32, "CHORUS_AUDIO_URL_TTL_S": "120",
    })
    assert s.cors_origins == ("https://a.example", "http://localhost:5173")
    assert s.audio_url_ttl_s == 120.0 and "k" * 32 not in repr(s)
    assert Settings.from_env({}).cors_origins == ()
    for env in ({"CHORUS_CORS_ORIGINS": "a.example"},
                {"CHORUS_CORS_ORIGINS": "https://a.example/"},
                {"CHORUS_SIGNING_KEY": "short"}, {"CHORUS_AUDIO_URL_TTL_S": "0"}):
        with pytest.raises(ConfigError):
            Settings.from_env(env)


def test_signer_checks_id_owner_and_expiry() -> None:
    now = [1_000_000.0]
    signer = AudioSigner(b"s" * 32, 600.0, clock=lambda: now[0])
    url = signer.url("aud_1", "alice")
    query = dict(part.split("=") for part in url.split("?", 1)[1].split("&"))
    expires, sig = query["expires"], query["sig"]
    assert now[0] + 600 <= int(expires) <= now[0] + 660  # rounded up to a tenth of the TTL
    assert signer.url("aud_1", "alice") == url  # stable within the step
    signer.check("aud_1", "alice", expires, sig)
    for audio_id, owner in (("aud_2", "alice"), ("aud_1", "bob"), ("aud_1", None)):
        with pytest.raises(BadSignature):
            signer.check(audio_id, owner, expires, sig)
    with pytest.raises(BadSignature):
        AudioSigner(b"t" * 32, 600.0, clock=lambda: now[0]).check("aud_1", "alice", expires, sig)
    now[0] += 700
    with pytest.raises(UrlExpired):
        signer.check("aud_1", "alice", expires, sig)
    assert "s" * 32 not in repr(signer)
