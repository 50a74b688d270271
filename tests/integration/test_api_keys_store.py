"""API keys (migration 0008) and server secrets on the real embedded Postgres: several keys
per user, rotate and revoke, the migration of the one key users had before."""

from __future__ import annotations

import trio

from protocols.embedded.servers import run_psql
from protocols.postgres.store import PgStore, _migrations
from tests.conftest import DB_TIMEOUT_S

CAP_S = 20


async def test_keys_are_created_rotated_and_revoked(store: PgStore) -> None:
    with trio.fail_after(CAP_S):
        alice, first = await store.create_user("alice")
        bob, bob_key = await store.create_user("bob")
        (row,) = await store.list_api_keys(alice.id)
        assert row.label == "first" and row.revoked_at is None
        second_row, second = await store.create_api_key(alice.id, "laptop")
        assert second != first and second_row.owner == alice.id
        assert (await store.authenticate(first)).id == alice.id
        assert (await store.authenticate(second)).id == alice.id
        old, new, third = await store.rotate_api_key(second_row.id)
        assert old.revoked_at is not None and new.label == "laptop" and new.revoked_at is None
        assert await store.authenticate(second) is None  # the rotated key stops at once
        assert (await store.authenticate(third)).id == alice.id
        assert await store.rotate_api_key(second_row.id) is None  # not live any more
        revoked = await store.revoke_api_key(row.id)
        assert revoked.revoked_at is not None
        assert (await store.revoke_api_key(row.id)).revoked_at == revoked.revoked_at
        assert await store.authenticate(first) is None
        assert await store.revoke_api_key("key_nope") is None
        assert [k.id for k in await store.list_api_keys(alice.id)] == \
            [row.id, second_row.id, new.id]
        assert (await store.authenticate(bob_key)).id == bob.id  # others untouched
        assert (await store.get_user(bob.id)).name == "bob"
        assert (await store.user_by_name("bob")).id == bob.id
        assert await store.get_user("nobody") is None


async def test_a_server_secret_is_made_once(store: PgStore) -> None:
    with trio.fail_after(CAP_S):
        first = await store.server_secret("audio-url")
        assert len(first) == 32
        assert await store.server_secret("audio-url") == first
        assert await store.server_secret("other") != first


async def test_migration_0008_keeps_the_key_each_user_had(database_url: str) -> None:
    """A database made before 0008: each user's one key (users.api_key_hash) becomes its
    first row in api_keys, and keeps working, on hosts of either release until revoked."""
    with trio.fail_after(60):
        earlier = [(v, sql) for v, sql in _migrations() if v < "0008"]
        setup = ["CREATE TABLE schema_migrations (version text PRIMARY KEY,"
                 " applied_at timestamptz NOT NULL DEFAULT now())"]
        for version, sql in earlier:
            setup += [sql, f"INSERT INTO schema_migrations (version) VALUES ('{version}')"]
        setup.append("INSERT INTO users (id, name, role, api_key_hash) VALUES ('u1', 'old',"
                     " 'user', decode(encode(sha256('chk_old'::bytea), 'hex'), 'hex'))")
        for sql in setup:
            await trio.to_thread.run_sync(run_psql, database_url, sql)
        async with PgStore.open(database_url, timeout=DB_TIMEOUT_S) as store:
            user = await store.authenticate("chk_old")
            assert user is not None and user.id == "u1"
            (row,) = await store.list_api_keys("u1")
            assert row.label == "first" and row.revoked_at is None
            # the previous release's lookup (kept through a rolling upgrade) agrees
            old_lookup = ("SELECT id FROM users WHERE api_key_hash ="
                          " decode(encode(sha256('chk_old'::bytea), 'hex'), 'hex')")
            assert await trio.to_thread.run_sync(run_psql, database_url, old_lookup) == "u1"
            await store.revoke_api_key(row.id)
            assert await store.authenticate("chk_old") is None
            assert await trio.to_thread.run_sync(run_psql, database_url, old_lookup) == ""
