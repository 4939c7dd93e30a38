"""SQL of the job queue (schema in dynamics_jobqueue/sql/migrations/0003_job_queue.sql).

``{columns}`` placeholders are filled with the entry dataclass's column list (code, never values); values are
always bound parameters.
"""

from __future__ import annotations

_ENTRY_VALUES = """
    (category_code, document_type, document_id, document_number, description, user_id, priority,
     earliest_start_at, expires_at, max_attempts, rerun_delay_s, timeout_s, post_and_print, posting_options,
     notify_on_success)
VALUES (%(category_code)s, %(document_type)s, %(document_id)s, %(document_number)s, %(description)s,
        %(user_id)s, %(priority)s, coalesce(%(earliest_start_at)s, now()), %(expires_at)s, %(max_attempts)s,
        %(rerun_delay_s)s, %(timeout_s)s, %(post_and_print)s, %(posting_options)s, %(notify_on_success)s)
"""

INSERT_ENTRY = "INSERT INTO dynamics.job_queue_entries " + _ENTRY_VALUES + " RETURNING {columns}"

INSERT_ENTRY_IF_NOT_SCHEDULED = (
    "INSERT INTO dynamics.job_queue_entries "
    + _ENTRY_VALUES
    + " ON CONFLICT (document_type, document_id) WHERE status <> 'Finished' DO NOTHING"
)

# The documents of a Batch Post that are Scheduled for Posting or Posting (entries neither Finished nor in Error).
SELECT_SCHEDULED_DOCUMENTS = """
SELECT document_id FROM dynamics.job_queue_entries
WHERE document_type = %s AND document_id = ANY(%s) AND status NOT IN ('Finished', 'Error')
"""

DELETE_ERROR_ENTRY_OF_DOCUMENT = """
DELETE FROM dynamics.job_queue_entries WHERE document_type = %s AND document_id = %s AND status = 'Error'
"""

SELECT_OPEN_ENTRY_BY_NUMBER = """
SELECT {columns} FROM dynamics.job_queue_entries
WHERE document_type = %s AND document_number = %s AND status <> 'Finished'
FOR UPDATE
"""

DELETE_ENTRY = "DELETE FROM dynamics.job_queue_entries WHERE id = %s"

# Ready again after Error means a fresh run: attempts start over, as the reference's Set Status to Ready.
SET_STATUS = """
UPDATE dynamics.job_queue_entries
SET status = %s, updated_at = now(),
    attempts = CASE WHEN status = 'Error' THEN 0 ELSE attempts END,
    earliest_start_at = CASE WHEN status = 'Error' THEN now() ELSE earliest_start_at END
WHERE id = %s
RETURNING {columns}
"""

SELECT_ENTRY = "SELECT {columns} FROM dynamics.job_queue_entries WHERE id = %s"

# Entries as users see them: a Ready entry of a category with an entry In Process shows Waiting.
SELECT_ENTRIES = """
WITH busy AS (
    SELECT DISTINCT category_code FROM dynamics.job_queue_entries WHERE status = 'In Process'
), shown AS (
    SELECT e.*, CASE WHEN e.status = 'Ready' AND busy.category_code IS NOT NULL THEN 'Waiting'
                     ELSE e.status END AS shown_status
    FROM dynamics.job_queue_entries e LEFT JOIN busy USING (category_code)
    WHERE (%(category_code)s::text IS NULL OR e.category_code = %(category_code)s)
      AND (%(user_id)s::text IS NULL OR e.user_id = %(user_id)s)
)
SELECT {columns} FROM shown
WHERE %(statuses)s::text[] IS NULL OR shown_status = ANY(%(statuses)s::text[])
ORDER BY created_at DESC, entry_no DESC
LIMIT %(limit)s
"""

SELECT_LOG_ENTRIES = """
SELECT {columns} FROM dynamics.job_queue_log_entries
WHERE %(entry_id)s::uuid IS NULL OR job_queue_entry_id = %(entry_id)s::uuid
ORDER BY entry_no
"""

