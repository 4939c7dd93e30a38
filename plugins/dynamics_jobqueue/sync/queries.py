"""SQL of the sync state (tables of ``dynamics_jobqueue/sql/migrations/0002_sync.sql``). Plain ``%s`` parameters."""

from __future__ import annotations

# A session-level advisory lock per mapping: two runs of one mapping never overlap, whichever worker runs them.
TRY_LOCK = "SELECT pg_try_advisory_lock(hashtextextended('dynamics.sync:' || %s, 0))"
UNLOCK = "SELECT pg_advisory_unlock(hashtextextended('dynamics.sync:' || %s, 0))"

WATERMARK = "SELECT modified_at, version FROM dynamics.sync_watermark WHERE mapping = %s AND direction = %s"
# GREATEST ignores NULLs, and the watermark only moves forward.
SET_WATERMARK = """
INSERT INTO dynamics.sync_watermark (mapping, direction, modified_at, version) VALUES (%s, %s, %s, %s)
ON CONFLICT (mapping, direction) DO UPDATE
   SET modified_at = GREATEST(dynamics.sync_watermark.modified_at, EXCLUDED.modified_at),
       version = GREATEST(dynamics.sync_watermark.version, EXCLUDED.version), updated_at = now()
"""
CLEAR_WATERMARKS = "DELETE FROM dynamics.sync_watermark WHERE mapping = %s"
CLEAR_READ_OVERLAP_OF_MAPPING = "DELETE FROM dynamics.sync_read_overlap WHERE mapping = %s"
READ_OVERLAP = "SELECT source_id, digest FROM dynamics.sync_read_overlap WHERE mapping = %s AND direction = %s"
CLEAR_READ_OVERLAP = "DELETE FROM dynamics.sync_read_overlap WHERE mapping = %s AND direction = %s"
COPY_READ_OVERLAP = "COPY dynamics.sync_read_overlap (mapping, direction, source_id, marker, digest) FROM STDIN"

# A job still 'running' while this run holds the mapping's lock belongs to a worker that died.
INTERRUPT_STALE_JOBS = """
UPDATE dynamics.sync_job SET status = 'interrupted', finished_at = clock_timestamp(),
       message = 'the run stopped before finishing (worker lost); the next run completed its work'
 WHERE mapping = %s AND status = 'running'
"""
START_JOB = """
INSERT INTO dynamics.sync_job (run_id, mapping, direction, full_sync) VALUES (%s, %s, %s, %s) RETURNING id
"""
ADD_COUNTS = """
UPDATE dynamics.sync_job SET inserted = inserted + %s, modified = modified + %s, deleted = deleted + %s,
       unchanged = unchanged + %s, skipped = skipped + %s, failed = failed + %s, coupled = coupled + %s,
       uncoupled = uncoupled + %s
 WHERE id = %s
"""
FINISH_JOB = """
UPDATE dynamics.sync_job SET status = %s, finished_at = clock_timestamp(), message = %s WHERE id = %s
"""

