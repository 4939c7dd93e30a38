-- The records an ERP->CRM pass read inside the watermark's overlap (issue 10). The ERP watermark is capped at the
-- pass's start less 999 ms and the next read starts there (codeunit "CRM Integration Table Synch."), so records
-- changed in that last second are read again by the next run. The pass keeps what it read there, with the
-- change marker and a digest of the record as read, in the transaction that moves the watermark; the next run
-- leaves a record it reads again unchanged alone: not processed, not counted a second time.
CREATE TABLE IF NOT EXISTS dynamics.sync_read_overlap (
    mapping    text NOT NULL,
    direction  text NOT NULL CHECK (direction IN ('to_crm', 'from_crm')),
    source_id  text NOT NULL,
    marker     text NOT NULL,  -- the record's change marker as read (Business Central's lastModifiedDateTime)
    digest     text NOT NULL,  -- BLAKE2b of the record as read: a second change within the same marker differs
    PRIMARY KEY (mapping, direction, source_id)
);