SELECT_DOCUMENT_STATUS = """
SELECT job_queue_status FROM dynamics.document_job_queue_status WHERE document_type = %s AND document_id = %s
"""

# -- the runner ------------------------------------------------------------------------------------------------

# For the runner's session (false: not only the current transaction): how long a lock may be waited for.
SET_LOCK_TIMEOUT = "SELECT set_config('lock_timeout', %s, false)"
# Session-level, so that it survives the claim's and the outcome's transactions; waits up to lock_timeout.
CATEGORY_LOCK = "SELECT pg_advisory_lock(%s, hashtext(%s))"
RELEASE_CATEGORY_LOCK = "SELECT pg_advisory_unlock(%s, hashtext(%s))"

# Ready entries whose Expiration Date/Time has passed never run (the reference's Expiration Date/Time).
EXPIRE_ENTRIES = """
UPDATE dynamics.job_queue_entries
SET status = 'Error', updated_at = now(),
    error_message = 'The job queue entry expired on ' || to_char(expires_at AT TIME ZONE 'UTC',
                    'YYYY-MM-DD HH24:MI:SS') || ' UTC before it could run.'
WHERE category_code = %s AND status = 'Ready' AND expires_at < now()
RETURNING {columns}
"""

# Entries left In Process by a worker that is gone (its session ended, its lease expired, or it released the
# entry because the ERP gave no answer). Called only while holding the category lock, which a live worker holds
# for as long as it posts. The last column says whether the attempt's Job Timeout has passed (database clock).
SELECT_ORPHANED = """
SELECT {columns}, started_at + make_interval(secs => timeout_s) < now()
FROM dynamics.job_queue_entries e
WHERE category_code = %s AND status = 'In Process'
  AND (lease_expires_at < now() OR backend_pid IS NULL
       OR NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = e.backend_pid))
ORDER BY priority, entry_no
"""

# Claim the next Ready entry (Priority, then Entry No., as the reference's Job Queue Dispatcher activates the
# Waiting entries of a category) and open its log entry, in one round trip. Nothing is claimed while another
# entry of the category is In Process: under the category lock that entry is one a dead worker left behind (or
# one whose posting got no answer), and its posting may still be running in the ERP. ``{columns}`` is qualified
# with ``claimed.`` (the log entries have an entry_no too). The log entry names the Airflow task instance that
# claims (NULLs for the posting CLI).
CLAIM_NEXT = """
WITH next AS (
    SELECT id FROM dynamics.job_queue_entries
    WHERE category_code = %(category_code)s AND status = 'Ready' AND earliest_start_at <= now()
      AND (expires_at IS NULL OR expires_at >= now())
      AND NOT EXISTS (SELECT 1 FROM dynamics.job_queue_entries busy
                      WHERE busy.category_code = %(category_code)s AND busy.status = 'In Process')
    ORDER BY priority, entry_no
    LIMIT 1
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE dynamics.job_queue_entries e
    SET status = 'In Process', attempts = attempts + 1, worker = %(worker)s, backend_pid = pg_backend_pid(),
        started_at = now(), heartbeat_at = now(), lease_expires_at = now() + make_interval(secs => %(lease_s)s),
        sent_at = CASE WHEN (e.posting_options ->> 'replace_posting_date')::boolean
                          OR (e.posting_options ->> 'replace_document_date')::boolean
                          OR (e.posting_options ->> 'posting_page')::boolean THEN NULL ELSE now() END,
        ended_at = NULL, error_message = NULL, updated_at = now()
    FROM next WHERE e.id = next.id
    RETURNING e.*
), log AS (
    INSERT INTO dynamics.job_queue_log_entries
        (job_queue_entry_id, category_code, document_type, document_id, document_number, user_id,
         description, status, worker, dag_id, run_id, task_id, map_index, try_number)
    SELECT id, category_code, document_type, document_id, document_number, user_id, description,
           'In Process', worker, %(dag_id)s, %(run_id)s, %(task_id)s, %(map_index)s, %(try_number)s
    FROM claimed
    RETURNING entry_no
)
SELECT {columns}, log.entry_no FROM claimed, log
"""

