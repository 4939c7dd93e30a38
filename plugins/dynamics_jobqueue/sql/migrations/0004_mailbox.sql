-- Mailbox synchronization (server-side synchronization, docs/reference/dynamics-semantics.md section 3).

-- Email server profile: where a group of mailboxes lives and which Airflow connection reaches it.
CREATE TABLE dynamics.email_server_profile (
    name              text PRIMARY KEY,
    -- incoming protocol; 'exchange_online' reads and sends through Microsoft Graph
    server_type       text NOT NULL CHECK (server_type IN ('imap', 'pop3', 'exchange_online')),
    -- Airflow connection with host, ports (extra) and the default login
    conn_id           text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE dynamics.mailbox (
    mailbox_id            bigserial PRIMARY KEY,
    name                  text NOT NULL,
    email_address         text NOT NULL,
    -- systemuserid of the CRM user this mailbox belongs to; one user <-> one mailbox
    crm_user_id           uuid,
    server_profile        text NOT NULL REFERENCES dynamics.email_server_profile (name),
    -- per-mailbox login: an Airflow connection holding login/password (host stays the profile's)
    credentials_conn_id   text,
    incoming_method       text NOT NULL DEFAULT 'server_side_sync'
                          CHECK (incoming_method IN ('none', 'server_side_sync')),
    outgoing_method       text NOT NULL DEFAULT 'server_side_sync'
                          CHECK (outgoing_method IN ('none', 'server_side_sync')),
    act_method            text NOT NULL DEFAULT 'none'
                          CHECK (act_method IN ('none', 'server_side_sync')),
    incoming_filter       text NOT NULL DEFAULT 'replies_to_tracked'
                          CHECK (incoming_filter IN ('all', 'replies_to_tracked', 'from_crm_records',
                                                     'from_email_enabled_records', 'none')),
    folders               text[] NOT NULL DEFAULT ARRAY['INBOX'],
    -- "process email received after": older mail is never tracked
    process_after         timestamptz,
    -- POP3: delete from the server once tracked (the reference leaves mail on the server by default)
    pop3_delete           boolean NOT NULL DEFAULT false,
    base_interval_s       integer NOT NULL DEFAULT 900 CHECK (base_interval_s > 0),
    max_interval_s        integer NOT NULL DEFAULT 21600 CHECK (max_interval_s >= base_interval_s),
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX mailbox_email_address_key ON dynamics.mailbox (lower(email_address));
CREATE UNIQUE INDEX mailbox_crm_user_key ON dynamics.mailbox (crm_user_id) WHERE crm_user_id IS NOT NULL;

-- Every change of the user <-> mailbox mapping, including the mappings broken by a confirmed remap.
CREATE TABLE dynamics.mailbox_mapping_log (
    entry_no          bigserial PRIMARY KEY,
    mailbox_id        bigint NOT NULL REFERENCES dynamics.mailbox ON DELETE CASCADE,
    action            text NOT NULL CHECK (action IN ('mapped', 'broken', 'remapped')),
    previous_user_id  uuid,
    new_user_id       uuid,
    changed_by        text NOT NULL,
    reason            text NOT NULL,
    changed_at        timestamptz NOT NULL DEFAULT now()
);

-- One row per mailbox and workload: its status, errors, counters and its own next sync time.
CREATE TABLE dynamics.mailbox_workload (
    mailbox_id           bigint NOT NULL REFERENCES dynamics.mailbox ON DELETE CASCADE,
    workload             text NOT NULL CHECK (workload IN ('incoming', 'outgoing', 'act')),
    status               text NOT NULL DEFAULT 'not_run' CHECK (status IN ('not_run', 'success', 'failure')),
    -- a permanent error (bad credentials) parks the workload: retested on the slow schedule only
    permanent_error      boolean NOT NULL DEFAULT false,
    last_error_code      text,
    last_error_message   text,
    last_error_fix       text,
    error_count          integer NOT NULL DEFAULT 0,
    last_error_at        timestamptz,
    last_success_at      timestamptz,
    last_run_at          timestamptz,
    items_processed      bigint NOT NULL DEFAULT 0,
    items_failed         bigint NOT NULL DEFAULT 0,
    empty_cycles         integer NOT NULL DEFAULT 0,
    next_sync_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mailbox_id, workload)
);
CREATE INDEX mailbox_workload_due_idx ON dynamics.mailbox_workload (next_sync_at);

-- IMAP position per folder (RFC 3501 UIDVALIDITY + last UID; RFC 7162 HIGHESTMODSEQ when offered).
CREATE TABLE dynamics.mailbox_folder_state (
    mailbox_id       bigint NOT NULL REFERENCES dynamics.mailbox ON DELETE CASCADE,
    folder           text NOT NULL,
    uidvalidity      bigint NOT NULL,
    last_uid         bigint NOT NULL DEFAULT 0,
    uidnext          bigint,
    highest_modseq   numeric(20),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mailbox_id, folder)
);

-- POP3: the UIDLs already taken (RFC 1939); the mail stays on the server.
CREATE TABLE dynamics.mailbox_pop3_uidl (
    mailbox_id   bigint NOT NULL REFERENCES dynamics.mailbox ON DELETE CASCADE,
    uidl         text NOT NULL,
    taken_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mailbox_id, uidl)
);

