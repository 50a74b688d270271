-- API keys: a user may hold several, each created, rotated and revoked on its own (admin routes
-- and `run.py users`). The one key each user had (users.api_key_hash) becomes its first row.
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

ALTER TABLE users DROP COLUMN api_key_hash;

-- Server-wide secrets made once and shared by every host (e.g. the key that signs audio URLs
-- when CHORUS_SIGNING_KEY is not set). Never logged, never returned by the API.
CREATE TABLE server_secrets (
    name        text PRIMARY KEY,
    value       bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
