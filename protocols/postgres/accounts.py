"""The ``AccountStore`` half of PgStore: users by id or name, several API keys per user
(create, rotate, revoke; migration 0008) and the server's shared secrets. SQL in
``protocols/postgres/accounts_sql.py``. Keys are shown once, when made; only their sha256 is
kept."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from protocols.errors import InvalidInput
from protocols.messages import ApiKey, User
from protocols.postgres import accounts_sql as aq

MAX_LABEL = 100


def hash_api_key(api_key: str) -> bytes:
    """sha256 of the key. Keys are random 32-byte tokens, so no salt or slow hash is needed
    (there is nothing to brute-force) and lookup stays an index probe on the hash."""
    return hashlib.sha256(api_key.encode()).digest()


def new_api_key() -> str:
    return "chk_" + secrets.token_urlsafe(32)


def _new_key() -> tuple[str, str, bytes]:
    """(row id, the key, its hash)."""
    key = new_api_key()
    return "key_" + uuid.uuid4().hex, key, hash_api_key(key)


class AccountStoreMixin:
    _call: Callable[..., Awaitable[Any]]

    async def get_user(self, user_id: str) -> User | None:
        return await self._call(aq.get_user, user_id)

    async def user_by_name(self, name: str) -> User | None:
        return await self._call(aq.user_by_name, name.strip())

    async def list_api_keys(self, owner: str) -> list[ApiKey]:
        return await self._call(aq.list_keys, owner)

    async def create_api_key(self, owner: str, label: str | None = None) -> tuple[ApiKey, str]:
        """A new live key for ``owner`` (``NotFound`` if no such user): (its row, the key)."""
        if label is not None and (not label.strip() or len(label) > MAX_LABEL):
            raise InvalidInput(f"a key label is 1 to {MAX_LABEL} characters", field="label")
        key_id, key, key_hash = _new_key()
        return await self._call(aq.create_key, key_id, owner, key_hash, label), key

    async def revoke_api_key(self, key_id: str) -> ApiKey | None:
        return await self._call(aq.revoke_key, key_id)

    async def rotate_api_key(self, key_id: str) -> tuple[ApiKey, ApiKey, str] | None:
        """Revoke a live key and make its successor: (old, new, the new key); None if
        ``key_id`` is not a live key."""
        new_id, key, key_hash = _new_key()
        done = await self._call(aq.rotate_key, key_id, new_id, key_hash)
        return None if done is None else (*done, key)

    async def server_secret(self, name: str) -> bytes:
        """A 32-byte secret shared by every host, made once."""
        return await self._call(aq.server_secret, name, secrets.token_bytes(32))