# A mapping's coupling rows by one key column (erp_id, crm_id or erp_key), columns as store.COUPLING_COLUMNS.
COUPLINGS_BY = {
    column: f"""
SELECT erp_id, crm_id, erp_key, crm_key, erp_modified_at, crm_version, erp_hash, crm_hash, write_back_pending
  FROM dynamics.sync_coupling WHERE mapping = %s AND {column} = ANY(%s)
"""
    for column in ("erp_id", "crm_id", "erp_key")
}
# A page's couplings arrive by COPY into a per-connection temporary table, then merge in one statement:
# 20,000 rows take a fraction of a second instead of 20,000 round trips.
CREATE_COUPLING_INPUT = """
CREATE TEMPORARY TABLE IF NOT EXISTS sync_coupling_input (
    erp_id text, crm_id text, erp_key text, crm_key text, erp_modified_at timestamptz,
    crm_version bigint, erp_hash text, crm_hash text, is_new boolean, write_back boolean
) ON COMMIT DELETE ROWS
"""
COPY_COUPLING_INPUT = """
COPY sync_coupling_input (erp_id, crm_id, erp_key, crm_key, erp_modified_at, crm_version, erp_hash, crm_hash,
                          is_new, write_back) FROM STDIN
"""
# A CRM record coupled anew (e.g. restored in the ERP under a new id) must not keep its coupling to the old id.
DELETE_REPLACED_COUPLINGS = """
DELETE FROM dynamics.sync_coupling c USING sync_coupling_input i
 WHERE i.is_new AND c.mapping = %s AND c.crm_id = i.crm_id AND c.erp_id <> i.erp_id
"""
MERGE_COUPLINGS = """
INSERT INTO dynamics.sync_coupling AS c
       (mapping, erp_id, crm_id, erp_key, crm_key, erp_modified_at, crm_version, erp_hash, crm_hash,
        write_back_pending)
SELECT %s, erp_id, crm_id, erp_key, crm_key, erp_modified_at, crm_version, erp_hash, crm_hash,
       coalesce(write_back, false)
  FROM sync_coupling_input
ON CONFLICT (mapping, erp_id) DO UPDATE
   SET crm_id = EXCLUDED.crm_id, erp_key = EXCLUDED.erp_key, crm_key = EXCLUDED.crm_key,
       erp_modified_at = EXCLUDED.erp_modified_at, crm_version = EXCLUDED.crm_version,
       erp_hash = EXCLUDED.erp_hash, crm_hash = EXCLUDED.crm_hash, synced_at = now()
"""
# write_back: true sets write_back_pending, false clears it, NULL keeps it (a CRM->ERP update of such a pair).
SET_WRITE_BACK = """
UPDATE dynamics.sync_coupling c SET write_back_pending = i.write_back
  FROM sync_coupling_input i
 WHERE c.mapping = %s AND c.erp_id = i.erp_id AND i.write_back IS NOT NULL
"""
WRITE_BACK_PENDING = """
SELECT erp_id FROM dynamics.sync_coupling WHERE mapping = %s AND write_back_pending ORDER BY erp_id
"""
CLEAR_WRITE_BACK = """
UPDATE dynamics.sync_coupling SET write_back_pending = false WHERE mapping = %s AND erp_id = ANY(%s)
"""
DELETE_COUPLING_BY_ERP_ID = "DELETE FROM dynamics.sync_coupling WHERE mapping = %s AND erp_id = %s"

# Error state of the records of a page, on both sides of their couplings: a pair is Skipped as a whole.
RECORD_STATE = """
SELECT direction, source_id, skipped, last_job_id = ANY(%s) AS handled
  FROM dynamics.sync_record_error
 WHERE mapping = %s
   AND ((direction = 'to_crm' AND source_id = ANY(%s)) OR (direction = 'from_crm' AND source_id = ANY(%s)))
"""
ERRORED_IDS = "SELECT source_id FROM dynamics.sync_record_error WHERE mapping = %s AND direction = %s"
RETRY_IDS = """
SELECT source_id FROM dynamics.sync_record_error
 WHERE mapping = %s AND direction = %s AND NOT skipped ORDER BY source_id
"""
# The CRM records of unresolved update conflicts: read again so the next run sees the conflict again.
CONFLICT_CRM_IDS = """
SELECT destination_id FROM dynamics.sync_record_error
 WHERE mapping = %s AND direction = 'to_crm' AND kind = 'conflict' AND NOT skipped AND destination_id IS NOT NULL
"""
RECORD_FAILED = """
INSERT INTO dynamics.sync_record_error AS e
       (mapping, direction, source_id, source_key, destination_id, kind, message, detail, last_job_id, skipped)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 1 >= %s)
ON CONFLICT (mapping, direction, source_id) DO UPDATE
   SET error_count = CASE WHEN e.message = EXCLUDED.message THEN e.error_count + 1 ELSE 1 END,
       skipped = (CASE WHEN e.message = EXCLUDED.message THEN e.error_count + 1 ELSE 1 END) >= %s,
       source_key = EXCLUDED.source_key, destination_id = EXCLUDED.destination_id, kind = EXCLUDED.kind,
       message = EXCLUDED.message, detail = EXCLUDED.detail, last_failed_at = now(),
       last_job_id = EXCLUDED.last_job_id
"""
RECORD_SUCCEEDED = "DELETE FROM dynamics.sync_record_error WHERE mapping = %s AND direction = %s AND source_id = %s"
JOB_ERROR = """
INSERT INTO dynamics.sync_job_error (job_id, source_id, source_key, destination_id, kind, message, detail)
VALUES (%s, %s, %s, %s, %s, %s, %s)
"""
RESET_SKIPPED = """
UPDATE dynamics.sync_record_error SET skipped = false, error_count = 0
 WHERE mapping = %s AND skipped AND (%s::text[] IS NULL OR source_id = ANY(%s))
"""

