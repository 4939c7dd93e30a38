-- ERP <-> CRM synchronization state (docs/reference/dynamics-semantics.md section 1): couplings (CRM Integration Record),
-- watermarks per mapping and direction, the Integration Synch. Job log, its errors, and the per-record error
-- state that drives retries and Skipped.

-- One row per coupled pair of one table mapping. The fingerprints are hashes of the mapped values as each side
-- holds them after the last sync, so an unchanged record is recognised without reading the destination.
CREATE TABLE IF NOT EXISTS dynamics.sync_coupling (
    mapping          text        NOT NULL,
    erp_id           text        NOT NULL,              -- Business Central id (GUID, lower case)
    crm_id           text        NOT NULL,              -- Dataverse primary key (GUID, lower case)
    erp_key          text,                              -- ERP business key (code / number), for lookups
    crm_key          text,                              -- CRM business key (alternate key), when the table has one
    erp_modified_at  timestamptz,                       -- lastModifiedDateTime of the ERP record last synced
    crm_version      bigint,                            -- versionnumber of the CRM record last read; NULL after a write
    erp_hash         text,                              -- fingerprint of the from-CRM fields as the ERP holds them
    crm_hash         text,                              -- fingerprint of the to-CRM fields as the CRM holds them
    coupled_at       timestamptz NOT NULL DEFAULT now(),
    synced_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mapping, erp_id),
    CONSTRAINT sync_coupling_crm_unique UNIQUE (mapping, crm_id)
);
CREATE INDEX IF NOT EXISTS sync_coupling_erp_key ON dynamics.sync_coupling (mapping, erp_key);

-- Candidates of a pass are the records changed after the watermark (plus the records that failed before): the
-- ERP's lastModifiedDateTime, or the CRM's versionnumber (Dataverse's modifiedon has one-second resolution, its
-- row version is exact and grows with every change).
CREATE TABLE IF NOT EXISTS dynamics.sync_watermark (
    mapping     text        NOT NULL,
    direction   text        NOT NULL CHECK (direction IN ('to_crm', 'from_crm')),
    modified_at timestamptz,                             -- to_crm: ERP lastModifiedDateTime
    version     bigint,                                  -- from_crm: CRM versionnumber
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mapping, direction),
    CHECK ((modified_at IS NULL) <> (version IS NULL))
);

-- Integration Synch. Job: one row per mapping, direction and run.
CREATE TABLE IF NOT EXISTS dynamics.sync_job (
    id          bigserial   PRIMARY KEY,
    run_id      text        NOT NULL,                    -- the Airflow DAG run id (or the caller's run id)
    mapping     text        NOT NULL,
    direction   text        NOT NULL CHECK (direction IN ('to_crm', 'from_crm')),
    full_sync   boolean     NOT NULL DEFAULT false,
    status      text        NOT NULL DEFAULT 'running'
                            CHECK (status IN ('running', 'success', 'failed', 'interrupted')),
    started_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at timestamptz,
    inserted    integer     NOT NULL DEFAULT 0,
    modified    integer     NOT NULL DEFAULT 0,
    deleted     integer     NOT NULL DEFAULT 0,
    unchanged   integer     NOT NULL DEFAULT 0,
    skipped     integer     NOT NULL DEFAULT 0,
    failed      integer     NOT NULL DEFAULT 0,
    message     text
);
CREATE INDEX IF NOT EXISTS sync_job_run ON dynamics.sync_job (run_id);
CREATE INDEX IF NOT EXISTS sync_job_mapping ON dynamics.sync_job (mapping, started_at DESC);

-- Integration Synch. Job Errors: every failure of every job, kept as history.
CREATE TABLE IF NOT EXISTS dynamics.sync_job_error (
    id             bigserial   PRIMARY KEY,
    job_id         bigint      NOT NULL REFERENCES dynamics.sync_job (id) ON DELETE CASCADE,
    source_id      text        NOT NULL,
    source_key     text,
    destination_id text,
    kind           text        NOT NULL,
    message        text        NOT NULL,
    detail         text,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS sync_job_error_job ON dynamics.sync_job_error (job_id);

-- The current error of each failing source record: retried by id on later runs (never lost behind the
-- watermark) and marked Skipped when the same error repeats skip_after_same_error times, until reset.
CREATE TABLE IF NOT EXISTS dynamics.sync_record_error (
    mapping         text        NOT NULL,
    direction       text        NOT NULL CHECK (direction IN ('to_crm', 'from_crm')),
    source_id       text        NOT NULL,
    source_key      text,
    destination_id  text,
    kind            text        NOT NULL,
    message         text        NOT NULL,
    detail          text,
    error_count     integer     NOT NULL DEFAULT 1,
    skipped         boolean     NOT NULL DEFAULT false,
    first_failed_at timestamptz NOT NULL DEFAULT now(),
    last_failed_at  timestamptz NOT NULL DEFAULT now(),
    last_job_id     bigint,
    PRIMARY KEY (mapping, direction, source_id)
);

-- CRM changes of a bidirectional mapping's run, read before the ERP->CRM pass so that update conflicts are a
-- join; the CRM->ERP pass then works from here. Rebuilt by every run (so UNLOGGED: nothing to recover).
CREATE UNLOGGED TABLE IF NOT EXISTS dynamics.sync_staging (
    mapping         text        NOT NULL,
    crm_id          text        NOT NULL,
    version         bigint,                              -- the record's versionnumber
    record          jsonb       NOT NULL,
    erp_values_hash text,                                -- fingerprint of the ERP's current from-CRM fields
    consumed        boolean     NOT NULL DEFAULT false,  -- settled by the ERP->CRM pass (conflict, ERP won)
    PRIMARY KEY (mapping, crm_id)
);

-- A record about to be created in the ERP from a CRM record, written before the create: its business key is
-- decided beforehand, so if the worker dies between the create and the commit, the next run's ERP->CRM pass
-- recognises the new ERP record by that key and couples it to its CRM record instead of creating a twin.
CREATE TABLE IF NOT EXISTS dynamics.sync_pending_coupling (
    mapping    text        NOT NULL,
    crm_id     text        NOT NULL,
    erp_key    text        NOT NULL,
    crm_version bigint,                                  -- the CRM record's versionnumber it was created from
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mapping, crm_id)
);
CREATE INDEX IF NOT EXISTS sync_pending_coupling_key ON dynamics.sync_pending_coupling (mapping, erp_key);
