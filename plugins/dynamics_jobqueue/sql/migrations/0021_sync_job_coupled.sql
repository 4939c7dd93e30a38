-- Integration Synch. Job's Coupled and Uncoupled counters (table 5338 "Integration Synch. Job", fields 15 and 16):
-- records coupled to an existing counterpart by match-based coupling, and couplings removed (deletion conflicts
-- resolved remove_coupling). They count besides the record's own outcome: a record coupled by match is also
-- Unchanged or Modified, as Business Central's coupling job and the synchronization after it count it.
ALTER TABLE dynamics.sync_job
    ADD COLUMN IF NOT EXISTS coupled   integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS uncoupled integer NOT NULL DEFAULT 0;
-- A job that did nothing: finished without inserting, modifying, deleting or failing a record (BC:
-- "Integration Synch. Job".HaveJobsBeenIdle, after which codeunit 5341 sets a recurring job queue entry On Hold
-- with Inactivity Timeout). Unchanged, Skipped, Coupled and Uncoupled records do not count, as in BC.
ALTER TABLE dynamics.sync_job
    ADD COLUMN IF NOT EXISTS idle boolean
        GENERATED ALWAYS AS (status = 'success' AND inserted + modified + deleted + failed = 0) STORED;