COUNT_IN_PROCESS = """
SELECT count(*) FROM dynamics.job_queue_entries WHERE category_code = %s AND status = 'In Process'
"""

OPEN_RECOVERY_LOG = """
INSERT INTO dynamics.job_queue_log_entries
    (job_queue_entry_id, category_code, document_type, document_id, document_number, user_id, description,
     status, started_at, worker)
VALUES (%s, %s, %s, %s, %s, %s, %s, 'In Process', coalesce(%s, now()), %s)
RETURNING entry_no
"""

MARK_POSTED = """
UPDATE dynamics.job_queue_entries SET posted_at = now(), updated_at = now() WHERE id = %s
"""

# Committed before the posting request goes out: from here on the ERP may be posting the document. The claim
# sets it already when nothing is written to the document first (nothing happens between claim and request).
MARK_SENT = "UPDATE dynamics.job_queue_entries SET sent_at = now() WHERE id = %s"

# The ERP gave no answer: the entry stays In Process without a worker (its attempt's log entry stays open), and
# the category waits for the ERP to show the document posted or for the Job Timeout (see SELECT_ORPHANED).
RELEASE_UNANSWERED = """
UPDATE dynamics.job_queue_entries
SET backend_pid = NULL, lease_expires_at = now(), error_message = %s, updated_at = now()
WHERE id = %s
"""

HEARTBEAT = """
UPDATE dynamics.job_queue_entries
SET heartbeat_at = now(), lease_expires_at = now() + make_interval(secs => %s)
WHERE id = %s AND status = 'In Process'
"""

# Close one attempt: the entry's new state, its log entry and its Notify On Success notification, in one round
# trip. Committed without waiting for the WAL flush (synchronous_commit off for this transaction only: about a
# millisecond per document): should the database server crash and lose it, the entry is In Process with sent_at
# set, and recovery asks the ERP again - posted -> Finished, else it waits for the Job Timeout - so no posting
# is ever repeated. The claim, which marks the request sent, and posted_at stay durable before the ERP is called.
FINISH_ATTEMPT = """
WITH entry AS (
    UPDATE dynamics.job_queue_entries
    SET status = %(status)s, error_message = %(error_message)s,
        earliest_start_at = CASE WHEN %(status)s = 'Ready'
                                 THEN now() + make_interval(secs => rerun_delay_s) ELSE earliest_start_at END,
        posted_at = CASE WHEN %(posted)s THEN coalesce(posted_at, now()) ELSE posted_at END,
        printed_at = CASE WHEN %(printed)s THEN now() ELSE printed_at END,
        ended_at = now(), lease_expires_at = NULL, backend_pid = NULL, updated_at = now()
    WHERE id = %(id)s
    RETURNING id, user_id, document_type, document_number, notify_on_success
), notification AS (  -- Notify On Success: the user who queued the document is told it posted
    INSERT INTO dynamics.job_queue_notifications
        (user_id, job_queue_entry_id, document_type, document_number, message)
    SELECT user_id, id, document_type, document_number,
           document_type || ' ' || document_number || ' has been posted.'
    FROM entry WHERE notify_on_success AND %(status)s = 'Finished'
), commit_mode AS (
    SELECT set_config('synchronous_commit', 'off', true) AS value
)
UPDATE dynamics.job_queue_log_entries
SET status = %(log_status)s, ended_at = now(), error_message = %(error_message)s, error_detail = %(error_detail)s
WHERE entry_no = %(entry_no)s AND (SELECT value FROM commit_mode) = 'off'
"""

SELECT_NOTIFICATIONS = """
SELECT notification_no, user_id, job_queue_entry_id, document_type, document_number, message, created_at
FROM dynamics.job_queue_notifications
WHERE %(user_id)s::text IS NULL OR user_id = %(user_id)s
ORDER BY notification_no
"""

SELECT_OPEN_LOG_ENTRY = """
SELECT max(entry_no) FROM dynamics.job_queue_log_entries WHERE job_queue_entry_id = %s AND status = 'In Process'
"""
