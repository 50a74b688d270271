"""Signed audio URLs: ``/v1/audio/<id>?expires=<unix s>&sig=<hex>`` works without an API key
until ``expires`` (a browser's ``<audio src>`` cannot send one).

``sig`` is HMAC-SHA256 over the audio id, the expiry and the audio's owner, with a server key
that is the same on every host (``CHORUS_SIGNING_KEY``, else one made once and kept in Postgres,
``AccountStore.server_secret``). Expiries are rounded up to a step of a tenth of the TTL, so
the URL of a clip stays the same for a while (browsers and CDNs can cache it). The key is
never logged; a bad or expired signature is a typed 403 / 401.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections.abc import Callable
from urllib.parse import urlencode

from protocols.errors import Forbidden, Unauthorized

SECRET_NAME = "audio-url-signing"
MAX_SIG = 64


class BadSignature(Forbidden):
    code = "invalid_signature"
    title = "The audio URL's signature is not valid"


class UrlExpired(Unauthorized):
    code = "url_expired"
    title = "The audio URL has expired"


class AudioSigner:
    def __init__(self, key: bytes, ttl_s: float, clock: Callable[[], float] = time.time):
        if len(key) < 16:
            raise ValueError("a signing key has at least 16 bytes")
        self._key = key
        self.ttl_s = ttl_s
        self._clock = clock

    def __repr__(self) -> str:
        return f"AudioSigner(ttl_s={self.ttl_s})"

    def _sig(self, audio_id: str, expires: int, owner: str) -> str:
        message = f"{audio_id}\n{expires}\n{owner}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def url(self, audio_id: str, owner: str) -> str:
        step = max(1.0, self.ttl_s / 10)
        expires = int(math.ceil((self._clock() + self.ttl_s) / step) * step)
        query = urlencode({"expires": expires, "sig": self._sig(audio_id, expires, owner)})
        return f"/v1/audio/{audio_id}?{query}"

    def check(self, audio_id: str, owner: str | None, expires: str, sig: str) -> None:
        """Raises ``BadSignature`` (403) or ``UrlExpired`` (401). ``owner`` None: no such
        audio (answered as a bad signature, so a URL tells nothing about ids)."""
        try:
            when = int(expires)
        except ValueError:
            raise BadSignature("expires is not a time.") from None
        if len(sig) > MAX_SIG or owner is None or not hmac.compare_digest(
            sig.lower(), self._sig(audio_id, when, owner)
        ):
            raise BadSignature("The signature does not match this audio.")
        if when < self._clock():
            raise UrlExpired("The audio URL has expired; fetch the job again for a new one.")


def signed_request(args: dict[str, str]) -> tuple[str, str] | None:
    """(expires, sig) when the query carries a signature, else None; one without the other
    is ``BadSignature``."""
    expires, sig = args.get("expires"), args.get("sig")
    if expires is None and sig is None:
        return None
    if not expires or not sig:
        raise BadSignature("A signed audio URL carries both expires and sig.")
    return expires, sig