-- Graph delta links per mailbox and resource (messages, contacts, calendarView, todo).
CREATE TABLE dynamics.mailbox_delta_link (
    mailbox_id   bigint NOT NULL REFERENCES dynamics.mailbox ON DELETE CASCADE,
    resource     text NOT NULL,
    delta_link   text NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mailbox_id, resource)
);

-- Every incoming message a mailbox has handled, by Message-ID: the dedupe key across reruns,
-- UIDVALIDITY changes and replays.
CREATE TABLE dynamics.mailbox_message (
    mailbox_id     bigint NOT NULL REFERENCES dynamics.mailbox ON DELETE CASCADE,
    message_id     text NOT NULL,
    outcome        text NOT NULL CHECK (outcome IN ('tracked', 'filtered', 'quarantined')),
    reason         text NOT NULL DEFAULT '',
    activity_id    uuid,
    regarding      text,
    subject        text,
    folder         text,
    source_uid     text,
    processed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mailbox_id, message_id)
);

-- Messages that could not be parsed: the reason and the raw source, never lost, never blocking.
CREATE TABLE dynamics.mailbox_quarantine (
    quarantine_id  bigserial PRIMARY KEY,
    mailbox_id     bigint NOT NULL REFERENCES dynamics.mailbox ON DELETE CASCADE,
    source_key     text NOT NULL,
    folder         text,
    reason         text NOT NULL,
    raw            bytea NOT NULL,
    quarantined_at timestamptz NOT NULL DEFAULT now(),
    released_at    timestamptz,
    UNIQUE (mailbox_id, source_key)
);

-- Outgoing email: intent and Message-ID are committed before the SMTP transaction, so a killed and
-- retried task knows what it already did (exactly-once delivery of CRM emails in Pending Send).
CREATE TABLE dynamics.mailbox_outgoing (
    activity_id    uuid PRIMARY KEY,
    mailbox_id     bigint NOT NULL REFERENCES dynamics.mailbox ON DELETE CASCADE,
    message_id     text NOT NULL UNIQUE,
    raw            bytea NOT NULL,
    state          text NOT NULL CHECK (state IN ('intent', 'sent', 'marked', 'failed')),
    attempts       integer NOT NULL DEFAULT 0,
    last_error     text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    sent_at        timestamptz,
    marked_at      timestamptz
);

-- Tracking tokens of outgoing CRM email ("CRM:0001234" in the subject), unique per installation.
CREATE SEQUENCE dynamics.mailbox_tracking_token_seq START 1001;

-- Synchronization filters of appointments, contacts and tasks (Exchange profiles). Several enabled filters
-- on one entity are OR-ed; no enabled filter means the entity does not sync. mailbox_id NULL = a filter of
-- the organisation, applying to every mailbox. odata_filter is a Dataverse $filter expression.
CREATE TABLE dynamics.mailbox_sync_filter (
    filter_id      bigserial PRIMARY KEY,
    mailbox_id     bigint REFERENCES dynamics.mailbox ON DELETE CASCADE,
    entity         text NOT NULL CHECK (entity IN ('appointments', 'contacts', 'tasks')),
    name           text NOT NULL,
    odata_filter   text NOT NULL,
    enabled        boolean NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- A CRM record and its Exchange item, per mailbox: what makes an update go to the right item.
CREATE TABLE dynamics.mailbox_item_link (
    mailbox_id       bigint NOT NULL REFERENCES dynamics.mailbox ON DELETE CASCADE,
    entity           text NOT NULL,
    crm_id           uuid NOT NULL,
    graph_id         text NOT NULL,
    -- the Exchange item's changeKey after our own last write: a delta echo of that write is skipped
    graph_changekey  text,
    -- the CRM record's versionnumber we last pushed: the watermark reads modifiedon ge (Dataverse keeps
    -- whole seconds), so rows at the watermark come again and are recognised here
    crm_version      bigint,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mailbox_id, entity, crm_id),
    UNIQUE (mailbox_id, entity, graph_id)
);

-- CRM -> Exchange position per mailbox and entity: records modified after this time are read next.
CREATE TABLE dynamics.mailbox_crm_watermark (
    mailbox_id      bigint NOT NULL REFERENCES dynamics.mailbox ON DELETE CASCADE,
    entity          text NOT NULL,
    modified_after  timestamptz NOT NULL,
    PRIMARY KEY (mailbox_id, entity)
);
