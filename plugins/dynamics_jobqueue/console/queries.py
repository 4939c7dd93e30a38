"""SQL of the operator console: the listings the domain modules do not offer and the sync actions.

Every statement takes its values as psycopg parameters (``%(name)s``); nothing user-supplied is formatted into
the SQL text. Actions that a domain module offers (enqueue, Remove from Job Queue, Set to Ready, un-skip, remap)
go through that module instead.
"""

from __future__ import annotations

from dynamics_jobqueue.console.listing import Listing
from dynamics_jobqueue.posting.entries import JobQueueEntry

ENTRY_COLUMNS = JobQueueEntry.columns("shown.", status="shown.shown_status AS status")

# -- lists (paged, sorted, filtered by :func:`dynamics_jobqueue.console.listing.fetch_page`) ------------------
#: Job Queue Entries; a Ready entry of a category with an entry In Process shows as Waiting (as the posting
#: module's list).
JOB_QUEUE_ENTRIES = Listing(
    select=f"""
SELECT {ENTRY_COLUMNS} FROM (
    SELECT e.*, CASE WHEN e.status = 'Ready' AND busy.category_code IS NOT NULL THEN 'Waiting'
                     ELSE e.status END AS shown_status
      FROM dynamics.job_queue_entries e
      LEFT JOIN (SELECT DISTINCT category_code FROM dynamics.job_queue_entries WHERE status = 'In Process') busy
           USING (category_code)
) shown""",
    filters={
        "category_code": "shown.category_code = %(category_code)s",
        "status": "shown.shown_status = %(status)s",
        "user_id": "shown.user_id = %(user_id)s",
        "search": "(shown.document_number ILIKE '%%' || %(search)s || '%%'"
        " OR shown.description ILIKE '%%' || %(search)s || '%%')",
    },
    sorts={
        "created_at": "shown.created_at",
        "entry_no": "shown.entry_no",
        "priority": "shown.priority",
        "status": "shown.shown_status",
        "category_code": "shown.category_code",
        "document_number": "shown.document_number",
        "user_id": "shown.user_id",
        "earliest_start_at": "shown.earliest_start_at",
    },
    default_sort="-created_at",
    tiebreak="shown.entry_no DESC",
)

#: The documents the user must handle: their posting failed (Job Queue Status Error).
DOCUMENTS_TO_HANDLE = Listing(
    select="""
SELECT s.document_type, s.document_number, s.document_id, s.category_code, s.job_queue_entry_id, s.user_id,
       s.error_message, s.updated_at, e.attempts, e.max_attempts
  FROM dynamics.document_job_queue_status s
  JOIN dynamics.job_queue_entries e ON e.id = s.job_queue_entry_id""",
    always=("s.job_queue_status = 'Error'",),
    filters={
        "category_code": "s.category_code = %(category_code)s",
        "user_id": "s.user_id = %(user_id)s",
        "search": "(s.document_number ILIKE '%%' || %(search)s || '%%'"
        " OR s.error_message ILIKE '%%' || %(search)s || '%%')",
    },
    sorts={
        "updated_at": "s.updated_at",
        "document_type": "s.document_type",
        "document_number": "s.document_number",
        "category_code": "s.category_code",
        "user_id": "s.user_id",
    },
    default_sort="-updated_at",
    tiebreak="s.document_type, s.document_id",
)

#: Job Queue Log Entries filtered as the reference's page: category, status, user and a date range (UTC days,
#: on the attempt's start); ``run_id`` gives the attempts of one DAG run (a posting task's extra link).
LOG_ENTRIES = Listing(
    select="""
SELECT entry_no, job_queue_entry_id, category_code, document_type, document_number, user_id, description,
       status, started_at, ended_at, error_message, error_detail, worker, dag_id, run_id, task_id, map_index,
       try_number
  FROM dynamics.job_queue_log_entries""",
    filters={
        "category_code": "category_code = %(category_code)s",
        "status": "status = %(status)s",
        "user_id": "user_id = %(user_id)s",
        "job_queue_entry_id": "job_queue_entry_id = %(job_queue_entry_id)s",
        "run_id": "run_id = %(run_id)s",
        "date_from": "started_at >= %(date_from)s::date::timestamp AT TIME ZONE 'UTC'",
        "date_to": "started_at < (%(date_to)s::date + 1)::timestamp AT TIME ZONE 'UTC'",
        "search": "(document_number ILIKE '%%' || %(search)s || '%%'"
        " OR error_message ILIKE '%%' || %(search)s || '%%')",
    },
    sorts={
        "entry_no": "entry_no",
        "started_at": "started_at",
        "ended_at": "ended_at",
        "status": "status",
        "category_code": "category_code",
        "document_number": "document_number",
        "user_id": "user_id",
    },
    default_sort="-entry_no",
    tiebreak="entry_no DESC",
)

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

