-- Job queue dispatch as Business Central does it (issue 14; Job Queue Entry table and Job Queue Dispatcher
-- codeunit in microsoft/BCApps): the Entry No. that orders the entries of a category within one priority, the
-- moment the posting request of the running attempt may have reached the ERP, and Notify On Success.

-- "Entry No." (AutoIncrement): entries of a busy category are resumed by priority, then entry number.
ALTER TABLE dynamics.job_queue_entries ADD COLUMN IF NOT EXISTS entry_no bigint GENERATED ALWAYS AS IDENTITY;

-- Set just before the posting request of an attempt is sent; NULL while the attempt has sent nothing. An entry
-- left In Process with sent_at set may still be posting in the ERP: its category waits until the ERP shows the
-- document posted or the entry's Job Timeout (timeout_s after started_at) has passed.
ALTER TABLE dynamics.job_queue_entries ADD COLUMN IF NOT EXISTS sent_at timestamptz;

-- "Notify On Success" (from the Sales & Receivables / Purchases & Payables Setup when the document is queued):
-- the user who queued the document is told when it posted.
ALTER TABLE dynamics.job_queue_entries ADD COLUMN IF NOT EXISTS notify_on_success boolean NOT NULL DEFAULT false;

DROP INDEX IF EXISTS dynamics.job_queue_entries_ready;
CREATE INDEX IF NOT EXISTS job_queue_entries_ready
    ON dynamics.job_queue_entries (category_code, priority, entry_no)
    WHERE status = 'Ready';
