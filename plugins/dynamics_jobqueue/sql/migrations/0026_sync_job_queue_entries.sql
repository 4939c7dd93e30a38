-- The job queue entry of each table mapping's recurring synchronization (issue 17): Business Central's Job Queue
-- Entry status of an "Integration Synch. Job Runner" entry. After every run of a mapping, codeunit 5341 "CRM Int.
-- Table. Subscriber" (OnAfterJobQueueEntryRun) sets it On Hold with Inactivity Timeout when the run was idle
-- ("Integration Synch. Job".HaveJobsBeenIdle: Inserted + Modified + Deleted + Failed = 0, the sync_job.idle
-- column) and Ready otherwise. A scheduled crm_sync run skips an on-hold mapping until its Inactivity Timeout
-- Period has passed, when a change to either of its tables wakes it (dynamics_jobqueue.sync.job_queue).
CREATE TABLE IF NOT EXISTS dynamics.sync_job_queue_entry (
    mapping                text PRIMARY KEY,
    status                 text NOT NULL CHECK (status IN ('Ready', 'On Hold with Inactivity Timeout')),
    status_since           timestamptz NOT NULL DEFAULT now(),
    -- the mapping's Inactivity Timeout Period (minutes) when the status was set; 0 = never on hold
    inactivity_timeout_min integer NOT NULL CHECK (inactivity_timeout_min >= 0),
    last_run_id            text NOT NULL,      -- the DAG run whose sync set the status
    last_run_idle          boolean NOT NULL    -- that run was idle (every job of the mapping in it)
);
