-- A clip's timings as JSON text, not jsonb: they are written once per clip and only ever read
-- whole (GET /v1/jobs/{id}/alignment, captions), never queried inside. jsonb parsed every
-- character's times into numerics on each insert and, past ~2 kB, compressed the result
-- (measured: ~55 us of Postgres CPU more per short clip than text, ~520 us per long one).
-- Text is stored as sent, and not compressed (EXTERNAL: a long one goes out of line as it is;
-- a clip's timings are a few kB beside its audio's hundreds): the insert stays cheap.
-- Rows written before keep their content (jsonb's text form, which decodes the same), and a
-- process of the version before, still running during a rolling upgrade, still writes here
-- (its $13::jsonb is cast to text on assignment).
ALTER TABLE audio_alignments ALTER COLUMN alignment TYPE text USING alignment::text;
ALTER TABLE audio_alignments ALTER COLUMN alignment SET STORAGE EXTERNAL;
