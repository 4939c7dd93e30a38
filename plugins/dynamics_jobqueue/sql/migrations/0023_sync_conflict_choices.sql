-- Update conflicts of mappings resolved by `ask` (issue 16): each conflict is an Airflow required action
-- (Human-in-the-loop) listing both values per field; the user's choice is kept here, per mapping and ERP record,
-- with who chose it, until the next run applies it (applied_at) - and afterwards as the conflict's history,
-- which the console lists. "skip" is applied at once (the record is marked Skipped until reset).
CREATE TABLE IF NOT EXISTS dynamics.sync_conflict_choice (
    id             bigserial   PRIMARY KEY,
    mapping        text        NOT NULL,
    source_id      text        NOT NULL,  -- the ERP record (the ERP->CRM pass's source id)
    source_key     text,
    destination_id text,                  -- the CRM record
    resolution     text        NOT NULL CHECK (resolution IN ('send_erp_data', 'take_crm_data', 'skip')),
    fields         jsonb       NOT NULL DEFAULT '[]',  -- both values per differing field, as asked
    chosen_by      text        NOT NULL,  -- the required action's responder (Airflow user name)
    chosen_at      timestamptz NOT NULL DEFAULT now(),
    dag_id         text,
    run_id         text,                  -- the DAG run that asked
    task_id        text,
    map_index      integer,
    applied_at     timestamptz,           -- when a run applied it (skip: at once)
    applied_job_id bigint
);
CREATE INDEX IF NOT EXISTS sync_conflict_choice_pending
    ON dynamics.sync_conflict_choice (mapping, source_id) WHERE applied_at IS NULL;
