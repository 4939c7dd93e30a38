-- The pending-coupling protocol (issue 10) in both directions. A create is recorded here, with the coupling it
-- will make (all but the new record's id), and committed before the create is sent; the page's commit drops
-- it. If the worker dies or the answer is lost in between, the next run looks the created record up by
-- dest_key and commits the coupling exactly as the lost commit would have, so the pair's markers say which
-- side changed since: nothing is created twice, no later edit is mistaken for the sync's own write.
CREATE TABLE IF NOT EXISTS dynamics.sync_pending_create (
    mapping         text        NOT NULL,
    direction       text        NOT NULL CHECK (direction IN ('to_crm', 'from_crm')),
    source_id       text        NOT NULL,              -- the record the create copies
    dest_key        text        NOT NULL,              -- how the created record is found: its business key ...
    dest_key_is_id  boolean     NOT NULL DEFAULT false, -- ... or its id (a CRM id derived from the ERP id)
    erp_key         text,                              -- the coupling columns as the create leaves them
    crm_key         text,
    erp_modified_at timestamptz,
    crm_version     bigint,
    erp_hash        text,
    crm_hash        text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mapping, direction, source_id)
);

INSERT INTO dynamics.sync_pending_create (mapping, direction, source_id, dest_key, erp_key, crm_version)
SELECT mapping, 'from_crm', crm_id, erp_key, erp_key, crm_version FROM dynamics.sync_pending_coupling
ON CONFLICT DO NOTHING;
DROP TABLE IF EXISTS dynamics.sync_pending_coupling;

-- A pair created from the CRM owes the CRM the fields that flow to it (the new number, the owner) until the
-- write-back commits: set with the create's coupling, cleared by the write-back's.
ALTER TABLE dynamics.sync_coupling ADD COLUMN IF NOT EXISTS write_back_pending boolean NOT NULL DEFAULT false;
