-- Mailbox states as Microsoft's mailbox entity has them (issue 13), and the duplicate Message-ID trace.
-- https://learn.microsoft.com/power-apps/developer/data-platform/reference/entities/mailbox

-- Approve Email (emailrouteraccessapproval): incoming and outgoing email run only for an approved mailbox.
-- Mailboxes that existed before this migration were already synchronizing: they start approved.
ALTER TABLE dynamics.mailbox
    ADD COLUMN email_approval text NOT NULL DEFAULT 'approved'
        CHECK (email_approval IN ('empty', 'approved', 'pending_approval', 'rejected')),
    -- what a workload failure does: 'auto' (this project: permanent errors are retested hourly, outages
    -- never disable) or 'microsoft' (a permanent error disables the workload; 10 transient failures in a
    -- row, retried 5 minutes apart, become permanent)
    ADD COLUMN recovery_rule text NOT NULL DEFAULT 'auto' CHECK (recovery_rule IN ('auto', 'microsoft'));

-- Enabled for incoming email / outgoing email / appointments, contacts and tasks (enabledforincomingemail,
-- enabledforoutgoingemail, enabledforact): set by Test & Enable, cleared when the workload is disabled.
ALTER TABLE dynamics.mailbox_workload
    ADD COLUMN enabled boolean NOT NULL DEFAULT true,
    ADD COLUMN last_test_at timestamptz;

-- Body digest of each handled message: a second, different message with a Message-ID already taken is
-- quarantined with the reason instead of being counted as a duplicate.
ALTER TABLE dynamics.mailbox_message ADD COLUMN body_sha256 text;
