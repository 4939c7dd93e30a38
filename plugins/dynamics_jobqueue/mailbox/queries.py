"""SQL of the mailbox state (tables of ``dynamics_jobqueue/sql/migrations/0004_mailbox.sql`` and later). Plain ``%s``
parameters; a ``{column}`` placeholder is filled from a fixed list of column names, never from a caller's text."""

from __future__ import annotations

# Email server profiles, mailboxes, their mapping to CRM users and remap requests (records.py).
SELECT_MAILBOX = """
SELECT m.mailbox_id, m.name, m.email_address, m.crm_user_id::text, p.name, p.server_type, p.conn_id,
       m.credentials_conn_id, m.incoming_method, m.outgoing_method, m.act_method, m.incoming_filter,
       m.folders, m.process_after, m.pop3_delete, m.base_interval_s, m.max_interval_s, m.email_approval,
       m.recovery_rule
  FROM dynamics.mailbox m JOIN dynamics.email_server_profile p ON p.name = m.server_profile
"""
SELECT_REMAP_REQUEST = (
    "SELECT r.request_id, r.mailbox_id, m.email_address, r.crm_user_id::text, m.crm_user_id::text, r.reason,"
    " r.requested_by, r.requested_at, r.status, r.decided_by, r.decided_at, r.dag_run_id"
    " FROM dynamics.mailbox_remap_request r JOIN dynamics.mailbox m ON m.mailbox_id = r.mailbox_id"
)
# {column}: one of the mailbox settings records.update_mailbox allows.
SET_MAILBOX_FIELD = "UPDATE dynamics.mailbox SET {column} = %s, updated_at = now() WHERE mailbox_id = %s"
SAVE_PROFILE = (
    "INSERT INTO dynamics.email_server_profile (name, server_type, conn_id) VALUES (%s, %s, %s)"
    " ON CONFLICT (name) DO UPDATE SET server_type = EXCLUDED.server_type, conn_id = EXCLUDED.conn_id"
)
CREATE_MAILBOX = (
    "INSERT INTO dynamics.mailbox (name, email_address, server_profile, credentials_conn_id,"
    " incoming_filter, incoming_method, outgoing_method, act_method, folders, process_after,"
    " base_interval_s, max_interval_s) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " RETURNING mailbox_id"
)
ADD_WORKLOAD = "INSERT INTO dynamics.mailbox_workload (mailbox_id, workload) VALUES (%s, %s)"
MAILBOX_BY_ID = SELECT_MAILBOX + " WHERE m.mailbox_id = %s"
MAILBOX_BY_ADDRESS = SELECT_MAILBOX + " WHERE lower(m.email_address) = lower(%s)"
ADD_SYNC_FILTER = (
    "INSERT INTO dynamics.mailbox_sync_filter (mailbox_id, entity, name, odata_filter)"
    " VALUES (%s, %s, %s, %s) RETURNING filter_id"
)
LOCK_MAILBOXES_OF_MAPPING = (
    "SELECT mailbox_id, email_address, crm_user_id::text FROM dynamics.mailbox"
    " WHERE mailbox_id = %s OR crm_user_id = %s ORDER BY mailbox_id FOR UPDATE"
)
SET_MAILBOX_USER = "UPDATE dynamics.mailbox SET crm_user_id = %s, updated_at = now() WHERE mailbox_id = %s"
LOG_MAPPING = (
    "INSERT INTO dynamics.mailbox_mapping_log (mailbox_id, action, previous_user_id, new_user_id,"
    " changed_by, reason) VALUES (%s, %s, %s, %s, %s, %s)"
)
REQUEST_REMAP = (
    "INSERT INTO dynamics.mailbox_remap_request (mailbox_id, crm_user_id, reason, requested_by)"
    " VALUES (%s, %s, %s, %s) RETURNING request_id"
)
SET_REMAP_RUN = "UPDATE dynamics.mailbox_remap_request SET dag_run_id = %s WHERE request_id = %s"
REMAP_REQUEST_BY_ID = SELECT_REMAP_REQUEST + " WHERE r.request_id = %s"
LATEST_REMAP_REQUESTS = (
    SELECT_REMAP_REQUEST + " WHERE r.request_id IN"
    " (SELECT max(request_id) FROM dynamics.mailbox_remap_request GROUP BY mailbox_id)"
)
LOCK_REMAP_REQUEST = SELECT_REMAP_REQUEST + " WHERE r.request_id = %s FOR UPDATE OF r"
DECIDE_REMAP = (
    "UPDATE dynamics.mailbox_remap_request SET status = %s, decided_by = %s, decided_at = now() WHERE request_id = %s"
)

