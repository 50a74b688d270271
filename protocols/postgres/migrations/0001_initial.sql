-- Users, jobs and audio. Applied once by PgStore.open (see protocols/store.py).

CREATE TABLE users (
    id           text PRIMARY KEY,
    name         text NOT NULL UNIQUE,
    role         text NOT NULL CHECK (role IN ('admin', 'user')),
    -- sha256 of the API key. Keys are random 32-byte tokens, so a fast unsalted hash is safe
    -- (nothing to brute-force) and allows an indexed lookup by hash.
    api_key_hash bytea NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE audio (
    id           text PRIMARY KEY,
    owner        text NOT NULL REFERENCES users (id),
    cache_key    text NOT NULL,
    format       text NOT NULL,
    content_type text NOT NULL,
    duration_s   double precision NOT NULL,
    size         bigint NOT NULL CHECK (size >= 0),
    path         text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (owner, cache_key)
);

CREATE TABLE jobs (
    id              text PRIMARY KEY,
    owner           text NOT NULL REFERENCES users (id),
    idempotency_key text,
    request_hash    text NOT NULL,
    status          text NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'dead')),
    text            text NOT NULL,
    voice_id        text NOT NULL,
    language        text,
    output_format   text NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    characters      integer NOT NULL,
    error_code      text,
    error_message   text,
    audio_id        text REFERENCES audio (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz,
    UNIQUE (owner, idempotency_key)
);

CREATE INDEX jobs_owner_created_at_idx ON jobs (owner, created_at);
CREATE INDEX jobs_audio_id_idx ON jobs (audio_id);