CLEAR_STAGING = "DELETE FROM dynamics.sync_staging WHERE mapping = %s"
STAGE = """
INSERT INTO dynamics.sync_staging (mapping, crm_id, version, record) VALUES (%s, %s, %s, %s)
ON CONFLICT (mapping, crm_id) DO UPDATE SET version = EXCLUDED.version, record = EXCLUDED.record
"""
STAGED_BY_CRM_ID = "SELECT crm_id, record FROM dynamics.sync_staging WHERE mapping = %s AND crm_id = ANY(%s)"
STAGED_PAGE = """
SELECT crm_id, record, erp_values_hash FROM dynamics.sync_staging
 WHERE mapping = %s AND NOT consumed AND crm_id > %s ORDER BY crm_id LIMIT %s
"""
MARK_STAGED = """
UPDATE dynamics.sync_staging SET erp_values_hash = %s, consumed = consumed OR %s
 WHERE mapping = %s AND crm_id = %s
"""
COUNT_STAGED = "SELECT count(*) FROM dynamics.sync_staging WHERE mapping = %s AND NOT consumed"

JOBS_OF_RUN = """
SELECT id, mapping, direction, status, started_at, finished_at,
       inserted, modified, deleted, unchanged, skipped, failed, coupled, uncoupled, message
  FROM dynamics.sync_job WHERE run_id = %s ORDER BY started_at, id
"""
LATEST_RUN = "SELECT run_id FROM dynamics.sync_job ORDER BY started_at DESC, id DESC LIMIT 1"

GET_SETTING = "SELECT value FROM dynamics.settings WHERE key = %s"
PUT_SETTING = """
INSERT INTO dynamics.settings (key, value) VALUES (%s, %s)
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()
"""

COPY_PENDING = """
COPY dynamics.sync_pending_create (mapping, direction, source_id, dest_key, dest_key_is_id, erp_key, crm_key,
                                   erp_modified_at, crm_version, erp_hash, crm_hash) FROM STDIN
"""
PENDING = """
SELECT direction, source_id, dest_key, dest_key_is_id, erp_key, crm_key, erp_modified_at, crm_version, erp_hash,
       crm_hash
  FROM dynamics.sync_pending_create WHERE mapping = %s ORDER BY direction, source_id
"""
DROP_PENDING = "DELETE FROM dynamics.sync_pending_create WHERE mapping = %s AND direction = %s AND source_id = ANY(%s)"

