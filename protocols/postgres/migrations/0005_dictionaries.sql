-- Pronunciation dictionaries and their versions (protocols/dictionaries.py,
-- protocols/postgres/dictionaries_sql.py); a user's default dictionaries; a storybook's.

CREATE TABLE pronunciation_dictionaries (
    id                     text PRIMARY KEY,  -- pd_...: time-sortable (cursor pagination)
    owner                  text NOT NULL REFERENCES users (id),
    name                   text NOT NULL,
    description            text NOT NULL DEFAULT '',
    visibility             text NOT NULL DEFAULT 'private'
                           CHECK (visibility IN ('private', 'public')),
    -- where it is mirrored (NULL: Chorus only) and its id there, e.g. at ElevenLabs
    provider               text,
    provider_dictionary_id text,
    -- the current version (a row of pronunciation_dictionary_versions, written with it)
    current_version_id     text NOT NULL,
    rules_num              integer NOT NULL CHECK (rules_num >= 0),
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    -- deleted: gone for every new request; its versions stay readable for pinned jobs
    deleted_at             timestamptz
);

-- the owner's dictionaries (the per-user limit counts live ones)
CREATE INDEX pronunciation_dictionaries_owner_idx ON pronunciation_dictionaries (owner, id)
    WHERE deleted_at IS NULL;
-- the public ones, for everybody's list
CREATE INDEX pronunciation_dictionaries_public_idx ON pronunciation_dictionaries (id)
    WHERE deleted_at IS NULL AND visibility = 'public';

-- Every change is a new version; versions are never updated nor deleted.
CREATE TABLE pronunciation_dictionary_versions (
    dictionary_id       text NOT NULL REFERENCES pronunciation_dictionaries (id),
    version_id          text NOT NULL,
    rules               jsonb NOT NULL,  -- [{type, string_to_replace, alias|phoneme, ...}]
    rules_num           integer NOT NULL CHECK (rules_num >= 0),
    provider_version_id text,  -- the same version at the provider, when mirrored
    created_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dictionary_id, version_id)
);

-- what a job or a storybook that names no dictionary applies: [{pronunciation_dictionary_id,
-- version_id?}] (a locator without a version follows the dictionary's current version)
ALTER TABLE users
    ADD COLUMN pronunciation_dictionaries jsonb NOT NULL DEFAULT '[]';

-- a storybook's dictionaries, pinned at submit: every line of the book applies them
ALTER TABLE storybooks
    ADD COLUMN dictionaries jsonb NOT NULL DEFAULT '[]';
