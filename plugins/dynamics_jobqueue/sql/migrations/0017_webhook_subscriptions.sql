-- Near-real-time sync (issue 17): the Business Central webhook subscriptions this deployment holds, and the
-- notifications its receiver accepted (so a notification Business Central sends again records nothing twice).

CREATE TABLE IF NOT EXISTS dynamics.bc_webhook_subscriptions (
    subscription_id     text PRIMARY KEY,          -- Business Central's subscriptionId
    entity_set          text NOT NULL UNIQUE,      -- one subscription per entity set
    resource            text NOT NULL,
    notification_url    text NOT NULL,
    client_state_sha256 text NOT NULL,             -- the clientState itself is a shared secret: only its hash
    expires_at          timestamptz NOT NULL,
    etag                text NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    renewed_at          timestamptz
);

CREATE TABLE IF NOT EXISTS dynamics.bc_webhook_notifications (
    subscription_id text NOT NULL,
    resource        text NOT NULL,
    change_type     text NOT NULL,
    last_modified   text NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subscription_id, resource, change_type, last_modified)
);

CREATE INDEX IF NOT EXISTS bc_webhook_notifications_received
    ON dynamics.bc_webhook_notifications (received_at);
