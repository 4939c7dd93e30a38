-- The last passed $metadata check of each table mapping (dynamics_jobqueue.sync.metadata.check_unless_passed): a
-- crm_sync task skips the check while the same definition passed against the same services within
-- metadata_check_max_age_h hours, instead of downloading Dataverse's whole $metadata (megabytes on a real
-- organisation) and Business Central's per API route on every run. A failed check writes nothing here.
CREATE TABLE IF NOT EXISTS dynamics.sync_metadata_check (
    mapping         text PRIMARY KEY,
    definition_hash text        NOT NULL,  -- SHA-256 of the names and routes the check looks at
    services        text        NOT NULL,  -- the Business Central environment and the Dataverse Web API checked
    checked_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
