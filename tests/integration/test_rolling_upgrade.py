"""A rolling upgrade across migration 0008 (API keys) on the real embedded Postgres: hosts still
on the previous release (commit 22f2534, migrations up to 0006) share the migrated database with
upgraded hosts, and both must agree on who holds which key. The previous release's statements
are run verbatim, as it ran them (through asyncpg, with its parameters), beside this release's
store."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import trio

from protocols.postgres.accounts import hash_api_key, new_api_key
from protocols.postgres.store import PgStore

CAP_S = 20

# What release 22f2534 ran (protocols/postgres/jobs_sql.py: create_user and user_by_key_hash,
# with _USER expanded), copied verbatim.
RELEASE_22F2534_CREATE_USER = (
    "INSERT INTO users (id, name, role, api_key_hash) VALUES ($1, $2, $3, $4)"
    " RETURNING id, name, role, created_at, monthly_quota, pronunciation_dictionaries"
)
RELEASE_22F2534_USER_BY_KEY_HASH = (
    "SELECT id, name, role, created_at, monthly_quota, pronunciation_dictionaries"
    " FROM users WHERE api_key_hash = $1"
)


async def _old_create_user(conn: Any, user_id: str, name: str, key_hash: bytes) -> str:
    row = await conn.fetchrow(RELEASE_22F2534_CREATE_USER, user_id, name, "user", key_hash)
    return row["id"]


async def _old_user_by_key_hash(conn: Any, key_hash: bytes) -> str | None:
    row = await conn.fetchrow(RELEASE_22F2534_USER_BY_KEY_HASH, key_hash)
    return None if row is None else row["id"]


async def old_host_creates(store: PgStore, name: str) -> tuple[str, str]:
    """A user made by `run.py users add` on a host still on 22f2534: (its id, its key)."""
    key = new_api_key()
    user_id = await store._call(_old_create_user, str(uuid.uuid4()), name, hash_api_key(key))
    return user_id, key


async def old_host_authenticates(store: PgStore, key: str) -> str | None:
    """The id of the user an old host lets in with this key, or None."""
    return await store._call(_old_user_by_key_hash, hash_api_key(key))


async def made_by(release: str, store: PgStore, name: str) -> tuple[str, str]:
    if release == "previous":
        return await old_host_creates(store, name)
    user, key = await store.create_user(name)
    return user.id, key


async def test_a_user_made_by_an_old_host_is_let_in_by_a_new_one(store: PgStore) -> None:
    with trio.fail_after(CAP_S):
        user_id, key = await old_host_creates(store, "olga")
        user = await store.authenticate(key)
        assert user is not None and user.id == user_id and user.name == "olga"
        (row,) = await store.list_api_keys(user_id)  # managed like any key of this release
        assert row.label == "first" and row.revoked_at is None
        assert await old_host_authenticates(store, key) == user_id


async def test_a_user_made_by_a_new_host_is_let_in_by_an_old_one(store: PgStore) -> None:
    with trio.fail_after(CAP_S):
        user, key = await store.create_user("nina")
        assert await old_host_authenticates(store, key) == user.id
        (row,) = await store.list_api_keys(user.id)  # one first key, not two
        assert row.label == "first"
        assert (await store.authenticate(key)).id == user.id


@pytest.mark.parametrize("release", ["previous", "this"])
async def test_a_key_revoked_on_a_new_host_is_refused_by_an_old_one(
    store: PgStore, release: str
) -> None:
    with trio.fail_after(CAP_S):
        user_id, first = await made_by(release, store, "rita")
        other_id, other = await made_by(release, store, "otto")
        second_row, second = await store.create_api_key(user_id, "laptop")
        await store.revoke_api_key(second_row.id)  # not the key old hosts know: no change
        assert await old_host_authenticates(store, first) == user_id
        (first_row, _) = await store.list_api_keys(user_id)
        await store.revoke_api_key(first_row.id)
        assert await old_host_authenticates(store, first) is None
        assert await store.authenticate(first) is None
        assert await old_host_authenticates(store, second) is None
        assert await old_host_authenticates(store, other) == other_id  # others untouched


@pytest.mark.parametrize("release", ["previous", "this"])
async def test_a_key_rotated_on_a_new_host_is_refused_by_an_old_one(
    store: PgStore, release: str
) -> None:
    with trio.fail_after(CAP_S):
        user_id, first = await made_by(release, store, "rosa")
        (first_row,) = await store.list_api_keys(user_id)
        _, _, successor = await store.rotate_api_key(first_row.id)
        assert await old_host_authenticates(store, first) is None
        assert await store.authenticate(first) is None
        # the successor takes the old key's place everywhere
        assert await old_host_authenticates(store, successor) == user_id
        assert (await store.authenticate(successor)).id == user_id
