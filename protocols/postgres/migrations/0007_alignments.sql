-- Word and character timings of a clip (GET /v1/jobs/{id}/alignment, captions), stored in the
-- statement that stores the audio row (jobs_sql.finish_job). Keyed by the audio's cache key,
-- like its file: every audio row with that key (a cache hit, a clip reused by another job or
-- owner) has them. Clips made before this migration have none (the routes then estimate).
CREATE TABLE audio_alignments (
    cache_key   text PRIMARY KEY,
    -- the Alignment (protocols/messages.py) as JSON: characters, their start and end times,
    -- and the words
    alignment   jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
