-- Job lanes, job metadata and the cancelled status; storybooks, their pages, lines and retry
-- rounds (protocols/storybooks.py, protocols/postgres/storybooks_sql.py).

ALTER TABLE jobs
    ADD COLUMN lane     text NOT NULL DEFAULT 'interactive'
                        CHECK (lane IN ('interactive', 'batch')),
    ADD COLUMN metadata jsonb;  -- the caller's own JSON object (NULL: none)

-- cancelled: withdrawn while queued (never generated, nothing charged)
ALTER TABLE jobs DROP CONSTRAINT jobs_status_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_status_check
    CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'dead', 'cancelled'));

CREATE TABLE storybooks (
    id               text PRIMARY KEY,  -- time-sortable: newest first is id descending
    owner            text NOT NULL REFERENCES users (id),
    title            text NOT NULL,
    language         text,
    output_format    text NOT NULL,
    cast_members     jsonb NOT NULL DEFAULT '{}',  -- Storybook.cast ("cast" is reserved in SQL)
    status           text NOT NULL DEFAULT 'queued'
                     CHECK (status IN ('queued', 'running', 'succeeded', 'partial', 'failed',
                                       'cancelled')),
    pause_line_ms    integer NOT NULL CHECK (pause_line_ms >= 0),
    pause_page_ms    integer NOT NULL CHECK (pause_page_ms >= 0),
    metadata         jsonb,
    idempotency_key  text,
    request_hash     text NOT NULL DEFAULT '',
    lines_total      integer NOT NULL CHECK (lines_total >= 0),
    characters       integer NOT NULL CHECK (characters >= 0),
    round            integer NOT NULL DEFAULT 0,  -- the latest retry round (0: none yet)
    cancel_requested boolean NOT NULL DEFAULT false,
    audio_path       text,  -- the assembled book audio (a blob path), once made
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    UNIQUE (owner, idempotency_key)  -- NULL keys never collide
);

-- the owner's books, newest first (cursor pagination on the id)
CREATE INDEX storybooks_owner_idx ON storybooks (owner, id);
-- what the runner works on: books not ended, oldest first
CREATE INDEX storybooks_active_idx ON storybooks (created_at, id)
    WHERE status IN ('queued', 'running');

CREATE TABLE storybook_pages (
    book_id text NOT NULL REFERENCES storybooks (id) ON DELETE CASCADE,
    page    integer NOT NULL CHECK (page >= 0),
    title   text,
    PRIMARY KEY (book_id, page)
);

CREATE TABLE storybook_lines (
    id             text PRIMARY KEY,
    book_id        text NOT NULL REFERENCES storybooks (id) ON DELETE CASCADE,
    page           integer NOT NULL CHECK (page >= 0),
    index          integer NOT NULL CHECK (index >= 0),
    speaker        text,
    text           text NOT NULL,
    characters     integer NOT NULL CHECK (characters >= 0),
    voice_id       text NOT NULL,
    voice_settings jsonb,
    status         text NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'queued', 'running', 'succeeded', 'failed',
                                     'cancelled')),
    -- the job of the line's current round (a soft link: a job row may be discarded)
    job_id         text,
    attempts       integer NOT NULL DEFAULT 0,
    round          integer NOT NULL DEFAULT 0,
    error_code     text,
    error_message  text,
    audio_id       text REFERENCES audio (id),
    duration_s     double precision,
    UNIQUE (book_id, page, index)  -- also: a book's lines in reading order
);

-- the runner's next lines of a book, in reading order (also what pending lines reserve)
CREATE INDEX storybook_lines_pending_idx ON storybook_lines (book_id, page, index)
    WHERE status = 'pending';
-- a job's line (job outcomes are followed by job id)
CREATE INDEX storybook_lines_job_idx ON storybook_lines (job_id) WHERE job_id IS NOT NULL;

CREATE TABLE storybook_rounds (
    book_id      text NOT NULL REFERENCES storybooks (id) ON DELETE CASCADE,
    number       integer NOT NULL CHECK (number >= 1),
    requested_by text NOT NULL REFERENCES users (id),
    requested_at timestamptz NOT NULL DEFAULT now(),
    scope        text NOT NULL CHECK (scope IN ('failed', 'listed')),
    forced       boolean NOT NULL DEFAULT false,
    line_ids     text[] NOT NULL,
    succeeded    integer NOT NULL DEFAULT 0,
    failed       integer NOT NULL DEFAULT 0,
    finished_at  timestamptz,
    PRIMARY KEY (book_id, number)
);