# Users' choices for update conflicts of a mapping resolved by `ask`, not applied yet: the latest per record.
PENDING_CHOICES = """
SELECT DISTINCT ON (source_id) source_id, resolution, chosen_by
  FROM dynamics.sync_conflict_choice
 WHERE mapping = %s AND applied_at IS NULL AND resolution <> 'skip'
 ORDER BY source_id, chosen_at DESC
"""
CHOICES_APPLIED = """
UPDATE dynamics.sync_conflict_choice SET applied_at = now(), applied_job_id = %s
 WHERE mapping = %s AND applied_at IS NULL AND source_id = ANY(%s)
"""
# Update conflicts of a mapping resolved by `ask` still to ask about: failing (not Skipped) and without a choice
# waiting to be applied (dynamics_jobqueue.sync.conflict_choices.open_conflicts).
CONFLICTS_TO_ASK = """
SELECT e.source_id, e.source_key, e.destination_id, e.message, e.detail
  FROM dynamics.sync_record_error e
 WHERE e.mapping = %s AND e.direction = 'to_crm' AND e.kind = 'conflict' AND NOT e.skipped
   AND NOT EXISTS (SELECT 1 FROM dynamics.sync_conflict_choice c
                    WHERE c.mapping = e.mapping AND c.source_id = e.source_id AND c.applied_at IS NULL)
 ORDER BY e.source_key NULLS LAST, e.source_id
 LIMIT %s
"""
# The last parameter says whether the choice is applied at once (a "skip").
SAVE_CONFLICT_CHOICE = """
INSERT INTO dynamics.sync_conflict_choice
       (mapping, source_id, source_key, destination_id, resolution, fields, chosen_by, dag_id, run_id, task_id,
        map_index, applied_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, CASE WHEN %s THEN now() END)
"""
SKIP_CONFLICT_RECORD = """
UPDATE dynamics.sync_record_error SET skipped = true
 WHERE mapping = %s AND direction = 'to_crm' AND source_id = %s
"""

# The job queue entry of a mapping (dynamics_jobqueue.sync.job_queue): set after every sync of it.
_JOB_QUEUE_ENTRY_COLUMNS = "mapping, status, status_since, inactivity_timeout_min, last_run_id, last_run_idle"
SET_JOB_QUEUE_ENTRY = f"""
INSERT INTO dynamics.sync_job_queue_entry
       (mapping, status, status_since, inactivity_timeout_min, last_run_id, last_run_idle)
VALUES (%s, %s, clock_timestamp(), %s, %s, %s)
ON CONFLICT (mapping) DO UPDATE
   SET status = EXCLUDED.status, status_since = EXCLUDED.status_since,
       inactivity_timeout_min = EXCLUDED.inactivity_timeout_min, last_run_id = EXCLUDED.last_run_id,
       last_run_idle = EXCLUDED.last_run_idle
RETURNING {_JOB_QUEUE_ENTRY_COLUMNS}
"""
JOB_QUEUE_ENTRY = f"SELECT {_JOB_QUEUE_ENTRY_COLUMNS} FROM dynamics.sync_job_queue_entry WHERE mapping = %s"
JOB_QUEUE_ENTRIES = f"SELECT {_JOB_QUEUE_ENTRY_COLUMNS} FROM dynamics.sync_job_queue_entry ORDER BY mapping"
# The Business Central webhook subscription of an entity set, while it lasts (kept by the webhook_subscriptions DAG).
LIVE_WEBHOOK_SUBSCRIPTION = """
SELECT created_at FROM dynamics.bc_webhook_subscriptions WHERE entity_set = %s AND expires_at > now()
"""
# The mappings among %s whose jobs in run %s were not idle (a job still running or failed counts as not idle).
ACTIVE_MAPPINGS_OF_RUN = """
SELECT DISTINCT mapping FROM dynamics.sync_job WHERE run_id = %s AND mapping = ANY(%s) AND NOT idle ORDER BY mapping
"""

# The last passed $metadata check of a mapping (dynamics_jobqueue.sync.metadata.check_unless_passed).
METADATA_CHECK_PASSED = """
SELECT checked_at FROM dynamics.sync_metadata_check WHERE mapping = %s AND definition_hash = %s AND services = %s
"""
SET_METADATA_CHECK_PASSED = """
INSERT INTO dynamics.sync_metadata_check (mapping, definition_hash, services) VALUES (%s, %s, %s)
ON CONFLICT (mapping) DO UPDATE
   SET definition_hash = EXCLUDED.definition_hash, services = EXCLUDED.services, checked_at = clock_timestamp()
"""
DROP_SETTING = "DELETE FROM dynamics.settings WHERE key = %s"
