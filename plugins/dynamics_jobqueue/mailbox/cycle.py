"""One mailbox cycle: run each due workload of a mailbox, record outcomes, schedule the next run.

Per-mailbox isolation: :func:`sync_mailboxes` runs each mailbox on its own and never lets one mailbox's error
stop the next; it reports every failure with the mailbox and what to fix (:class:`MailboxSyncError`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dynamics_jobqueue.hooks.dataverse import DataverseHook
from dynamics_jobqueue.hooks.errors import ApiError
from dynamics_jobqueue.hooks.mail import MailError, MailHook
from dynamics_jobqueue.hooks.state import StateStoreHook
from dynamics_jobqueue.mailbox import crm, schedule
from dynamics_jobqueue.mailbox.act import ActSync
from dynamics_jobqueue.mailbox.incoming import IncomingSync
from dynamics_jobqueue.mailbox.outgoing import OutgoingSync
from dynamics_jobqueue.mailbox.records import Mailbox, Workload, get_mailbox
from dynamics_jobqueue.mailbox.store import transaction

log = logging.getLogger(__name__)

# Advisory-lock class of mailbox runs (the second key is the mailbox id).
_MAILBOX_LOCK_CLASS = 7_210_455

#: Airflow's default ``max_map_length``; the cycle never maps more task instances than this.
MAX_MAP_LENGTH = 1024


class MailboxSyncError(Exception):
    """One or more mailboxes failed; the message names each mailbox, the error and the fix."""


@dataclass
class MailboxSummary:
    """What one mailbox's cycle did (for logs, XCom and the demo)."""

    mailbox: str
    tracked: list[tuple[str, str]] = field(default_factory=list)
    filtered: list[tuple[str, str]] = field(default_factory=list)
    quarantined: list[tuple[str, str]] = field(default_factory=list)
    sent: list[tuple[str, str]] = field(default_factory=list)
    duplicates: int = 0
    round_trips: int = 0
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    next_sync_at: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _classify(exc: Exception) -> schedule.WorkloadOutcome:
    if isinstance(exc, MailError):
        return schedule.WorkloadOutcome(
            error_code=exc.code, error_message=str(exc), fix=exc.fix, permanent=exc.permanent
        )
    if isinstance(exc, ApiError):
        permanent = exc.status in (401, 403)
        graph = exc.entity_set in ("messages", "sendMail")
        if permanent and graph:
            fix = "check the Graph connection's app registration (Mail.ReadWrite, Mail.Send) and its secret"
        elif permanent:
            fix = "check the Dataverse connection's client id/secret and the application user's security role"
        else:
            fix = "none needed: the service was unreachable or throttled; the mailbox retries by itself"
        return schedule.WorkloadOutcome(
            error_code=f"crm_{exc.status or 'unreachable'}", error_message=str(exc), fix=fix, permanent=permanent
        )
    return schedule.WorkloadOutcome(
        error_code="unexpected", error_message=f"{type(exc).__name__}: {exc}", fix="see the task log for the trace"
    )


def sync_mailbox(
    state: StateStoreHook,
    mailbox_id: int,
    *,
    dataverse: DataverseHook | None = None,
    resolver: crm.PartyResolver | None = None,
    pending: dict[str, list[dict[str, Any]]] | None = None,
    now: datetime | None = None,
    force: bool = False,
) -> MailboxSummary:
    """Run the due workloads of one mailbox and schedule its next run.

    :param pending: Pending Send emails by owner id, when the caller read them for many mailboxes at once.
    :param force: run every enabled workload even when not due (a manual "test and enable").
    :return: the summary; errors are recorded on the mailbox and listed in ``errors``, never raised.
    :raises KeyError: when there is no such mailbox.
    """
    now = now or datetime.now(UTC)
    dataverse = dataverse or DataverseHook()
    conn = state.get_conn()
    try:
        mailbox = get_mailbox(conn, mailbox_id)
        summary = MailboxSummary(mailbox.email_address)
        # one run per mailbox at a time (a manual run next to the scheduled one): session-level lock
        locked = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (_MAILBOX_LOCK_CLASS, mailbox_id)).fetchone()
        conn.commit()
        if not (locked and locked[0]):
            summary.notes.append("skipped: another run of this mailbox is in progress")
            return summary
        due = schedule.due_workloads(conn, mailbox_id, now)
        mail = MailHook(mailbox.profile.conn_id, credentials_conn_id=mailbox.credentials_conn_id)
        for workload in mailbox.workloads():
            if not force and str(workload) not in due:
                continue
            outcome = _run_workload(conn, mailbox, workload, dataverse, mail, resolver, pending, summary)
            schedule.record_outcome(conn, mailbox, workload, outcome, now)
            if not outcome.ok:
                summary.errors.append(
                    f"mailbox {mailbox.email_address} ({workload.value}): {outcome.error_message} -- fix: {outcome.fix}"
                )
        next_at = schedule.next_sync_at(conn, mailbox_id)
    finally:
        conn.close()
    summary.next_sync_at = next_at.isoformat() if next_at else None
    return summary