#: Integration Synch. Jobs with their counts.
SYNC_RUNS = Listing(
    select="""
SELECT id, run_id, mapping, direction, full_sync, status, started_at, finished_at,
       inserted, modified, deleted, unchanged, skipped, failed, message
  FROM dynamics.sync_job""",
    filters={
        "mapping": "mapping = %(mapping)s",
        "direction": "direction = %(direction)s",
        "status": "status = %(status)s",
        "run_id": "run_id = %(run_id)s",
        "date_from": "started_at >= %(date_from)s::date::timestamp AT TIME ZONE 'UTC'",
        "date_to": "started_at < (%(date_to)s::date + 1)::timestamp AT TIME ZONE 'UTC'",
    },
    sorts={
        name: name
        for name in (
            "started_at",
            "finished_at",
            "mapping",
            "direction",
            "status",
            "inserted",
            "modified",
            "deleted",
            "unchanged",
            "skipped",
            "failed",
        )
    },
    default_sort="-started_at",
    tiebreak="id DESC",
)

#: The current error of each failing record (Integration Synch. Job Errors as the user acts on them), with the
#: DAG run of the job that last failed it.
SYNC_ERRORS = Listing(
    select="""
SELECT r.mapping, r.direction, r.source_id, r.source_key, r.destination_id, r.kind, r.message, r.detail,
       r.error_count, r.skipped, r.first_failed_at, r.last_failed_at, r.last_job_id, j.run_id,
       c.resolution AS choice, c.chosen_by, c.chosen_at
  FROM dynamics.sync_record_error r LEFT JOIN dynamics.sync_job j ON j.id = r.last_job_id
  LEFT JOIN LATERAL (SELECT resolution, chosen_by, chosen_at FROM dynamics.sync_conflict_choice
                      WHERE mapping = r.mapping AND source_id = r.source_id AND r.kind = 'conflict'
                      ORDER BY chosen_at DESC LIMIT 1) c ON true""",
    filters={
        "mapping": "r.mapping = %(mapping)s",
        "direction": "r.direction = %(direction)s",
        "kind": "r.kind = %(kind)s",
        "skipped": "r.skipped = %(skipped)s",
        "search": "(r.source_id ILIKE '%%' || %(search)s || '%%' OR r.source_key ILIKE '%%' || %(search)s || '%%'"
        " OR r.message ILIKE '%%' || %(search)s || '%%')",
    },
    sorts={
        "last_failed_at": "r.last_failed_at",
        "first_failed_at": "r.first_failed_at",
        "mapping": "r.mapping",
        "source_key": "r.source_key",
        "kind": "r.kind",
        "error_count": "r.error_count",
        "skipped": "r.skipped",
    },
    default_sort="-last_failed_at",
    tiebreak="r.mapping, r.direction, r.source_id",
)

#: Users' choices for update conflicts of mappings resolved by ``ask`` (answered required actions): who chose
#: what, for which pair, and when a run applied it.
CONFLICT_CHOICES = Listing(
    select="""
SELECT c.id, c.mapping, c.source_id, c.source_key, c.destination_id, c.resolution, c.fields, c.chosen_by,
       c.chosen_at, c.dag_id, c.run_id, c.task_id, c.map_index, c.applied_at, j.run_id AS applied_run_id
  FROM dynamics.sync_conflict_choice c LEFT JOIN dynamics.sync_job j ON j.id = c.applied_job_id""",
    filters={
        "mapping": "c.mapping = %(mapping)s",
        "resolution": "c.resolution = %(resolution)s",
        "applied": "(c.applied_at IS NOT NULL) = %(applied)s",
        "search": "(c.source_id ILIKE '%%' || %(search)s || '%%' OR c.source_key ILIKE '%%' || %(search)s || '%%'"
        " OR c.destination_id ILIKE '%%' || %(search)s || '%%' OR c.chosen_by ILIKE '%%' || %(search)s || '%%')",
    },
    sorts={
        "chosen_at": "c.chosen_at",
        "applied_at": "c.applied_at",
        "mapping": "c.mapping",
        "source_key": "c.source_key",
        "chosen_by": "c.chosen_by",
        "resolution": "c.resolution",
    },
    default_sort="-chosen_at",
    tiebreak="c.id DESC",
)

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

