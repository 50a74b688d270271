-- Request ids: the X-Request-ID of the HTTP request that created a job (NULL: none, or a job
-- created before this column existed), shown on the job and carried into its logs and events.
ALTER TABLE jobs ADD COLUMN request_id text;