def _run_workload(
    conn: Any,
    mailbox: Mailbox,
    workload: Workload,
    dataverse: DataverseHook,
    mail: MailHook,
    resolver: crm.PartyResolver | None,
    pending: dict[str, list[dict[str, Any]]] | None,
    summary: MailboxSummary,
) -> schedule.WorkloadOutcome:
    try:
        if workload is Workload.INCOMING:
            incoming = IncomingSync(conn, mailbox, dataverse, mail, resolver).run()
            summary.tracked += incoming.tracked
            summary.filtered += incoming.filtered
            summary.quarantined += incoming.quarantined
            summary.duplicates += incoming.duplicates
            summary.notes += incoming.uidvalidity_changes
            summary.round_trips += incoming.round_trips
            return schedule.WorkloadOutcome(processed=incoming.processed, failed=incoming.failed)
        if workload is Workload.OUTGOING:
            mine = None
            if pending is not None and mailbox.crm_user_id:
                mine = list(pending.get(mailbox.crm_user_id, []))
            outgoing = OutgoingSync(conn, mailbox, dataverse, mail, mine).run()
            summary.sent += outgoing.sent
            summary.filtered += [(s, f"not sent: {r}") for s, r in outgoing.failed]
            return schedule.WorkloadOutcome(processed=outgoing.processed, failed=len(outgoing.failed))
        act = ActSync(conn, mailbox, dataverse).run()
        summary.notes += act.notes
        return schedule.WorkloadOutcome(processed=act.processed)
    except Exception as exc:
        conn.rollback()
        log.exception("Mailbox %s, workload %s failed", mailbox.email_address, workload.value)
        return _classify(exc)


def sync_mailboxes(
    mailbox_ids: list[int],
    *,
    state: StateStoreHook | None = None,
    dataverse: DataverseHook | None = None,
    now: datetime | None = None,
    raise_on_error: bool = True,
) -> list[MailboxSummary]:
    """Run a batch of mailboxes one by one, isolated from each other.

    Pending Send emails of all the batch's users are read with one query per 50 users (the cost of an idle
    cycle stays one mail-server round trip per mailbox plus a shared CRM query).

    :raises MailboxSyncError: after every mailbox ran, when any of them failed (names each one and its fix).
    """
    state = state or StateStoreHook()
    dataverse = dataverse or DataverseHook()
    resolver = crm.PartyResolver(dataverse)
    with transaction(state) as cur:
        cur.execute(
            "SELECT crm_user_id::text FROM dynamics.mailbox WHERE mailbox_id = ANY(%s)"
            " AND crm_user_id IS NOT NULL AND outgoing_method <> 'none'",
            (list(mailbox_ids),),
        )
        owners = [row[0] for row in cur.fetchall()]
    pending: dict[str, list[dict[str, Any]]] | None = None
    try:
        pending = {owner: [] for owner in owners}
        for email in crm.pending_send(dataverse, owners):
            pending.setdefault(str(email.get("_ownerid_value")), []).append(email)
    except ApiError as exc:
        log.warning("Pending Send emails could not be read for the batch (%s); each mailbox asks on its own", exc)
        pending = None
    summaries = []
    for mailbox_id in mailbox_ids:
        try:
            summaries.append(
                sync_mailbox(state, mailbox_id, dataverse=dataverse, resolver=resolver, pending=pending, now=now)
            )
        except Exception as exc:  # a broken record must not stop the other mailboxes
            log.exception("Mailbox %s could not run", mailbox_id)
            summaries.append(MailboxSummary(f"mailbox {mailbox_id}", errors=[f"mailbox {mailbox_id}: {exc}"]))
    errors = [e for s in summaries for e in s.errors]
    if errors and raise_on_error:
        raise MailboxSyncError("; ".join(errors))
    return summaries


def plan_batches(mailbox_ids: list[int], max_tasks: int = MAX_MAP_LENGTH - 24) -> list[list[int]]:
    """Split due mailboxes into at most ``max_tasks`` batches: one mailbox per mapped task while they fit,
    else evenly sized batches (1,000+ mailboxes still map below Airflow's ``max_map_length``)."""
    if not mailbox_ids:
        return []
    size = max(1, math.ceil(len(mailbox_ids) / max_tasks))
    return [mailbox_ids[i : i + size] for i in range(0, len(mailbox_ids), size)]
