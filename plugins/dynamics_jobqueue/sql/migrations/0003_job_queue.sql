-- Job queue and background posting (issue 4). Re-creates the reference system's Job Queue Category,
-- Job Queue Entry, Job Queue Log Entry and the document-level Job Queue Status
-- (docs/reference/dynamics-semantics.md section 2).

CREATE TABLE IF NOT EXISTS dynamics.job_queue_categories (
    code        text PRIMARY KEY CHECK (code = upper(code) AND length(code) BETWEEN 1 AND 10),
    description text NOT NULL DEFAULT ''
);

INSERT INTO dynamics.job_queue_categories (code, description) VALUES
    ('SALESPOST', 'Sales posting'),
    ('PURCHPOST', 'Purchase posting')
ON CONFLICT (code) DO NOTHING;

-- One entry per document queued for posting. Entries end Finished (kept as a record of what ran) or are
-- deleted by Remove from Job Queue; the Job Queue Log Entries keep the history of every attempt.
CREATE TABLE IF NOT EXISTS dynamics.job_queue_entries (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    category_code    text NOT NULL REFERENCES dynamics.job_queue_categories (code),
    document_type    text NOT NULL CHECK (document_type IN (
                         'Sales Order', 'Sales Invoice', 'Sales Credit Memo', 'Sales Return Order',
                         'Purchase Order', 'Purchase Invoice', 'Purchase Credit Memo', 'Purchase Return Order')),
    document_id      uuid NOT NULL,            -- the document's id (SystemId) in Business Central
    document_number  text NOT NULL,
    description      text NOT NULL DEFAULT '',
    status           text NOT NULL DEFAULT 'Ready'
                         CHECK (status IN ('Ready', 'In Process', 'Error', 'On Hold', 'Finished')),
    user_id          text NOT NULL,            -- who queued it; named in alerts
    priority         integer NOT NULL DEFAULT 1000,   -- lower runs first, as Job Queue Priority for Post
    earliest_start_at timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz,              -- Expiration Date/Time: not run after this moment
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts     integer NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    rerun_delay_s    integer NOT NULL DEFAULT 60 CHECK (rerun_delay_s >= 0),
    timeout_s        integer NOT NULL DEFAULT 7200 CHECK (timeout_s > 0),   -- 2 h, the posting default
    post_and_print   boolean NOT NULL DEFAULT false,
    posting_options  jsonb NOT NULL DEFAULT '{}'::jsonb,   -- Batch Post options (posting date, ...)
    error_message    text,
    posted_at        timestamptz,              -- set once the ERP accepted the posting: never posted again
    printed_at       timestamptz,
    -- Who is running it: the worker, the Postgres backend holding the category lock, and its lease.
    worker           text,
    backend_pid      integer,
    started_at       timestamptz,
    heartbeat_at     timestamptz,
    lease_expires_at timestamptz,
    ended_at         timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- At most one unfinished entry per document: the database refuses a second enqueue even when two users
-- press Post at the same moment.
CREATE UNIQUE INDEX IF NOT EXISTS job_queue_entries_one_open_per_document
    ON dynamics.job_queue_entries (document_type, document_id)
    WHERE status <> 'Finished';

CREATE INDEX IF NOT EXISTS job_queue_entries_ready
    ON dynamics.job_queue_entries (category_code, priority, earliest_start_at, created_at)
    WHERE status = 'Ready';

CREATE INDEX IF NOT EXISTS job_queue_entries_in_process
    ON dynamics.job_queue_entries (category_code)
    WHERE status = 'In Process';

-- One row per attempt: In Process when it starts, Success or Error when it ends.
CREATE TABLE IF NOT EXISTS dynamics.job_queue_log_entries (
    entry_no           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_queue_entry_id uuid NOT NULL,   -- no foreign key: the log outlives removed entries
    category_code      text NOT NULL,
    document_type      text NOT NULL,
    document_id        uuid NOT NULL,
    document_number    text NOT NULL,
    user_id            text NOT NULL,
    description        text NOT NULL DEFAULT '',
    status             text NOT NULL CHECK (status IN ('In Process', 'Success', 'Error')),
    started_at         timestamptz NOT NULL DEFAULT now(),
    ended_at           timestamptz,
    error_message      text,
    error_detail       text,            -- the reference's error call stack: API status, code, where it failed
    worker             text
);

CREATE INDEX IF NOT EXISTS job_queue_log_entries_entry
    ON dynamics.job_queue_log_entries (job_queue_entry_id, entry_no);

-- The document-level Job Queue Status of every document with an unfinished entry; documents not listed
-- have a blank status. 'Error' rows are the documents the user must handle.
CREATE OR REPLACE VIEW dynamics.document_job_queue_status AS
SELECT document_type,
       document_id,
       document_number,
       category_code,
       CASE status
           WHEN 'In Process' THEN 'Posting'
           WHEN 'Error' THEN 'Error'
           ELSE 'Scheduled for Posting'
       END AS job_queue_status,
       id AS job_queue_entry_id,
       user_id,
       error_message,
       updated_at
FROM dynamics.job_queue_entries
WHERE status <> 'Finished';
