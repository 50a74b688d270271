-- Synthesis parameters and provider metadata on jobs, a shared audio cache, quotas and usage.

ALTER TABLE jobs
    ADD COLUMN params         jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN cache_key      text NOT NULL DEFAULT '',
    ADD COLUMN cached         boolean NOT NULL DEFAULT false,
    ADD COLUMN request_ids    text[] NOT NULL DEFAULT '{}',
    ADD COLUMN character_cost integer;

-- the characters a user's unfinished jobs have reserved against their quota
CREATE INDEX jobs_active_owner_idx ON jobs (owner) WHERE status IN ('queued', 'running');

-- audio is looked up by cache key across owners (the key includes the owner when the cache is
-- per owner); each owner still gets an audio row of their own pointing at the shared file
CREATE INDEX audio_cache_key_idx ON audio (cache_key);

ALTER TABLE users ADD COLUMN monthly_quota bigint CHECK (monthly_quota >= 0);  -- NULL: unlimited

-- One row per job that generated audio: a job is charged once, however often it was retried,
-- and a job served from existing audio is not charged at all.
CREATE TABLE usage (
    job_id         text PRIMARY KEY REFERENCES jobs (id),
    owner          text NOT NULL REFERENCES users (id),
    period         date NOT NULL,  -- first day of the UTC calendar month
    characters     integer NOT NULL CHECK (characters >= 0),
    provider_cost  integer,
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX usage_owner_period_idx ON usage (owner, period);
