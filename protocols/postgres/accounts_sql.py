"""SQL of the ``AccountStore`` half of PgStore (``protocols/postgres/accounts.py``): users by id,
their API keys (migration 0008) and the server's shared secrets."""

from __future__ import annotations

from typing import Any

from protocols.errors import NotFound
from protocols.messages import ApiKey, User
from protocols.postgres.jobs_sql import _USER, _user

_KEY = "id, owner, label, created_at, revoked_at"


def _key(row: Any) -> ApiKey:
    fields = dict(row)
    fields.pop("key_hash", None)
    return ApiKey(**fields)


async def get_user(conn: Any, user_id: str) -> User | None:
    return _user(await conn.fetchrow(f"SELECT {_USER} FROM users WHERE id = $1", user_id))


async def user_by_name(conn: Any, name: str) -> User | None:
    return _user(await conn.fetchrow(f"SELECT {_USER} FROM users WHERE name = $1", name))


async def list_keys(conn: Any, owner: str) -> list[ApiKey]:
    rows = await conn.fetch(
        f"SELECT {_KEY} FROM api_keys WHERE owner = $1 ORDER BY created_at, id", owner
    )
    return [_key(row) for row in rows]


async def create_key(
    conn: Any, key_id: str, owner: str, key_hash: bytes, label: str | None
) -> ApiKey:
    row = await conn.fetchrow(
        "INSERT INTO api_keys (id, owner, key_hash, label)"
        " SELECT $1, id, $3, $4 FROM users WHERE id = $2"
        f" RETURNING {_KEY}",
        key_id, owner, key_hash, label,
    )
    if row is None:
        raise NotFound(f"no user {owner!r}")
    return _key(row)


#: users.api_key_hash is where the previous release looks keys up (kept by migration 0008 for a
#: rolling upgrade): it is cleared when the key it holds is revoked, and moved to the successor
#: when that key is rotated, by the statement or transaction that revokes it. So a key revoked
#: here authenticates on no host, old or new.
_REVOKE = (
    "WITH k AS (UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1"
    " RETURNING *), mirror AS (UPDATE users u SET api_key_hash = NULL FROM k"
    " WHERE u.id = k.owner AND u.api_key_hash = k.key_hash)"
    f" SELECT {_KEY} FROM k"
)
_MOVE_MIRROR = "UPDATE users SET api_key_hash = $2 WHERE id = $1 AND api_key_hash = $3"


async def revoke_key(conn: Any, key_id: str) -> ApiKey | None:
    """Revoked now (a repeat keeps the first time); None if there is no such key."""
    row = await conn.fetchrow(_REVOKE, key_id)
    return None if row is None else _key(row)


async def rotate_key(
    conn: Any, key_id: str, new_id: str, key_hash: bytes
) -> tuple[ApiKey, ApiKey] | None:
    """Revoke a live key and make its successor (same owner and label), in one transaction:
    (the old, the new); None if there is no live key ``key_id``."""
    async with conn.transaction():
        old = await conn.fetchrow(
            "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL"
            f" RETURNING {_KEY}, key_hash",
            key_id,
        )
        if old is None:
            return None
        new = await conn.fetchrow(
            "INSERT INTO api_keys (id, owner, key_hash, label) VALUES ($1, $2, $3, $4)"
            f" RETURNING {_KEY}",
            new_id, old["owner"], key_hash, old["label"],
        )
        await conn.execute(_MOVE_MIRROR, old["owner"], key_hash, old["key_hash"])
    return _key(old), _key(new)


async def server_secret(conn: Any, name: str, fresh: bytes) -> bytes:
    """The secret ``name``, made from ``fresh`` the first time (every host then reads the
    same one: the insert is a no-op when another host got there first)."""
    await conn.execute(
        "INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        name, fresh,
    )
    return bytes(await conn.fetchval("SELECT value FROM server_secrets WHERE name = $1", name))
