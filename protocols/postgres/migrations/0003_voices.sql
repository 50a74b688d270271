-- Voices: the provider's default voices (no owner) and users' cloned voices.

CREATE TABLE voices (
    id                text PRIMARY KEY,  -- ours: a default voice keeps the provider's id
    provider          text NOT NULL,
    provider_voice_id text NOT NULL,
    owner             text REFERENCES users (id),  -- NULL: a default voice
    name              text NOT NULL,
    description       text NOT NULL DEFAULT '',
    labels            jsonb NOT NULL DEFAULT '{}',
    language          text NOT NULL DEFAULT '',
    languages         text[] NOT NULL DEFAULT '{}',
    category          text NOT NULL DEFAULT '',
    status            text NOT NULL CHECK (status IN ('processing', 'completed', 'failed')),
    status_reason     text,
    visibility        text NOT NULL CHECK (visibility IN ('private', 'public', 'default')),
    preview_audio_id  text REFERENCES audio (id),
    preview_job_id    text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (provider, provider_voice_id),
    CHECK ((visibility = 'default') = (owner IS NULL))
);

CREATE INDEX voices_owner_idx ON voices (owner);
-- what VoiceSync tracks: clones still processing, completed clones waiting for their preview
CREATE INDEX voices_tracked_idx ON voices (provider)
    WHERE status = 'processing' OR (preview_job_id IS NOT NULL AND preview_audio_id IS NULL);