# Workload outcomes and the schedule (schedule.py).
#: A workload runs when its method is server-side synchronization, it is enabled and, for email, the
#: mailbox's address is approved (Approve Email).
RUNNABLE = (
    "w.enabled AND ((w.workload = 'incoming' AND m.incoming_method <> 'none' AND m.email_approval = 'approved')"
    " OR (w.workload = 'outgoing' AND m.outgoing_method <> 'none' AND m.email_approval = 'approved')"
    " OR (w.workload = 'act' AND m.act_method <> 'none'))"
)
LOCK_WORKLOAD_COUNTS = (
    "SELECT empty_cycles, error_count FROM dynamics.mailbox_workload WHERE mailbox_id = %s AND workload = %s FOR UPDATE"
)
WORKLOAD_SUCCEEDED = (
    "UPDATE dynamics.mailbox_workload SET status = 'success', permanent_error = false,"
    " error_count = 0, last_success_at = %s, last_run_at = %s,"
    " items_processed = items_processed + %s, items_failed = items_failed + %s,"
    " empty_cycles = %s, next_sync_at = %s WHERE mailbox_id = %s AND workload = %s"
)
WORKLOAD_FAILED = (
    "UPDATE dynamics.mailbox_workload SET status = 'failure', enabled = enabled AND %s,"
    " permanent_error = %s,"
    " last_error_code = %s, last_error_message = %s, last_error_fix = %s, error_count = %s,"
    " last_error_at = %s, last_run_at = %s, items_processed = items_processed + %s,"
    " items_failed = items_failed + %s, next_sync_at = %s WHERE mailbox_id = %s AND workload = %s"
)
WAKE_OUTGOING = (
    "UPDATE dynamics.mailbox_workload w SET next_sync_at = %s FROM dynamics.mailbox m"
    " WHERE m.mailbox_id = w.mailbox_id AND w.workload = 'outgoing' AND m.crm_user_id = ANY(%s::uuid[])"
    " AND w.next_sync_at > %s AND NOT w.permanent_error"
)
DUE_WORKLOADS = (
    "SELECT w.workload FROM dynamics.mailbox_workload w JOIN dynamics.mailbox m USING (mailbox_id)"
    " WHERE w.mailbox_id = %s AND w.next_sync_at <= %s AND " + RUNNABLE
)
DUE_MAILBOXES = (
    "SELECT w.mailbox_id FROM dynamics.mailbox_workload w JOIN dynamics.mailbox m USING (mailbox_id)"
    " WHERE w.next_sync_at <= %s AND " + RUNNABLE + " GROUP BY w.mailbox_id"
    " ORDER BY min(w.next_sync_at), w.mailbox_id"
)
NEXT_SYNC_AT = (
    "SELECT min(w.next_sync_at) FROM dynamics.mailbox_workload w JOIN dynamics.mailbox m USING (mailbox_id)"
    " WHERE w.mailbox_id = %s AND " + RUNNABLE
)

# A mailbox's cycle (cycle.py): one run per mailbox at a time, Test & Enable.
TRY_LOCK_MAILBOX = "SELECT pg_try_advisory_lock(%s, %s)"
OUTGOING_OWNERS = (
    "SELECT crm_user_id::text FROM dynamics.mailbox WHERE mailbox_id = ANY(%s)"
    " AND crm_user_id IS NOT NULL AND outgoing_method <> 'none'"
)
ENABLE_TESTED_WORKLOADS = (
    "UPDATE dynamics.mailbox_workload SET enabled = (status = 'success'), last_test_at = %s"
    " WHERE mailbox_id = %s AND workload = ANY(%s)"
)

# Graph delta links (store.py).
DELTA_LINK = "SELECT delta_link FROM dynamics.mailbox_delta_link WHERE mailbox_id = %s AND resource = %s"
SAVE_DELTA_LINK = (
    "INSERT INTO dynamics.mailbox_delta_link (mailbox_id, resource, delta_link) VALUES (%s, %s, %s)"
    " ON CONFLICT (mailbox_id, resource) DO UPDATE SET delta_link = EXCLUDED.delta_link, updated_at = now()"
)

