-- Word and character timings of a clip (GET /v1/jobs/{id}/alignment, captions), stored in the
-- statement that stores the audio row (jobs_sql.finish_job). Keyed by the audio's cache key,
-- like its file: every audio row with that key (a cache hit, a clip reused by another job or
-- owner) has them. Clips made before this migration have none (the routes then estimate).
CREATE TABLE audio_alignments (
    cache_key   text PRIMARY KEY,
    -- the Alignment (protocols/messages.py) as JSON text: characters, their start and end
    -- times, and the words. Text, not jsonb: written once per clip and only ever read whole,
    -- never queried inside; jsonb parsed every character's times into numerics on each insert
    -- and compressed past ~2 kB (measured: ~55 us more Postgres CPU per short clip, ~520 us
    -- per long one).
    alignment   text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
-- Stored as sent, not compressed (a long one goes out of line as it is; a clip's timings are a
-- few kB beside its audio's hundreds): the insert stays cheap.
ALTER TABLE audio_alignments ALTER COLUMN alignment SET STORAGE EXTERNAL;
