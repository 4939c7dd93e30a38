-- Near-real-time sync, the CRM side (issue 17): the Dataverse webhook this deployment registered (one service
-- endpoint, contract 8 = Webhook, with HttpHeader authentication), its steps (one asynchronous PostOperation step
-- per table the mappings read and message Create/Update/Delete), and the deliveries the receiver accepted (so a
-- context Dataverse sends again records nothing twice).

CREATE TABLE IF NOT EXISTS dynamics.dataverse_webhook_endpoints (
    serviceendpoint_id uuid PRIMARY KEY,           -- Dataverse's serviceendpointid
    name               text NOT NULL UNIQUE,
    url                text NOT NULL,
    header_name        text NOT NULL,
    secret_sha256      text NOT NULL,              -- the header's value is a shared secret: only its hash
    created_at         timestamptz NOT NULL DEFAULT now(),
    rotated_at         timestamptz
);

CREATE TABLE IF NOT EXISTS dynamics.dataverse_webhook_steps (
    step_id            uuid PRIMARY KEY,           -- sdkmessageprocessingstepid
    serviceendpoint_id uuid NOT NULL REFERENCES dynamics.dataverse_webhook_endpoints ON DELETE CASCADE,
    logical_name       text NOT NULL,              -- the table's logical name (account), as the context names it
    entity_set         text NOT NULL,              -- its entity set (accounts), as the mapping assets name it
    message            text NOT NULL CHECK (message IN ('Create', 'Update', 'Delete')),
    UNIQUE (logical_name, message)
);

CREATE TABLE IF NOT EXISTS dynamics.dataverse_webhook_deliveries (
    operation_id text PRIMARY KEY,                 -- the context's OperationId (the system job), else RequestId
    logical_name text NOT NULL,
    message      text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS dataverse_webhook_deliveries_received
    ON dynamics.dataverse_webhook_deliveries (received_at);
