-- Foundation: the schema every domain shares. Domain tables come in their own migrations
-- (0002 sync, 0003 job queue, 0004 mailbox).
CREATE SCHEMA IF NOT EXISTS dynamics;

-- Key/value settings that belong to the state store rather than to Airflow (e.g. the demo's marker).
CREATE TABLE IF NOT EXISTS dynamics.settings (
    key        text PRIMARY KEY,
    value      jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
