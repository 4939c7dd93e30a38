"""SQL of the operator console: the listings the domain modules do not offer and the sync actions.

Every statement takes its values as psycopg parameters (``%(name)s``); nothing user-supplied is formatted into
the SQL text. Actions that a domain module offers (enqueue, Remove from Job Queue, Set to Ready, un-skip, remap)
go through that module instead.
"""

from __future__ import annotations

# -- job queue -------------------------------------------------------------------------------------------------
# The documents the user must handle: their posting failed (Job Queue Status Error), newest first.
DOCUMENTS_TO_HANDLE = """
SELECT s.document_type, s.document_number, s.document_id, s.category_code, s.job_queue_entry_id, s.user_id,
       s.error_message, s.updated_at, e.attempts, e.max_attempts
  FROM dynamics.document_job_queue_status s
  JOIN dynamics.job_queue_entries e ON e.id = s.job_queue_entry_id
 WHERE s.job_queue_status = 'Error'
 ORDER BY s.updated_at DESC
 LIMIT %(limit)s
"""

# Job Queue Log Entries filtered as the reference's page: category, status, user and a date range (UTC, on the
# attempt's start); a NULL filter matches everything.
LOG_ENTRIES = """
SELECT entry_no, job_queue_entry_id, category_code, document_type, document_number, user_id, description,
       status, started_at, ended_at, error_message, error_detail, worker
  FROM dynamics.job_queue_log_entries
 WHERE (%(category_code)s::text IS NULL OR category_code = %(category_code)s)
   AND (%(status)s::text IS NULL OR status = %(status)s)
   AND (%(user_id)s::text IS NULL OR user_id = %(user_id)s)
   AND (%(date_from)s::date IS NULL OR started_at >= %(date_from)s::date::timestamp AT TIME ZONE 'UTC')
   AND (%(date_to)s::date IS NULL OR started_at < (%(date_to)s::date + 1)::timestamp AT TIME ZONE 'UTC')
 ORDER BY entry_no DESC
 LIMIT %(limit)s
"""

CATEGORIES = "SELECT code, description FROM dynamics.job_queue_categories ORDER BY code"

# -- integration sync -----------------------------------------------------------------------------------------
# Every table mapping that has run or has couplings or errors; the mappings themselves are YAML files, but the
# console shows what the state store knows.
MAPPINGS = """
SELECT mapping FROM dynamics.sync_job
 UNION SELECT mapping FROM dynamics.sync_coupling
 UNION SELECT mapping FROM dynamics.sync_record_error
 ORDER BY 1
"""

SYNC_RUNS = """
SELECT id, run_id, mapping, direction, full_sync, status, started_at, finished_at,
       inserted, modified, deleted, unchanged, skipped, failed, message
  FROM dynamics.sync_job
 WHERE (%(mapping)s::text IS NULL OR mapping = %(mapping)s)
 ORDER BY started_at DESC, id DESC
 LIMIT %(limit)s
"""

# The current error of each failing record (Integration Synch. Job Errors as the user acts on them).
SYNC_ERRORS = """
SELECT mapping, direction, source_id, source_key, destination_id, kind, message, detail, error_count, skipped,
       first_failed_at, last_failed_at, last_job_id
  FROM dynamics.sync_record_error
 WHERE (%(mapping)s::text IS NULL OR mapping = %(mapping)s)
 ORDER BY last_failed_at DESC, mapping, source_id
 LIMIT %(limit)s
"""

# Retry: the record is retried by id on the next run anyway; Retry gives it fresh attempts before it would be
# marked Skipped, and takes a Skipped record back (the reference's Retry on the Integration Synch. Errors page).
RETRY_RECORD = """
UPDATE dynamics.sync_record_error SET skipped = false, error_count = 0
 WHERE mapping = %(mapping)s AND direction = %(direction)s AND source_id = %(source_id)s
"""

# Skip: the next runs leave the record alone until it is un-skipped (the reference's Skipped status).
SKIP_RECORD = """
UPDATE dynamics.sync_record_error SET skipped = true
 WHERE mapping = %(mapping)s AND direction = %(direction)s AND source_id = %(source_id)s
"""

# Couplings searched by either id or either business key (case-insensitive substring).
COUPLINGS = """
SELECT mapping, erp_id, crm_id, erp_key, crm_key, coupled_at, synced_at
  FROM dynamics.sync_coupling
 WHERE (%(mapping)s::text IS NULL OR mapping = %(mapping)s)
   AND (%(search)s::text IS NULL
        OR erp_id ILIKE '%%' || %(search)s || '%%' OR crm_id ILIKE '%%' || %(search)s || '%%'
        OR erp_key ILIKE '%%' || %(search)s || '%%' OR crm_key ILIKE '%%' || %(search)s || '%%')
 ORDER BY mapping, erp_key NULLS LAST, erp_id
 LIMIT %(limit)s
"""

# Uncouple: the pair is no longer linked; the next run treats both records as uncoupled.
UNCOUPLE = """
DELETE FROM dynamics.sync_coupling WHERE mapping = %(mapping)s AND erp_id = %(erp_id)s RETURNING crm_id
"""

# Couple: link an ERP record to a CRM record by id. The fingerprints stay empty, so the next run that sees either
# record changed writes it instead of calling it unchanged.
COUPLE = """
INSERT INTO dynamics.sync_coupling (mapping, erp_id, crm_id, erp_key)
VALUES (%(mapping)s, lower(%(erp_id)s), lower(%(crm_id)s), %(erp_key)s)
"""

# -- mailboxes ------------------------------------------------------------------------------------------------
MAILBOXES = """
SELECT m.mailbox_id, m.name, m.email_address, m.crm_user_id::text, m.server_profile, p.server_type,
       m.incoming_method, m.outgoing_method, m.act_method, m.incoming_filter
  FROM dynamics.mailbox m JOIN dynamics.email_server_profile p ON p.name = m.server_profile
 ORDER BY m.email_address
"""

WORKLOADS = """
SELECT mailbox_id, workload, status, permanent_error, last_error_code, last_error_message, last_error_fix,
       error_count, last_error_at, last_success_at, last_run_at, items_processed, items_failed, next_sync_at
  FROM dynamics.mailbox_workload
 WHERE %(mailbox_id)s::bigint IS NULL OR mailbox_id = %(mailbox_id)s
 ORDER BY mailbox_id, workload
"""

RECENT_MESSAGES = """
SELECT mailbox_id, message_id, outcome, reason, subject, folder, processed_at
  FROM dynamics.mailbox_message
 WHERE mailbox_id = %(mailbox_id)s
 ORDER BY processed_at DESC
 LIMIT %(limit)s
"""

# Sync now: every workload of the mailbox is due at once, so the next mailbox cycle runs it (permanent errors
# included: the user asked for it).
SYNC_NOW = """
UPDATE dynamics.mailbox_workload SET next_sync_at = now() WHERE mailbox_id = %(mailbox_id)s
"""