# Incoming email (incoming.py): folder state, POP3 UIDLs, tracked and quarantined messages.
FOLDER_STATE = (
    "SELECT uidvalidity, last_uid, uidnext, highest_modseq FROM dynamics.mailbox_folder_state"
    " WHERE mailbox_id = %s AND folder = %s"
)
SAVE_FOLDER_STATE = (
    "INSERT INTO dynamics.mailbox_folder_state (mailbox_id, folder, uidvalidity, last_uid, uidnext,"
    " highest_modseq) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (mailbox_id, folder) DO UPDATE SET"
    " uidvalidity = EXCLUDED.uidvalidity, last_uid = EXCLUDED.last_uid, uidnext = EXCLUDED.uidnext,"
    " highest_modseq = EXCLUDED.highest_modseq, updated_at = now()"
)
SOURCE_UID_OF_MESSAGE = "SELECT source_uid FROM dynamics.mailbox_message WHERE mailbox_id = %s AND message_id = %s"
POP3_UIDLS = "SELECT uidl FROM dynamics.mailbox_pop3_uidl WHERE mailbox_id = %s"
ADD_POP3_UIDL = "INSERT INTO dynamics.mailbox_pop3_uidl (mailbox_id, uidl) VALUES (%s, %s) ON CONFLICT DO NOTHING"
SEEN_MESSAGE = "SELECT body_sha256, source_uid FROM dynamics.mailbox_message WHERE mailbox_id = %s AND message_id = %s"
RECORD_MESSAGE = (
    "INSERT INTO dynamics.mailbox_message (mailbox_id, message_id, outcome, reason, activity_id, regarding,"
    " subject, folder, source_uid, body_sha256) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT DO NOTHING"
)
QUARANTINE = (
    "INSERT INTO dynamics.mailbox_quarantine (mailbox_id, source_key, folder, reason, raw)"
    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (mailbox_id, source_key) DO NOTHING"
)
RECORD_QUARANTINED_MESSAGE = (
    "INSERT INTO dynamics.mailbox_message (mailbox_id, message_id, outcome, reason, folder, source_uid)"
    " VALUES (%s, %s, 'quarantined', %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1"
)

# Outgoing email (outgoing.py): intent -> sent -> marked, or failed.
UNFINISHED_SENDS = "SELECT activity_id::text FROM dynamics.mailbox_outgoing WHERE mailbox_id = %s AND state = 'sent'"
LOCK_OUTGOING = "SELECT state, message_id, raw FROM dynamics.mailbox_outgoing WHERE activity_id = %s FOR UPDATE"
NEXT_TRACKING_TOKEN = "SELECT nextval('dynamics.mailbox_tracking_token_seq')"
OUTGOING_INTENT = (
    "INSERT INTO dynamics.mailbox_outgoing (activity_id, mailbox_id, message_id, raw, state)"
    " VALUES (%s, %s, %s, %s, 'intent')"
)
OUTGOING_ATTEMPT = "UPDATE dynamics.mailbox_outgoing SET attempts = attempts + 1 WHERE activity_id = %s"
OUTGOING_SENT = "UPDATE dynamics.mailbox_outgoing SET state = 'sent', sent_at = now() WHERE activity_id = %s"
OUTGOING_SENT_AT = "SELECT sent_at FROM dynamics.mailbox_outgoing WHERE activity_id = %s"
OUTGOING_MARKED = "UPDATE dynamics.mailbox_outgoing SET state = 'marked', marked_at = now() WHERE activity_id = %s"
OUTGOING_FAILED = "UPDATE dynamics.mailbox_outgoing SET state = 'failed', last_error = %s WHERE activity_id = %s"

# Appointments, contacts and tasks (act.py): sync filters, item links, CRM watermarks.
# {column}: crm_id or graph_id (act.ActSync._link_row).
ITEM_LINK_BY = (
    "SELECT crm_id::text, graph_id, graph_changekey, crm_version FROM dynamics.mailbox_item_link"
    " WHERE mailbox_id = %s AND entity = %s AND {column} = %s"
)
SYNC_FILTERS = (
    "SELECT odata_filter FROM dynamics.mailbox_sync_filter WHERE entity = %s AND enabled"
    " AND (mailbox_id = %s OR mailbox_id IS NULL) ORDER BY filter_id"
)
LINK_ITEM = (
    "INSERT INTO dynamics.mailbox_item_link (mailbox_id, entity, crm_id, graph_id, graph_changekey,"
    " crm_version) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (mailbox_id, entity, crm_id)"
    " DO UPDATE SET graph_id = EXCLUDED.graph_id, graph_changekey = EXCLUDED.graph_changekey,"
    " crm_version = COALESCE(EXCLUDED.crm_version, dynamics.mailbox_item_link.crm_version),"
    " updated_at = now()"
)
UNLINK_ITEM = "DELETE FROM dynamics.mailbox_item_link WHERE mailbox_id = %s AND entity = %s AND graph_id = %s"
CRM_WATERMARK = "SELECT modified_after FROM dynamics.mailbox_crm_watermark WHERE mailbox_id = %s AND entity = %s"
SAVE_CRM_WATERMARK = (
    "INSERT INTO dynamics.mailbox_crm_watermark (mailbox_id, entity, modified_after) VALUES (%s, %s, %s)"
    " ON CONFLICT (mailbox_id, entity) DO UPDATE SET modified_after = EXCLUDED.modified_after"
)
