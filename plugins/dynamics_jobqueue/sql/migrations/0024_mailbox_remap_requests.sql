-- A mailbox remap that breaks an existing mapping (one user <-> one mailbox) waits for approval as an Airflow
-- required action (issue 16): the console keeps the request here and triggers the mailbox_remap_approval DAG;
-- "Approve" applies the remap (dynamics.mailbox_mapping_log names the approver), "Reject" drops it. The rows stay
-- as the mailbox's remap history, with who asked and who decided.
CREATE TABLE IF NOT EXISTS dynamics.mailbox_remap_request (
    request_id   bigserial   PRIMARY KEY,
    mailbox_id   bigint      NOT NULL REFERENCES dynamics.mailbox (mailbox_id) ON DELETE CASCADE,
    crm_user_id  uuid        NOT NULL,
    reason       text        NOT NULL,  -- the mapping(s) it breaks, in words
    requested_by text        NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now(),
    status       text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'rejected')),
    decided_by   text,                  -- the required action's responder (Airflow user name)
    decided_at   timestamptz,
    dag_run_id   text                   -- the mailbox_remap_approval run asking for it
);
CREATE INDEX IF NOT EXISTS mailbox_remap_request_mailbox ON dynamics.mailbox_remap_request (mailbox_id, request_id);
