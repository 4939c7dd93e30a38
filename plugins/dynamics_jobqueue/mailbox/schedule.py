"""Adaptive synchronization frequency of mailboxes, and the status of each workload.

Rules per workload (Microsoft documents outgoing email every 5 minutes, incoming 5 minutes after each cycle,
appointments/contacts/tasks every 5 to 15 minutes: https://learn.microsoft.com/power-platform/admin/
server-side-synchronization; the README repeats these rules):

- **incoming**: a cycle that found items runs again after the mailbox's base interval (default 15 minutes);
  each empty cycle doubles the wait: base x 2^n, capped at the mailbox's maximum (default 6 hours), so an
  idle mailbox costs at most one cycle per cap; the first item found resets it to the base. This adaptive
  back-off applies to incoming email only;
- **outgoing**: every base interval, never backed off, and at once when its user has email in Pending Send:
  each tick of the 5-minute ``mailbox_sync`` DAG asks the CRM which users have (one query) and makes those
  mailboxes' outgoing workload due (:func:`wake_outgoing`), so such an email goes out within 5 minutes
  whatever the incoming back-off, while mailboxes with nothing to send cost nothing;
- **act**: every base interval, at most :data:`ACT_MAX_INTERVAL_S` (15 minutes), never backed off;
- a transient error (server unreachable, throttled, timeout) retries after 1, 2, 4 ... minutes, capped at
  the base interval (outgoing with email waiting: the next tick, see above); a permanent error (refused
  credentials) marks the workload Failure with the error's fix and alerts.

What a failure does next is the mailbox's ``recovery_rule``:

- ``auto`` (default, this project's rule): an outage never disables a mailbox, it catches up when the server
  is back; a permanent error is retested every :data:`PERMANENT_RETEST_S` (1 hour), so the mailbox recovers
  on its own once the cause is fixed;
- ``microsoft`` (the reference's rule): a permanent error disables the workload (Enabled for ... = false)
  until someone runs Test & Enable; transient errors retry :data:`MICROSOFT_RETRY_S` (5 minutes) apart and
  the :data:`MICROSOFT_TRANSIENT_LIMIT`-th (10th) in a row becomes permanent.

All times are UTC (``timestamptz``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from dynamics_jobqueue.mailbox import queries as q
from dynamics_jobqueue.mailbox.store import StateLike, transaction

if TYPE_CHECKING:
    from dynamics_jobqueue.mailbox.records import Mailbox, Workload

#: First retry after a transient error, in seconds; doubles per consecutive error.
TRANSIENT_RETRY_S = 60
#: How often a workload parked by a permanent error is retested, in seconds.
PERMANENT_RETEST_S = 3_600
#: Appointments, contacts and tasks run at least this often (Microsoft: every 5 to 15 minutes).
ACT_MAX_INTERVAL_S = 900
#: Microsoft's rule: transient failures are retried this far apart ...
MICROSOFT_RETRY_S = 300
#: ... and this many in a row become a permanent error (the workload is disabled).
MICROSOFT_TRANSIENT_LIMIT = 10


def idle_interval(base_s: int, cap_s: int, empty_cycles: int) -> int:
    """Seconds to the next run after ``empty_cycles`` consecutive empty cycles: ``min(base x 2^n, cap)``."""
    return int(min(base_s * 2 ** min(empty_cycles, 30), cap_s))


def transient_interval(base_s: int, error_count: int) -> int:
    """Seconds to the retry after the ``error_count``-th consecutive transient error."""
    return int(min(TRANSIENT_RETRY_S * 2 ** min(max(error_count - 1, 0), 30), base_s))


@dataclass(frozen=True)
class WorkloadOutcome:
    """What one run of one workload did.

    :param processed: items handled (tracked, filtered, quarantined, sent).
    :param failed: items that failed on their own (the mailbox still succeeded).
    :param error_code: set when the whole workload failed (``auth_failed``, ``connection_failed`` ...).
    :param error_message: the error as the server said it.
    :param fix: what the owner must do; shown in the alert and stored on the mailbox.
    :param permanent: the error needs a person (see the module rules).
    """

    processed: int = 0
    failed: int = 0
    error_code: str | None = None
    error_message: str | None = None
    fix: str | None = None
    permanent: bool = False

    @property
    def ok(self) -> bool:
        return self.error_code is None


def success_interval(mailbox: Mailbox, workload: Workload, processed: int, empty_cycles: int) -> int:
    """Seconds to the next run after a successful cycle of ``workload`` (module rules)."""
    if workload == "outgoing":
        return mailbox.base_interval_s
    if workload == "act":
        return min(mailbox.base_interval_s, ACT_MAX_INTERVAL_S)
    if processed:
        return mailbox.base_interval_s
    return idle_interval(mailbox.base_interval_s, mailbox.max_interval_s, empty_cycles)


def failure_interval(mailbox: Mailbox, outcome: WorkloadOutcome, error_count: int) -> int:
    """Seconds to the retry after the ``error_count``-th failure in a row (module rules)."""
    if outcome.permanent:
        return PERMANENT_RETEST_S
    if mailbox.recovery_rule == "microsoft":
        return MICROSOFT_RETRY_S
    return transient_interval(mailbox.base_interval_s, error_count)


def record_outcome(
    state: StateLike, mailbox: Mailbox, workload: Workload, outcome: WorkloadOutcome, now: datetime | None = None
) -> datetime:
    """Store a workload's outcome and compute its next sync time by the module's rules; under the
    ``microsoft`` recovery rule a permanent error (or the 10th transient one in a row) disables the workload.

    :return: the next sync time (UTC).
    """
    now = now or datetime.now(UTC)
    with transaction(state) as cur:
        cur.execute(
            q.LOCK_WORKLOAD_COUNTS,
            (mailbox.mailbox_id, str(workload)),
        )
        row = cur.fetchone()
        empty_cycles, error_count = (row[0], row[1]) if row else (0, 0)
        if outcome.ok:
            empty_cycles = 0 if outcome.processed else empty_cycles + 1
            delay = success_interval(mailbox, workload, outcome.processed, empty_cycles)
            next_at = now + timedelta(seconds=delay)
            cur.execute(
                q.WORKLOAD_SUCCEEDED,
                (now, now, outcome.processed, outcome.failed, empty_cycles, next_at, mailbox.mailbox_id, str(workload)),
            )
        else:
            error_count += 1
            permanent = outcome.permanent or (
                mailbox.recovery_rule == "microsoft" and error_count >= MICROSOFT_TRANSIENT_LIMIT
            )
            delay = failure_interval(mailbox, outcome, error_count)
            next_at = now + timedelta(seconds=delay)
            # Microsoft's rule: a permanent error disables the workload until Test & Enable
            enabled = not (permanent and mailbox.recovery_rule == "microsoft")
            cur.execute(
                q.WORKLOAD_FAILED,
                (
                    enabled,
                    permanent,
                    outcome.error_code,
                    outcome.error_message,
                    outcome.fix,
                    error_count,
                    now,
                    now,
                    outcome.processed,
                    outcome.failed,
                    next_at,
                    mailbox.mailbox_id,
                    str(workload),
                ),
            )
    return next_at


def wake_outgoing(state: StateLike, owner_ids: Iterable[str], now: datetime | None = None) -> int:
    """Make the outgoing workload of the mailboxes of ``owner_ids`` (CRM users with email in Pending Send) due
    now; a workload parked by a permanent error keeps its retest time. :return: how many were woken."""
    owners = sorted({str(o).lower() for o in owner_ids if o})
    if not owners:
        return 0
    with transaction(state) as cur:
        cur.execute(
            q.WAKE_OUTGOING,
            (now or datetime.now(UTC), owners, now or datetime.now(UTC)),
        )
        return cur.rowcount


def due_workloads(state: StateLike, mailbox_id: int, now: datetime | None = None) -> set[str]:
    """Names of the mailbox's runnable workloads (enabled, approved for email) whose next sync time has come."""
    with transaction(state) as cur:
        cur.execute(
            q.DUE_WORKLOADS,
            (mailbox_id, now or datetime.now(UTC)),
        )
        return {row[0] for row in cur.fetchall()}


def due_mailboxes(state: StateLike, now: datetime | None = None) -> list[int]:
    """Ids of mailboxes with at least one enabled workload due now, most overdue first."""
    with transaction(state) as cur:
        cur.execute(
            q.DUE_MAILBOXES,
            (now or datetime.now(UTC),),
        )
        return [row[0] for row in cur.fetchall()]


def next_sync_at(state: StateLike, mailbox_id: int) -> datetime | None:
    """The mailbox's next sync time: the earliest of its enabled workloads' (UTC)."""
    with transaction(state) as cur:
        cur.execute(
            q.NEXT_SYNC_AT,
            (mailbox_id,),
        )
        row = cur.fetchone()
    return row[0] if row else None
