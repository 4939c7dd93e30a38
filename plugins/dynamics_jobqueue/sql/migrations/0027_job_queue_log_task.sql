-- The Airflow task instance that ran each attempt of a job queue entry, so the console links a Job Queue Log Entry
-- to its DAG run and task log (the reference's log entry names the session that ran it; here the worker says
-- which process, these say which task instance). NULL for attempts of the posting CLI and for rows written before
-- this migration.
ALTER TABLE dynamics.job_queue_log_entries
    ADD COLUMN IF NOT EXISTS dag_id     text,
    ADD COLUMN IF NOT EXISTS run_id     text,
    ADD COLUMN IF NOT EXISTS task_id    text,
    ADD COLUMN IF NOT EXISTS map_index  integer,  -- -1 for an unmapped task, as Airflow counts it
    ADD COLUMN IF NOT EXISTS try_number integer;
