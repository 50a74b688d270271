-- API keys: a user may hold several, each created, rotated and revoked on its own (admin routes
-- and `run.py users`). The one key each user had (users.api_key_hash) becomes its first row.
--
-- Expand, not contract (docs/ARCHITECTURE.md, "Migrations"): hosts are upgraded one at a time,
-- and the previous release (migrations up to 0006) still creates users with
-- `INSERT INTO users (id, name, role, api_key_hash)` and authenticates with
-- `SELECT ... FROM users WHERE api_key_hash = $1`. So users.api_key_hash stays, nullable, as a
-- mirror of one live key for those hosts, until a later release's migration (0010 or later,
-- once no host runs a release before 0008) drops it and the trigger below:
-- - a user inserted with api_key_hash (by either release) gets that key as its first api_keys
--   row, from the trigger, so api_keys stays the one place the new release reads and manages;
-- - the new release clears the mirror when it revokes that key and moves it to the successor
--   when it rotates it (protocols/postgres/accounts_sql.py), in the same transaction: a key
--   revoked anywhere authenticates nowhere.

-- First, so that the copy below sees every user an old host committed before it.
ALTER TABLE users ALTER COLUMN api_key_hash DROP NOT NULL;

CREATE TABLE api_keys (
    id          text PRIMARY KEY,
    owner       text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- sha256 of the key (see 0001): an indexed lookup, nothing to brute-force
    key_hash    bytea NOT NULL UNIQUE,
    label       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE INDEX api_keys_owner_idx ON api_keys (owner, created_at);

INSERT INTO api_keys (id, owner, key_hash, label, created_at)
    SELECT 'key_' || md5(id), id, api_key_hash, 'first', created_at FROM users;

CREATE FUNCTION users_first_api_key() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO api_keys (id, owner, key_hash, label, created_at)
        VALUES ('key_' || md5(NEW.id), NEW.id, NEW.api_key_hash, 'first', NEW.created_at);
    RETURN NULL;
END
$$;

CREATE TRIGGER users_first_api_key AFTER INSERT ON users
    FOR EACH ROW WHEN (NEW.api_key_hash IS NOT NULL) EXECUTE FUNCTION users_first_api_key();

-- Server-wide secrets made once and shared by every host (e.g. the key that signs audio URLs
-- when CHORUS_SIGNING_KEY is not set). Never logged, never returned by the API.
CREATE TABLE server_secrets (
    name        text PRIMARY KEY,
    value       bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
