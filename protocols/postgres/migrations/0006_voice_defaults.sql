-- Voices: default voice settings of a voice (used by jobs that give none), and previews made
-- again on request (POST /v1/voices/{id}/preview).

-- a voice's own defaults (ElevenLabs' VoiceSettings names; '{}': none), merged field by field
-- under the settings a job gives, at submit (so the cache key includes them)
ALTER TABLE voices
    ADD COLUMN voice_settings       jsonb NOT NULL DEFAULT '{}',
    -- the job whose audio preview_audio_id is; preview_job_id is the latest one asked for, so a
    -- preview is pending (VoiceSync links it) while the two differ
    ADD COLUMN preview_audio_job_id text;

UPDATE voices SET preview_audio_job_id = preview_job_id WHERE preview_audio_id IS NOT NULL;

DROP INDEX voices_tracked_idx;
-- what VoiceSync tracks: clones still processing, voices whose latest preview job is not linked
CREATE INDEX voices_tracked_idx ON voices (provider)
    WHERE status = 'processing'
       OR (preview_job_id IS NOT NULL AND preview_job_id IS DISTINCT FROM preview_audio_job_id);