#: Couplings (CRM Integration Records), searched by either id or either business key (case-insensitive).
COUPLINGS = Listing(
    select="SELECT mapping, erp_id, crm_id, erp_key, crm_key, coupled_at, synced_at FROM dynamics.sync_coupling",
    filters={
        "mapping": "mapping = %(mapping)s",
        "search": "(erp_id ILIKE '%%' || %(search)s || '%%' OR crm_id ILIKE '%%' || %(search)s || '%%'"
        " OR erp_key ILIKE '%%' || %(search)s || '%%' OR crm_key ILIKE '%%' || %(search)s || '%%')",
    },
    sorts={name: name for name in ("mapping", "erp_key", "crm_key", "erp_id", "crm_id", "coupled_at", "synced_at")},
    default_sort="mapping",
    tiebreak="mapping, erp_id",
)

# Uncouple: the pair is no longer linked; the next run treats both records as uncoupled.
UNCOUPLE = """
DELETE FROM dynamics.sync_coupling WHERE mapping = %(mapping)s AND erp_id = %(erp_id)s RETURNING crm_id
"""

# Couple: link an ERP record to a CRM record by id. The fingerprints stay empty, so the next run that sees either
# record changed writes it instead of calling it unchanged.
COUPLE = """
INSERT INTO dynamics.sync_coupling (mapping, erp_id, crm_id, erp_key, crm_key)
VALUES (%(mapping)s, lower(%(erp_id)s), lower(%(crm_id)s), %(erp_key)s, %(crm_key)s)
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

#: Messages a mailbox handled: subject, outcome (tracked, filtered, quarantined) and reason.
MAILBOX_MESSAGES = Listing(
    select="SELECT mailbox_id, message_id, outcome, reason, subject, folder, processed_at"
    " FROM dynamics.mailbox_message",
    filters={"mailbox_id": "mailbox_id = %(mailbox_id)s", "outcome": "outcome = %(outcome)s"},
    sorts={name: name for name in ("processed_at", "outcome", "subject", "folder")},
    default_sort="-processed_at",
    tiebreak="mailbox_id, message_id",
)

# -- trends: counts per bucket (hour or day, UTC) over a period ---------------------------------------------------
# %(bucket)s is 'hour' or 'day' (checked by the endpoint); the period is [from, to).
SYNC_TRENDS = """
SELECT date_trunc(%(bucket)s, started_at, 'UTC') AS bucket, mapping,
       sum(inserted)::int AS inserted, sum(modified)::int AS modified, sum(deleted)::int AS deleted,
       sum(skipped)::int AS skipped, sum(failed)::int AS failed, count(*)::int AS runs
  FROM dynamics.sync_job
 WHERE started_at >= %(start)s AND started_at < %(end)s
   AND (%(mapping)s::text IS NULL OR mapping = %(mapping)s)
 GROUP BY 1, 2 ORDER BY 1, 2
"""

POSTING_TRENDS = """
SELECT date_trunc(%(bucket)s, started_at, 'UTC') AS bucket, category_code,
       count(*) FILTER (WHERE status = 'Success')::int AS posted,
       count(*) FILTER (WHERE status = 'Error')::int AS failed,
       count(*)::int AS attempts
  FROM dynamics.job_queue_log_entries
 WHERE started_at >= %(start)s AND started_at < %(end)s
   AND (%(category_code)s::text IS NULL OR category_code = %(category_code)s)
 GROUP BY 1, 2 ORDER BY 1, 2
"""

MAILBOX_TRENDS = """
SELECT date_trunc(%(bucket)s, g.processed_at, 'UTC') AS bucket, m.email_address,
       count(*) FILTER (WHERE g.outcome = 'tracked')::int AS tracked,
       count(*) FILTER (WHERE g.outcome = 'filtered')::int AS filtered,
       count(*) FILTER (WHERE g.outcome = 'quarantined')::int AS quarantined
  FROM dynamics.mailbox_message g JOIN dynamics.mailbox m USING (mailbox_id)
 WHERE g.processed_at >= %(start)s AND g.processed_at < %(end)s
   AND (%(mailbox_id)s::bigint IS NULL OR g.mailbox_id = %(mailbox_id)s)
 GROUP BY 1, 2 ORDER BY 1, 2
"""

# Sync now: every workload of the mailbox is due at once, so the next mailbox cycle runs it (permanent errors
# included: the user asked for it).
SYNC_NOW = """
UPDATE dynamics.mailbox_workload SET next_sync_at = now() WHERE mailbox_id = %(mailbox_id)s
"""
