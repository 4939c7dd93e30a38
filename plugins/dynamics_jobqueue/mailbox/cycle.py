"""One mailbox cycle: run each due workload of a mailbox, record outcomes, schedule the next run.

Per-mailbox isolation: :func:`sync_mailboxes` runs each mailbox on its own and never lets one mailbox's error
stop the next; it reports every failure with the mailbox and what to fix (:class:`MailboxSyncError`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from dynamics_jobqueue.hooks.dataverse import DataverseHook
from dynamics_jobqueue.hooks.errors import ApiError
from dynamics_jobqueue.hooks.mail import MailError, MailHook
from dynamics_jobqueue.hooks.microsoft import and_filters, eq_filter
from dynamics_jobqueue.hooks.state import StateStoreHook
from dynamics_jobqueue.mailbox import crm, schedule
from dynamics_jobqueue.mailbox import queries as q
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
    """One or more mailboxes failed; the message names each mailbox, the error and the fix.

    :ivar queued_by: the failed mailboxes' owners (the mapped CRM users' email addresses): the failure alert
        (:mod:`dynamics_jobqueue.notifiers`) goes to them as well as to the alert address.
    """

    def __init__(self, message: str, owners: list[str] | None = None) -> None:
        super().__init__(message)
        self.queued_by = list(owners or [])


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
    #: workloads that ran in this cycle
    ran: list[str] = field(default_factory=list)
    #: ``systemuserid`` of the mailbox's owner, and the owner's address (resolved for failed mailboxes)
    owner_id: str | None = None
    owner_email: str | None = None

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
        summary = MailboxSummary(mailbox.email_address, owner_id=mailbox.crm_user_id)
        # one run per mailbox at a time (a manual run next to the scheduled one): session-level lock
        locked = conn.execute(q.TRY_LOCK_MAILBOX, (_MAILBOX_LOCK_CLASS, mailbox_id)).fetchone()
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
            summary.ran.append(str(workload))
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
    """Run one workload; what it did before an error still counts (a failed cycle reports what it tracked)."""
    if workload is not Workload.ACT and not mailbox.approved:
        return schedule.WorkloadOutcome(
            error_code="email_not_approved",
            error_message=f"the email address {mailbox.email_address} is not approved ({mailbox.email_approval})",
            fix="approve the mailbox's email address (Approve Email), then run Test & Enable",
            permanent=True,
        )
    incoming: IncomingSync | None = None
    outgoing: OutgoingSync | None = None
    try:
        if workload is Workload.INCOMING:
            incoming = IncomingSync(conn, mailbox, dataverse, mail, resolver)
            incoming.run()
            return _add_incoming(summary, incoming)
        if workload is Workload.OUTGOING:
            mine = None
            if pending is not None and mailbox.crm_user_id:
                mine = list(pending.get(mailbox.crm_user_id, []))
            outgoing = OutgoingSync(conn, mailbox, dataverse, mail, mine)
            outgoing.run()
            return _add_outgoing(summary, outgoing)
        act = ActSync(conn, mailbox, dataverse).run()
        summary.notes += act.notes
        return schedule.WorkloadOutcome(processed=act.processed)
    except Exception as exc:
        conn.rollback()
        log.exception("Mailbox %s, workload %s failed", mailbox.email_address, workload.value)
        done = schedule.WorkloadOutcome()
        if incoming is not None:
            done = _add_incoming(summary, incoming)
        elif outgoing is not None:
            done = _add_outgoing(summary, outgoing)
        return replace(_classify(exc), processed=done.processed, failed=done.failed)
    finally:
        conn.commit()  # a workload leaves nothing open: the schedule update that follows is its own transaction


def _add_incoming(summary: MailboxSummary, incoming: IncomingSync) -> schedule.WorkloadOutcome:
    result = incoming.result
    summary.tracked += result.tracked
    summary.filtered += result.filtered
    summary.quarantined += result.quarantined
    summary.duplicates += result.duplicates
    summary.notes += result.uidvalidity_changes
    summary.round_trips += result.round_trips
    return schedule.WorkloadOutcome(processed=result.processed, failed=result.failed)


def _add_outgoing(summary: MailboxSummary, outgoing: OutgoingSync) -> schedule.WorkloadOutcome:
    result = outgoing.result
    summary.sent += result.sent
    summary.filtered += [(s, f"not sent: {r}") for s, r in result.failed]
    return schedule.WorkloadOutcome(processed=result.processed, failed=len(result.failed))


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
            q.OUTGOING_OWNERS,
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
    failure = failure_of(summaries, dataverse)
    if failure is not None and raise_on_error:
        raise failure
    return summaries


def failure_of(summaries: list[MailboxSummary], dataverse: DataverseHook) -> MailboxSyncError | None:
    """The error of a batch (``None`` when every mailbox succeeded), addressed to the failed mailboxes' owners:
    each owner's CRM user email (``internalemailaddress``), else the mailbox's own address."""
    failed = [s for s in summaries if s.errors]
    if not failed:
        return None
    user_ids = sorted({s.owner_id for s in failed if s.owner_id})
    try:
        addresses = crm.user_addresses(dataverse, user_ids)
    except ApiError as exc:
        log.warning("Owners of the failed mailboxes could not be read (%s); alerting the mailboxes' addresses", exc)
        addresses = {}
    for s in failed:
        s.owner_email = addresses.get(s.owner_id or "") or (s.mailbox if "@" in s.mailbox else None)
    owners = [s.owner_email for s in failed if s.owner_email]
    return MailboxSyncError("; ".join(e for s in failed for e in s.errors), list(dict.fromkeys(owners)))


def test_and_enable(
    state: StateStoreHook, mailbox_id: int, *, dataverse: DataverseHook | None = None, now: datetime | None = None
) -> MailboxSummary:
    """Test & Enable (Microsoft's mailbox command): run every workload the mailbox's methods select, now, and
    set each one's status and Enabled flag from its outcome: a workload that worked is enabled (and back on
    its schedule), one that failed stays disabled with the error and its fix until the next test.

    :return: the cycle's summary; ``ran`` lists the workloads tested (empty when another run of the mailbox
        was in progress, in which case nothing changes).
    :raises KeyError: when there is no such mailbox.
    """
    now = now or datetime.now(UTC)
    dataverse = dataverse or DataverseHook()
    # a forced run tests disabled workloads too; their Enabled flag follows the outcome below
    summary = sync_mailbox(state, mailbox_id, dataverse=dataverse, now=now, force=True)
    with transaction(state) as cur:
        cur.execute(
            q.ENABLE_TESTED_WORKLOADS,
            (now, mailbox_id, summary.ran),
        )
    if summary.errors:
        failure_of([summary], dataverse)  # resolves the owner for the caller's alert
    return summary


def pending_send_owners(dataverse: DataverseHook) -> set[str]:
    """``systemuserid`` of every CRM user with email in Pending Send (one paged query of owner ids)."""
    owners: set[str] = set()
    for page in dataverse.iter_pages(
        "emails",
        filter=and_filters(eq_filter("statuscode", crm.STATUS_PENDING_SEND), eq_filter("directioncode", True)),
        select=["_ownerid_value"],
    ):
        owners.update(str(row["_ownerid_value"]).lower() for row in page if row.get("_ownerid_value"))
    return owners


def select_due(state: StateStoreHook, dataverse: DataverseHook, now: datetime | None = None) -> list[int]:
    """The mailboxes to run now: those with a workload due, after making the outgoing workload of every user
    with email in Pending Send due (:func:`schedule.wake_outgoing`). When the CRM cannot be asked, the due
    mailboxes alone (outgoing then runs on its base interval)."""
    now = now or datetime.now(UTC)
    try:
        woken = schedule.wake_outgoing(state, pending_send_owners(dataverse), now)
        if woken:
            log.info("%d mailbox(es) have email in Pending Send", woken)
    except ApiError as exc:
        log.warning("Pending Send emails could not be read (%s); outgoing runs on its schedule only", exc)
    return schedule.due_mailboxes(state, now)


def plan_batches(mailbox_ids: list[int], max_tasks: int = MAX_MAP_LENGTH - 24) -> list[list[int]]:
    """Split due mailboxes into at most ``max_tasks`` batches: one mailbox per mapped task while they fit,
    else evenly sized batches (1,000+ mailboxes still map below Airflow's ``max_map_length``)."""
    if not mailbox_ids:
        return []
    size = max(1, math.ceil(len(mailbox_ids) / max_tasks))
    return [mailbox_ids[i : i + size] for i in range(0, len(mailbox_ids), size)]
