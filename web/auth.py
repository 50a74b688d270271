"""API-key authentication: ``Authorization: Bearer <key>`` or ``xi-api-key: <key>``.

The key is looked up with ``JobStore.authenticate``; it is never logged or echoed back.
"""

from __future__ import annotations

import hashlib

import trio
from quart import request

from protocols.errors import Unauthorized
from protocols.messages import User
from protocols.ports import JobStore

MAX_KEY_LENGTH = 512


def presented_key() -> str | None:
    """The API key the current request carries, or None. Raises ``Unauthorized`` if the
    request carries two different keys or an Authorization header of another scheme."""
    keys: set[str] = set()
    authorization = request.headers.get("Authorization")
    if authorization is not None:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthorized("Use 'Authorization: Bearer <key>' or the 'xi-api-key' header.")
        keys.add(value.strip())
    xi_key = request.headers.get("xi-api-key")
    if xi_key is not None and xi_key.strip():
        keys.add(xi_key.strip())
    if len(keys) > 1:
        raise Unauthorized("The request carries two different API keys.")
    return keys.pop() if keys else None


#: a key that authenticated is trusted for this long without asking Postgres again (a quota
#: change shows within it); unknown keys are never remembered
AUTH_TTL_S = 5.0
AUTH_CACHE_MAX = 10_000
#: sha256(key) -> (expiry on trio's clock, user); one per app (``WebContext.known_keys``)
KnownKeys = dict[bytes, tuple[float, User]]


async def current_user(store: JobStore, known: KnownKeys) -> User:
    """The authenticated caller. Raises ``Unauthorized`` (401) or ``StoreUnavailable`` (503).
    ``known``: keys recently authenticated (skips the database for ``AUTH_TTL_S``)."""
    key = presented_key()
    if key is None:
        raise Unauthorized("An API key is required.")
    if len(key) > MAX_KEY_LENGTH:
        raise Unauthorized("The API key is not valid.")
    digest = hashlib.sha256(key.encode()).digest()
    now = trio.current_time()
    hit = known.get(digest)
    if hit is not None and hit[0] > now:
        return hit[1]
    user = await store.authenticate(key)
    if user is None:
        known.pop(digest, None)
        raise Unauthorized("The API key is not valid.")
    if len(known) >= AUTH_CACHE_MAX:
        known.clear()
    known[digest] = (now + AUTH_TTL_S, user)
    return user


def forget_caller(known: KnownKeys) -> None:
    """Drop the current caller from ``known`` (their user row just changed: the next request
    reads it again). Other processes see the change within ``AUTH_TTL_S``."""
    key = presented_key()
    if key is not None:
        known.pop(hashlib.sha256(key.encode()).digest(), None)


def forget_user(known: KnownKeys, user_id: str) -> None:
    """Drop every remembered key of ``user_id`` from ``known`` (a key revoked or rotated, a
    quota changed: this process reads the user again at once; others within ``AUTH_TTL_S``)."""
    for digest in [d for d, (_, user) in known.items() if user.id == user_id]:
        known.pop(digest, None)
