-- Notify On Success (issue 14): the notifications of the users who queued documents that posted, the state
-- store's "My Notifications" (the reference notifies the entry's user when an entry with Notify On Success ends).

CREATE TABLE IF NOT EXISTS dynamics.job_queue_notifications (
    notification_no    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id            text NOT NULL,
    job_queue_entry_id uuid NOT NULL,   -- no foreign key: the notification outlives removed entries
    document_type      text NOT NULL,
    document_number    text NOT NULL,
    message            text NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS job_queue_notifications_user
    ON dynamics.job_queue_notifications (user_id, notification_no);
